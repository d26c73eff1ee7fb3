"""METHOD.md §2-§3: TaperNorm is the ordinary norm at g = 1, a fixed linear map at g = 0, a convex mix
between, and c is the EMA ratio that best matches the two branches."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import model as model_module
from model import GPT, GPTConfig
from reference import as_the_norm_sees, one_step_of_forwards

EPS = 1e-5


def tiny(norm='layernorm', taper='internal', bias=True, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24, bias=bias,
                         norm=norm, taper=taper, norm_eps=EPS, **kw))


def calibrated(m):
    """Run one training forward and step of statistics, so that c holds something and the gate may leave 1."""
    m.train()
    x = torch.randint(0, m.config.vocab_size, (2, 16))
    m(x, x)
    m.update_calibration()
    return m


def randomize_norms(m):
    """Random, non-identity gamma, gamma_t, beta and c in every TaperNorm."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tn in m.taper_norms():
            tn.weight.copy_(1 + 0.5 * torch.randn(tn.weight.shape, generator=g))
            tn.weight_t.copy_(1 + 0.5 * torch.randn(tn.weight_t.shape, generator=g))
            tn.c.fill_(0.5 + torch.rand((), generator=g).item())
            if tn.bias is not None:
                tn.bias.copy_(0.3 * torch.randn(tn.bias.shape, generator=g))


def ordinary(kind, x, tn):
    if kind == 'layernorm':
        return F.layer_norm(x, (x.size(-1),), tn.weight, tn.bias, EPS)
    return F.rms_norm(x, (x.size(-1),), tn.weight, EPS)


def explicit_scaling(kind, x, tn):
    """L(h) written out by hand: c * (h - mu) * gamma_t + beta, or c * h * gamma_t."""
    if kind == 'layernorm':
        return tn.c * (x - x.mean(-1, keepdim=True)) * tn.weight_t + tn.bias
    return tn.c * x * tn.weight_t


@pytest.mark.parametrize('kind', ['layernorm', 'rmsnorm'])
def test_gate_one_is_the_ordinary_norm_and_zero_the_scaling_and_between_the_mix(kind):
    m = calibrated(tiny(kind).double())
    randomize_norms(m)
    tn = m.transformer.h[1].ln_2
    x = 3 * torch.randn(4, 5, 24, dtype=torch.float64) + 0.7
    with torch.no_grad():
        m.set_gate(1.0)
        assert torch.equal(tn(x, m.gate), ordinary(kind, x, tn))  # g = 1 is exactly F.layer_norm / F.rms_norm
        m.set_gate(0.0)
        torch.testing.assert_close(tn(x, m.gate), explicit_scaling(kind, x, tn), rtol=1e-12, atol=1e-12)
        m.set_gate(0.3)
        mix = 0.3 * ordinary(kind, x, tn) + 0.7 * explicit_scaling(kind, x, tn)
        torch.testing.assert_close(tn(x, m.gate), mix, rtol=1e-12, atol=1e-12)


def test_before_a_step_of_statistics_the_gate_cannot_leave_one():
    m = tiny()
    with pytest.raises(RuntimeError, match='update_calibration'):
        m.set_gate(0.5)


@pytest.mark.parametrize('follow_c', [True, False])
def test_the_phase_decides_what_every_norm_computes_and_collects_for_either_removal(follow_c):
    """TaperNorm: the gate g. FakeLN: the count removed, the first k of taper_norms() switched off and frozen, the
    rest whole. c follows its statistics until the norms are gone (follow_c=False: only while they are whole)."""
    m = calibrated(tiny(follow_c=follow_c))
    for g, phase, mode in ((1.0, 'whole', 'norm'), (0.4, 'going', 'blend'), (0.0, 'gone', 'linear')):
        m.set_gate(g)
        assert m.phase() == phase and {tn.mode for tn in m.taper_norms()} == {mode}
        follows = phase != 'gone' if follow_c else phase == 'whole'
        assert {tn.collecting for tn in m.taper_norms()} == {follows} and m.collecting_s == follows
    m.set_gate(1 - 1e-9)                                                # a long taper's first step: the float32
    assert m.gate.item() == 1.0 and m.phase() == 'going'                # buffer rounds it to 1, the phase does not
    f = calibrated(tiny(removal='fakeln', fakeln_divisor='ema', follow_c=follow_c))
    for k, phase in ((0, 'whole'), (1, 'going'), (3, 'going'), (4, 'gone')):
        f.remove_norms(k)
        assert f.phase() == phase and f.gate.item() == 1.0
        assert [tn.mode for tn in f.taper_norms()] == ['linear'] * k + ['norm'] * (4 - k)
        assert [tn.collecting for tn in f.taper_norms()] == [False] * k + [True] * (4 - k)
    held = calibrated(tiny(removal='fakeln', follow_c=follow_c))      # divisors held: no norm ever collects,
    held.remove_norms(1)
    assert not any(tn.collecting for tn in held.taper_norms())
    assert held.c_frozen() == (not follow_c)                            # but s follows until the norms are gone
    held.remove_norms(4)
    assert held.c_frozen() and not held.collecting_s
    with pytest.raises(ValueError, match='remove_norms'):
        f.set_gate(0.5)                                                 # a FakeLN model has no gate
    with pytest.raises(ValueError, match=r'0 <= k <= 4'):
        f.remove_norms(5)
    with pytest.raises(ValueError, match='FakeLN'):
        m.remove_norms(1)                                               # a TaperNorm model has no count


