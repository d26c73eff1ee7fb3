"""METHOD.md §2-§3: TaperNorm is the ordinary norm at g = 1, a fixed linear map at g = 0, a convex mix
between, and c is the EMA ratio that best matches the two branches."""
import pytest
import torch
import torch.nn.functional as F

import model as model_module
from model import GPT, GPTConfig
from reference import as_the_norm_sees, one_step_of_forwards

EPS = 1e-5


def tiny(norm='layernorm', taper='internal', bias=True, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24, bias=bias,
                         norm=norm, taper=taper, norm_eps=EPS, **kw))


def calibrated(m):
    """Run one training forward so the EMAs hold something, then freeze the calibration."""
    m.train()
    x = torch.randint(0, m.config.vocab_size, (2, 16))
    m(x, x)
    m.update_calibration()
    m.calibrate()
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


def test_before_calibration_the_gate_cannot_leave_one():
    m = tiny()
    with pytest.raises(RuntimeError, match='calibrate'):
        m.set_gate(0.5)


@pytest.mark.parametrize('kind', ['layernorm', 'rmsnorm'])
def test_calibration_matches_a_hand_computed_ema_ratio(kind):
    """Three optimizer steps of two micro-batches each; c = EMA(num) / EMA(den), s_tgt bias-corrected."""
    m = tiny(kind, anchor_lambda=0.1)
    with torch.no_grad():
        for tn in m.taper_norms():  # a non-identity gamma, so the copy into gamma_t shows
            tn.weight.mul_(1 + 0.5 * torch.rand_like(tn.weight))
    tn = m.transformer.h[0].ln_2
    seen_in, seen_h = [], []
    tn.register_forward_pre_hook(lambda mod, args: seen_in.append(args[0].detach().double()))
    m.transformer.ln_f.register_forward_pre_hook(lambda mod, args: seen_h.append(args[0].detach().double()))
    m.train()
    assert not torch.equal(tn.weight_t, tn.weight)                      # gamma_t starts at ones
    ema_num = ema_den = ema_s = 0.0
    gamma = tn.weight.detach().double()
    for step in range(3):
        one_step_of_forwards(m, seen_in, seen_h)
        h = as_the_norm_sees(seen_in, kind)                             # all tokens of the step
        scale = torch.sqrt(h.pow(2).mean(-1) + EPS)                     # s(h) or r(h)
        hg2 = (h * gamma).pow(2).sum(-1)
        ema_num = 0.99 * ema_num + 0.01 * (hg2 / scale).mean().item()
        ema_den = 0.99 * ema_den + 0.01 * hg2.mean().item()
        hf = as_the_norm_sees(seen_h, kind)
        ema_s = 0.99 * ema_s + 0.01 * torch.sqrt(hf.pow(2).mean(-1) + EPS).mean().item()
        m.update_calibration()
    m.calibrate()
    assert tn.c.item() == pytest.approx(ema_num / ema_den, rel=1e-5)
    assert m.s_tgt.item() == pytest.approx(ema_s / (1 - 0.99 ** 3), rel=1e-5)
    assert torch.equal(tn.weight_t, tn.weight)                          # gamma_t is a copy of gamma
    assert tn.weight_t.data_ptr() != tn.weight.data_ptr()
    frozen = tn.c.clone(), tn.weight_t.detach().clone()
    with torch.no_grad():
        tn.weight.mul_(2)                                                # gamma trains on ...
    x = torch.randint(0, 37, (3, 16))
    m(x, x)
    m.update_calibration()                                              # ... but c and gamma_t stay frozen
    assert torch.equal(tn.c, frozen[0]) and torch.equal(tn.weight_t, frozen[1])


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
