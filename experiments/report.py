"""Everything in the README's results comes from the runs' logs, archived in results/logs (a clone can remake it):
results/runs.csv (a row per run finished or diverged), results.md, the README's report sections, the plots (matplotlib).
$ python experiments/report.py                                   # out-sweep/*/log.jsonl -> results/, README.md
$ python experiments/report.py --bench=results/bench_cpu.json    # also bench.py's table"""
import csv
import functools
import glob
import json
import math
import os
import shutil
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
from configurator import UserError, run_main  # noqa: E402

PAIRS = (('taper_ln_follow', 'layernorm'), ('taper_ln', 'layernorm'), ('taper_rms_follow', 'rmsnorm'),
         ('taper_rms', 'rmsnorm'))  # (taper, baseline)
REMOVALS = {  # section -> (the control, the ways of removing the norms, the pairs head to head): METHOD.md §11
    'removal': ('remove_layernorm', ('remove_taper', 'remove_fakeln', 'remove_fakeln_ema', 'remove_all_taper_anchor',
                                     'remove_fakeln_all', 'remove_fakeln_aux', 'remove_fakeln_aux_ema'),
                (('remove_taper', 'remove_fakeln'), ('remove_fakeln_ema', 'remove_fakeln'),
                 ('remove_all_taper_anchor', 'remove_fakeln_all'), ('remove_all_taper_anchor', 'remove_fakeln_aux'),
                 ('remove_fakeln_aux', 'remove_fakeln_all'), ('remove_fakeln_aux_ema', 'remove_fakeln_aux'))),
    'finetune': ('finetune_layernorm', ('finetune_taper', 'finetune_fakeln', 'finetune_all_taper_anchor',
                                        'finetune_fakeln_all'),  # the first recipe: 1,000 steps, unconverged source
                 (('finetune_taper', 'finetune_fakeln'), ('finetune_all_taper_anchor', 'finetune_fakeln_all'),
                  ('finetune_taper_start200', 'finetune_taper'), ('finetune_fakeln_start200', 'finetune_fakeln')))}
VS = ('variant', 'lr', 'seeds', 'final val loss')  # vs_row's cells before the paired difference
SIZES = ('layernorm', 'taper_ln_start400', 'taper_ln')  # the size series (METHOD.md §4; the default: robust_tables)
LENGTHS = (300, 600, 1000, 2000, 4000)  # the main job run shorter and longer: <variant>-it<n> (2000: no suffix)
RATES = ((64, 8e-3), (64, 1.6e-2), (256, 1e-3), (256, 2e-3), (256, 4e-3))  # (width, lr) where old rules were tested
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


@dataclass
class ReportConfig:
    sweep_dir: str = 'out-sweep'     # the runs, one folder each; their finished logs go into <out>/logs
    out: str = 'results'             # runs.csv, results.md, the plots and the archived logs go here
    bench: str = ''                  # a file whose last line is bench.py's JSON record: adds the speed table
    readme: str = 'README.md'        # rewritten between its <!-- report:... --> markers; '' leaves it alone


def read_log(path):
    """A run's log.jsonl as {'header', 'done', 'eval': {iter: rec}, 'train': {iter: rec}}. A resumed run appends
    a header with resumed_at = k: from there on its records replace the earlier segment's."""
    run = {'header': None, 'done': None, 'eval': {}, 'train': {}}
    with open(path) as f:
        for rec in map(json.loads, f):
            if rec['kind'] == 'header':
                cut, source = rec.get('resumed_at') or 0, (run['header'] or rec).get('source')  # a resume's is None
                run.update(header=dict(rec, source=source), done=None,
                           **{k: {i: r for i, r in run[k].items() if i < cut} for k in ('eval', 'train')})
            elif rec['kind'] in ('eval', 'train'):
                run[rec['kind']][rec['iter']] = rec
            else:
                run[rec['kind']] = rec
    return run


