"""The training loop: a small TaperNorm GPT trains on real Shakespeare through the whole gate schedule, and the
loop's own rules hold: calibration sees the step at taper_start, weight decay touches matrices only, accumulated
micro-steps take the step one batch of them would, and a loss that is not finite stops the run."""
import json
import math
import os

import numpy as np
import pytest
import torch
from torch.testing import assert_close
from conftest import run_config
from reference import ROUND, assert_matches_reference, float64_reference, synthetic_dataset

import train as train_module
import train_setup
from checkpoint import load_checkpoint
from fold import fold_model
from model import GPT, GPTConfig
from configurator import UserError, parse_config
from train import TrainConfig, get_gate, schedule_warning, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    final_gate = 0.0 if taper != 'off' or anchor else 1.0               # the gate times the anchor's target too
    assert summary['gate'] == final_gate and summary['iter_num'] == 120
    m = GPT.from_checkpoint(load_checkpoint(os.path.join(tmp_path, 'ckpt.pt')))
    assert m.gate.item() == final_gate
    if taper != 'off':
        assert m.c_frozen() and not m.collecting_s                      # c is frozen at g = 0
        assert all(tn.c.item() != 1.0 for tn in m.taper_norms())         # calibrated from statistics
    if anchor:
        assert m.s_tgt.item() > 0
    assert any('s_drift' in r for r in recs) == (taper != 'off')        # a baseline has no c to freeze
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('iter')]
    assert lines[0].startswith('iter   9/120 | ') and lines[-1].startswith('iter 119/120 | ')  # progress: k/max
    assert lines[0].split(' | eta ')[1].count(':') == 2                  # and the time left, h:mm:ss


@pytest.mark.parametrize('follow_c,last_moved', [(True, 3), (False, 1)])
def test_c_follows_its_statistics_through_the_last_step_before_the_gate_reaches_zero(
        shakespeare_slice, tmp_path, monkeypatch, follow_c, last_moved):
    """taper_start 1, taper_end 4: c takes the statistics of every step with g > 0, 0 to 3, and none after; under the
    paper's rule (follow_c=False) those of steps 0 and 1, the last at g = 1."""
    seen = []
    update = GPT.update_calibration
    monkeypatch.setattr(GPT, 'update_calibration', lambda self: update(self) or seen.append(
        (self.gate.item(), self.taper_norms()[0].c.item())))
    summary = train(run_config(shakespeare_slice, tmp_path, taper='internal', taper_start=1, taper_end=4,
                               follow_c=follow_c))
    gates, c = zip(*seen)
    expected = [get_gate(k, 1, 4) for k in range(5)]                   # 1, 1, 0.75, 0.25, 0 (held in float32)
    assert gates[:5] == pytest.approx(expected, rel=0, abs=2 ** -24) and summary['gate'] == 0.0
    moved = [k for k in range(1, len(c)) if c[k] != c[k - 1]]
    assert moved[-1] == last_moved and all(k in moved for k in range(1, last_moved + 1))


def test_a_short_run_tapers_to_gate_zero_without_running_away(shakespeare_slice, tmp_path):
    """The main job cut to 300 steps (METHOD.md §4): it used to freeze c half-way, s still growing, and ran away after
    g = 0 (s ten times what c was fitted to, the loss climbing). With c following its statistics to g = 0 and the
    schedules following max_iters, it ends at g = 0 with s near where c froze and the loss still falling."""
    cfg = parse_config(TrainConfig, [os.path.join(REPO, 'config', 'taper.py'), f'--data_root={shakespeare_slice}',
                                     f'--out_dir={tmp_path}', '--device=cpu', '--max_iters=300', '--eval_interval=300',
                                     '--eval_iters=5', '--log_interval=10'])
    assert schedule_warning(cfg) is None and (cfg.taper_start, cfg.taper_end) == (100, 200)
    assert train(cfg)['gate'] == 0.0 and cfg.threads == 1 and torch.get_num_threads() == 1  # the config's one thread
    logged = [r for r in read_log(tmp_path) if r['kind'] == 'train']
    closed = [r for r in logged if r['gate'] == 0.0]                    # c frozen: every record has s_drift
    assert closed and all(r['s_drift'] < train_module.RUNAWAY for r in closed)
    s_frozen = GPT.from_checkpoint(load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))).s_mean().item()
    assert closed[-1]['s_drift'] == pytest.approx(closed[-1]['s'] / s_frozen, rel=1e-6)  # over s where c froze
    assert closed[-1]['loss'] < closed[0]['loss']                       # still learning at g = 0


