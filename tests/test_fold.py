"""
fold.py (METHOD.md §7): on tiny float64 models with random, non-identity gamma_t, beta and c, the folded
model computes what the g = 0 model computes, holds no norm in its blocks, and leaves its input untouched.
"""
import itertools
import os
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from checkpoint import KIND, load_checkpoint
from configurator import UserError, parse_config
from fold import FoldConfig, carry_moments, fold_model, fold_norm_into_linear, main as fold_main, unfolded_coordinates
from model import GPT, GPTConfig, Norm

V = 23
FOLDABLE = list(itertools.product(('rmsnorm', 'layernorm'), ('internal', 'all'), (False, True), ('taper', 'fakeln')))


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU two threads stall each other at every op."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tapered_model(norm='layernorm', taper='internal', bias=False, gate=0.0, seed=0, removal='taper'):
    """A tiny float64 model at `gate` with every 1-d parameter and every c random, weights large enough that
    logits reach O(1) and the residual stream has a mean far from 0 (so LayerNorm's centring matters). FakeLN
    (removal='fakeln') at gate 0 has removed every norm it removes."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=16, vocab_size=V, n_layer=2, n_head=2, n_embd=12, bias=bias, norm=norm,
                          taper=taper, removal=removal if taper != 'off' else 'taper')).double()
    if taper != 'off':
        idx = torch.randint(V, (2, 16))
        model.train()
        model(idx, idx)
        model.update_calibration()
        if removal == 'fakeln':                      # FakeLN at gate 0: every norm it removes is gone
            model.remove_norms(round((1 - gate) * len(model.taper_norms())))
        else:
            model.set_gate(gate)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.3, 0.3)
            elif name.endswith('weight') or name.endswith('weight_t'):
                p.copy_(1 + 0.5 * torch.randn_like(p))   # gamma, gamma_t
            else:
                p.copy_(0.5 * torch.randn_like(p))       # beta and Linear biases
        for m in model.taper_norms():
            m.c.fill_(0.5 + torch.rand(()).item())
    return model.eval()


def test_fold_norm_into_linear_matches_norm_then_linear():
    torch.manual_seed(0)
    W, b, beta, gamma_t, c = torch.randn(5, 7), torch.randn(5), torch.randn(7), torch.randn(7), torch.tensor(0.7)
    h = torch.randn(3, 7).double()
    inputs = [t.clone() for t in (W, b, beta, gamma_t, c)]
    for centre, bias in itertools.product((False, True), (None, b)):
        W2, b2 = fold_norm_into_linear(W, bias, c, gamma_t, beta, centre=centre)
        assert W2.dtype == W.dtype == b2.dtype      # computed in float64, stored in the input's dtype
        L = c.double() * ((h - h.mean(-1, keepdim=True)) if centre else h) * gamma_t.double() + beta.double()
        ref = L @ W.double().T + (0 if bias is None else bias.double())
        assert_close(h.float() @ W2.T + b2, ref.float(), rtol=1e-5, atol=1e-5)
    for t, t0 in zip((W, b, beta, gamma_t, c), inputs):  # pure: nothing written into the inputs
        assert torch.equal(t, t0)


@pytest.mark.parametrize('norm,taper,bias,removal', FOLDABLE)
def test_fold_is_exact_in_float64(norm, taper, bias, removal):
    model = tapered_model(norm, taper, bias, removal=removal)
    assert all(m.mode == 'linear' for m in model.taper_norms())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_model(model)

    idx = torch.randint(V, (3, 16), generator=torch.Generator().manual_seed(1))
    logits, _, _ = model(idx, idx)
    logits_f, _, _ = folded(idx, idx)
    assert logits.abs().max() > 1.0                      # a real test: logits far from 0
    assert_close(logits_f, logits, rtol=1e-10, atol=1e-10)
    prompt = idx[:, :4]
    assert torch.equal(folded.generate(prompt, 20, temperature=0), model.generate(prompt, 20, temperature=0))

    # no norm in any block; ln_f stays an ordinary norm only under Internal-Taper
    assert not any(isinstance(m, Norm) for m in folded.transformer.h.modules())
    assert folded.taper_norms() == [] and folded.config.folded
    assert isinstance(folded.transformer.ln_f, Norm) == (taper == 'internal')
    assert (folded.lm_head.weight is folded.transformer.wte.weight) == (taper == 'internal')

    # the input is untouched: state, tying and gate
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert model.lm_head.weight is model.transformer.wte.weight and model.phase() == 'gone'
    assert len(model.taper_norms()) == 2 * 2 + (taper == 'all')

    # parameters: every TaperNorm's gamma, gamma_t (and beta) go; an All-Taper fold adds an untied lm_head
    removed = sum(p.numel() for m in model.taper_norms() for p in m.parameters())
    added = V * 12 + (V if norm == 'layernorm' and bias else 0) if taper == 'all' else 0
    assert folded.get_num_params(False) == model.get_num_params(False) - removed + added


def test_a_fold_keeps_the_mode_of_the_model_it_folds():
    """fold.py compares model.eval() with its fold, which must not drop out what the model keeps; fold_when_gone
    folds a training model and trains on."""
    for training in (False, True):
        assert fold_model(tapered_model().train(training)).training == training


def test_a_folded_step_is_the_step_of_the_g0_model_with_its_scaling_held():
    """Fold during training: AdamW's state carried over (carry_moments), each step taken in the coordinates of the
    weights before the fold (unfolded_coordinates), the folded run is the g = 0 run with gamma_t held (RMSNorm: no
    centring, no beta), clipping and weight decay included: every weight W' stays W diag(c gamma_t)."""
    model = tapered_model('rmsnorm', 'internal', bias=True).train()
    with torch.no_grad():  # matrices of 0.03 +- 0.03: at 0.3 the run is so sensitive that Adam's division (a tiny
        for p in model.parameters():  # second moment) swells the roundings of 1e-16 to 1e-8
            if p.dim() == 2:
                p.mul_(0.1)
    for m in model.taper_norms():
        m.weight_t.requires_grad_(False)                # held, as the fold holds it
    adamw = dict(weight_decay=0.1, learning_rate=1e-2, betas=(0.9, 0.95), device_type='cpu')
    opt = model.configure_optimizers(**adamw)
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randint(V, (2, 16), generator=gen) for _ in range(6)]

    def step(m, optimizer, idx):
        m(idx, idx)[1].backward()
        with unfolded_coordinates(optimizer):
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)  # (their norm is 0.67 to 0.89: it clips)
            optimizer.step()
        optimizer.zero_grad()
    for idx in batches[:3]:                             # moments to carry
        step(model, opt, idx)
    folded = fold_model(model)
    opt_folded = carry_moments(model, folded, opt, folded.configure_optimizers(**adamw))
    for idx in batches[3:]:
        step(model, opt, idx)
        step(folded, opt_folded, idx)
    refolded = fold_model(model)                        # W diag(c gamma_t) of the weights the g = 0 run reached
    for (name, p), q in zip(folded.named_parameters(), refolded.parameters()):
        assert_close(p, q, rtol=0, atol=1e-12, msg=lambda text: f'{name}: {text}')  # a few hundred roundings of 1e-16
    assert opt_folded.state[folded.transformer.h[0].attn.c_attn.weight]['step'] == 6