@functools.lru_cache
def count_params(model_args):  # as train.py counts them (nanoGPT's: less the position embedding)
    from model import GPT, GPTConfig
    args = json.loads(model_args)
    args.pop('anchor_target', None)  # no parameter of its own (older logs wrote 0 for what is now None)
    return GPT(GPTConfig(**args)).get_num_params()


def load_runs(sweep_dir):
    """One row per run under sweep_dir that finished ('done' is logged) or diverged (val_loss nan), curves in 'log'."""
    rows = []
    for path in sorted(glob.glob(os.path.join(sweep_dir, '*', 'log.jsonl'))):
        run = read_log(path)
        cfg, source = run['header']['config'], run['header'].get('source')
        losses = [rec['loss'] for rec in run['train'].values()] + [e['val'] for e in run['eval'].values()]
        if run['done'] is None and all(map(math.isfinite, losses)):  # interrupted: it resumes (a diverged one would
            continue                                                 # diverge again: train.py stopped it, not you)
        last = run['train'][max(run['train'])]
        rows.append(dict(variant=os.path.basename(os.path.dirname(path)).rsplit('-lr', 1)[0],
                         **{k: cfg[k] for k in ('learning_rate', 'seed', 'n_layer', 'n_embd')},
                         params=count_params(json.dumps(run['header']['model_args'])),
                         source=f"{os.path.basename(os.path.dirname(source['ckpt']))}@{source['iter']}" if source
                         else '', val_loss=run['eval'].get(cfg['max_iters'], dict(val=math.nan))['val'],
                         best_val_loss=min(e['val'] for e in run['eval'].values() if math.isfinite(e['val'])),
                         max_iters=cfg['max_iters'],  # the calibration point as set, or as the run found it:
                         **{k: run.get('calibrate', cfg)[k] for k in ('taper_start', 'taper_end')}, s=last['s'],
                         largest_s=max(rec['s'] for rec in run['train'].values() if math.isfinite(rec['s'])),
                         largest_s_drift=max((rec['s_drift'] for rec in run['train'].values() if 's_drift' in rec),
                                             default=None),  # s over its value when c froze (train.py)
                         logit_norm=last['logit_norm'], fold_max_logit_diff=run.get('fold', {}).get('max_logit_diff'),
                         wall_s=(run['done'] or {}).get('wall_s'), commit=run['header']['commit'],
                         out_dir=os.path.dirname(path), log=run))
    return rows


def archive(sweep_dir, logs):
    """Copy the log of every finished (or diverged) run under sweep_dir to logs/<run>/log.jsonl."""
    for r in load_runs(sweep_dir):
        os.makedirs(dst := os.path.join(logs, os.path.basename(r['out_dir'])), exist_ok=True)
        shutil.copyfile(os.path.join(r['out_dir'], 'log.jsonl'), os.path.join(dst, 'log.jsonl'))


def group(runs, *keys):
    out = defaultdict(list)
    for r in runs:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def best_rates(runs):
    """{variant: the learning rate with the lowest mean final val loss over its seeds, none of which diverged}"""
    runs_at = sorted(group(runs, 'variant', 'learning_rate').items())
    means = {key: m for key, rs in runs_at if not math.isnan(m := statistics.fmean(r['val_loss'] for r in rs))}
    return {v: min((lr for w, lr in means if w == v), key=lambda lr: means[(v, lr)]) for v, _ in means}  # ties: lower


def mean_sd(values):
    sd = (statistics.stdev(values) if len(values) > 1 else 0) if all(map(math.isfinite, values)) else math.nan
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"  # nan: a run diverged