def hand_step(m, tn, seen_in, seen_h, kind, ema):
    """One optimizer step's forwards, and the EMAs of num, den (METHOD.md §3) and s that it should leave, by hand."""
    one_step_of_forwards(m, seen_in, seen_h)
    h = as_the_norm_sees(seen_in, kind)                                 # all tokens of the step
    scale = torch.sqrt(h.pow(2).mean(-1) + EPS)                         # s(h) or r(h)
    hg2 = (h * tn.weight.detach().double()).pow(2).sum(-1)              # |h gamma|^2: gamma's, never gamma_t's
    num, den = hg2 / scale, hg2
    hf = as_the_norm_sees(seen_h, kind)
    s = torch.sqrt(hf.pow(2).mean(-1) + EPS).mean().item()
    return [0.99 * e + 0.01 * v for e, v in zip(ema, (num.mean().item(), den.mean().item(), s))]


@pytest.mark.parametrize('kind', ['layernorm', 'rmsnorm'])
@pytest.mark.parametrize('follow_c', [True, False])
def test_c_is_a_hand_computed_ema_ratio_that_follows_its_statistics_until_the_gate_reaches_zero(kind, follow_c):
    """Three steps at g = 1: c = EMA(num) / EMA(den), gamma_t a copy of gamma, s_tgt the bias-corrected EMA of s.
    Then g = 0.5: s_tgt and gamma_t stay, c follows (the paper's rule, follow_c=False: it stays); at g = 0 it stays."""
    m = tiny(kind, anchor_lambda=0.1, follow_c=follow_c)
    with torch.no_grad():
        for tn in m.taper_norms():  # a non-identity gamma, so the copy into gamma_t shows
            tn.weight.mul_(1 + 0.5 * torch.rand_like(tn.weight))
    tn = m.transformer.h[0].ln_2
    seen_in, seen_h = [], []
    tn.register_forward_pre_hook(lambda mod, args: seen_in.append(args[0].detach().double()))
    m.transformer.ln_f.register_forward_pre_hook(lambda mod, args: seen_h.append(args[0].detach().double()))
    m.train()
    assert not torch.equal(tn.weight_t, tn.weight)                      # gamma_t starts at ones
    ema = [0.0, 0.0, 0.0]
    for step in range(3):
        ema = hand_step(m, tn, seen_in, seen_h, kind, ema)
        m.update_calibration()
    assert tn.c.item() == pytest.approx(ema[0] / ema[1], rel=1e-5)
    assert m.s_tgt.item() == pytest.approx(ema[2] / (1 - 0.99 ** 3), rel=1e-5)
    assert torch.equal(tn.weight_t, tn.weight)                          # gamma_t is a copy of gamma
    assert tn.weight_t.data_ptr() != tn.weight.data_ptr()

    m.set_gate(0.5)
    s_tgt, gamma_t, c_at_one = m.s_tgt.clone(), tn.weight_t.detach().clone(), tn.c.clone()
    with torch.no_grad():
        tn.weight.mul_(1.5)                                              # gamma trains on, apart from gamma_t,
        tn.weight_t.mul_(2)                                              # and gamma_t trains: c ignores its scale
    gamma_t = tn.weight_t.detach().clone()
    ema = hand_step(m, tn, seen_in, seen_h, kind, ema)
    m.update_calibration()
    assert torch.equal(m.s_tgt, s_tgt) and torch.equal(tn.weight_t, gamma_t)
    if follow_c:
        assert tn.c.item() == pytest.approx(ema[0] / ema[1], rel=1e-5) and tn.c.item() != c_at_one.item()
    else:
        assert torch.equal(tn.c, c_at_one)

    m.set_gate(0.0)
    frozen = tn.c.clone()
    x = torch.randint(0, 37, (3, 16))
    m(x, x)
    m.update_calibration()
    assert torch.equal(tn.c, frozen) and torch.equal(tn.weight_t, gamma_t)


