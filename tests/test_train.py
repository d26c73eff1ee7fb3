"""The training loop: a small TaperNorm GPT trains on real Shakespeare through the whole gate schedule, and the
loop's own rules hold: calibration sees the step at taper_start, weight decay touches matrices only, accumulated
micro-steps take the step one batch of them would, and a loss that is not finite stops the run."""
import json
import math
import os

import numpy as np
import pytest
import torch
from conftest import run_config
from reference import ROUND, assert_matches_reference, float64_reference, synthetic_dataset

import train as train_module
from checkpoint import load_checkpoint
from model import GPT, GPTConfig
from train import train


def read_log(out_dir):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('norm,taper,anchor', [('layernorm', 'internal', 0.0), ('rmsnorm', 'all', 0.1),
                                                ('none', 'off', 0.1)])
def test_a_tapered_model_trains_to_gate_zero(shakespeare_slice, tmp_path, norm, taper, anchor, capsys):
    cfg = run_config(shakespeare_slice, tmp_path, n_embd=48, batch_size=8, max_iters=120, warmup_iters=10,
                     lr_decay_iters=120, taper_start=20, taper_end=80, eval_interval=40, eval_iters=5,
                     log_interval=10, norm=norm, taper=taper, anchor_lambda=anchor)
    summary = train(cfg)
    recs = read_log(tmp_path)
    header, evals = recs[0], [r for r in recs if r['kind'] == 'eval']
    assert header['kind'] == 'header' and header['config']['taper_end'] == 80 and header['torch']
    assert [e['iter'] for e in evals] == [0, 40, 80, 120]
    assert recs[-1]['kind'] == 'done' and recs[-1]['iter'] == 120 and recs[-1]['wall_s'] > 0
    assert all(math.isfinite(v) for r in recs if r['kind'] != 'header' for v in r.values() if isinstance(v, float))
    assert evals[-1]['val'] < evals[0]['val'] - 0.7                       # 4.2 (uniform over 65) down well past it
    final_gate = 0.0 if taper != 'off' else 1.0                         # a model with nothing to taper keeps g = 1
    assert summary['gate'] == final_gate and summary['iter_num'] == 120
    m = GPT.from_checkpoint(load_checkpoint(os.path.join(tmp_path, 'ckpt.pt')))
    assert m.gate.item() == final_gate and bool(m.calibrated)
    if taper != 'off':
        assert all(tn.c.item() != 1.0 for tn in m.taper_norms())         # calibrated from statistics
    if anchor:
        assert m.s_tgt.item() > 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('iter')]
    assert lines[0].startswith('iter   9/120 | ') and lines[-1].startswith('iter 119/120 | ')  # progress: k/max
    assert lines[0].split(' | eta ')[1].count(':') == 2                  # and the time left, h:mm:ss


def test_calibration_includes_the_step_at_taper_start(shakespeare_slice, tmp_path, monkeypatch):
    """taper_start = 0 works: step 0's statistics are in the EMAs when calibrate() freezes c."""
    seen = []
    calibrate = GPT.calibrate
    monkeypatch.setattr(GPT, 'calibrate', lambda self: seen.append(int(self.ema_steps)) or calibrate(self))
    summary = train(run_config(shakespeare_slice, tmp_path, taper='internal', taper_start=0, taper_end=4))
    assert seen == [1] and summary['gate'] == 0.0
    seen.clear()
    train(run_config(shakespeare_slice, tmp_path / 'later', taper='internal', taper_start=3, taper_end=6))
    assert seen == [4]                                                  # steps 0, 1, 2 and 3 itself