def paired(runs, a, b, lr_a, lr_b):
    """The difference a - b over the seeds both have: (n, mean, 95% half-width by Student's t, mean of b)."""
    va = {r['seed']: r['val_loss'] for r in runs if (r['variant'], r['learning_rate']) == (a, lr_a)}
    vb = {r['seed']: r['val_loss'] for r in runs if (r['variant'], r['learning_rate']) == (b, lr_b)}
    diffs = [va[s] - vb[s] for s in sorted(va.keys() & vb.keys())]
    if len(diffs) < 2 or not all(map(math.isfinite, diffs)):  # too few, or a run diverged
        return None
    half = T975.get(len(diffs) - 1, 1.96) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return len(diffs), statistics.fmean(diffs), half, statistics.fmean(vb[s] for s in va.keys() & vb.keys())


def head(*cells):  # a markdown table's header row and rule
    return ["| " + " | ".join(cells) + " |", "|---" * len(cells) + "|"]


def vs_row(runs, best, v, base, *extra):
    """| v | its best lr | seeds | final val loss | v - base paired (or 'baseline') | extra cells |"""
    rs = [r for r in runs if (r['variant'], r['learning_rate']) == (v, best[v])]
    d = None if v == base else paired(runs, v, base, best[v], best[base])  # (n, mean, 95% half-width, base's mean)
    gap = (["baseline", "", ""] if v == base else ["", "", ""] if d is None else
           [f"{d[1]:+.4f} ({d[0]} seeds)", f"[{d[1] - d[2]:+.4f}, {d[1] + d[2]:+.4f}]", f"{100 * d[1] / d[3]:+.2f}%"])
    return f"| {v} | {best[v]:g} | {len(rs)} | {mean_sd([r['val_loss'] for r in rs])} | " + " | ".join(
        gap + [cell(rs) for cell in extra]) + " |"


def lr_table(runs, variants, best, what):
    """The tuning behind a section's paired tables (results.md holds it, the README the paired tables)."""
    by, lrs = group(runs, 'variant', 'learning_rate'), sorted({r['learning_rate'] for r in runs if r['variant'] in
                                                               variants})
    lines = [f"{what}: final validation loss by learning rate (mean over seeds, nan where a seed diverged; **bold**: "
             "each variant's best):", ""]
    lines += head('variant', *(f"lr {lr:g}" for lr in lrs))
    for v in (v for v in variants if v in best):
        cells = [(f"{statistics.fmean(r['val_loss'] for r in by[(v, lr)]):.4f} ({len(by[(v, lr)])})"
                  if (v, lr) in by else "") for lr in lrs]
        lines.append(f"| {v} | " + " | ".join(f"**{c}**" if lr == best[v] else c for c, lr in zip(cells, lrs)) + " |")
    return '\n'.join(lines) + '\n'


def provenance(runs):
    devices, commits = sorted({r['log']['header']['device'] for r in runs}), sorted({r['commit'] for r in runs})
    return ["", f"{len(runs)} runs of {', '.join(sorted({str(r['max_iters']) for r in runs}))} iterations; "
                f"commit {', '.join(commits)}; {', '.join(devices)}."]


def main_job(runs):
    """The runs of the main job as config/taper.py sets it: no fine-tune, no other width, length or recipe (a fold)."""
    return [r for r in runs if not r['source'] and not any(k in r['variant'] for k in ('-8x', '-it', '_fold'))]