def test_gamma_t_gets_no_gradient_or_update_before_calibration():
    m = tiny()
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu')
    before = [tn.weight_t.detach().clone() for tn in m.taper_norms()]
    x = torch.randint(0, 37, (2, 16))
    m(x, x)[1].backward()
    assert all(tn.weight_t.grad is None for tn in m.taper_norms())
    assert all(tn.weight.grad is not None for tn in m.taper_norms())
    opt.step()
    assert all(torch.equal(b, tn.weight_t) for b, tn in zip(before, m.taper_norms()))


def test_at_gate_zero_gamma_gets_no_gradient_and_gamma_t_does():
    m = calibrated(tiny())
    m.set_gate(0.0)
    x = torch.randint(0, 37, (2, 16))
    m(x, x)[1].backward()
    assert all(tn.weight.grad is None for tn in m.taper_norms())
    assert all(tn.weight_t.grad is not None for tn in m.taper_norms())


@pytest.mark.parametrize('kind', ['layernorm', 'rmsnorm'])
def test_at_gate_zero_no_per_token_statistic_is_computed(kind, monkeypatch):
    """All-Taper at g = 0: the forward runs with every per-token scale function made to raise."""
    m = calibrated(tiny(kind, taper='all', anchor_lambda=0.1)).eval()
    m.set_gate(0.0)

    def forbidden(*args, **kwargs):
        raise AssertionError("a per-token statistic was computed at g = 0")
    for name in ('layer_norm', 'rms_norm'):
        monkeypatch.setattr(model_module.F, name, forbidden)
    monkeypatch.setattr(model_module, 'per_token_scale', forbidden)
    logits, _, _ = m(torch.randint(0, 37, (2, 16)))
    assert torch.isfinite(logits).all()
    m.set_gate(0.5)  # the same patches do catch the norm while it is still on
    with pytest.raises(AssertionError, match='statistic'):
        m(torch.randint(0, 37, (2, 16)))


def test_internal_taper_keeps_only_ln_f_at_gate_zero(monkeypatch):
    m = calibrated(tiny('rmsnorm', taper='internal')).eval()
    m.set_gate(0.0)
    calls = []
    real = F.rms_norm
    monkeypatch.setattr(model_module.F, 'rms_norm', lambda *a, **k: calls.append(1) or real(*a, **k))
    m(torch.randint(0, 37, (2, 16)))
    assert len(calls) == 1                                              # ln_f, the anchor
    m.set_gate(1.0)
    m(torch.randint(0, 37, (2, 16)))
    assert len(calls) == 1 + 2 * m.config.n_layer + 1


class CountOps(TorchDispatchMode):
    """The aten ops dispatched inside the block, views and other aliases left out: on a GPU each is a launch."""
    ALIASES = ('aten::view', 'aten::_unsafe_view', 'aten::expand', 'aten::t', 'aten::transpose', 'aten::detach',
               'aten::alias', 'aten::unsqueeze', 'aten::squeeze')

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func._schema.name.startswith(self.ALIASES):
            self.ops.append(func._schema.name)
        return func(*args, **(kwargs or {}))


def ops_of(norm, x, gate, step):
    """The ops of the norm alone: at inference one forward; in a training step also its backward (the gradient of
    the output given, so the loss's own ops are not counted)."""
    grad_out = torch.randn_like(x)
    with torch.set_grad_enabled(step), CountOps() as count:
        y = norm(x, gate)
        if step:
            y.backward(grad_out)
    return count.ops


