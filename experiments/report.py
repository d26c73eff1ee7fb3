"""
Everything in the README's results comes out of here, from the runs' own logs: results/runs.csv (one row per
finished run), the tables (results/results.md, also written into README.md between its report markers) and the
plots. Needs matplotlib (`pip install matplotlib`).
$ python experiments/report.py                                   # out-sweep/*/log.jsonl -> results/, README.md
$ python experiments/report.py --bench=results/bench_cpu.json    # also bench.py's table
"""
import csv
import glob
import json
import os
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
from configurator import UserError, run_main  # noqa: E402

COLUMNS = ('variant', 'learning_rate', 'seed', 'val_loss', 'best_val_loss', 'max_iters', 'taper_start', 'taper_end',
           's', 'logit_norm', 'wall_s', 'commit')
PAIRS = (('taper_ln', 'layernorm'), ('taper_rms', 'rmsnorm'))
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


@dataclass
class ReportConfig:
    sweep_dir: str = 'out-sweep'     # the runs, one folder each
    out: str = 'results'             # runs.csv, results.md and the plots go here
    bench: str = ''                  # a file whose last line is bench.py's JSON record: adds the speed table
    readme: str = 'README.md'        # rewritten between its <!-- report:... --> markers; '' leaves it alone


def read_log(path):
    """A run's log.jsonl as {'header', 'done', 'eval': {iter: rec}, 'train': {iter: rec}}. A resumed run appends
    a header with resumed_at = k: from there on its records replace the earlier segment's."""
    run = {'header': None, 'done': None, 'eval': {}, 'train': {}}
    with open(path) as f:
        for rec in map(json.loads, f):
            if rec['kind'] == 'header':
                cut = rec.get('resumed_at') or 0
                run.update(header=rec, done=None, eval={i: r for i, r in run['eval'].items() if i < cut},
                           train={i: r for i, r in run['train'].items() if i < cut})
            elif rec['kind'] in ('eval', 'train'):
                run[rec['kind']][rec['iter']] = rec
            else:
                run[rec['kind']] = rec
    return run


def load_runs(sweep_dir):
    """One row per finished run under sweep_dir (its 'done' record is logged), with its curves under 'log'."""
    rows = []
    for path in sorted(glob.glob(os.path.join(sweep_dir, '*', 'log.jsonl'))):
        run = read_log(path)
        cfg = run['header']['config']
        if run['done'] is None:  # stopped early: interrupted, or diverged (its last evaluation may be logged)
            continue
        last = run['train'][max(run['train'])]
        rows.append(dict(variant=os.path.basename(os.path.dirname(path)).rsplit('-lr', 1)[0],
                         learning_rate=cfg['learning_rate'], seed=cfg['seed'],
                         val_loss=run['eval'][cfg['max_iters']]['val'],
                         best_val_loss=min(e['val'] for e in run['eval'].values()), max_iters=cfg['max_iters'],
                         taper_start=cfg['taper_start'], taper_end=cfg['taper_end'], s=last['s'],
                         logit_norm=last['logit_norm'], wall_s=(run['done'] or {}).get('wall_s'),
                         commit=run['header']['commit'], out_dir=os.path.dirname(path), log=run))
    return rows


def group(runs, *keys):
    out = defaultdict(list)
    for r in runs:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def best_rates(runs):
    """{variant: the learning rate with the lowest mean final val loss over its seeds}"""
    runs_at = group(runs, 'variant', 'learning_rate')
    means = {key: statistics.fmean(r['val_loss'] for r in rs) for key, rs in runs_at.items()}
    best = {}
    for (variant, lr), mean in sorted(means.items()):
        if variant not in best or mean < means[(variant, best[variant])]:
            best[variant] = lr
    return best


def mean_sd(values):
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"


def paired(runs, a, b, lr_a, lr_b):
    """The difference a - b over the seeds both have: (n, mean, 95% half-width by Student's t, mean of b)."""
    va = {r['seed']: r['val_loss'] for r in runs if (r['variant'], r['learning_rate']) == (a, lr_a)}
    vb = {r['seed']: r['val_loss'] for r in runs if (r['variant'], r['learning_rate']) == (b, lr_b)}
    diffs = [va[s] - vb[s] for s in sorted(va.keys() & vb.keys())]
    if len(diffs) < 2:
        return None
    half = T975.get(len(diffs) - 1, 1.96) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return len(diffs), statistics.fmean(diffs), half, statistics.fmean(vb[s] for s in va.keys() & vb.keys())