def tables(runs):
    """The main job's (results.md's more, the README's table): the tapered models against their baselines; more:
    the tuning, the final norm, the calibration point."""
    best = best_rates(runs := main_job(runs))
    tuning = lr_table(runs, ('layernorm', 'rmsnorm', 'taper_ln', 'taper_rms'), best, "Training while the norms taper")
    table = ["Each variant at its own best learning rate (results/results.md: every rate tried; the defaults, "
             "taper_ln_follow and taper_rms_follow, at the paper's rule's), against its baseline, paired by seed (same "
             "initial weights and batches), with a 95% confidence interval (Student's t); ± is the standard deviation "
             "over the seeds. _follow: c follows its statistics to g = 0, the gate closing from the warmup's end to "
             "half-way through the rest; taper_ln and taper_rms: the paper's rule, c frozen at 400, g = 0 at 1000:", ""]
    table += head(*VS, 'vs baseline (paired)', '95% CI', 'relative')
    # each baseline once, above its first taper (dict keys keep the first of equal rows, in order)
    shown = list(dict.fromkeys((v, b) for a, b in PAIRS for v in (b, a) if a in best and b in best))
    table += [vs_row(runs, best, v, b) for v, b in shown]
    table += provenance([r for r in runs if (r['variant'], r['learning_rate']) in {(v, best[v]) for v, _ in shown}])
    lines = []
    if 'layernorm' in best:
        lines += ["", f"The final norm and the anchor, every variant at layernorm's best rate ({best['layernorm']:g}) "
                  "and paired with it; the pre-logit scale s and mean logit norm at the last logged step:", ""]
        lines += head(*VS, 'vs layernorm (paired)', '95% CI', 'relative', 's', 'logit norm')
        lines += [vs_row(runs, best, v, 'layernorm', lambda rs: f"{statistics.fmean(r['s'] for r in rs):.2f}",
                         lambda rs: f"{statistics.fmean(r['logit_norm'] for r in rs):.1f}")
                  for v in 'layernorm taper_ln all_taper_anchor all_taper none_anchor none'.split() if v in best]
    if 'taper_ln' in best:
        points = ('taper_ln_start100', 'taper_ln_start200', 'taper_ln', 'taper_ln_start600', 'taper_ln_start_auto')
        at = {**best, **{v: best['taper_ln'] for v in points}}  # all at taper_ln's rate: a diverged run shows nan
        lines += ["", f"When to calibrate under the paper's rule (c frozen at taper_start): taper_ln at its best rate "
                  f"({best['taper_ln']:g}), calibrating at 400, against itself calibrating elsewhere (taper_end stays "
                  "at 1000 of 2000; _auto: where s levelled off, taper_end 37.5% of the rest later, the rule before "
                  "taper_ln_follow's); the largest pre-logit scale s seen shows a runaway:", ""]
        lines += head(*VS, 'vs taper_ln (paired)', '95% CI', 'relative', 'taper_start', 'largest s')
        lines += [vs_row(runs, at, v, 'taper_ln', lambda rs: '/'.join(sorted({str(r['taper_start']) for r in rs})),
                         lambda rs: f"{max(r['largest_s'] for r in rs):.1f}") for v in points
                  if any(r['variant'] == v for r in runs)]
    return tuning + '\n'.join(lines + provenance(runs)) + '\n', '\n'.join(table) + '\n'


def removal_tables(runs, section):
    """The removals of a section of REMOVALS (tuning, tables): each way against the control, then head to head."""
    control, ways, pairs = REMOVALS[section]
    runs = [r for r in runs if r['source'] and r['variant'] in {control, *ways, *(v for pair in pairs for v in pair)}]
    best, start = best_rates(runs), {r['source']: r['log']['eval'][0]['val'] for r in runs}.values()
    if control not in best:
        return '', ''
    tuning = lr_table(runs, (control,) + ways, best, f"Removing the norms of a trained model ({section})")
    moves = [r['val_loss'] / r['log']['eval'][0]['val'] - 1 for r in runs if (r['variant'], r['learning_rate']) ==
             (control, best[control])]  # how far fine-tuning alone takes each seed's model
    lines = [f"Every fine-tune starts at validation loss {statistics.fmean(start):.4f} (the mean over the seeds' "
             f"models) and runs {runs[0]['max_iters']} iterations; the control alone moves it by "
             f"{100 * statistics.fmean(moves):+.2f}% (seeds {100 * min(moves):+.2f}% to {100 * max(moves):+.2f}%). "
             f"Each way at its best rate (results/results.md: every rate tried), paired by seed with {control}: the "
             "increase in cross-entropy (a 95% interval, Student's t) and relative; the largest pre-logit scale s "
             "seen, the logit norm at the end, and the largest logit difference between a model and its fold "
             "(fold.py, float32):", ""]
    lines += head(*VS, f'vs {control}', '95% CI', 'relative', 'largest s', 'logit norm', 'fold: logit diff')
    lines += [vs_row(runs, best, v, control, lambda rs: f"{max(r['largest_s'] for r in rs):.1f}",
                     lambda rs: f"{statistics.fmean(r['logit_norm'] for r in rs):.1f}",
                     lambda rs: "" if None in [r['fold_max_logit_diff'] for r in rs] else  # not folded
                     f"{max(r['fold_max_logit_diff'] for r in rs):.2e}")
              for v in (control,) + ways if v in best]
    start200 = any('_start200' in a for a, _ in pairs)
    more = ["", f"Head to head ({section}), paired by seed"
                f"{' (a _start200 run tapers from 200 to 500, as the main job did)' if start200 else ''}:", ""]
    more += head(*VS, 'vs (paired)', '95% CI', 'relative', 'against')
    more += [vs_row(runs, best, a, b, lambda rs: b) for a, b in pairs if a in best and b in best]
    return tuning + '\n'.join(more) + '\n', '\n'.join(lines + provenance(runs)) + '\n'


