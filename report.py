"""
Plots and a Markdown table from the sweep's logs (and bench.py's JSON line): everything in the README's results
comes out of here, nothing is typed by hand. Needs matplotlib (`pip install matplotlib`).
$ python report.py                                    # reads out-sweep/*/log.jsonl, writes results/
$ python report.py --bench=results/bench_cpu.json     # adds the speed-up bar chart
"""
import glob
import json
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass

from common import run_main

FINAL_NORM_ABLATIONS = ('layernorm', 'taper_ln', 'all_taper_anchor', 'none_anchor', 'none')


@dataclass
class ReportConfig:
    sweep_dir: str = 'out-sweep'
    out: str = 'results'
    bench: str = ''          # a file holding bench.py's final JSON line (optional)


def read_log(path):
    """{'eval': {iter: rec}, 'train': {iter: rec}}; a resumed run logs some iterations twice: the last one wins."""
    runs = {'eval': {}, 'train': {}}
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if rec['kind'] in runs:
                runs[rec['kind']][rec['iter']] = rec
            else:
                runs[rec['kind']] = rec  # the header, and 'done' with the run's wall time
    return runs


def run_finished(run):
    """Whether a read_log() run holds the evaluation at max_iters of its latest configuration."""
    return run['header']['config']['max_iters'] in run['eval']


def load_sweep(sweep_dir):
    """{variant: [run logs, one per seed]} for the finished runs in folders named <variant>-s<seed>."""
    variants = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(sweep_dir, '*', 'log.jsonl'))):
        variant = os.path.basename(os.path.dirname(path)).rsplit('-s', 1)[0]
        run = read_log(path)
        if run_finished(run):
            variants[variant].append(run)
    return dict(variants)


def mean_curve(runs, kind, key):
    """(iters, means) over the iterations every run has."""
    iters = sorted(set.intersection(*(set(r[kind]) for r in runs)))
    return iters, [statistics.fmean(r[kind][i][key] for r in runs) for i in iters]


def baseline_of(variant):
    return 'rmsnorm' if 'rms' in variant else 'layernorm'


def summary_table(variants):
    """Markdown: final validation loss (mean +- std over seeds), gap to the normalized baseline, final s, logits."""
    finals = {v: [r['eval'][max(r['eval'])]['val'] for r in runs] for v, runs in variants.items()}
    rows = ['| variant | seeds | final val loss | vs baseline | pre-logit s | logit norm |', '|---' * 6 + '|']
    for v, runs in variants.items():
        mean = statistics.fmean(finals[v])
        std = statistics.stdev(finals[v]) if len(finals[v]) > 1 else 0.0
        base = baseline_of(v)
        gap = (f"{100 * (mean / statistics.fmean(finals[base]) - 1):+.2f}% vs {base}"
               if base in finals and base != v else 'baseline')
        last = [r['train'][max(r['train'])] for r in runs]
        s, logit = (statistics.fmean(x[k] for x in last) for k in ('s', 'logit_norm'))
        rows.append(f"| {v} | {len(runs)} | {mean:.4f} +- {std:.4f} | {gap} | {s:.2f} | {logit:.1f} |")
    return '\n'.join(rows) + '\n'


def timing_table(variants):
    """Markdown: mean ms/iter before, during and after the taper (the schedule's iterations, also for baselines)."""
    rows = ['| variant | seeds | ms/iter, g = 1 | ms/iter, tapering | ms/iter, g = 0 | device |', '|---' * 6 + '|']
    for v, runs in variants.items():
        cfg = runs[0]['header']['config']
        phases = [lambda i: i < cfg['taper_start'], lambda i: cfg['taper_start'] <= i < cfg['taper_end'],
                  lambda i: i >= cfg['taper_end']]
        ms = [statistics.fmean(r['train'][i]['ms'] for r in runs for i in r['train'] if inside(i))
              for inside in phases]
        rows.append(f"| {v} | {len(runs)} | {ms[0]:.1f} | {ms[1]:.1f} | {ms[2]:.1f} | {runs[0]['header']['device']} |")
    return '\n'.join(rows) + '\n'


