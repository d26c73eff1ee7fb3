"""
Removing the norms of a trained model (METHOD.md §11). FakeLN keeps each norm whole until its own step, in its
order (every ln_2, every ln_1, then ln_f), then divides by sigma, its input's pooled scale measured on held-out
tokens before training (or, with their flag, an EMA from there); its aux loss evens out s around the batch mean;
and a run can start from any baseline's checkpoint: exactly its weights, a fresh run around them.
"""
import json
import os
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_error_line, cli, run_config, stop_training_at
from reference import as_the_norm_sees, one_step_of_forwards, synthetic_dataset

import train as train_module
from checkpoint import KIND, load_checkpoint, load_model
from configurator import UserError, parse_config
from fold import fold_model
from model import EOT, FAKELN_DECAY, GPT, GPTConfig
from runtime import REPO
from train_setup import get_batch

EPS = 1e-5
NAMES = ('h.0.ln_2', 'h.1.ln_2', 'h.0.ln_1', 'h.1.ln_1', 'ln_f')  # FakeLN's order in a 2-layer All-Taper model


def fakeln_model(norm, **kw):
    """A tiny float64 All-Taper FakeLN model with random, non-identity gamma and beta."""
    torch.manual_seed(0)
    m = GPT(GPTConfig(**{**dict(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24, bias=True, norm=norm,
                                taper='all', removal='fakeln', norm_eps=EPS), **kw})).double().train()
    with torch.no_grad():
        for tn in m.taper_norms():
            tn.weight.copy_(1 + 0.5 * torch.randn_like(tn.weight))
            if tn.bias is not None:
                tn.bias.copy_(0.3 * torch.randn_like(tn.bias))
    return m


def ordinary(tn, x):
    if tn.kind == 'layernorm':
        return F.layer_norm(x, (x.size(-1),), tn.weight, tn.bias, EPS)
    return F.rms_norm(x, (x.size(-1),), tn.weight, EPS)


def residual_inputs(m, idx):
    """Each norm's input, by hand: the residual stream at ln_1, ln_2 of every block and at ln_f, in FakeLN's order."""
    x = m.transformer.wte(idx) + m.transformer.wpe(torch.arange(idx.size(1)))
    at_ln_1, at_ln_2 = [], []
    for block in m.transformer.h:
        at_ln_1.append(x)
        x = x + block.attn(block.ln_1(x, m.gate))
        at_ln_2.append(x)
        x = x + block.mlp(block.ln_2(x, m.gate))
    return at_ln_2 + at_ln_1 + [x]