def size_series(runs):  # (its runs, their best rates, the widths begun, the widths where layernorm and a taper ran)
    runs = [r for r in runs if '-8x' in r['variant']]
    best, widths = best_rates(runs), sorted({r['n_embd'] for r in runs})
    both = [w for w in widths if f'layernorm-8x{w}' in best and {f'{v}-8x{w}' for v in SIZES[1:]} & best.keys()]
    return runs, best, widths, both


def size_tables(runs):
    """The size series (tuning, table): taper_ln against layernorm at 8 layers and growing width."""
    runs, best, widths, both = size_series(runs)
    if not both:
        return '', ''
    tuning = lr_table(runs, [f'{v}-8x{w}' for w in widths for v in SIZES], best, "The size series")
    lines = ["Each at its own best rate (results/results.md: every rate tried) against layernorm of the same size, "
             "paired by seed, with a 95% interval (_start400 froze c at 400, taper_ln once s levelled off); the "
             "parameter count and the largest pre-logit scale s any of its runs reached, at any rate tried:", ""]
    lines += head(*VS, 'vs layernorm (paired)', '95% CI', 'relative cost', 'parameters', 'largest s (any rate)')
    lines += [vs_row(runs, best, f'{v}-8x{w}', f'layernorm-8x{w}', lambda rs: f"{rs[0]['params'] / 1e6:.2f}M",
                     lambda rs: f"{max(r['largest_s'] for r in runs if r['variant'] == rs[0]['variant']):.1f}")
              for w in both for v in SIZES if f'{v}-8x{w}' in best]
    return tuning, '\n'.join(lines + provenance(runs)) + '\n'


def same_seed_s(runs, v, base, lr):
    """The largest s of v's runs at lr over its same-seed layernorm run's: the worst ratio, over the seeds both have."""
    s = {(r['variant'], r['seed']): r['largest_s'] for r in runs if r['learning_rate'] == lr}
    ratios = [s[(v, seed)] / s[(base, seed)] for (w, seed) in s if w == v and (base, seed) in s]
    return f"{max(ratios):.2f}x" if ratios else ""