def plot_val_loss(variants, path, plt):
    fig, ax = plt.subplots(figsize=(8, 5))
    gate_curve = None
    for v, runs in variants.items():
        iters, vals = mean_curve(runs, 'eval', 'val')
        ax.plot(iters, vals, marker='.', label=f"{v} ({len(runs)} seeds)")
        if gate_curve is None and 'taper' in v:
            gate_curve = mean_curve(runs, 'eval', 'gate')
    finals = [vals[-1] for line in ax.get_lines() for vals in [line.get_ydata()]]
    ax.set(xlabel='iteration', ylabel='validation loss (cross-entropy)', title='Shakespeare characters',
           ylim=(min(finals) - 0.1, max(finals) + 0.6))  # the first evals (loss ~4) would flatten the rest
    ax.legend(loc='upper right', fontsize=8)
    if gate_curve:
        ax2 = ax.twinx()
        ax2.plot(*gate_curve, color='gray', linestyle='--')
        ax2.set(ylabel='gate g (dashed)', ylim=(-0.05, 1.05))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_scale(variants, path, plt):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for v in FINAL_NORM_ABLATIONS:
        if v in variants:
            for ax, key in zip(axes, ('s', 'logit_norm')):
                ax.plot(*mean_curve(variants[v], 'train', key), label=v)
    axes[0].set(xlabel='iteration', ylabel='mean pre-logit scale s', yscale='log')
    axes[1].set(xlabel='iteration', ylabel='mean logit norm')
    axes[1].legend(fontsize=8)
    fig.suptitle('The final norm anchors the pre-logit scale')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_speedups(bench, path, plt):
    """bench.py's ratios of tokens/s (eager), one bar per cell and ratio, 1.0 = as fast as the baseline."""
    shown = ('folded/layernorm', 'taper/layernorm', 'folded/rmsnorm', 'folded/none')
    rows = [r for r in bench['ratios'] if not r['compiled'] and r['ratio'] in shown]
    cells = sorted({(r['mode'], r['B'], r['T']) for r in rows})
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(shown)
    for k, name in enumerate(shown):
        value = {(r['mode'], r['B'], r['T']): r['value'] for r in rows if r['ratio'] == name}
        ax.bar([i + k * width for i in range(len(cells))], [value.get(c, 0) for c in cells], width, label=name)
    ax.axhline(1.0, color='black', linewidth=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cells))], [f"{m}\nB={b} T={t}" for m, b, t in cells],
                  fontsize=8)
    ax.set(ylabel='ratio of tokens/s', ylim=(0.8, 1.3), title=f"bench.py, eager, {bench['device']}, "
           f"torch {bench['torch']}, {bench['config']['repeats']} repeats (paper, H100: folded/RMS 1.13-1.22x)")
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(cfg):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    variants = load_sweep(cfg.sweep_dir)
    if not variants:
        raise SystemExit(f"error: no runs under {cfg.sweep_dir}/ (run python sweep.py first)")
    os.makedirs(cfg.out, exist_ok=True)
    table = summary_table(variants) + '\n' + timing_table(variants)
    plot_val_loss(variants, os.path.join(cfg.out, 'val_loss.png'), plt)
    plot_scale(variants, os.path.join(cfg.out, 'scale.png'), plt)
    with open(os.path.join(cfg.out, 'results.md'), 'w') as f:
        f.write(table)
    print(table)
    print(f"wrote {cfg.out}/results.md, val_loss.png, scale.png")
    if cfg.bench:
        with open(cfg.bench) as f:
            plot_speedups(json.loads(f.read().strip().splitlines()[-1]), os.path.join(cfg.out, 'speedup.png'), plt)
        print(f"wrote {cfg.out}/speedup.png")


if __name__ == '__main__':
    run_main(main, ReportConfig)