def test_the_run_calibrates_after_the_first_window_in_which_s_grew_less_than_level_growth(shakespeare_slice,
                                                                                         tmp_path, monkeypatch):
    """s_growth() is read at each window's end only, and the loop keeps to the threshold (growths scripted here:
    s_growth's own values are tested in test_schedules.py)."""
    growths = iter([math.inf, 0.5, 0.2, 0.04, 0.0])
    monkeypatch.setattr(GPT, 's_growth', lambda self: next(growths))
    cfg = run_config(shakespeare_slice, tmp_path, taper='internal', max_iters=20, lr_decay_iters=20, level_window=2,
                     eval_interval=20)
    summary = train(cfg)
    with open(tmp_path / 'log.jsonl') as f:
        found = [rec for rec in map(json.loads, f) if rec['kind'] == 'calibrate']
    assert found == [dict(kind='calibrate', taper_start=7, taper_end=12)]  # after step 7 (windows end at 2, 4, 6, 8)
    assert next(growths) == 0.0 and summary['gate'] == 0.0                 # four windows read, no more
    assert cfg.taper_start is None                                         # the caller's config is left as it was


def test_weight_decay_falls_on_matrices_only():
    model = GPT(GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24, bias=True, taper='all'))
    decay, no_decay = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu').param_groups
    assert (decay['weight_decay'], no_decay['weight_decay']) == (0.1, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    gains_and_biases = {n for n in names.values() if n.endswith(('.bias', '.weight_t')) or '.ln_' in n or 'ln_f' in n}
    assert {names[id(p)] for p in no_decay['params']} == gains_and_biases
    assert {names[id(p)] for p in decay['params']} == set(names.values()) - gains_and_biases
    assert any(n.endswith('weight_t') for n in gains_and_biases) and any('ln_f.bias' in n for n in gains_and_biases)


def test_accumulated_micro_steps_take_the_step_of_one_batch(tmp_path):
    """gradient_accumulation_steps = 3 in train.py equals one process stepping on the 3 micro-batches at once,
    in float64: the logged loss and every weight, EMA and AdamW moment, to float64 rounding."""
    vocab_size = 50
    data_dir = synthetic_dataset(tmp_path / 'synth', vocab_size, 4000)
    cfg = run_config(tmp_path, tmp_path / 'out', dataset='synth', block_size=16, batch_size=2,
                     gradient_accumulation_steps=3, max_iters=3, taper='all', anchor_lambda=0.1, taper_start=0,
                     taper_end=2, decay_lr=False, learning_rate=1e-2, grad_clip=0, eval_interval=3, eval_iters=1)
    torch.set_default_dtype(torch.float64)
    try:
        train(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    ref, ref_opt, grad_scale, ref_losses = float64_reference(cfg, data_dir, vocab_size, world=1)
    assert_matches_reference(load_checkpoint(tmp_path / 'out' / 'ckpt.pt'), ref, ref_opt, grad_scale, cfg)
    logged = [r['loss'] for r in read_log(tmp_path / 'out') if r['kind'] == 'train']
    assert len(logged) == 3
    for got, expected in zip(logged, ref_losses):
        assert abs(got - expected) <= ROUND * abs(expected), (got, expected)


def test_a_compiled_model_returns_a_loss_with_a_graph():
    """torch 2.13's compile once dropped the gradient of `ce + zeros(())`: the loss must stay differentiable."""
    m = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8)).train()
    x = torch.randint(0, 11, (2, 8))
    _, loss, _ = torch.compile(m)(x, x)
    loss.backward()
    assert m.lm_head.weight.grad is not None and m.lm_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('loss', [float('nan'), float('inf'), -float('inf')])
def test_a_loss_that_is_not_finite_stops_the_run(loss):
    with pytest.raises(train_module.UserError, match=f'the loss is {loss} at iteration 7: the run diverged'):
        train_module.check_finite(loss, 7, 'out/ckpt.pt', 5)
    train_module.check_finite(1e30, 7, 'out/ckpt.pt', 5)                # large but finite is no divergence


def test_get_batch_refuses_a_file_shorter_than_one_window(tmp_path):
    np.zeros(10, dtype=np.uint16).tofile(tmp_path / 'train.bin')
    with pytest.raises(train_module.UserError, match='fewer than block_size'):
        train_module.get_batch(str(tmp_path), 'train', 2, 16, torch.Generator(), 'cpu')