def robust_tables(runs):
    """The default schedule against layernorm where the old rules broke: the main job at other lengths, and other
    widths and rates; the rules it replaced as comparison rows. Each row paired by seed with layernorm there."""
    cells = [(f"{n} steps", '' if n == 2000 else f'-it{n}', 4e-3) for n in LENGTHS]
    cells += [(f"8x{w}, lr {lr:g}", f'-8x{w}', lr) for w, lr in RATES]
    lines = ["The default (taper_ln_follow: c follows its statistics to g = 0, the gate closing over half the steps "
             "after the warmup) against layernorm in the same setting, paired by seed with a 95% interval; beside it "
             "the rules it replaced where they ran (taper_ln, _start400: c frozen at 400; taper_ln-8x*, _auto: frozen "
             "once s levelled off) and _follow400 (c following, the gate closing from 400 to 1000). The largest s "
             "of a run over its same-seed layernorm run's (the worst seed), and the largest s_drift (s over its value "
             "when c froze; train.py flags 4x as a runaway):", ""]
    lines += head('setting', *VS, 'vs layernorm (paired)', '95% CI', 'relative', 'largest s vs layernorm', 's_drift')
    shown = []
    for setting, suffix, lr in cells:
        base = 'layernorm' + suffix
        tapers = [v + suffix for v in ('taper_ln_follow', 'taper_ln_follow400', 'taper_ln', 'taper_ln_start_auto',
                                       'taper_ln_start400')]
        here = [v for v in [base] + tapers if any((r['variant'], r['learning_rate']) == (v, lr) for r in runs)]
        if base not in here or len(here) < 2:
            continue
        shown += [r for r in runs if r['variant'] in here and r['learning_rate'] == lr]
        for v in here:
            drift = [r['largest_s_drift'] for r in runs if (r['variant'], r['learning_rate']) == (v, lr)]
            lines.append(f"| {setting} " + vs_row(runs, {v: lr, base: lr}, v, base,
                                                  lambda rs: "" if v == base else same_seed_s(runs, v, base, lr),
                                                  lambda rs: "" if None in drift else f"{max(drift):.2f}"))
    return ('', '\n'.join(lines + provenance(shown)) + '\n') if shown else ('', '')


FOLDS = {'taper_ln_follow_fold': 'taper_ln_follow', 'taper_rms_follow_fold': 'taper_rms_follow'}  # -> explicit run


def fold_table(runs):
    """fold_when_gone against the run it continues, paired by seed: the cost of training norm-free from the first step
    at g = 0 (METHOD.md §7), the default's at its rate and either side of it, and from RMSNorm (an exact fold)."""
    rows = sorted({(r['variant'], r['learning_rate']) for r in runs if r['variant'] in FOLDS})
    if not rows:
        return '', ''
    lines = ["--fold_when_gone=True: the default run (taper_ln_follow, lr 0.004: the results' first table; "
             "taper_rms_follow: the same from RMSNorm) folded at g = 0 and trained on norm-free from there, each step "
             "in the coordinates of the weights before the fold (METHOD.md §7); paired by seed with the explicit run "
             "at 0.004, with a 95% interval:", ""]
    lines += head(*VS, 'vs explicit (paired)', '95% CI', 'relative')
    lines += [vs_row(runs, {FOLDS[v]: 4e-3, v: lr}, v, FOLDS[v]) for v, lr in rows]
    explicit = {(base, 4e-3) for base in FOLDS.values()}  # the runs the folds are paired with
    shown = [r for r in runs if r['variant'] in FOLDS or (r['variant'], r['learning_rate']) in explicit]
    return '', '\n'.join(lines + provenance(shown)) + '\n'


