"""
train.py under torchrun on CPU (gloo, 2 processes) against one process holding the same global batch: the same
weights, the same AdamW state (so the same averaged gradients), c and s_tgt identical on both ranks and equal to
the global batch's, gamma_t untouched by AdamW until it is used, and only rank 0 writing.
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import torch

from common import get_batch, load_checkpoint, parse_config
from model import GPT
from train import TrainConfig, configure_optimizer, get_gate, model_config, step_seed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORLD = 2


# Both sides run in float64, so they can differ only by float64 rounding: DDP sums each rank's half of the batch and
# averages the two, one process sums the global batch at once. Sums of the same n terms in another order differ by
# at most n * u * sum|terms| (u = 2^-53); with n <= 10^3 here that is 1e-13 of a tensor's scale, and ROUND allows
# ten times as much for the products along the way. Float32 would need 1e-4, where a real bug could hide.
ROUND = 1e-12


def one_process(cfg, data_dir, vocab_size):
    """What DDP must equal: train.py's loop in one process, each step on the micro-batches all ranks draw.
    Also returns the largest |gradient| each parameter saw, the scale of its rounding."""
    torch.manual_seed(cfg.seed)
    model = GPT(model_config(cfg, vocab_size))
    optimizer = configure_optimizer(model, cfg, 'cpu')  # lr stays learning_rate: the test runs without decay
    accum = cfg.gradient_accumulation_steps // WORLD
    grad_scale = {name: 0.0 for name, _ in model.named_parameters()}
    for it in range(cfg.max_iters):
        model.set_gate(get_gate(it, cfg.taper_start, cfg.taper_end))
        batches = []
        for rank in range(WORLD):  # each rank reads its own stream, accum micro-batches a step
            gen = torch.Generator().manual_seed(step_seed(cfg.seed, rank, it))
            batches += [get_batch(data_dir, 'train', cfg.batch_size, cfg.block_size, gen, 'cpu') for _ in range(accum)]
        _, loss, _ = model(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
        loss.backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                grad_scale[name] = max(grad_scale[name], p.grad.abs().max().item())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_calibration()
        if it == cfg.taper_start:
            model.calibrate()
    model.set_gate(get_gate(cfg.max_iters, cfg.taper_start, cfg.taper_end))
    return model, optimizer, grad_scale


def assert_rounding_close(actual, expected, scale, what):
    """|actual - expected| <= ROUND * scale, elementwise: float64 rounding of that scale, nothing more."""
    assert actual.dtype == expected.dtype == torch.float64, what
    torch.testing.assert_close(actual, expected, rtol=0, atol=ROUND * scale, msg=lambda m: f"{what}: {m}")


def test_two_ranks_step_like_one_process_with_their_global_batch(tmp_path):
    vocab_size, data_dir = 64, tmp_path / 'synth'
    data_dir.mkdir()
    for split in ('train', 'val'):
        tokens = np.random.default_rng(len(split)).integers(0, vocab_size, 5000, dtype=np.uint16)
        tokens.tofile(data_dir / f'{split}.bin')
    with open(data_dir / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': vocab_size}, f)
    # taper 'all' with the anchor: every EMA (c of each TaperNorm, s for s_tgt) crosses ranks. Step 0 runs at g = 1
    # (gamma_t unused), calibrates, step 1 at g = 0.5 (gamma_t used). No lr decay or clipping: AdamW's first
    # step is ~lr * sign(grad), so a large lr makes any gradient that differs show in the weights.
    args = [f'--data_root={tmp_path}', '--dataset=synth', f'--out_dir={tmp_path / "out"}', '--device=cpu',
            '--backend=gloo', '--dtype=float32', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=16',
            '--batch_size=2', f'--gradient_accumulation_steps={2 * WORLD}', '--max_iters=2', '--taper=all',
            '--anchor_lambda=0.1', '--taper_start=0', '--taper_end=2', '--eval_interval=2', '--eval_iters=1',
            '--decay_lr=False', '--learning_rate=1e-2', '--grad_clip=0', '--log_interval=1']
    env = dict(os.environ, PYTHONPATH=REPO, DDP_SPY_DIR=str(tmp_path), OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={WORLD}',
                        os.path.join(REPO, 'tests', 'ddp_worker.py'), *args],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    cfg = parse_config(TrainConfig, args)
    torch.set_default_dtype(torch.float64)  # the reference in float64 too, as the worker
    try:
        ref, ref_opt, grad_scale = one_process(cfg, str(data_dir), vocab_size)
    finally:
        torch.set_default_dtype(torch.float32)
    ckpt = load_checkpoint(str(tmp_path / 'out' / 'ckpt.pt'))
    ref_sd = ref.state_dict()
    assert ckpt['model'].keys() == ref_sd.keys()
    # AdamW's first steps move a weight by lr * g / (|g| + eps): a gradient error of d moves it by up to lr / eps * d
    # (for g near 0), so a weight may differ by lr / eps times its gradient's rounding, summed over the two steps.
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
    # gamma_t was unused in step 0 (g = 1, before calibration): DDP left its grad None, so AdamW stepped it once
    order = [id(p) for group in ref_opt.param_groups for p in group['params']]  # the optimizer's numbering
    gamma_t = [order.index(id(m.weight_t)) for m in ref.taper_norms()]
    assert [int(state[i]['step']) for i in gamma_t] == [1] * len(gamma_t)
    assert int(state[order.index(id(ref.transformer.wte.weight))]['step']) == 2

    # every rank calibrated the same c and s_tgt: those of the global batch
    seen = [torch.load(tmp_path / f'rank{rank}.pt') for rank in range(WORLD)]
    for rank in range(1, WORLD):
        assert all(torch.equal(a, b) for a, b in zip(seen[0]['c'], seen[rank]['c']))
        assert torch.equal(seen[0]['s_tgt'], seen[rank]['s_tgt'])
    for c, ref_c in zip(seen[0]['c'], [m.c for m in ref.taper_norms()]):
        assert_rounding_close(c, ref_c, ref_c.item(), 'c')
    assert ref.s_tgt > 0

    # only rank 0 logged: one header and one record per step
    with open(tmp_path / 'out' / 'log.jsonl') as f:
        kinds = [json.loads(line)['kind'] for line in f]
    assert kinds.count('header') == 1 and kinds.count('train') == cfg.max_iters