@pytest.mark.parametrize('norm', ['layernorm', 'rmsnorm'])
def test_the_divisor_is_the_pooled_scale_of_the_held_out_tokens_from_position_1_on(norm):
    """Their generate_std_dict.py, by hand: sigma = sqrt(mean over the tokens of s(h)^2), position 0 left out (where
    GPT-2's scale is many times the rest), over every batch; held from then on (their default)."""
    m = fakeln_model(norm)
    batches = [torch.randint(0, 37, (3, 16)) for _ in range(2)]
    m.measure_divisors(batches)
    with torch.no_grad():
        inputs = [torch.cat(hs) for hs in zip(*(residual_inputs(m, idx) for idx in batches))]  # per norm, (6, 16, 24)
    for tn, h in zip(m.taper_norms(), inputs):
        h = h[:, 1:]                                                     # positions 1 onwards
        h = h - h.mean(-1, keepdim=True) if norm == 'layernorm' else h
        sigma = torch.sqrt((h.pow(2).mean(-1) + EPS).mean())
        torch.testing.assert_close(tn.c, 1 / sigma, rtol=1e-12, atol=0)
    assert m.training and not any(tn.collecting for tn in m.taper_norms())  # held: nothing follows the stream
    c_before = [tn.c.clone() for tn in m.taper_norms()]
    one_step_of_forwards(m)
    m.update_calibration()
    assert all(torch.equal(tn.c, c) for tn, c in zip(m.taper_norms(), c_before))
    first = m.taper_norms()[0]
    with torch.no_grad():
        first.weight.mul_(1.5)                                          # gamma trains while the norm is whole,
        m.update_calibration()
        m.remove_norms(1)                                               # so its removal divides and scales by gamma
        x = 3 * torch.randn(4, 5, 24, dtype=torch.float64) + 0.7
        centred = x - x.mean(-1, keepdim=True) if norm == 'layernorm' else x
        expected = centred * c_before[0] * first.weight + (first.bias if first.bias is not None else 0)
        torch.testing.assert_close(first(x, m.gate), expected, rtol=1e-12, atol=1e-12)
        first.weight.mul_(2.0)                                          # once removed, gamma moves it no more
        m.update_calibration()
        torch.testing.assert_close(first(x, m.gate), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('norm', ['layernorm', 'rmsnorm'])
def test_a_removed_norm_divides_by_the_ema_of_the_scale_from_the_measured_divisor_on(norm):
    """fakeln_divisor='ema' (their EXP_RECOMPUTE_STD_ON_REAL): from the measured sigma_0, three optimizer steps of
    two micro-batches; sigma is the EMA (FakeLN's momentum) of each step's token mean of the per-token std (RMS:
    r(h)), computed here by hand, and the norm divides by it once removed."""
    m = fakeln_model(norm, fakeln_divisor='ema')
    first, second = m.transformer.h[0].ln_2, m.transformer.h[1].ln_2
    assert m.taper_norms()[:2] == [first, second]                       # block 0's ln_2 goes first
    first.set_divisor(torch.tensor(2.5, dtype=torch.float64))           # as measure_divisors would
    seen = []
    first.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    sigma_avg = 2.5
    for step in range(3):
        one_step_of_forwards(m, seen)
        h = as_the_norm_sees(seen, norm)                                # every token of the step
        sigma_avg = FAKELN_DECAY * sigma_avg + (1 - FAKELN_DECAY) * torch.sqrt(h.pow(2).mean(-1) + EPS).mean().item()
        m.update_calibration()

    x = 3 * torch.randn(4, 5, 24, dtype=torch.float64) + 0.7
    with torch.no_grad():
        m.remove_norms(0)                                               # before its step: exactly the norm
        assert first.mode == 'norm' and torch.equal(first(x, m.gate), ordinary(first, x))
        m.remove_norms(1)                                               # one norm removed: the first
        centred = x - x.mean(-1, keepdim=True) if norm == 'layernorm' else x
        expected = centred / sigma_avg * first.weight + (first.bias if first.bias is not None else 0)
        torch.testing.assert_close(first(x, m.gate), expected, rtol=1e-12, atol=1e-12)
        assert second.mode == 'norm' and torch.equal(second(x, m.gate), ordinary(second, x))


@pytest.mark.parametrize('follow_c', [True, False])
def test_a_fakeln_norm_still_on_keeps_collecting_and_s_stops_where_the_rule_says(follow_c):
    """With the EMA divisor, one norm removed: it is frozen, the next still follows its statistics (FakeLN's own
    rule, either way); the EMA of s goes on while any norm is computed, and under the paper's rule it stops as the
    gate leaves 1."""
    m = fakeln_model('layernorm', fakeln_divisor='ema')
    m.config.follow_c = follow_c
    first, second = m.taper_norms()[:2]
    for step in range(2):
        one_step_of_forwards(m)
        m.update_calibration()
    m.remove_norms(1)                                                   # the first norm goes
    before = first.c.clone(), second.c.clone(), int(m.ema_steps), m.s_mean().item()
    one_step_of_forwards(m)
    m.update_calibration()
    assert torch.equal(first.c, before[0]) and not torch.equal(second.c, before[1])
    if follow_c:
        assert int(m.ema_steps) == before[2] + 1
    else:
        assert (int(m.ema_steps), m.s_mean().item()) == before[2:]


def test_removals_happen_in_fakeln_order_at_their_iterations_and_each_c_freezes_at_its_removal(
        shakespeare_slice, tmp_path):
    """taper_start 2, taper_end 12, five norms: norm i goes at 2 + ceil(10 (i + 1) / 5) = 4, 6, 8, 10, 12."""
    cfg = run_config(shakespeare_slice, tmp_path, n_layer=2, taper='all', removal='fakeln', taper_start=2,
                     taper_end=12, max_iters=14, lr_decay_iters=14, eval_interval=14, fakeln_divisor='ema')
    modes, cs = [], []

    def spy(model, args):
        if model.training:                                              # one training forward per iteration
            norms = [model.get_submodule(f'transformer.{name}') for name in NAMES]
            modes.append([tn.mode for tn in norms])
            cs.append([tn.c.item() for tn in norms])
    real_init = train_module.init_model

    def init_model(*a):
        model, ckpt, source = real_init(*a)
        model.register_forward_pre_hook(spy)
        return model, ckpt, source
    train_module.init_model = init_model
    try:
        train_module.train(cfg)
    finally:
        train_module.init_model = real_init
    removed_at = [4, 6, 8, 10, 12]
    for it in range(14):
        assert modes[it] == ['linear' if it >= r else 'norm' for r in removed_at], it
    final = GPT.from_checkpoint(load_checkpoint(tmp_path / 'ckpt.pt'))
    for i, name in enumerate(NAMES):
        tn = final.get_submodule(f'transformer.{name}')
        assert cs[removed_at[i] - 1][i] != cs[removed_at[i] - 2][i]     # c tracked sigma_avg while the norm was on
        assert tn.c.item() == cs[removed_at[i]][i] == cs[-1][i]          # and froze when it went


# ----------------------------------------------------------------------------------------------
# init_from=<checkpoint>: a new run from a baseline's weights

def baseline(data_root, out_dir, **kw):
    """A LayerNorm baseline trained for 4 iterations; returns its checkpoint's path."""
    train_module.train(run_config(data_root, out_dir, dropout=0.0, bias=True, max_iters=4, **kw))
    return str(out_dir / 'ckpt.pt')


def finetune(data_root, out_dir, source, **kw):
    return run_config(data_root, out_dir, **{**dict(
        init_from=source, bias=True, taper='internal', removal='fakeln', taper_start=1, taper_end=5, max_iters=6,
        lr_decay_iters=6, learning_rate=1e-3, eval_interval=2), **kw})


def log_records(out_dir, kind):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [rec for rec in map(json.loads, f) if rec['kind'] == kind]


def test_a_run_from_a_checkpoint_starts_from_exactly_its_weights_with_a_fresh_run_around_them(
        shakespeare_slice, tmp_path):
    source = baseline(shakespeare_slice, tmp_path / 'source')
    cfg = finetune(shakespeare_slice, tmp_path / 'ft', source, dropout=0.1)
    model, ckpt, about = train_module.init_model(cfg, os.path.join(shakespeare_slice, 'shakespeare_char'))
    weights, _ = load_model(source)
    assert ckpt is None and about == dict(ckpt=source, iter=4)
    for name, p in weights.named_parameters():
        assert torch.equal(p, model.get_parameter(name)), name
    assert model.config.dropout == 0.1 and model.config.removal == 'fakeln' and model.phase() == 'whole'
    assert model.collecting_s and int(model.ema_steps) == 0 and len(model.taper_norms()) == 4

    summary = train_module.train(cfg)
    assert summary['iter_num'] == 6 and summary['phase'] == 'gone'
    header = log_records(tmp_path / 'ft', 'header')[0]
    assert header['source'] == dict(ckpt=source, iter=4) and header['resumed_at'] is None
    first, source_last = log_records(tmp_path / 'ft', 'eval')[0], log_records(tmp_path / 'source', 'eval')[-1]
    assert (first['iter'], first['val'], first['train']) == (0, source_last['val'], source_last['train'])
    folded = fold_model(load_model(tmp_path / 'ft' / 'ckpt.pt')[0])  # the end of a FakeLN removal folds
    assert folded.config.folded and load_checkpoint(source)['iter_num'] == 4  # and the source is untouched


def test_a_fakeln_finetune_measures_its_divisors_on_the_held_out_batches_evaluation_reads_and_not_on_resume(
        shakespeare_slice, tmp_path):
    source = baseline(shakespeare_slice, tmp_path / 'source')
    cfg = finetune(shakespeare_slice, tmp_path / 'ft', source, eval_iters=3)
    measured, real = [], GPT.measure_divisors
    GPT.measure_divisors = lambda model, batches: measured.append(batches) or real(model, batches)
    try:
        train_module.train(cfg)
        gen = torch.Generator().manual_seed(cfg.seed)
        data_dir = os.path.join(shakespeare_slice, 'shakespeare_char')
        val = [get_batch(data_dir, 'val', cfg.batch_size, cfg.block_size, gen, 'cpu')[0] for _ in range(3)]
        assert len(measured) == 1 and all(torch.equal(a, b) for a, b in zip(measured[0], val, strict=True))
        train_module.train(replace(cfg, init_from='resume', max_iters=8, lr_decay_iters=8))
        assert len(measured) == 1                                       # a resume keeps the divisors it saved
    finally:
        GPT.measure_divisors = real


def test_a_finetune_starts_fresh_run_state_even_from_a_source_with_a_calibrated_anchor(shakespeare_slice, tmp_path):
    """The source's anchor target, EMA of s and gate are its own run's: only its parameters come over."""
    source = baseline(shakespeare_slice, tmp_path / 'source', anchor_lambda=0.1, taper_start=1, taper_end=3)
    src = load_checkpoint(source)['model']
    assert src['s_tgt'] > 0 and src['ema_steps'] > 0 and src['gate'] == 0.0   # it has run state to leave behind
    cfg = finetune(shakespeare_slice, tmp_path / 'ft', source, anchor_lambda=0.1, anchor_target=2.5)
    model, _, _ = train_module.init_model(cfg, os.path.join(shakespeare_slice, 'shakespeare_char'))
    assert model.gate.item() == 1.0 and int(model.ema_steps) == 0 and model.s_ema.item() == 0.0
    assert model.s_tgt.item() == 2.5 and model.collecting_s and all(m.mode == 'norm' for m in model.taper_norms())


def test_weights_that_lack_one_matrix_are_refused(shakespeare_slice, tmp_path):
    source = baseline(shakespeare_slice, tmp_path / 'source')
    ckpt = load_checkpoint(source)
    del ckpt['model']['transformer.h.1.mlp.c_fc.weight']
    torch.save(ckpt, tmp_path / 'holed.pt')
    with pytest.raises(UserError, match='transformer.h.1.mlp.c_fc.weight'):
        train_module.init_model(finetune(shakespeare_slice, tmp_path / 'ft', str(tmp_path / 'holed.pt')),
                                os.path.join(shakespeare_slice, 'shakespeare_char'))


def test_a_resumed_finetune_continues_exactly(shakespeare_slice, tmp_path, monkeypatch):
    source = baseline(shakespeare_slice, tmp_path / 'source')
    train_module.train(finetune(shakespeare_slice, tmp_path / 'whole', source))
    # norms go at 2, 3, 4, 5: the checkpoint at 4 holds three removed norms, whose c and gamma_t a resume must keep
    stop_training_at(monkeypatch, 5, RuntimeError("the machine went down"))
    with pytest.raises(RuntimeError, match='went down'):
        train_module.train(finetune(shakespeare_slice, tmp_path / 'split', source))
    monkeypatch.undo()
    train_module.train(finetune(shakespeare_slice, tmp_path / 'split', source, init_from='resume'))
    a, b = (load_checkpoint(tmp_path / run / 'ckpt.pt') for run in ('whole', 'split'))
    assert a['iter_num'] == b['iter_num'] == 6
    for key, tensor in a['model'].items():
        assert torch.equal(tensor, b['model'][key]), key
    losses = [{r['iter']: r['loss'] for r in log_records(tmp_path / run, 'train')} for run in ('whole', 'split')]
    assert losses[0] == losses[1] and sorted(losses[0]) == list(range(6))  # the resumed records replace 4 and on


def test_a_gpt2_model_keeps_its_own_gelu_eps_and_vocabulary_on_gpt2_bpe_data(tmp_path):
    """GPT-2's 50257 tokens on BPE data (which new models pad to 50304), its tanh GELU and eps come with it."""
    model = GPT(GPTConfig(block_size=16, vocab_size=50257, n_layer=1, n_head=2, n_embd=16, gelu='tanh',
                          norm_eps=1e-6))
    torch.save(dict(kind=KIND, model_args=asdict(model.config), model=model.state_dict()), tmp_path / 'gpt2.pt')
    (tmp_path / 'bpe').mkdir()                                          # no meta.pkl: GPT-2's BPE
    cfg = run_config(tmp_path, tmp_path / 'ft', dataset='bpe', init_from=str(tmp_path / 'gpt2.pt'), n_layer=1,
                     n_embd=16, block_size=16, bias=True, taper='internal', dropout=0.1)
    tuned, _, _ = train_module.init_model(cfg, str(tmp_path / 'bpe'))
    c = tuned.config
    assert (c.vocab_size, c.gelu, c.norm_eps, c.taper, c.dropout) == (50257, 'tanh', 1e-6, 'internal', 0.1)


def test_a_run_from_a_checkpoint_refuses_what_it_cannot_start_from_in_one_line(shakespeare_slice, tmp_path):
    source = baseline(shakespeare_slice, tmp_path / 'source')
    data = [f'--data_root={shakespeare_slice}', '--dataset=shakespeare_char', '--device=cpu', '--max_iters=4',
            '--warmup_iters=1', '--lr_decay_iters=4', '--gradient_accumulation_steps=1', '--batch_size=4',
            '--eval_iters=2', '--taper=internal', f'--out_dir={tmp_path / "ft"}']
    assert_one_error_line(cli('train.py', f'--init_from={tmp_path / "nowhere.pt"}', *data), 'no checkpoint there',
                          f'config/layernorm.py --out_dir={tmp_path}')       # the baseline, where it was looked for
    assert_one_error_line(cli('train.py', '--init_from=source/ckpt', *data), 'init_from', '.pt')
    assert_one_error_line(cli('train.py', f'--init_from={source}', '--n_layer=3', *data),
                          'n_layer=2', 'n_layer=3', 'keeps its model')
    assert_one_error_line(cli('train.py', f'--init_from={source}', '--norm=rmsnorm', *data),
                          "norm='layernorm'", "norm='rmsnorm'")
    synthetic_dataset(tmp_path / 'synth', 50, 2000)
    assert_one_error_line(cli('train.py', f'--init_from={source}', *data, f'--data_root={tmp_path}',
                              '--dataset=synth'),
                          f"vocabulary has {load_checkpoint(source)['model_args']['vocab_size']} tokens", "'synth' 50")

    tapered = baseline(shakespeare_slice, tmp_path / 'tapered', taper='internal', taper_start=1, taper_end=3)
    assert_one_error_line(cli('train.py', f'--init_from={tapered}', *data), 'already tapers', "taper='off'")
    model = fold_model(load_model(tapered)[0])
    torch.save(dict(kind=KIND, model_args=asdict(model.config), model=model.state_dict()), tmp_path / 'folded.pt')
    assert_one_error_line(cli('train.py', f'--init_from={tmp_path / "folded.pt"}', *data), 'it holds a folded model')
    assert_one_error_line(cli('train.py', f'--init_from={source}', *data[:-1], f'--out_dir={tmp_path / "source"}'),
                          "out_dir's own checkpoint", 'another --out_dir')
    assert load_checkpoint(source)['iter_num'] == 4                   # untouched
    r = cli('train.py', f'--init_from={source}', *data)  # the shape comes from the checkpoint: no flag needed
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_aux_loss_evens_out_s_around_its_batch_mean_leaving_position_0_and_end_of_text_out_of_the_target():
    """Their CustomTrainer.compute_loss, by hand: w * mean over every token of (s(h) - target)^2 on ln_f's input,
    the target the batch's mean s over the tokens that are neither at position 0 nor end-of-text, and detached:
    the loss and its gradient match the hand-made ones (a target that kept its gradient would move the second)."""
    m = fakeln_model('layernorm', vocab_size=EOT + 1, taper='internal', fakeln_aux=0.1)
    idx = torch.randint(0, 200, (3, 16))
    idx[0, 5] = idx[2, 9] = idx[1, 0] = EOT
    targets = torch.randint(0, 200, (3, 16))

    h = residual_inputs(m, idx)[-1]                                      # ln_f's input, (3, 16, 24)
    s = torch.sqrt((h - h.mean(-1, keepdim=True)).pow(2).mean(-1) + EPS)  # (3, 16)
    counted = torch.ones(3, 16, dtype=torch.bool)
    counted[:, 0] = False
    counted[0, 5] = counted[2, 9] = False
    aux = 0.1 * (s - s.detach()[counted].mean()).pow(2).mean()
    logits = m.lm_head(m.transformer.ln_f(h, m.gate))
    (F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1)) + aux).backward()
    expected_grad = m.transformer.wpe.weight.grad.clone()
    m.zero_grad()

    _, loss, parts = m(idx, targets)
    loss.backward()
    torch.testing.assert_close(parts['anchor'], aux.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(m.transformer.wpe.weight.grad, expected_grad, rtol=1e-10, atol=1e-14)
    everything = 0.1 * (s - s.mean()).pow(2).mean()                     # a target of every token: not theirs
    assert abs(everything.item() - aux.item()) > 1e-6 * aux.item()


def test_the_removals_sit_where_their_schedule_puts_them_for_four_layers():
    """Their GPT-2 small schedule (config.py) with 4 layers: the first norm goes at step 20, the last ln_1 at 45
    (its v input, 3 steps apart), ln_f at 48; ours spaces the ones between evenly (METHOD.md §11)."""
    for extra, last in (([], 45), (['--taper=all', '--taper_end=48'], 48)):
        cfg = parse_config(train_module.TrainConfig, [os.path.join(REPO, 'config', 'finetune_fakeln.py'), *extra])
        n = 8 if not extra else 9
        counts = [train_module.norms_removed(it, cfg.taper_start, cfg.taper_end, n) for it in range(cfg.max_iters)]
        removed_at = [it for it in range(1, len(counts)) if counts[it] > counts[it - 1]]
        assert (len(removed_at), removed_at[0], removed_at[-1], cfg.max_iters) == (n, 20, last, 300)
        assert (cfg.warmup_iters, cfg.learning_rate / cfg.min_lr, cfg.beta2, cfg.weight_decay) == (25, 2, 0.999, 0.01)