def bench_table(record):
    """bench.py's JSON record as a table of tokens/s ratios per cell (the paper's RMSNorm rows first, then LayerNorm's,
    then the control), with the device, shape and estimator, the control's spread and the training step's cost."""
    ratios = ('folded_rms/rmsnorm', 'taper_rms/rmsnorm', 'folded_ln/layernorm', 'taper_ln/layernorm', 'folded_rms/none')
    cells = defaultdict(dict)
    for r in record['ratios']:
        cells[(r['mode'], 'compiled' if r['compiled'] else 'eager', r['B'], r['T'])][r['ratio']] = r['value']
    rows = {key: v for key, v in cells.items() if key[0] != 'train'}
    lines = head('mode', '', 'B', 'T', *ratios) + ["| " + " | ".join(map(str, key)) + " | " + " | ".join(
        f"{v[k]:.3f}" for k in ratios) + " |" for key, v in rows.items()]
    off = [f"{m} {how} B={B} T={T} ({v['folded_rms/none']:.3f})" for (m, how, B, T), v in rows.items()
           if abs(v['folded_rms/none'] - 1) > 0.01]
    c = record['config']
    lines += ["", f"{record['device']}, torch {record['torch']}, {record['dtype']}, commit {record['commit']}; "
              f"{c['n_layer']} layers x {c['n_embd']} wide, vocabulary {c['vocab_size']}, "
              f"{record['params']['rmsnorm'] / 1e6:.1f}M parameters, random weights: the minimum of {c['repeats']} "
              f"interleaved repeats of {c['iters']} iteration(s) per variant and cell. The control, folded_rms/none "
              "(the same work but for ln_f), is " + (f"more than 1% from 1 in {', '.join(off)}." if off else
                                                     "within 1% of 1 in every cell.")]
    for (mode, how, _, _), t in cells.items():
        if mode == 'train':
            lines += ["", f"Training cost ({how}): a step of TaperNorm at g = 0 takes "
                      f"{1 / t['taper_rms/rmsnorm']:.3f}x RMSNorm's time ({1 / t['taper_ln/layernorm']:.3f}x "
                      f"LayerNorm's), while tapering (g = 0.5, both branches) {1 / t['blend_rms/rmsnorm']:.3f}x "
                      f"({1 / t['blend_ln/layernorm']:.3f}x), and folded (fold_when_gone) "
                      f"{1 / t['folded_rms/rmsnorm']:.3f}x ({1 / t['folded_ln/layernorm']:.3f}x)."]
    return '\n'.join(lines) + '\n'


def mean_curve(rs, kind, key):
    iters = sorted(set.intersection(*(set(r['log'][kind]) for r in rs)))
    return iters, [statistics.fmean(r['log'][kind][i][key] for r in rs) for i in iters]


def save(fig, legend_ax, path):
    if legend_ax.get_legend_handles_labels()[0]:  # (a plot of no labelled line has no legend)
        legend_ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches='tight')


def plot(runs, out, plt):
    """val_loss.png: the main variants at their best rates; scale.png: s and logit norm of the ablations;
    size_cost.png: the relative cost of tapering against the parameter count."""
    main = main_job(runs)
    best, by = best_rates(main), group(main, 'variant', 'learning_rate')
    fig, ax = plt.subplots(figsize=(8, 5))
    for v in (v for v in ('layernorm', 'rmsnorm', 'taper_ln', 'taper_rms') if v in best):
        rs = by[(v, best[v])]
        ax.plot(*mean_curve(rs, 'eval', 'val'), marker='.', label=f"{v}, lr {best[v]:g} ({len(rs)} seeds)")
    ax.set(xlabel='iteration', ylabel='validation loss', ylim=(1.6, 2.6), title='Shakespeare characters')
    save(fig, ax, os.path.join(out, 'val_loss.png'))
    if 'layernorm' in best:  # the final-norm ablations ran at layernorm's best rate
        lr, (fig, axes) = best['layernorm'], plt.subplots(1, 2, figsize=(11, 4.5))
        for v in ('layernorm', 'taper_ln', 'all_taper_anchor', 'all_taper', 'none_anchor', 'none'):
            if (v, lr) in by:
                for ax, key in zip(axes, ('s', 'logit_norm')):
                    ax.plot(*mean_curve(by[(v, lr)], 'train', key), label=v)
        axes[0].set(xlabel='iteration', ylabel='pre-logit scale s', yscale='log')
        axes[1].set(xlabel='iteration', ylabel='mean logit norm')
        fig.suptitle(f'The final norm anchors the pre-logit scale (lr {lr:g})')
        save(fig, axes[1], os.path.join(out, 'scale.png'))
    (size, best, _, both), fig = size_series(runs), None
    for v in SIZES[1:]:  # rel: (parameters, relative cost %, its 95% half-width) of v against layernorm, per width
        rel = [(next(r['params'] for r in size if r['n_embd'] == w), 100 * d[1] / d[3], 100 * d[2] / d[3]) for w in both
               if (d := paired(size, (a := f'{v}-8x{w}'), (b := f'layernorm-8x{w}'), best.get(a), best[b]))]
        if rel:
            fig, ax = (fig, ax) if fig else plt.subplots(figsize=(7, 4.5))
            ax.errorbar(*zip(*rel), marker='o', capsize=4, label=f'{v} vs layernorm, 8 layers (95% interval)')
    if fig:
        ax.axhspan(0.7, 1.8, color='tab:gray', alpha=0.2, label="the paper's 0.7-1.8% (TinyStories, 1M-30M)")
        ax.axhline(0, color='k', lw=0.8)
        ax.set(xscale='log', xlabel='parameters', ylabel='relative cost in final val loss (%)',
               title='The cost of tapering as the model grows (Shakespeare characters)')
        save(fig, ax, os.path.join(out, 'size_cost.png'))
    plt.close('all')


