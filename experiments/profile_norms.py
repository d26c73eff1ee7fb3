"""Where the time of a tapered norm goes: torch.profiler's ten costliest operations of one training step and of one
last-token forward, RMSNorm against TaperNorm at g = 0 (at these sizes a step is bound by launches, so an op that a
norm adds shows here first). bench.py's models, steps and settings; each table sorted by the operations' own
time (on CUDA, the kernels').
$ python experiments/profile_norms.py            # bench.py's default: the paper's benchmark shape
$ python experiments/profile_norms.py --quick    # bench.py's tiny model: seconds, on any device
"""
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
from bench import BenchConfig, csv, main as bench_main, make_step, variants  # noqa: E402
from configurator import run_main  # noqa: E402
from runtime import autocast, device_name, pick_dtype  # noqa: E402

ROWS = 10
COMPARED = ('rmsnorm', 'taper_rms')


def costliest(step, device):
    """The profiler's table of one call of step (after one untimed call), its ROWS costliest operations first."""
    step()
    cuda = device.startswith('cuda')
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        step()
        if cuda:
            torch.cuda.synchronize(device)
    return prof.key_averages().table(sort_by='self_cuda_time_total' if cuda else 'self_cpu_time_total', row_limit=ROWS)


def main(cfg):
    return bench_main(cfg, profile_cells)  # on bench.py's device, with its settings and CPU threads


def profile_cells(cfg, device):
    """{(mode, variant): the table}, each printed under a line naming the cell."""
    dtype_name = pick_dtype(cfg.dtype, device)
    print(f"profile | {device_name(device)} | torch {torch.__version__} | {dtype_name}")
    tables = {}
    for mode, (B, T) in (('train', (cfg.train_batch, cfg.train_seq)), ('last', (1, max(csv(cfg, 'seq_lens', int))))):
        wdtype = torch.float32 if mode == 'train' else getattr(torch, dtype_name)  # as bench.py
        for name, model in variants(cfg, COMPARED).items():
            step, _ = make_step(mode, model.to(device=device, dtype=wdtype), B, T, cfg, device,
                                autocast(device, dtype_name))
            tables[(mode, name)] = costliest(step, device)
            print(f"\n{mode}, {name}, B={B} T={T}: the {ROWS} costliest operations\n{tables[(mode, name)]}")
    return tables


if __name__ == '__main__':
    run_main(main, BenchConfig)