@pytest.mark.parametrize('norm,taper,removal', [('rmsnorm', 'all', 'taper'), ('layernorm', 'internal', 'fakeln')])
def test_fold_when_gone_folds_at_the_first_step_at_gate_zero_and_trains_on_norm_free(
        shakespeare_slice, tmp_path, norm, taper, removal, capsys):
    """fold_when_gone: up to taper_end the run is the plain one, step for step; at taper_end, before its step, the
    norms fold away (the eval there, after the fold, sees the model the plain run has there); from there it trains
    a norm-free model, still watching s against where c froze."""
    kw = dict(norm=norm, taper=taper, removal=removal, fakeln_divisor='ema', taper_start=2, taper_end=6,
              max_iters=10, lr_decay_iters=10, eval_interval=6)
    train(run_config(shakespeare_slice, tmp_path / 'plain', **kw))
    summary = train(run_config(shakespeare_slice, tmp_path / 'fold', fold_when_gone=True, **kw))
    assert 'iteration 6: the norms are gone, folded away' in capsys.readouterr().out
    plain, fold = read_log(tmp_path / 'plain'), read_log(tmp_path / 'fold')
    steps = [[r for r in log if r['kind'] == 'train'] for log in (plain, fold)]
    assert steps[0][:6] == [dict(r, ms=steps[0][k]['ms']) for k, r in enumerate(steps[1][:6])]  # iterations 0 to 5
    evals = [[r['val'] for r in log if r['kind'] == 'eval'] for log in (plain, fold)]
    assert evals[0][0] == evals[1][0]
    # at 6 the same function, rounded otherwise in float32 (a few ulps of 6e-8 over a few dozen ops)
    assert evals[1][1] == pytest.approx(evals[0][1], rel=1e-5)
    assert steps[1][6]['loss'] == pytest.approx(steps[0][6]['loss'], rel=1e-5)
    assert all('s_drift' in r for r in steps[1][6:]) and summary['phase'] == 'gone'
    m = GPT.from_checkpoint(load_checkpoint(os.path.join(tmp_path, 'fold', 'ckpt.pt')))
    assert m.config.folded and m.taper_norms() == [] and summary['iter_num'] == 10


def test_fold_when_gone_trains_on_as_the_g0_run_with_gamma_t_held_clipping_included(
        shakespeare_slice, tmp_path, monkeypatch):
    """train.py in float64 from RMSNorm (an exact fold), clipping every step after the fold: the folded run's weights
    are W diag(c gamma_t) of the plain run whose gamma_t is held from g = 0, so the clip saw dL/dW, not dL/dW'."""
    kw = dict(norm='rmsnorm', taper='internal', taper_start=2, taper_end=6, max_iters=10, lr_decay_iters=10,
              eval_interval=10, eval_iters=1, grad_clip=0.05)
    apply_phase = GPT.apply_phase

    def held(self):  # the plain run, gamma_t held from g = 0 on as the fold holds it
        apply_phase(self)
        for m in self.taper_norms():
            m.weight_t.requires_grad_(self.phase() != 'gone')
    norms, clip = [], torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', lambda *a, **k: norms.append(clip(*a, **k)) or norms[-1])
    torch.set_default_dtype(torch.float64)
    try:
        train(run_config(shakespeare_slice, tmp_path / 'fold', fold_when_gone=True, **kw))
        assert len(norms) == 10 and min(norms[6:]) > 2 * kw['grad_clip']  # every folded step clips
        monkeypatch.setattr(GPT, 'apply_phase', held)
        train(run_config(shakespeare_slice, tmp_path / 'plain', **kw))
        refolded = fold_model(GPT.from_checkpoint(load_checkpoint(tmp_path / 'plain' / 'ckpt.pt')))
        folded = load_checkpoint(tmp_path / 'fold' / 'ckpt.pt')['model']
    finally:
        torch.set_default_dtype(torch.float32)
    for name, q in refolded.named_parameters():
        assert folded[name].dtype == torch.float64
        # |W'| < 4: an ulp is under 1e-15, and 4 steps of a division, a product and Adam's update add a few each;
        # 1e-12 leaves room for Adam's division by sqrt(v) swelling the gradients' roundings
        assert_close(folded[name], q, rtol=0, atol=1e-12, msg=lambda text: f'{name}: {text}')