@pytest.mark.parametrize('follow_c', [True, False])
def test_once_nothing_is_collected_a_step_of_calibration_dispatches_no_op(follow_c):
    """A baseline, and a tapered model whose c is frozen: update_calibration has nothing to take in, so no all-reduce
    and no device sync on the hot path, whereas while c follows it does its work."""
    baseline = calibrated(tiny(taper='off'))
    tapered = calibrated(tiny(follow_c=follow_c))
    tapered.set_gate(0.0 if follow_c else 0.5)                          # c frozen: gone, or (the paper's rule) going
    for m in (baseline, tapered):
        m(torch.randint(0, 37, (2, 16)), torch.randint(0, 37, (2, 16)))  # a training forward
        with CountOps() as count:
            m.update_calibration()
        assert count.ops == [], count.ops
    tapered.set_gate(1.0)
    tapered(torch.randint(0, 37, (2, 16)), torch.randint(0, 37, (2, 16)))
    with CountOps() as count:
        tapered.update_calibration()
    assert count.ops                                                    # whole: c, gamma_t and s follow
    held = calibrated(tiny(removal='fakeln', follow_c=False))           # held divisors, s frozen at the first removal:
    held.remove_norms(1)
    second = held.taper_norms()[1]
    with torch.no_grad():
        second.weight.mul_(2.0)
    held.update_calibration()
    assert torch.equal(second.weight_t, second.weight)                  # but a norm still whole keeps gamma_t = gamma


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('kind,inference,step', [('rmsnorm', 1, 6), ('layernorm', 3, 14)])  # torch 2.13
def test_a_tapered_norm_at_gate_zero_launches_no_more_ops_than_counted(kind, inference, step, bias):
    """At g = 0 a TaperNorm computes L(h) alone: at inference one multiply by the c * gamma_t that eval() made (RMS),
    or the centring and one multiply-add (LayerNorm), against F.layer_norm's one fused op. Counted on the CPU, the
    same on any machine: a change that adds a launch goes red."""
    tn = model_module.TaperNorm(16, kind, bias, EPS, 0.99)
    tn.mode, tn.collecting = 'linear', False
    x, gate = torch.randn(2, 3, 16, requires_grad=True), torch.zeros(())
    assert len(ops_of(tn.eval(), x, gate, step=False)) == inference
    tn.train()
    assert len(ops_of(tn, x, gate, step=True)) == step - 2 * (kind == 'layernorm' and not bias)  # beta: add, sum
    assert 'aten::native_layer_norm' not in ops_of(tn, x, gate, step=True)            # no per-token statistic
    layer_norm = model_module.Norm(16, 'layernorm', True, EPS)
    assert ops_of(layer_norm, x, gate, step=False) == ['aten::native_layer_norm']   # the fused baseline


@pytest.mark.parametrize('kind', ['layernorm', 'rmsnorm'])
def test_at_inference_the_linear_map_is_the_one_training_computes_with_c_and_gamma_t_as_eval_found_them(kind):
    """eval() makes c * gamma_t once; it follows every later eval(), and a load_state_dict into an eval model."""
    m = calibrated(tiny(kind).double())
    randomize_norms(m)
    m.set_gate(0.0)
    x = 3 * torch.randn(4, 5, 24, dtype=torch.float64) + 0.7
    with torch.no_grad():
        tn = m.transformer.h[1].ln_2
        trained = tn(x, m.gate)                                          # training mode: c * gamma_t at every call
        m.eval()
        h = x - x.mean(-1, keepdim=True) if kind == 'layernorm' else x
        product, beta = h * tn.c * tn.weight_t, tn.bias if kind == 'layernorm' else 0
        # h * v + beta rounded once (a multiply-add) against twice: 3 units of float64 rounding apart at most
        assert ((tn(x, m.gate) - trained).abs() <= 3 * 2 ** -53 * (product.abs() + abs(beta))).all()
        tn.weight_t.mul_(2.0)                                            # what a further step of training does,
        m.eval()                                                         # and the next evaluation then sees
        torch.testing.assert_close(tn(x, m.gate), explicit_scaling(kind, x, tn), rtol=1e-12, atol=1e-12)
        state = m.state_dict()
        state['transformer.h.1.ln_2.c'] = 3 * state['transformer.h.1.ln_2.c']
        m.load_state_dict(state)                                         # still in eval mode
        torch.testing.assert_close(tn(x, m.gate), explicit_scaling(kind, x, tn), rtol=1e-12, atol=1e-12)
