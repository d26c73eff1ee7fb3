"""
The Shakespeare sweep behind the README's results (issue: reproduce the paper's claims): every norm variant at the
scale of config/taper.py, same steps, several seeds. Finished runs are skipped and interrupted ones resumed, so the
command can simply be run again.
$ python sweep.py                                  # 7 variants x 3 seeds into out-sweep/
$ python sweep.py --jobs=2 --seeds=1337,1338       # two runs at a time (one thread each)
$ python report.py                                 # then the plots and the table
"""
import os
import subprocess
import sys
from dataclasses import dataclass

from common import run_main
from report import read_log, run_finished

# name -> overrides of config/taper.py; only the norm settings differ
VARIANTS = {
    'layernorm': dict(norm='layernorm', taper='off'),
    'rmsnorm': dict(norm='rmsnorm', taper='off'),
    'taper_ln': dict(norm='layernorm', taper='internal'),
    'taper_rms': dict(norm='rmsnorm', taper='internal'),
    'all_taper_anchor': dict(norm='layernorm', taper='all', anchor_lambda=0.1),
    'none_anchor': dict(norm='none', taper='off', anchor_lambda=0.1),
    'none': dict(norm='none', taper='off', anchor_lambda=0.0),  # the logit-chasing ablation
}


@dataclass
class SweepConfig:
    base: str = 'config/taper.py'      # the config every run starts from
    variants: str = ','.join(VARIANTS)  # comma-separated names from VARIANTS
    seeds: str = '1337,1338,1339'
    out_root: str = 'out-sweep'
    jobs: int = 1                      # runs at a time; each gets cpu_count // jobs threads
    extra: str = ''                    # more overrides for every run, space-separated (e.g. for a quick test)
    dry_run: bool = False              # print the plan only


def run_dir(out_root, variant, seed):
    return os.path.join(out_root, f'{variant}-s{seed}')


def is_finished(out_dir):
    """A run is finished once its log holds the evaluation at max_iters of its latest configuration."""
    path = os.path.join(out_dir, 'log.jsonl')
    return os.path.exists(path) and run_finished(read_log(path))


def plan(cfg):
    """[(out_dir, action, command)] with action 'skip' (finished), 'resume' (a checkpoint) or 'start'."""
    steps = []
    unknown = [v for v in cfg.variants.split(',') if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    for seed in cfg.seeds.split(','):  # seed by seed: a sweep cut short still has every variant
        for variant in cfg.variants.split(','):
            out_dir = run_dir(cfg.out_root, variant, seed)
            action = ('skip' if is_finished(out_dir) else
                      'resume' if os.path.exists(os.path.join(out_dir, 'ckpt.pt')) else 'start')
            cmd = [sys.executable, 'train.py', cfg.base, f'--out_dir={out_dir}', f'--seed={seed}']
            cmd += [f'--{k}={v}' for k, v in VARIANTS[variant].items()] + cfg.extra.split()
            if action == 'resume':
                cmd.append('--init_from=resume')
            steps.append((out_dir, action, cmd))
    return steps


def main(cfg):
    steps = plan(cfg)
    threads = str(max(1, (os.cpu_count() or 1) // cfg.jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    running = []
    for out_dir, action, cmd in steps:
        print(f"{action:6s} {out_dir}" + ('' if action == 'skip' else '  ' + ' '.join(cmd[1:])))
        if action == 'skip' or cfg.dry_run:
            continue
        os.makedirs(out_dir, exist_ok=True)
        log = open(os.path.join(out_dir, 'stdout.txt'), 'a')
        running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), out_dir))
        while len(running) >= cfg.jobs:  # wait for a free slot
            running = wait_one(running)
    while running:
        running = wait_one(running)


def wait_one(running):
    proc, out_dir = running[0]
    if proc.wait() != 0:
        print(f"failed {out_dir} (exit {proc.returncode}); see {out_dir}/stdout.txt, rerun to resume")
    return running[1:]


if __name__ == '__main__':
    run_main(main, SweepConfig)
