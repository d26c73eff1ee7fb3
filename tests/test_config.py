"""Configuration: config files (each may extend another), then --key=value overrides wherever they stand, typed;
mistakes are one-line errors that name the key."""
import dataclasses
import os

import pytest
from conftest import REPO, assert_one_error_line, cli

from configurator import UserError, parse_config, usage
from sample import SampleConfig
from train import TrainConfig

CONFIG = os.path.join(REPO, 'config')


def test_file_then_overrides(tmp_path):
    cfg_file = tmp_path / 'c.py'
    cfg_file.write_text("import math\nn_layer = 3\nlearning_rate = 2e-3\nout_dir = 'from-file'\n_private = 1\n")
    cfg = parse_config(TrainConfig, [str(cfg_file), '--n_layer=5', '--dropout=0.1'])
    assert (cfg.n_layer, cfg.learning_rate, cfg.out_dir, cfg.dropout) == (5, 2e-3, 'from-file', 0.1)


def test_an_override_wins_over_a_file_wherever_it_stands(tmp_path):
    cfg_file = tmp_path / 'c.py'
    cfg_file.write_text("norm = 'layernorm'\nn_layer = 3\n")
    for argv in (['--norm=rmsnorm', str(cfg_file)], [str(cfg_file), '--norm=rmsnorm']):
        cfg = parse_config(TrainConfig, argv)
        assert (cfg.norm, cfg.n_layer) == ('rmsnorm', 3), argv


def test_a_file_extends_another_and_states_only_what_differs(tmp_path):
    (tmp_path / 'base.py').write_text("n_layer = 3\nout_dir = 'base'\nlearning_rate = 2e-3\n")
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'variant.py').write_text("extends = '../base.py'\nout_dir = 'variant'\n")
    cfg = parse_config(TrainConfig, [str(tmp_path / 'sub' / 'variant.py')])
    assert (cfg.n_layer, cfg.out_dir, cfg.learning_rate) == (3, 'variant', 2e-3)
    (tmp_path / 'loop.py').write_text("extends = 'loop.py'\n")
    with pytest.raises(UserError, match='extends itself'):
        parse_config(TrainConfig, [str(tmp_path / 'loop.py')])


def test_values_are_typed():
    cfg = parse_config(TrainConfig, ['--learning_rate=1', '--compile=False', '--bias=true', '--out_dir=123',
                                     '--device=cpu', '--compile'])
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)   # an int is fine for a float
    assert cfg.compile is True and cfg.bias is True                           # a bare bool key is a switch
    assert cfg.out_dir == '123' and cfg.device == 'cpu'
    assert parse_config(SampleConfig, ['--top_k=None']).top_k is None          # None for an `int | None` (200)
    with pytest.raises(UserError, match='learning_rate must be float'):       # a bool is no number here
        parse_config(TrainConfig, ['--learning_rate=True'])
    with pytest.raises(UserError, match='anchor_target must be float'):       # nor in a `float | None`
        parse_config(TrainConfig, ['--anchor_target=False'])


@pytest.mark.parametrize('text,value', [('false', False), ('False', False), ('FALSE', False), ('true', True),
                                        ('True', True), ('0', None), ('1', None)])
def test_a_bool_is_true_or_false_in_any_case_and_nothing_else(text, value):
    if value is None:                                                   # 0 and 1 are ints, not bools: refused
        with pytest.raises(UserError, match='compile must be True or False'):
            parse_config(TrainConfig, [f'--compile={text}'])
    else:
        assert parse_config(TrainConfig, [f'--compile={text}']).compile is value


@pytest.mark.parametrize('args,words', [
    (['--max_iters=1.5'], ['max_iters', 'int']),
    (['--compile=maybe'], ['compile', 'True or False']),
    (['--batch_size=True'], ['batch_size', 'int']),
    (['--learnin_rate=1e-3'], ['learnin_rate', "did you mean 'learning_rate'"]),
    (['--n_layer'], ['--key=value']),
    (['--norm=batchnorm'], ['norm', 'batchnorm']),
    (['--taper=internal', '--norm=none'], ['taper', 'norm']),
    (['--dropout=1.5'], ['dropout']),
    (['--max_iters=-1'], ['max_iters=-1', '>= 0']),
    (['--anchor_target=0'], ['anchor_target=0', 'must be > 0']),
    (['--fakeln_aux=-0.1'], ['fakeln_aux=-0.1', 'must be >= 0']),
    (['--fakeln_divisor=pooled', '--taper=internal'], ['fakeln_divisor', 'pooled', 'heldout']),
    (['--removal=fakeln', '--taper=internal'], ["fakeln_divisor='heldout'", 'trained model', 'init_from', "'ema'"]),
    (['--fold_when_gone=True'], ['fold_when_gone=True', "taper='internal'"]),
    (['--max_iters=50', '--warmup_iters=100'], ['lr_decay_iters=50 (max_iters when left out)', 'warmup_iters=100']),
    (['--learning_rate=-1'], ['--learning_rate=-1: learning_rate must be >= 0, got -1.0']),  # else AdamW's Traceback
    (['--weight_decay=-0.1'], ['weight_decay must be >= 0, got -0.1']),
    (['--grad_clip=-1'], ['grad_clip must be >= 0, got -1.0']),
    (['--seed=-1'], ['seed must be >= 0, got -1']),                                              # else numpy's
    (['--beta1=1.5'], ['beta1 must lie in [0, 1), got 1.5']),
    (['--beta2=1'], ['beta2 must lie in [0, 1), got 1.0']),                                      # the edge: refused
    (['--lr_decay_iters=-5'], ['lr_decay_iters must be >= 0, got -5']),                         # `Count | None`
    (['--batch_size=0'], ['batch_size must be >= 1, got 0']),
    (['--out_dir='], ["out_dir=''", 'must name a folder']),
    (['--out_dir=README.md'], ["out_dir='README.md'", 'must name a folder']),   # a file (tests run in the repo)
    (['--max_iters=200', '--warmup_iters=100', '--lr_decay_iters=100'], ['lr_decay_iters=100 ', 'must exceed']),
    (['config/nope.py'], ['not found']),
])
def test_mistakes_name_the_key(args, words):
    with pytest.raises(UserError) as err:
        parse_config(TrainConfig, args)
    for word in words:
        assert word in str(err.value)


