import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'experiments'))
SHARED = os.environ.get('NANOTAPER_SHARED', os.path.join(os.path.dirname(REPO), 'shared'))
os.environ.setdefault('TIKTOKEN_CACHE_DIR', os.path.join(SHARED, 'data', 'tiktoken_cache'))
OFFLINE = dict(https_proxy='http://127.0.0.1:9', http_proxy='http://127.0.0.1:9', HF_HUB_OFFLINE='1')  # fails fast


def pytest_configure(config):
    # torch.compile's own internals call the deprecated torch.jit.script_method (torch 2.13): not this code's
    config.addinivalue_line('filterwarnings', 'ignore:`torch.jit.script_method` is deprecated:DeprecationWarning')


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """train.py and bench.py set torch's thread count for their process, as scripts: each test gets its own back."""
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def shakespeare_path():
    for path in (os.path.join(SHARED, 'data', 'tinyshakespeare.txt'),
                 os.path.join(REPO, 'data', 'shakespeare_char', 'input.txt')):
        if os.path.isfile(path):
            return path
    pytest.skip("tiny Shakespeare not found: set NANOTAPER_SHARED or put it at data/shakespeare_char/input.txt")


@pytest.fixture(scope='session')
def shakespeare_slice(tmp_path_factory):
    """A data root holding shakespeare_char prepared from the first 200,000 characters of the real text."""
    import runpy
    root = tmp_path_factory.mktemp('data')
    with open(shakespeare_path(), encoding='utf-8') as f:
        text = f.read()[:200_000]
    src = root / 'slice.txt'
    src.write_text(text, encoding='utf-8')
    prepare = runpy.run_path(os.path.join(REPO, 'data', 'shakespeare_char', 'prepare.py'))['prepare']
    prepare(src=str(src), out_dir=str(root / 'shakespeare_char'))
    return str(root)


def run_config(data_root, out_dir, **overrides):
    """A TrainConfig for a run of seconds: shakespeare_char under data_root, a 2-layer GPT, one micro-step, CPU."""
    from train import TrainConfig
    base = dict(out_dir=str(out_dir), data_root=str(data_root), dataset='shakespeare_char', device='cpu',
                gradient_accumulation_steps=1, n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4,
                learning_rate=3e-3, max_iters=8, warmup_iters=2, lr_decay_iters=8, min_lr=3e-4,
                eval_interval=4, eval_iters=2, log_interval=1)
    return TrainConfig(**{**base, **overrides})


def cli(script, *args, cwd=REPO, **env):
    """Run one of the scripts as a user would: `python script args...`, on one CPU thread."""
    env = dict(os.environ, OMP_NUM_THREADS='1', **env)
    return subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_error_line(result, *words):
    """The standard for bad input: exit != 0, no Traceback, and stderr one line, `error: ...`, holding words."""
    err = result.stderr.strip()
    assert result.returncode != 0, result.stdout[-2000:]
    assert 'Traceback' not in err and len(err.splitlines()) == 1 and err.startswith('error: '), err[-3000:]
    for word in words:
        assert word in err, err
    return err


def stop_training_at(monkeypatch, iteration, error):
    """Make train.py raise `error` as iteration `iteration` begins: a crash, or Ctrl-C, at a chosen point of a
    real run (undo with monkeypatch.undo())."""
    import train
    real_get_lr = train.get_lr

    def get_lr(it, cfg):
        if it == iteration:
            raise error
        return real_get_lr(it, cfg)
    monkeypatch.setattr(train, 'get_lr', get_lr)
