"""The CUDA paths that differ from the CPU ones: bf16 autocast, fused AdamW, torch.compile. Skipped without a GPU
(bench_gpu.sh runs them on a lent card)."""
import json
import os

import pytest
import torch

from checkpoint import load_checkpoint
from model import GPT
from train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize('compile', [False, True])
def test_bf16_fused_adamw_training_through_the_schedule(shakespeare_slice, tmp_path, compile):
    cfg = TrainConfig(out_dir=str(tmp_path), data_root=shakespeare_slice, dataset='shakespeare_char', device='cuda',
                      dtype='bfloat16', compile=compile, n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=16,
                      learning_rate=3e-3, max_iters=120, warmup_iters=10, lr_decay_iters=120, min_lr=3e-4,
                      taper_start=30, taper_end=90, eval_interval=60, eval_iters=5, log_interval=10,
                      taper='internal')
    summary = train(cfg)
    evals = summary['evals']
    assert evals[-1]['val'] < evals[0]['val'] - 0.7 and summary['gate'] == 0.0
    ckpt = load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))
    assert not any(k.startswith('_orig_mod.') for k in ckpt['model'])      # compile leaves no prefix behind
    m = GPT.from_checkpoint(ckpt).to('cuda')
    assert all(tn.c.item() != 1.0 for tn in m.taper_norms())
    with open(tmp_path / 'log.jsonl') as f:
        header = json.loads(f.readline())
    assert header['dtype'] == 'bfloat16' and header['device'] == torch.cuda.get_device_name()


def test_folded_logits_match_in_bf16(shakespeare_slice, tmp_path):
    from fold import fold_model
    cfg = TrainConfig(out_dir=str(tmp_path), data_root=shakespeare_slice, dataset='shakespeare_char', device='cuda',
                      n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=16, max_iters=60, warmup_iters=5,
                      lr_decay_iters=60, taper_start=10, taper_end=40, eval_interval=60, eval_iters=2, taper='all',
                      anchor_lambda=0.1)
    train(cfg)
    m = GPT.from_checkpoint(load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))).to('cuda').eval()
    folded = fold_model(m).eval()
    x = torch.randint(0, m.config.vocab_size, (4, 64), device='cuda')
    with torch.no_grad(), torch.autocast('cuda', dtype=torch.bfloat16):
        a, b = m(x, x)[0].float(), folded(x, x)[0].float()
    tf32 = torch.backends.cuda.matmul.allow_tf32   # train.py turns TF32 on: 10-bit mantissas, not fp32's 23
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            exact_a, exact_b = m(x, x)[0], folded(x, x)[0]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.testing.assert_close(exact_b, exact_a, rtol=1e-4, atol=1e-4)      # fp32: rounding only
    assert (a - b).abs().max() < 0.1 * a.abs().max()                        # bf16: within its 8-bit mantissa