def test_a_ranged_key_takes_its_edges_and_none_where_its_type_allows(tmp_path):
    cfg = parse_config(TrainConfig, ['--dropout=0', '--beta2=0.999', '--warmup_iters=0', '--taper_start=None',
                                     '--taper_end=None', '--grad_clip=0', '--batch_size=1'])
    assert (cfg.dropout, cfg.beta2, cfg.warmup_iters, cfg.grad_clip, cfg.batch_size) == (0.0, 0.999, 0, 0.0, 1)
    (tmp_path / 'bad.py').write_text("dropout = 1.0\n")                 # a file's value is checked as a flag's
    with pytest.raises(UserError, match=r"bad\.py: dropout must lie in \[0, 1\), got 1\.0"):
        parse_config(TrainConfig, [str(tmp_path / 'bad.py')])


def test_unknown_key_in_a_config_file_names_file_and_key(tmp_path):
    cfg_file = tmp_path / 'bad.py'
    cfg_file.write_text("n_layers = 4\n")
    with pytest.raises(UserError, match=r"bad\.py.*unknown config key 'n_layers'.*'n_layer'"):
        parse_config(TrainConfig, [str(cfg_file)])


def test_help_says_what_each_key_means():
    text = usage(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        line = next(line for line in text.splitlines() if line.strip().startswith(f'--{f.name}='))
        assert len(line.split(None, 1)) == 2, f"--{f.name} has no meaning in --help"
    assert "--taper_start=None" in text and "the end of the lr warmup" in text


def test_every_shipped_config_parses_and_runs_alone():
    for name in sorted(os.listdir(CONFIG)):
        cfg = parse_config(TrainConfig, [os.path.join(CONFIG, name)])
        assert cfg.out_dir != TrainConfig.out_dir, name                    # every run writes its own folder


@pytest.mark.parametrize('run,control', [('taper', 'layernorm'), ('owt_taper', 'owt_layernorm'),
                                         ('finetune_gpt2_taper', 'finetune_gpt2_layernorm'),
                                         ('tinystories_taper', 'tinystories_layernorm')])
def test_a_control_is_its_taper_run_with_taper_off(run, control):
    a, b = (dataclasses.asdict(parse_config(TrainConfig, [os.path.join(CONFIG, f'{n}.py')])) for n in (run, control))
    assert (a['taper'], b['taper']) == ('internal', 'off')
    differ = {k for k in a if a[k] != b[k]}
    assert differ <= {'taper', 'out_dir', 'wandb_run_name'} and 'out_dir' in differ


def test_the_schedule_is_checked_only_where_something_follows_the_gate():
    short = ['--max_iters=20', '--warmup_iters=2']
    with pytest.raises(UserError, match='taper_start'):
        parse_config(TrainConfig, ['--taper=internal', '--taper_start=500', '--taper_end=1250'] + short)
    with pytest.raises(UserError, match='taper_start'):                   # the anchor's s_tgt is frozen there too
        parse_config(TrainConfig, ['--norm=none', '--anchor_lambda=0.1', '--taper_start=500'] + short)
    cfg = parse_config(TrainConfig, ['--taper=off', '--taper_start=500', '--taper_end=1250'] + short)
    assert cfg.taper_start == 500                                          # a baseline never reads it


def test_the_command_line_reports_a_bad_key_in_one_line():
    assert_one_error_line(cli('train.py', 'config/taper.py', '--nonsense=1'), "unknown config key 'nonsense'")
    assert_one_error_line(cli('train.py', 'config/taper.py', '--taper_start=500', '--taper_end=400'), 'taper_start')
    assert_one_error_line(cli('sample.py', '--top_k=0'), 'top_k')
