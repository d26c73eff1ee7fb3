"""The experiments behind the README's results (METHOD.md §9): each run is config/taper.py (a removal:
config/finetune_taper.py) plus a few overrides, in out-sweep/<variant>-lr<rate>-s<seed>. Runs finished (or diverged)
here or archived in results/logs are skipped, interrupted ones resumed: run a stage again to go on. The stages:
lr (the main variants x rates x 2 seeds; a best rate at an edge widens the range), best (each at its best rate, 6
seeds), ablation, schedule; size_lr and size (8 layers, three widths); robust (the default schedule, §4); fold (the
default folded at g = 0 and trained on, §7: 6 seeds, 2 at a rate either side; from RMSNorm, 6 seeds paired); source
(the converged LayerNorm models, 6 seeds), removal_lr and removal (removing their norms in eight ways, METHOD.md §11,
each removal folded and its check added to its log).
$ python experiments/sweep.py --stage=all --jobs=2 && python experiments/report.py   # two runs at a time
"""
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
from configurator import UserError, run_main  # noqa: E402
from report import LENGTHS as ALL_LENGTHS, SIZES as SIZE_VARIANTS, best_rates, load_runs  # noqa: E402
from runtime import REPO  # noqa: E402

PAPER = dict(taper_start=400, taper_end=1000, follow_c=False)  # c frozen at 400, 20% of the run: the first sweeps' rule
VARIANTS = {  # name -> overrides of config/taper.py
    'layernorm': dict(taper='off'),
    'rmsnorm': dict(norm='rmsnorm', taper='off'),
    'taper_ln': PAPER,
    'taper_rms': dict(PAPER, norm='rmsnorm'),
    'all_taper_anchor': dict(PAPER, taper='all', anchor_lambda=0.1),
    'all_taper': dict(PAPER, taper='all'),                   # no final norm and no anchor: logit chasing?
    'none_anchor': dict(PAPER, norm='none', taper='off', anchor_lambda=0.1),
    'none': dict(norm='none', taper='off'),
    **{f'taper_ln_start{k}': dict(PAPER, taper_start=k) for k in (100, 200, 600)},  # 100: the warmup's end
    'taper_ln_follow': dict(),                               # the default: c follows its statistics to g = 0
    'taper_ln_follow400': dict(PAPER, follow_c=True),        # ... calibrating where the paper's rule did
    'taper_ln_follow_fold': dict(fold_when_gone=True),        # ... folded at g = 0, then trained on norm-free (§7)
    'taper_rms_follow': dict(norm='rmsnorm'),                # the default from RMSNorm, where that fold is exact
    'taper_rms_follow_fold': dict(norm='rmsnorm', fold_when_gone=True),
}
# (taper_ln_start_auto and taper_ln-8x*, archived in results/logs, froze c where s levelled off: a rule since
# replaced; commit 76952c3 runs them)
SOURCE = ('layernorm-converged', 4e-3)  # (variant, lr): the model every removal starts from, the same seed's
ALL = dict(taper='all', taper_end=48)  # ln_f goes too, last, 3 steps after the last ln_1 (their spacing)
FINETUNES = {  # name -> overrides of config/finetune_taper.py (Internal-Taper, 300 steps, their recipe)
    'remove_layernorm': dict(taper='off'),                   # the control: nothing removed, what fine-tuning alone does
    'remove_taper': {},
    'remove_fakeln': dict(removal='fakeln'),                 # FakeLN as their code runs by default, on ln_1 and ln_2
    'remove_fakeln_ema': dict(removal='fakeln', fakeln_divisor='ema'),  # ... with the divisor their flag follows
    'remove_all_taper_anchor': dict(ALL, anchor_lambda=0.1),
    'remove_fakeln_all': dict(ALL, removal='fakeln'),        # FakeLN on every norm
    'remove_fakeln_aux': dict(ALL, removal='fakeln', fakeln_aux=0.1),  # ... with their aux loss (their paper's configs,
    'remove_fakeln_aux_ema': dict(ALL, removal='fakeln', fakeln_aux=0.1, fakeln_divisor='ema'),  # divisor unrecorded)
}
WIDTHS = (64, 128, 256)  # the size series at 8 layers, heads 32 wide; _start400: c frozen at 400 (METHOD.md §4)
VARIANTS.update({f'{v}-8x{w}': dict(overrides, n_layer=8, n_embd=w, n_head=w // 32) for w in WIDTHS for v, overrides in
                 (('layernorm', dict(taper='off')), ('taper_ln_start400', PAPER), ('taper_ln_follow', {}))})
LENGTHS = tuple(n for n in ALL_LENGTHS if n != 2000)  # the main job shorter and longer (2000: the plain variants)
VARIANTS.update({f'{v}-it{n}': dict(overrides, max_iters=n) for n in LENGTHS for v, overrides in
                 (('layernorm', dict(taper='off')), ('taper_ln_follow', {}))})
MAIN = ('layernorm', 'rmsnorm', 'taper_ln', 'taper_rms')
VARIANTS[SOURCE[0]] = dict(taper='off', max_iters=8000)  # the main job's LayerNorm model, trained 4x as long
SIZES = tuple(f'{v}-8x{w}' for w in WIDTHS for v in SIZE_VARIANTS if f'{v}-8x{w}' in VARIANTS)  # still run
TUNED = {'lr': (MAIN, (1e-3, 2e-3, 4e-3, 8e-3)), 'removal_lr': (tuple(FINETUNES), (2.5e-4, 5e-4, 1e-3, 2e-3)),
         'size_lr': (SIZES, (1e-3, 2e-3, 4e-3))}  # stage -> (variants, the learning rates tried first)
BEST = {'best': MAIN, 'removal': tuple(FINETUNES), 'size': SIZES}
GRID = {'robust': (  # stage -> (variant, lr, seeds): the default against layernorm where the old rules broke
    ('taper_ln_follow', 4e-3, 6), ('taper_ln_follow400', 4e-3, 6),
    *((f'{v}-it{n}', 4e-3, 3) for n in LENGTHS[:3] for v in ('layernorm', 'taper_ln_follow')),
    *((f'{v}-8x256', lr, 3) for lr in (2e-3, 4e-3) for v in ('taper_ln_follow', 'layernorm')),
    ('taper_ln_follow-8x64', 8e-3, 6), ('taper_ln_follow-8x64', 1.6e-2, 3), ('layernorm-8x64', 1.6e-2, 3),
    ('taper_ln_follow-8x256', 1e-3, 6),
    *((f'{v}-it4000', 4e-3, 3) for v in ('layernorm', 'taper_ln_follow'))), 'source': ((*SOURCE, 6),),
    'fold': (('taper_ln_follow_fold', 4e-3, 6), ('taper_ln_follow_fold', 2e-3, 2), ('taper_ln_follow_fold', 8e-3, 2),
             ('taper_rms_follow', 4e-3, 6), ('taper_rms_follow_fold', 4e-3, 6))}
AT_BEST = {'ablation': (('all_taper_anchor', 'all_taper', 'none_anchor', 'none'), 3),  # stage -> (variants, seeds)
           'schedule': (('taper_ln_start100', 'taper_ln_start200', 'taper_ln_start600'), 6)}
STAGES = ('lr', 'best', 'ablation', 'schedule', 'size_lr', 'size', 'robust', 'fold', 'source', 'removal_lr', 'removal')
SEEDS = (1337, 1338, 1339, 1340, 1341, 1342)


@dataclass
class SweepConfig:
    stage: str = 'all'                # one of STAGES, or 'all'
    out_root: str = 'out-sweep'       # one folder per run under it
    logs: str = 'results/logs'        # the archive of finished runs' logs (experiments/report.py writes it)
    jobs: int = 1                     # runs at a time; each gets cpu_count // jobs threads
    extra: str = ''                   # more overrides for every run, space-separated (a quick test uses it)


def run_dir(out_root, variant, lr, seed):
    return os.path.join(out_root, f'{variant}-lr{lr:g}-s{seed}')


def plan(cfg, stage):
    """[(variant, lr, seed)] of the stage, given the runs finished so far."""
    runs = load_runs(cfg.out_root) + load_runs(cfg.logs)
    best = best_rates(runs)
    if stage in TUNED:
        variants, rates = TUNED[stage]
        wanted = [(v, lr, s) for v in variants for lr in rates for s in SEEDS[:2]]
        for v in variants:  # a best rate at an edge of the range tried: try the next one out, twice or half as large
            tried = {r['learning_rate'] for r in runs if r['variant'] == v}
            if v in best and 2 <= len(tried) < 8 and best[v] in (min(tried), max(tried)):
                lr = 2 * best[v] if best[v] == max(tried) else best[v] / 2
                wanted += [(v, lr, s) for s in SEEDS[:2]] if lr not in tried else []
        return wanted
    if stage in GRID:
        return [(v, lr, s) for v, lr, n in GRID[stage] for s in SEEDS[:n]]
    if stage in BEST:
        return [(v, best[v], s) for v in BEST[stage] if v in best for s in SEEDS]
    if stage in AT_BEST:  # at the best rate of layernorm (the ablations), or of the variant a schedule moves
        variants, n_seeds = AT_BEST[stage]
        base = {v: 'layernorm' if stage == 'ablation' else v.rsplit('_start', 1)[0] for v in variants}
        return [(v, best[base[v]], s) for v in variants if base[v] in best for s in SEEDS[:n_seeds]]
    raise UserError(f"stage={stage!r} must be one of {', '.join(STAGES)} or 'all'")


def command(cfg, variant, lr, seed, finished, source=None):
    """(action, argv): 'skip' a run whose name is in finished, 'resume' one with a checkpoint, else 'start' it (a
    fine-tune from the checkpoint in the run folder source)."""
    out_dir = run_dir(cfg.out_root, variant, lr, seed)
    resumable = os.path.exists(os.path.join(out_dir, 'ckpt.pt'))
    action = 'skip' if os.path.basename(out_dir) in finished else 'resume' if resumable else 'start'
    config = 'finetune_taper.py' if variant in FINETUNES else 'taper.py'
    argv = [sys.executable, os.path.join(REPO, 'train.py'), os.path.join(REPO, 'config', config),
            f'--out_dir={os.path.abspath(out_dir)}', f'--seed={seed}', f'--learning_rate={lr:g}']
    argv += [f'--init_from={os.path.abspath(source)}/ckpt.pt', f'--min_lr={lr / 2:g}'] if source else []  # (theirs)
    argv += [f'--{k}={v}' for k, v in {**VARIANTS, **FINETUNES}[variant].items()] + cfg.extra.split()
    return action, argv + (['--init_from=resume'] if action == 'resume' else [])


def fold_into_log(out_dir):
    """Fold a finished removal run's model (fold.py) and add its check, the largest logit difference, to its log."""
    fold = subprocess.run([sys.executable, os.path.join(REPO, 'fold.py'), f'--ckpt={out_dir}/ckpt.pt'],
                          capture_output=True, text=True, cwd=REPO)
    found = re.search(r'max \|logit difference\| (\S+) ', fold.stdout)
    if not found:
        return print(f"failed to fold {out_dir}: {fold.stderr.strip()}", flush=True)
    with open(os.path.join(out_dir, 'log.jsonl'), 'a') as f:
        f.write(json.dumps(dict(kind='fold', max_logit_diff=float(found[1]))) + '\n')


def run_stage(cfg, stage):
    """Run the stage's plan; a tuning stage plans again after each round, until the range stops widening."""
    done = set()
    while True:
        todo = [run for run in plan(cfg, stage) if run not in done]
        if not todo:
            return
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // cfg.jobs)))  # threads per run
        runs = load_runs(cfg.out_root) + load_runs(cfg.logs)
        finished, running = {os.path.basename(r['out_dir']) for r in runs}, []
        for variant, lr, seed in todo:
            done.add((variant, lr, seed))
            source = run_dir(cfg.out_root, *SOURCE, seed) if variant in FINETUNES else None  # the same seed's
            action, argv = command(cfg, variant, lr, seed, finished, source)
            out_dir = run_dir(cfg.out_root, variant, lr, seed)
            print(f"{action:6s} {out_dir}" + ('' if action == 'skip' else '  ' + ' '.join(argv[2:])), flush=True)
            if action == 'skip':
                continue
            ready = source and os.path.basename(source) in finished and os.path.exists(f'{source}/ckpt.pt')
            if source and action == 'start' and not ready:  # unfinished here, or archived without its weights
                print(f"first  {source} (trained to its end, exactly as its archived run, if any)", flush=True)
                if subprocess.run(command(cfg, *SOURCE, seed, set())[1], stdout=subprocess.DEVNULL, cwd=REPO,
                                  env=env).returncode != 0:
                    print(f"failed {source}: the fine-tunes from it wait", flush=True)
                    continue
            os.makedirs(out_dir, exist_ok=True)
            log = open(os.path.join(out_dir, 'stdout.txt'), 'a')
            running.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env), out_dir))
            while len(running) >= cfg.jobs:
                running = wait_first(running)
        while running:
            running = wait_first(running)
        for r in load_runs(cfg.out_root):  # every finished removal is folded once
            if r['variant'] in FINETUNES and FINETUNES[r['variant']].get('taper') != 'off' and 'fold' not in r['log']:
                fold_into_log(r['out_dir'])
        if stage not in TUNED:
            return


def wait_first(running):
    proc, out_dir = running[0]
    if proc.wait() != 0:
        print(f"failed {out_dir} (exit {proc.returncode}; stdout.txt says why): a rerun resumes it unless it diverged")
    return running[1:]


def main(cfg):
    for stage in (STAGES if cfg.stage == 'all' else (cfg.stage,)):
        run_stage(cfg, stage)


if __name__ == '__main__':
    run_main(main, SweepConfig)
