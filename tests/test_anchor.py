"""METHOD.md §6, the scale anchor: L = CE + lambda * mean over tokens of (s(h) - s_tgt)^2, with s the per-token std
(LayerNorm models) or RMS (RMS and norm-free models) of the pre-logit state h, silent until s_tgt is frozen, and
pulling s toward s_tgt from either side."""
import pytest
import torch
import torch.nn.functional as F

from model import GPT, GPTConfig

LAMBDA = 0.1


def anchored(norm, taper='off', **kw):
    """A tiny float64 model with the anchor; a hook adds 0.5 to the last block's output, so h has a mean far from
    0 and the std and the RMS of a token differ by far more than rounding."""
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24, norm=norm, taper=taper,
                      anchor_lambda=LAMBDA, **kw)).double()
    m.transformer.h[-1].register_forward_hook(lambda mod, args, out: out + 0.5)
    return m


def pre_logit_state(m, x):
    """(the loss parts, h (B, T, C)): h as the input of ln_f."""
    seen = []
    hook = m.transformer.ln_f.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    _, _, parts = m(x, x)
    hook.remove()
    return parts, seen[0].detach()


def rms(h):
    return torch.sqrt(h.pow(2).mean(-1) + 1e-5)


def std(h):
    return rms(h - h.mean(-1, keepdim=True))


@pytest.mark.parametrize('norm,statistic', [('layernorm', std), ('rmsnorm', rms), ('none', rms)])
def test_s_is_the_std_for_layernorm_and_the_rms_otherwise(norm, statistic):
    """A norm-free model never centres its tokens and lm_head reads h whole, so its scale is the RMS."""
    m = anchored(norm)
    parts, h = pre_logit_state(m, torch.randint(0, 37, (2, 16)))
    other = rms if statistic is std else std
    assert abs(statistic(h).mean() - other(h).mean()) > 0.01                # the two really differ here
    torch.testing.assert_close(parts['s'], statistic(h).mean(), rtol=1e-12, atol=0)


def test_the_anchor_is_exactly_zero_with_no_gradient_until_s_tgt_is_frozen():
    torch.manual_seed(0)
    anchored = GPT(GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24, norm='none',
                             anchor_lambda=0.1))
    plain = GPT(GPTConfig(**{**vars(anchored.config), 'anchor_lambda': 0.0}))
    plain.load_state_dict(anchored.state_dict())
    x = torch.randint(0, 37, (2, 16))
    _, loss, parts = anchored(x, x)
    _, plain_loss, _ = plain(x, x)
    assert parts['anchor'].item() == 0.0 and torch.equal(loss, plain_loss)
    loss.backward()
    plain_loss.backward()
    for (name, p), q in zip(anchored.named_parameters(), plain.parameters()):
        assert torch.equal(p.grad, q.grad), name                        # the anchor adds no gradient at all
    anchored.update_calibration()
    anchored.set_gate(0.5)                                              # s_tgt frozen: now the anchor pulls
    assert anchored(x, x)[2]['anchor'].item() > 0


@pytest.mark.parametrize('norm,taper', [('layernorm', 'all'), ('none', 'off')])
def test_after_calibration_the_anchor_is_lambda_times_the_mean_squared_distance_to_s_tgt(norm, taper):
    m = anchored(norm, taper).train()
    x = torch.randint(0, 37, (2, 16))
    m(x, x)
    m.update_calibration()
    m.set_gate(0.5)
    s_tgt = m.s_tgt.item()
    assert s_tgt > 0                                                    # the frozen EMA (anchor_target is None)
    parts, h = pre_logit_state(m, torch.randint(0, 37, (3, 16)))
    s = (std if norm == 'layernorm' else rms)(h)                        # (B, T)
    torch.testing.assert_close(parts['anchor'], LAMBDA * (s - s_tgt).pow(2).mean(), rtol=1e-12, atol=0)


@pytest.mark.parametrize('norm', ['layernorm', 'rmsnorm', 'none'])
def test_the_anchor_pulls_s_toward_s_tgt_from_both_sides(norm):
    """Scale h by alpha: d(anchor)/d(alpha) < 0 where s < s_tgt (descent grows h) and > 0 where s > s_tgt."""
    for target, sign in ((100.0, -1), (1e-3, +1)):  # far above and far below this model's s (about 0.5-1)
        m = anchored(norm, anchor_target=target)
        alpha = torch.ones((), dtype=torch.float64, requires_grad=True)
        m.transformer.h[-1].register_forward_hook(lambda mod, args, out: out * alpha)
        x = torch.randint(0, 37, (2, 16))
        logits, loss, parts = m(x, x)
        assert parts['s'].item() < target if sign < 0 else parts['s'].item() > target
        anchor = loss - F.cross_entropy(logits.view(-1, 37), x.view(-1))  # the anchor term alone, with its graph
        (grad,) = torch.autograd.grad(anchor, alpha)
        assert torch.sign(grad).item() == sign, (norm, target, grad)