def test_all_tapers_untied_lm_head_starts_from_the_moments_it_shared_with_wte():
    """All-Taper: lm_head is wte until the fold unties it; the untied copy takes the tied matrix's AdamW state (a copy,
    so the two then step apart) and ln_f's column scales."""
    model = tapered_model('rmsnorm', 'all').train()
    adamw = dict(weight_decay=0.1, learning_rate=1e-2, betas=(0.9, 0.95), device_type='cpu')
    opt = model.configure_optimizers(**adamw)
    idx = torch.randint(V, (2, 16), generator=torch.Generator().manual_seed(3))
    model(idx, idx)[1].backward()
    opt.step()
    folded = fold_model(model)
    new = carry_moments(model, folded, opt, folded.configure_optimizers(**adamw))
    shared, head = opt.state[model.transformer.wte.weight], new.state[folded.lm_head.weight]
    for key in ('step', 'exp_avg', 'exp_avg_sq'):
        assert torch.equal(head[key], shared[key]) and head[key] is not shared[key], key
    ln_f = model.transformer.ln_f
    assert torch.equal(head['fold_scale'], ln_f.c * ln_f.weight_t)


def test_unfolded_coordinates_gives_the_folded_weights_back_whatever_its_block_raises():
    weight = torch.nn.Parameter(torch.full((2, 3), 6.0, dtype=torch.float64))
    weight.grad = torch.ones_like(weight)
    optimizer = torch.optim.AdamW([weight])
    optimizer.state[weight]['fold_scale'] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    with pytest.raises(KeyboardInterrupt), unfolded_coordinates(optimizer):
        assert weight.tolist() == [[6.0, 3.0, 2.0]] * 2 and weight.grad.tolist() == [[1.0, 2.0, 3.0]] * 2
        raise KeyboardInterrupt
    assert weight.tolist() == [[6.0] * 3] * 2            # W' again (6 / 3 * 3 is exact in floats)


