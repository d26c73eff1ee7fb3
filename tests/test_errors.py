"""Bad input at every edge gets one line, `error: ...`, naming the problem and the fix: no Traceback, exit != 0."""
import importlib.util

import pytest
import torch
from conftest import OFFLINE, assert_one_error_line, cli

from configurator import UserError
from runtime import pick_dtype

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@no_cuda
@pytest.mark.parametrize('script', ['train.py', 'sample.py', 'bench.py'])
def test_a_device_this_torch_lacks(script):
    args = ['config/taper.py'] if script == 'train.py' else []
    assert_one_error_line(cli(script, *args, '--device=cuda'), "device='cuda'", 'sees no CUDA', '--device=cpu')


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_half_precision_off_cuda_is_refused_not_ignored(dtype):
    with pytest.raises(UserError, match=f"dtype='{dtype}'.*CUDA only"):
        pick_dtype(dtype, 'cpu')
    assert pick_dtype('auto', 'cpu') == pick_dtype('float32', 'cpu') == 'float32'
    assert_one_error_line(cli('train.py', 'config/taper.py', '--device=cpu', f'--dtype={dtype}', '--max_iters=1',
                              '--warmup_iters=0', '--eval_iters=1'), f"dtype='{dtype}'", 'CUDA only', 'float32')


def test_a_device_that_is_no_device():
    assert_one_error_line(cli('sample.py', '--device=gpu7'), "device='gpu7' is not a device")


@pytest.mark.skipif(importlib.util.find_spec('wandb') is not None, reason="wandb is installed here")
def test_wandb_log_without_wandb(shakespeare_slice, tmp_path):
    r = cli('train.py', 'config/taper.py', '--wandb_log=True', f'--data_root={shakespeare_slice}',
            f'--out_dir={tmp_path}', '--device=cpu')
    assert_one_error_line(r, 'wandb_log=True needs wandb', 'pip install wandb')


def test_gpt2_offline_says_to_give_init_path(shakespeare_slice, tmp_path):
    pytest.importorskip('transformers')
    r = cli('train.py', 'config/finetune_gpt2_taper.py', '--device=cpu', f'--out_dir={tmp_path}',
            f'--data_root={shakespeare_slice}', '--dataset=shakespeare_char', HF_HOME=str(tmp_path / 'hf'), **OFFLINE)
    err = assert_one_error_line(r, "could not load 'gpt2'", 'offline, give --init_path')
    assert 'local_path' not in err
    r = cli('train.py', 'config/finetune_gpt2_taper.py', f'--init_path={tmp_path / "nothing"}', '--device=cpu',
            f'--data_root={shakespeare_slice}', '--dataset=shakespeare_char', f'--out_dir={tmp_path}')
    assert_one_error_line(r, 'no GPT-2 weights at', 'nothing')


def test_a_prompt_file_that_is_not_there(tmp_path):
    from test_sample import char_checkpoint
    ckpt = char_checkpoint(tmp_path)
    assert_one_error_line(cli('sample.py', f'--ckpt={ckpt}', '--device=cpu', f'--start=FILE:{tmp_path / "no.txt"}'),
                          'cannot read', 'no.txt')
    assert_one_error_line(cli('sample.py', f'--ckpt={ckpt}', '--device=cpu', '--start=héllo'), "'é'")


def test_a_config_file_that_is_not_python(tmp_path):
    (tmp_path / 'c.py').write_text("n_layer = 4\nlearning_rate = 1e-3 *\n")
    r = cli('train.py', str(tmp_path / 'c.py'))
    assert_one_error_line(r, 'c.py', 'line 2')