def tables(runs):
    best = best_rates(runs)
    lrs = sorted({r['learning_rate'] for r in runs if r['variant'] in best})
    by = group(runs, 'variant', 'learning_rate')
    lines = ["Final validation loss by learning rate (mean over seeds; **bold**: each variant's best):", "",
             "| variant | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---" * (len(lrs) + 1) + "|"]
    for v in ('layernorm', 'rmsnorm', 'taper_ln', 'taper_rms'):
        cells = [(f"{statistics.fmean(r['val_loss'] for r in by[(v, lr)]):.4f} ({len(by[(v, lr)])})"
                  if (v, lr) in by else "") for lr in lrs]
        cells = [f"**{cell}**" if lr == best.get(v) else cell for cell, lr in zip(cells, lrs)]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", "Each variant at its own best learning rate; the tapered model against its baseline, paired by "
              "seed (same initial weights and batches), with a 95% confidence interval (Student's t):", "",
              "| variant | lr | seeds | final val loss | vs baseline (paired) | 95% CI | relative |", "|---" * 7 + "|"]
    for a, b in PAIRS:
        for v in (b, a):
            if v not in best:
                continue
            rs = by[(v, best[v])]
            diff = paired(runs, a, b, best[a], best[b]) if v == a and b in best else None
            gap = ("baseline", "", "") if diff is None else (
                f"{diff[1]:+.4f} ({diff[0]} seeds)", f"[{diff[1] - diff[2]:+.4f}, {diff[1] + diff[2]:+.4f}]",
                f"{100 * diff[1] / diff[3]:+.2f}%")
            lines.append(f"| {v} | {best[v]:g} | {len(rs)} | {mean_sd([r['val_loss'] for r in rs])} | " +
                         " | ".join(gap) + " |")
    if 'layernorm' in best:
        lr = best['layernorm']
        lines += ["", f"The final norm and the anchor, every variant at layernorm's best learning rate ({lr:g}): final "
                  "validation loss, and the pre-logit scale s and mean logit norm at the last logged step:", "",
                  "| variant | seeds | final val loss | s | logit norm |", "|---" * 5 + "|"]
        for v in ('layernorm', 'taper_ln', 'all_taper_anchor', 'all_taper', 'none_anchor', 'none'):
            rs = by.get((v, lr))
            if rs:
                lines.append(f"| {v} | {len(rs)} | {mean_sd([r['val_loss'] for r in rs])} | "
                             f"{statistics.fmean(r['s'] for r in rs):.2f} | "
                             f"{statistics.fmean(r['logit_norm'] for r in rs):.1f} |")
    if 'taper_ln' in best:
        lr = best['taper_ln']
        lines += ["", f"When to calibrate: taper_ln at its best learning rate ({lr:g}), taper_start moved (taper_end "
                  "stays at 1000 of 2000); the largest pre-logit scale s seen shows a run that ran away:", "",
                  "| taper_start | seeds | final val loss | largest s |", "|---" * 4 + "|"]
        for (v, lr_), rs in sorted(by.items(), key=lambda kv: kv[1][0]['taper_start']):
            if lr_ == lr and v.startswith('taper_ln') and rs[0]['taper_end'] == 1000:
                largest = max(rec['s'] for r in rs for rec in r['log']['train'].values())
                lines.append(f"| {rs[0]['taper_start']}{' (default)' if v == 'taper_ln' else ''} | {len(rs)} | "
                             f"{mean_sd([r['val_loss'] for r in rs])} | {largest:.1f} |")
    devices = sorted({r['log']['header']['device'] for r in runs})
    commits = sorted({r['commit'] for r in runs})
    iters = sorted({r['max_iters'] for r in runs})
    lines += ["", f"{len(runs)} runs of {', '.join(map(str, iters))} iterations; commit {', '.join(commits)}; "
              f"{', '.join(devices)}."]
    return '\n'.join(lines) + '\n'