@pytest.mark.parametrize('gate', [1.0, 0.3, 1e-6])
def test_fold_refuses_an_open_gate(gate):
    model = tapered_model(gate=gate)
    with pytest.raises(ValueError, match=r"gate is [^,]*, not 0: .*taper_end"):  # the value once, then the fix
        fold_model(model)


@pytest.mark.parametrize('norm,taper,why', [('layernorm', 'off', 'nothing to fold'),
                                            ('none', 'off', 'needs no fold')])
def test_fold_refuses_models_without_tapered_norms(norm, taper, why):
    with pytest.raises(ValueError, match=why):
        fold_model(tapered_model(norm, taper))


def test_fold_refuses_a_folded_model():
    with pytest.raises(ValueError, match='already folded'):
        fold_model(fold_model(tapered_model()))


# ----------------------------------------------------------------------------------------------
# The command line: python fold.py --ckpt=...

def save(model, path, data_root, iter_num=1000):
    torch.save(dict(kind=KIND, model_args=asdict(model.config), model=model.float().state_dict(),
                    optimizer={}, iter_num=iter_num,
                    config=dict(data_root=str(data_root), dataset='ds', taper_end=1000)), path)
    return str(path)


@pytest.mark.parametrize('val_tokens', [0, 4 * 16 - 1, 200])  # none, one short of a batch of 4 x 16, enough
def test_cli_writes_a_folded_checkpoint(tmp_path, capsys, val_tokens):
    with_val = val_tokens >= FoldConfig.batch_size * 16
    if val_tokens:
        os.makedirs(tmp_path / 'ds')
        np.random.default_rng(0).integers(V, size=val_tokens).astype(np.uint16).tofile(tmp_path / 'ds' / 'val.bin')
    model = tapered_model('layernorm', 'all', bias=True)
    path = save(model, tmp_path / 'ckpt.pt', tmp_path)
    out = fold_main(FoldConfig(ckpt=path))
    printed = capsys.readouterr().out
    assert out == str(tmp_path / 'ckpt_folded.pt') and 'max |logit difference|' in printed
    assert ('ds/val.bin' in printed and 'random tokens' not in printed) == with_val

    ckpt = load_checkpoint(out)                          # weights_only=True and kind='nanotaper'
    assert ckpt['model_args']['folded'] and 'optimizer' not in ckpt and ckpt['folded_from'] == path
    assert ckpt['config']['dataset'] == 'ds'             # sample.py finds the vocabulary through it
    folded = GPT.from_checkpoint(ckpt).eval()
    idx = torch.randint(V, (2, 16), generator=torch.Generator().manual_seed(0))
    assert_close(folded(idx, idx)[0], model(idx, idx)[0], rtol=1e-4, atol=1e-4)  # float32 checkpoint


def test_cli_writes_into_a_folder_it_makes_and_refuses_an_empty_batch(tmp_path):
    out = tmp_path / 'new' / 'folded.pt'
    assert fold_main(FoldConfig(ckpt=save(tapered_model(), tmp_path / 'ckpt.pt', tmp_path), out=str(out))) == str(out)
    assert load_checkpoint(str(out))['model_args']['folded']
    with pytest.raises(UserError, match='batch_size must be >= 1, got 0'):
        parse_config(FoldConfig, ['--batch_size=0'])


def test_cli_refusals(tmp_path, capsys):
    with pytest.raises(UserError, match=r"gate is 0\.3.*iteration 400.*--init_from=resume"):
        fold_main(FoldConfig(ckpt=save(tapered_model(gate=0.3), tmp_path / 'open.pt', tmp_path, iter_num=400)))
    torch.save({'model': {}}, tmp_path / 'other.pt')
    with pytest.raises(UserError, match='not a nanotaper checkpoint'):
        fold_main(FoldConfig(ckpt=str(tmp_path / 'other.pt')))
    with pytest.raises(UserError, match='nothing to fold') as err:
        fold_main(FoldConfig(ckpt=save(tapered_model(taper='off'), tmp_path / 'ln.pt', tmp_path)))
    assert 'resume' not in str(err.value)                # a baseline never tapers: no advice to train on
    # a never-normalized model is reported, not refused
    assert fold_main(FoldConfig(ckpt=save(tapered_model('none', 'off'), tmp_path / 'none.pt', tmp_path))) is None
    assert 'needs no fold' in capsys.readouterr().out
    folded = fold_model(tapered_model())                 # as fold_when_gone leaves it: reported, not refused
    assert fold_main(FoldConfig(ckpt=save(folded, tmp_path / 'folded.pt', tmp_path))) is None
    assert 'already folded' in capsys.readouterr().out
    assert not os.path.exists(tmp_path / 'ckpt_folded.pt')
