"""End to end: a small TaperNorm GPT trains on real Shakespeare through the whole gate schedule."""
import json
import math
import os

import pytest

from common import load_checkpoint, model_from_checkpoint
from train import TrainConfig, train


@pytest.mark.parametrize('norm,taper,anchor', [('layernorm', 'internal', 0.0), ('rmsnorm', 'all', 0.1),
                                                ('none', 'off', 0.1)])
def test_a_tapered_model_trains_to_gate_zero(shakespeare_slice, tmp_path, norm, taper, anchor):
    cfg = TrainConfig(out_dir=str(tmp_path), data_root=shakespeare_slice, device='cpu', n_layer=2, n_head=2,
                      n_embd=48, block_size=32, batch_size=8, learning_rate=3e-3, max_iters=120, warmup_iters=10,
                      lr_decay_iters=120, min_lr=3e-4, taper_start=20, taper_end=80, eval_interval=40,
                      eval_iters=5, log_interval=10, norm=norm, taper=taper, anchor_lambda=anchor)
    summary = train(cfg)
    with open(tmp_path / 'log.jsonl') as f:
        recs = [json.loads(line) for line in f]
    header, evals = recs[0], [r for r in recs if r['kind'] == 'eval']
    assert header['kind'] == 'header' and header['config']['taper_end'] == 80 and header['torch']
    assert [e['iter'] for e in evals] == [0, 40, 80, 120]
    assert recs[-1]['kind'] == 'done' and recs[-1]['iter'] == 120 and recs[-1]['wall_s'] > 0
    assert all(math.isfinite(v) for r in recs if r['kind'] != 'header' for v in r.values() if isinstance(v, float))
    assert evals[-1]['val'] < evals[0]['val'] - 0.7                       # 4.2 (uniform over 65) down well past it
    final_gate = 0.0 if taper != 'off' else 1.0                         # a model with nothing to taper keeps g = 1
    assert summary['gate'] == final_gate and summary['iter_num'] == 120
    m = model_from_checkpoint(load_checkpoint(os.path.join(tmp_path, 'ckpt.pt')))
    assert m.gate.item() == final_gate and bool(m.calibrated)
    if taper != 'off':
        assert all(tn.c.item() != 1.0 for tn in m.taper_norms())         # calibrated from statistics
    if anchor:
        assert m.s_tgt.item() > 0


def test_a_compiled_model_returns_a_loss_with_a_graph():
    """torch 2.13's compile once dropped the gradient of `ce + zeros(())`: the loss must stay differentiable."""
    import torch
    from model import GPT, GPTConfig
    m = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8)).train()
    x = torch.randint(0, 11, (2, 8))
    _, loss, _ = torch.compile(m)(x, x)
    loss.backward()
    assert m.lm_head.weight.grad is not None and m.lm_head.weight.grad.abs().sum() > 0
