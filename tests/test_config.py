"""Configuration: a config file, then --key=value overrides, typed; mistakes are errors that name the key."""
import os
import subprocess
import sys

import pytest

from common import ConfigError, parse_config
from train import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_file_then_overrides_in_order(tmp_path):
    cfg_file = tmp_path / 'c.py'
    cfg_file.write_text("import math\nn_layer = 3\nlearning_rate = 2e-3\nout_dir = 'from-file'\n_private = 1\n")
    cfg = parse_config(TrainConfig, [str(cfg_file), '--n_layer=5', '--dropout=0.1'])
    assert (cfg.n_layer, cfg.learning_rate, cfg.out_dir, cfg.dropout) == (5, 2e-3, 'from-file', 0.1)


def test_values_are_typed():
    cfg = parse_config(TrainConfig, ['--learning_rate=1', '--compile=False', '--bias=true', '--out_dir=123',
                                     '--device=cpu', '--taper_start=None'])
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)   # an int is fine for a float
    assert cfg.compile is False and cfg.bias is True
    assert cfg.out_dir == '123' and cfg.device == 'cpu'
    assert cfg.taper_start == cfg.warmup_iters                                # None: the documented default


@pytest.mark.parametrize('arg,words', [
    ('--max_iters=1.5', ['max_iters', 'int']),
    ('--compile=maybe', ['compile', 'bool']),
    ('--batch_size=True', ['batch_size', 'int']),
    ('--learnin_rate=1e-3', ['learnin_rate', "did you mean 'learning_rate'"]),
    ('--n_layer', ['--key=value']),
    ('--norm=batchnorm', ['norm', 'batchnorm']),
    ('--taper=internal --norm=none', None),
])
def test_mistakes_name_the_key(arg, words):
    args = arg.split()
    with pytest.raises(ConfigError) as err:
        parse_config(TrainConfig, args)
    for word in words or ['taper', 'norm']:
        assert word in str(err.value)


def test_unknown_key_in_a_config_file_names_file_and_key(tmp_path):
    cfg_file = tmp_path / 'bad.py'
    cfg_file.write_text("n_layers = 4\n")
    with pytest.raises(ConfigError, match=r"bad\.py.*unknown config key 'n_layers'.*'n_layer'"):
        parse_config(TrainConfig, [str(cfg_file)])


def test_missing_config_file():
    with pytest.raises(ConfigError, match='not found'):
        parse_config(TrainConfig, ['config/nope.py'])


def test_every_shipped_config_parses():
    for name in sorted(os.listdir(os.path.join(REPO, 'config'))):
        parse_config(TrainConfig, [os.path.join(REPO, 'config', name)])


def test_the_command_line_reports_a_bad_key_and_exits_non_zero():
    out = subprocess.run([sys.executable, 'train.py', 'config/taper.py', '--nonsense=1'], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "unknown config key 'nonsense'" in out.stderr
    assert 'Traceback' not in out.stderr
