"""
The reference a split training step must equal: train.py's loop in one process, each step on all the micro-batches
(of every rank) at once, in float64, so that the two can differ only by float64 rounding. Used by the DDP and the
gradient-accumulation tests. Also the tokens a norm's statistics are computed from by hand, in the calibration tests.
"""
import pickle

import numpy as np
import torch

from model import GPT
from train import get_gate, step_seed
from train_setup import get_batch, model_config

def one_step_of_forwards(m, *hooked):
    """The forward passes of one optimizer step, two micro-batches of 3 x 16 tokens (a 37-token vocabulary), after
    emptying the lists that m's hooks fill."""
    for inputs in hooked:
        inputs.clear()
    for micro in range(2):
        x = torch.randint(0, 37, (3, 16))
        m(x, x)


def as_the_norm_sees(hooked, norm, width=24):
    """The hooked inputs as (tokens, width), centred for LayerNorm: its s(h) is the RMS of h - mean(h)."""
    h = torch.cat(hooked).reshape(-1, width)
    return h - h.mean(-1, keepdim=True) if norm == 'layernorm' else h


def synthetic_dataset(data_dir, vocab_size, n_tokens):
    """train.bin and val.bin of random tokens, and a meta.pkl giving the vocabulary's size."""
    data_dir.mkdir()
    for split in ('train', 'val'):
        tokens = np.random.default_rng(len(split)).integers(0, vocab_size, n_tokens, dtype=np.uint16)
        tokens.tofile(data_dir / f'{split}.bin')
    with open(data_dir / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': vocab_size}, f)
    return str(data_dir)


# Both sides run in float64, so they can differ only by float64 rounding: a split step sums each part of the batch
# and then the parts (ranks, or micro-steps); one process sums the global batch at once. Sums of the same n terms
# in another order differ by at most n * u * sum|terms| (u = 2^-53); with n <= 10^3 here that is 1e-13 of a
# tensor's scale, and ROUND allows ten times as much for the products along the way. Float32 would need 1e-4,
# where a real bug could hide.
ROUND = 1e-12


def one_process(cfg, data_dir, vocab_size, world):
    """What a split step must equal: train.py's loop in one process, each step on the micro-batches all `world`
    ranks draw, at once. Returns the model, the optimizer, the largest |gradient| each parameter saw (the scale of
    its rounding) and the loss of every step."""
    torch.manual_seed(cfg.seed)
    model = GPT(model_config(cfg, vocab_size))
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), 'cpu')
    accum = cfg.gradient_accumulation_steps // world
    grad_scale, losses = {name: 0.0 for name, _ in model.named_parameters()}, []
    for it in range(cfg.max_iters):
        model.set_gate(get_gate(it, cfg.taper_start, cfg.taper_end))
        batches = []
        for rank in range(world):  # each rank reads its own stream, accum micro-batches a step
            gen = torch.Generator().manual_seed(step_seed(cfg.seed, rank, it))
            batches += [get_batch(data_dir, 'train', cfg.batch_size, cfg.block_size, gen, 'cpu') for _ in range(accum)]
        _, loss, _ = model(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
        loss.backward()
        losses.append(loss.item())
        for name, p in model.named_parameters():
            if p.grad is not None:
                grad_scale[name] = max(grad_scale[name], p.grad.abs().max().item())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_calibration()
    model.set_gate(get_gate(cfg.max_iters, cfg.taper_start, cfg.taper_end))
    return model, optimizer, grad_scale, losses


def assert_rounding_close(actual, expected, scale, what):
    """|actual - expected| <= ROUND * scale, elementwise: float64 rounding of that scale, nothing more."""
    assert actual.dtype == expected.dtype == torch.float64, what
    torch.testing.assert_close(actual, expected, rtol=0, atol=ROUND * scale, msg=lambda m: f"{what}: {m}")


def float64_reference(cfg, data_dir, vocab_size, world):
    """one_process under float64 as the default dtype, restored afterwards."""
    torch.set_default_dtype(torch.float64)
    try:
        return one_process(cfg, data_dir, vocab_size, world)
    finally:
        torch.set_default_dtype(torch.float32)


def assert_matches_reference(ckpt, ref, ref_opt, grad_scale, cfg):
    """A checkpoint's model and AdamW state against the reference's: discrete state exactly, the rest within ROUND
    of its scale; weights within AdamW's magnification of their gradient's rounding."""
    ref_sd = ref.state_dict()
    assert ckpt['model'].keys() == ref_sd.keys()
    # AdamW's first steps move a weight by lr * g / (|g| + eps): a gradient error of d moves it by up to lr / eps * d
    # (for g near 0), so a weight may differ by lr / eps times its gradient's rounding, summed over the steps.
    adam_gain = cfg.max_iters * cfg.learning_rate / 1e-8
    param_of = {key: name for name, p in ref.named_parameters()        # lm_head.weight is wte's, tied
                for key, q in ref.named_parameters(remove_duplicate=False) if q is p}
    for key, expected in ref_sd.items():
        actual = ckpt['model'][key]
        if not expected.is_floating_point() or key == 'gate':
            assert torch.equal(actual, expected), key           # the gate, flags and step counts: exact
        elif key in param_of:
            assert_rounding_close(actual, expected, adam_gain * grad_scale[param_of[key]], key)
        else:                                                   # c, EMAs, s_tgt: ratios and means of sums
            assert_rounding_close(actual, expected, expected.abs().max().item(), key)
    # AdamW's moments are the gradients themselves (scale included), and which parameters it stepped how often
    state, ref_state = ckpt['optimizer']['state'], ref_opt.state_dict()['state']
    assert state.keys() == ref_state.keys()
    for i in state:
        ref_avg = ref_state[i]['exp_avg']  # a linear function of the gradients: rounding of their scale only
        assert_rounding_close(state[i]['exp_avg'], ref_avg, ref_avg.abs().max().item(), f'exp_avg {i}')
        assert state[i]['step'] == ref_state[i]['step']
