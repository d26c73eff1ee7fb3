"""
The Shakespeare experiments behind the README's results (METHOD.md §9): every run is config/taper.py with a few
overrides, written to out-sweep/<variant>-lr<rate>-s<seed>. Finished runs are skipped and interrupted ones resumed,
so a stage can simply be run again. Stages, in the order they depend on each other:
  lr        the four main variants x learning rates x 2 seeds, widening the range while a best rate is at an edge
  best      each main variant at its best learning rate (lowest mean final val loss), 6 seeds
  ablation  the final-norm ablations at layernorm's best learning rate, 3 seeds
  schedule  taper_ln calibrating earlier and later than the default, at its best learning rate, 2 seeds
$ python experiments/sweep.py --stage=all --jobs=2    # every stage, two runs at a time (one thread each)
$ python experiments/report.py                        # then results/runs.csv, the tables, the plots, the README
"""
import os
import subprocess
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
from configurator import UserError, run_main  # noqa: E402
from report import best_rates, load_runs  # noqa: E402
from runtime import REPO  # noqa: E402

VARIANTS = {  # name -> overrides of config/taper.py (Internal-Taper, LayerNorm)
    'layernorm': dict(taper='off'),
    'rmsnorm': dict(norm='rmsnorm', taper='off'),
    'taper_ln': dict(),
    'taper_rms': dict(norm='rmsnorm'),
    'all_taper_anchor': dict(taper='all', anchor_lambda=0.1),
    'all_taper': dict(taper='all'),                          # no final norm and no anchor: logit chasing?
    'none_anchor': dict(norm='none', taper='off', anchor_lambda=0.1),
    'none': dict(norm='none', taper='off'),
    'taper_ln_start100': dict(taper_start=100, taper_end=1000),  # calibrating at the end of warmup: it diverges
    'taper_ln_start200': dict(taper_start=200, taper_end=1000),
    'taper_ln_start600': dict(taper_start=600, taper_end=1000),
}
MAIN = ('layernorm', 'rmsnorm', 'taper_ln', 'taper_rms')
ABLATIONS = ('all_taper_anchor', 'all_taper', 'none_anchor', 'none')
SCHEDULES = ('taper_ln_start100', 'taper_ln_start200', 'taper_ln_start600')
LEARNING_RATES = (1e-3, 2e-3, 4e-3, 8e-3)
SEEDS = (1337, 1338, 1339, 1340, 1341, 1342)


@dataclass
class SweepConfig:
    stage: str = 'all'                # 'lr', 'best', 'ablation', 'schedule' or 'all'
    out_root: str = 'out-sweep'       # one folder per run under it
    jobs: int = 1                     # runs at a time; each gets cpu_count // jobs threads
    extra: str = ''                   # more overrides for every run, space-separated (a quick test uses it)
    dry_run: bool = False             # print the plan only


def run_dir(out_root, variant, lr, seed):
    return os.path.join(out_root, f'{variant}-lr{lr:g}-s{seed}')


def plan(cfg, stage):
    """[(variant, lr, seed)] of the stage, given the runs finished so far."""
    runs = load_runs(cfg.out_root)
    best = best_rates(runs)
    if stage == 'lr':
        wanted = [(v, lr, s) for v in MAIN for lr in LEARNING_RATES for s in SEEDS[:2]]
        for v in MAIN:  # a best rate at an edge of the range tried: try the next one out, twice or half as large
            tried = {r['learning_rate'] for r in runs if r['variant'] == v}
            if v in best and 2 <= len(tried) < 8 and best[v] in (min(tried), max(tried)):
                lr = 2 * best[v] if best[v] == max(tried) else best[v] / 2
                wanted += [(v, lr, s) for s in SEEDS[:2]] if lr not in tried else []
        return wanted
    if stage == 'best':
        return [(v, best[v], s) for v in MAIN if v in best for s in SEEDS]
    if stage == 'ablation':
        return [(v, best['layernorm'], s) for v in ABLATIONS for s in SEEDS[:3]] if 'layernorm' in best else []
    if stage == 'schedule':
        return [(v, best['taper_ln'], s) for v in SCHEDULES for s in SEEDS[:2]] if 'taper_ln' in best else []
    raise UserError(f"stage={stage!r} must be 'lr', 'best', 'ablation', 'schedule' or 'all'")


def command(cfg, variant, lr, seed, finished):
    """(action, argv): 'skip' a run whose folder is in finished, 'resume' one with a checkpoint, else 'start' it."""
    out_dir = run_dir(cfg.out_root, variant, lr, seed)
    resumable = os.path.exists(os.path.join(out_dir, 'ckpt.pt'))
    action = 'skip' if out_dir in finished else 'resume' if resumable else 'start'
    argv = [sys.executable, os.path.join(REPO, 'train.py'), os.path.join(REPO, 'config', 'taper.py'),
            f'--out_dir={os.path.abspath(out_dir)}', f'--seed={seed}', f'--learning_rate={lr:g}']
    argv += [f'--{k}={v}' for k, v in VARIANTS[variant].items()] + cfg.extra.split()
    return action, argv + (['--init_from=resume'] if action == 'resume' else [])


def run_stage(cfg, stage):
    """Run the stage's plan; stage 'lr' plans again after each round, until the range stops widening."""
    done = set()
    while True:
        todo = [run for run in plan(cfg, stage) if run not in done]
        if not todo:
            return
        threads = str(max(1, (os.cpu_count() or 1) // cfg.jobs))
        finished, running = {r['out_dir'] for r in load_runs(cfg.out_root)}, []
        for variant, lr, seed in todo:
            done.add((variant, lr, seed))
            action, argv = command(cfg, variant, lr, seed, finished)
            out_dir = run_dir(cfg.out_root, variant, lr, seed)
            print(f"{action:6s} {out_dir}" + ('' if action == 'skip' else '  ' + ' '.join(argv[2:])), flush=True)
            if action == 'skip' or cfg.dry_run:
                continue
            os.makedirs(out_dir, exist_ok=True)
            log = open(os.path.join(out_dir, 'stdout.txt'), 'a')
            running.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                             env=dict(os.environ, OMP_NUM_THREADS=threads)), out_dir))
            while len(running) >= cfg.jobs:
                running = wait_first(running)
        while running:
            running = wait_first(running)
        if stage != 'lr' or cfg.dry_run:
            return


def wait_first(running):
    proc, out_dir = running[0]
    if proc.wait() != 0:
        print(f"failed {out_dir} (exit {proc.returncode}): see {out_dir}/stdout.txt; rerun to resume", flush=True)
    return running[1:]


def main(cfg):
    for stage in (('lr', 'best', 'ablation', 'schedule') if cfg.stage == 'all' else (cfg.stage,)):
        run_stage(cfg, stage)


if __name__ == '__main__':
    run_main(main, SweepConfig)