def write_between_markers(path, name, text):
    """Replace what lies between <!-- report:name --> and <!-- /report:name --> in path with text."""
    start, end = f"<!-- report:{name} -->\n", f"<!-- /report:{name} -->"
    with open(path) as f:
        before, found, rest = f.read().partition(start)
    if not found or end not in rest:
        raise UserError(f"{path} has no {start.strip()} ... {end} markers")
    with open(path, 'w') as f:
        f.write(before + start + text + end + rest.split(end, 1)[1])


def main(cfg):
    if cfg.bench:  # the speed table stands on its own: it needs no sweep
        if not os.path.isfile(cfg.bench):
            raise UserError(f"--bench={cfg.bench}: no such file (give bench.py's output, e.g. results/bench_cpu.json)")
        with open(cfg.bench) as f:
            table = bench_table(json.loads(f.read().strip().splitlines()[-1]))
        if cfg.readme:
            write_between_markers(cfg.readme, 'bench', table)
        print(table)
    archive(cfg.sweep_dir, logs := os.path.join(cfg.out, 'logs'))
    runs = load_runs(logs)
    if not runs and cfg.bench:
        return print(f"no finished runs under {cfg.sweep_dir}/ or {logs}/: wrote the speed table only")
    if not runs:
        raise UserError(f"no finished runs under {cfg.sweep_dir}/ or {logs}/ (run python experiments/sweep.py first)")
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    with open(os.path.join(cfg.out, 'runs.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, [k for k in runs[0] if k not in ('out_dir', 'log')], extrasaction='ignore')
        writer.writeheader()
        writer.writerows(sorted(runs, key=lambda r: (r['variant'], r['learning_rate'], r['seed'])))
    retired = removal_tables(runs, 'finetune')  # the first removal recipe: results.md's alone, none in the README
    sections = {'results': tables(runs), 'robust': robust_tables(runs), 'removal': removal_tables(runs, 'removal'),
                'finetune': ('\n'.join(part for part in retired if part), ''), 'size': size_tables(runs),
                'fold': fold_table(runs)}
    with open(os.path.join(cfg.out, 'results.md'), 'w') as f:  # every table; the README has each section's last
        f.write('\n'.join(part for parts in sections.values() for part in parts if part))
    plot(runs, cfg.out, plt)
    for name, (tuning, text) in sections.items():
        if cfg.readme and text:
            write_between_markers(cfg.readme, name, text)
        print(tuning + '\n' + text)
    print(f"wrote {cfg.out}/runs.csv, results.md, the plots{' and ' + cfg.readme if cfg.readme else ''}")


if __name__ == '__main__':
    run_main(main, ReportConfig)