@pytest.mark.parametrize('follow_c', [True, False])
def test_s_drift_is_logged_from_the_first_step_with_c_frozen(shakespeare_slice, tmp_path, follow_c):
    """taper_start 1, taper_end 4: c freezes once the norms are gone (follow_c), or under the paper's rule as they
    start to go (the first step with g < 1); every train record from there on has s_drift, none before."""
    train(run_config(shakespeare_slice, tmp_path, taper='internal', taper_start=1, taper_end=4, follow_c=follow_c))
    drift = {r['iter'] for r in read_log(tmp_path) if r['kind'] == 'train' and 's_drift' in r}
    frozen = (lambda g: g == 0.0) if follow_c else (lambda g: g < 1.0)
    assert drift == {k for k in range(8) if frozen(get_gate(k, 1, 4))}


def test_a_run_resumed_past_gate_zero_with_fold_when_gone_folds_at_its_first_step(shakespeare_slice, tmp_path, capsys):
    """A run trained without fold_when_gone and resumed with it past taper_end folds before its first step there; the
    model it evaluates there computes what the checkpoint's does (to float32 rounding, as above)."""
    kw = dict(taper='internal', taper_start=2, taper_end=6, lr_decay_iters=12, eval_interval=4)
    train(run_config(shakespeare_slice, tmp_path, max_iters=8, always_save_checkpoint=True, **kw))
    summary = train(run_config(shakespeare_slice, tmp_path, max_iters=10, init_from='resume', fold_when_gone=True,
                               always_save_checkpoint=True, **kw))
    assert 'iteration 8: the norms are gone, folded away' in capsys.readouterr().out
    at_8 = [r['val'] for r in read_log(tmp_path) if r['kind'] == 'eval' and r['iter'] == 8]  # unfolded, then folded
    assert len(at_8) == 2 and at_8[1] == pytest.approx(at_8[0], rel=1e-5)
    assert GPT.from_checkpoint(load_checkpoint(os.path.join(tmp_path, 'ckpt.pt'))).config.folded
    assert summary['iter_num'] == 10


def test_the_log_line_says_runaway_once_s_has_outgrown_the_frozen_c_fourfold():
    rec = dict(iter=9, loss=2.0, ce=2.0, anchor=0.0, gate=0.0, lr=1e-3, ms=5.0, s=8.0, logit_norm=20.0)
    assert 'RUNAWAY' not in train_module.log_line(rec, 100)                   # c still following: no s_drift
    assert 'RUNAWAY' not in train_module.log_line(dict(rec, s_drift=train_module.RUNAWAY), 100)
    line = train_module.log_line(dict(rec, s_drift=4.25), 100)
    assert line.endswith('| RUNAWAY: s is 4.2x what it was when c froze') and train_module.RUNAWAY == 4.0


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
    with pytest.raises(UserError, match=f'the loss is {loss} at iteration 7: the run diverged'):
        train_setup.check_finite(loss, 7, 'out/ckpt.pt', 5)
    train_setup.check_finite(1e30, 7, 'out/ckpt.pt', 5)                # large but finite is no divergence


def test_get_batch_refuses_a_file_shorter_than_one_window(tmp_path):
    np.zeros(10, dtype=np.uint16).tofile(tmp_path / 'train.bin')
    with pytest.raises(UserError, match='fewer than block_size'):
        train_setup.get_batch(str(tmp_path), 'train', 2, 16, torch.Generator(), 'cpu')