def bench_table(record):
    """bench.py's JSON record as one table: tokens/s ratios per cell (eager), with the device and estimator."""
    ratios = ('folded/layernorm', 'folded/rmsnorm', 'folded/none', 'taper/layernorm', 'blend/layernorm')
    cells = defaultdict(dict)
    for r in record['ratios']:
        if not r['compiled']:
            cells[(r['mode'], r['B'], r['T'])][r['ratio']] = r['value']
    lines = ["| mode | B | T | " + " | ".join(ratios) + " |", "|---" * (3 + len(ratios)) + "|"]
    for (mode, B, T), values in cells.items():
        lines.append(f"| {mode} | {B} | {T} | " + " | ".join(f"{values[k]:.3f}" if k in values else "" for k in ratios)
                     + " |")
    c = record['config']
    lines += ["", f"{record['device']}, torch {record['torch']}, {record['dtype']}, eager, commit {record['commit']}: "
              f"the minimum of {c['repeats']} interleaved repeats of {c['iters']} iteration(s) per variant and cell."]
    train = next(values for (mode, _, _), values in cells.items() if mode == 'train')
    lines += ["", f"Training cost: one step of TaperNorm at g = 0 takes {1 / train['taper/layernorm']:.3f}x "
              f"LayerNorm's time, and {1 / train['blend/layernorm']:.3f}x while tapering (g = 0.5, both branches)."]
    return '\n'.join(lines) + '\n'


def plot(runs, out, plt):
    """val_loss.png: the main variants at their best rates; scale.png: s and logit norm of the ablations."""
    best = best_rates(runs)
    by = group(runs, 'variant', 'learning_rate')

    def mean_curve(rs, kind, key):
        iters = sorted(set.intersection(*(set(r['log'][kind]) for r in rs)))
        return iters, [statistics.fmean(r['log'][kind][i][key] for r in rs) for i in iters]
    fig, ax = plt.subplots(figsize=(8, 5))
    for v in ('layernorm', 'rmsnorm', 'taper_ln', 'taper_rms'):
        if v in best:
            rs = by[(v, best[v])]
            ax.plot(*mean_curve(rs, 'eval', 'val'), marker='.', label=f"{v}, lr {best[v]:g} ({len(rs)} seeds)")
    ax.set(xlabel='iteration', ylabel='validation loss', ylim=(1.6, 2.6), title='Shakespeare characters')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'val_loss.png'), dpi=120)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    lr = best.get('layernorm')
    for v in ('layernorm', 'taper_ln', 'all_taper_anchor', 'all_taper', 'none_anchor', 'none'):
        if (v, lr) in by:
            for ax, key in zip(axes, ('s', 'logit_norm')):
                ax.plot(*mean_curve(by[(v, lr)], 'train', key), label=v)
    axes[0].set(xlabel='iteration', ylabel='pre-logit scale s', yscale='log')
    axes[1].set(xlabel='iteration', ylabel='mean logit norm')
    axes[1].legend(fontsize=8)
    fig.suptitle(f'The final norm anchors the pre-logit scale (lr {lr:g})')
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'scale.png'), dpi=120)
    plt.close('all')


def write_between_markers(path, name, text):
    """Replace what lies between <!-- report:name --> and <!-- /report:name --> in path with text."""
    with open(path) as f:
        doc = f.read()
    start, end = f"<!-- report:{name} -->\n", f"<!-- /report:{name} -->"
    if start not in doc or end not in doc:
        raise UserError(f"{path} has no {start.strip()} ... {end} markers")
    head, rest = doc.split(start)
    with open(path, 'w') as f:
        f.write(head + start + text + end + rest.split(end, 1)[1])


def main(cfg):
    if cfg.bench:  # the speed table stands on its own: it needs no sweep
        if not os.path.isfile(cfg.bench):
            raise UserError(f"--bench={cfg.bench}: no such file (give bench.py's output, e.g. results/bench_cpu.json)")
        with open(cfg.bench) as f:
            table = bench_table(json.loads(f.read().strip().splitlines()[-1]))
        if cfg.readme:
            write_between_markers(cfg.readme, 'bench', table)
        print(table)
    runs = load_runs(cfg.sweep_dir)
    if not runs and cfg.bench:
        return print(f"no finished runs under {cfg.sweep_dir}/: wrote the speed table only")
    if not runs:
        raise UserError(f"no finished runs under {cfg.sweep_dir}/ (run python experiments/sweep.py first)")
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    os.makedirs(cfg.out, exist_ok=True)
    with open(os.path.join(cfg.out, 'runs.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(sorted(runs, key=lambda r: (r['variant'], r['learning_rate'], r['seed'])))
    text = tables(runs)
    with open(os.path.join(cfg.out, 'results.md'), 'w') as f:
        f.write(text)
    plot(runs, cfg.out, plt)
    if cfg.readme:
        write_between_markers(cfg.readme, 'results', text)
    print(text)
    print(f"wrote {cfg.out}/runs.csv, results.md, val_loss.png, scale.png{' and ' + cfg.readme if cfg.readme else ''}")


if __name__ == '__main__':
    run_main(main, ReportConfig)
