"""
train.py under torchrun on CPU (gloo, 2 processes) against one process holding the same global batch: the same
weights, the same AdamW state (so the same averaged gradients), c and s_tgt identical on both ranks and equal to
the global batch's, gamma_t untouched by AdamW until it is used, and only rank 0 writing.
"""
import json
import os
import subprocess
import sys

import torch
from reference import assert_matches_reference, assert_rounding_close, float64_reference, synthetic_dataset

from checkpoint import load_checkpoint
from configurator import parse_config
from train import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORLD = 2


def torchrun(tmp_path, args):
    """tests/ddp_worker.py under torchrun, WORLD CPU processes: each rank's c and s_tgt after every step."""
    env = dict(os.environ, PYTHONPATH=REPO, DDP_SPY_DIR=str(tmp_path), OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={WORLD}',
                        os.path.join(REPO, 'tests', 'ddp_worker.py'), *args],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return [torch.load(tmp_path / f'rank{rank}.pt') for rank in range(WORLD)]


def test_two_ranks_step_like_one_process_with_their_global_batch(tmp_path):
    vocab_size = 64
    data_dir = synthetic_dataset(tmp_path / 'synth', vocab_size, 5000)
    # taper 'all' with the anchor: every EMA (c of each TaperNorm, s for s_tgt) crosses ranks. Step 0 runs at g = 1
    # (gamma_t unused), step 1 at g = 0.5 (gamma_t used, c still following its statistics, s_tgt frozen). No lr
    # decay or clipping: AdamW's first step is ~lr * sign(grad), so a large lr makes any gradient that differs show.
    args = [f'--data_root={tmp_path}', '--dataset=synth', f'--out_dir={tmp_path / "out"}', '--device=cpu',
            '--dtype=float32', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=16',
            '--batch_size=2', f'--gradient_accumulation_steps={2 * WORLD}', '--max_iters=2', '--taper=all',
            '--anchor_lambda=0.1', '--taper_start=0', '--taper_end=2', '--eval_interval=2', '--eval_iters=1',
            '--decay_lr=False', '--learning_rate=1e-2', '--grad_clip=0', '--log_interval=1']
    seen = torchrun(tmp_path, args)                                  # each rank's c and s_tgt, step by step

    cfg = parse_config(TrainConfig, args)
    ref, ref_opt, grad_scale, _ = float64_reference(cfg, data_dir, vocab_size, WORLD)
    ckpt = load_checkpoint(str(tmp_path / 'out' / 'ckpt.pt'))
    assert_matches_reference(ckpt, ref, ref_opt, grad_scale, cfg)
    state = ckpt['optimizer']['state']
    # gamma_t was unused in step 0 (g = 1, before calibration): DDP left its grad None, so AdamW stepped it once
    order = [id(p) for group in ref_opt.param_groups for p in group['params']]  # the optimizer's numbering
    gamma_t = [order.index(id(m.weight_t)) for m in ref.taper_norms()]
    assert [int(state[i]['step']) for i in gamma_t] == [1] * len(gamma_t)
    assert int(state[order.index(id(ref.transformer.wte.weight))]['step']) == 2

    # at every step every rank took the same c and s_tgt: those of the global batch
    assert [len(steps) for steps in seen] == [cfg.max_iters] * WORLD
    for rank in range(1, WORLD):
        for mine, rank0 in zip(seen[rank], seen[0]):
            assert all(torch.equal(a, b) for a, b in zip(mine['c'], rank0['c']))
            assert torch.equal(mine['s_tgt'], rank0['s_tgt'])
    for c, ref_c in zip(seen[0][-1]['c'], [m.c for m in ref.taper_norms()]):
        assert_rounding_close(c, ref_c, ref_c.item(), 'c')
    assert all(not torch.equal(a, b) for a, b in zip(seen[0][0]['c'], seen[0][1]['c']))  # step 1 moved c (g = 0.5)
    assert torch.equal(seen[0][0]['s_tgt'], seen[0][1]['s_tgt']) and ref.s_tgt > 0      # ... not s_tgt (g < 1)

    # only rank 0 logged: one header and one record per step
    with open(tmp_path / 'out' / 'log.jsonl') as f:
        kinds = [json.loads(line)['kind'] for line in f]
    assert kinds.count('header') == 1 and kinds.count('train') == cfg.max_iters
