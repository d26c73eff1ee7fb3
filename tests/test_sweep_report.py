"""experiments/: the sweep skips finished runs and resumes interrupted ones; the report reads every log (resumed ones
too), picks each variant's best learning rate, pairs seeds, and writes runs.csv, the tables and the README."""
import csv
import json
import math
import os
import re
import statistics

import pytest
from conftest import stop_training_at

import report
import sweep
import train
from configurator import UserError, parse_config

TINY = ("--max_iters=30 --lr_decay_iters=30 --warmup_iters=2 --eval_interval=10 --eval_iters=2 --log_interval=5 "
        "--n_layer=1 --n_head=2 --n_embd=16 --block_size=16 --batch_size=4 --taper_start=6 --taper_end=12")  # inside


def write_log(out_dir, lr, seed, final, segments=((None, 0, None),), max_iters=20, s=1.0, n_embd=8, source=None):
    """A log.jsonl as train.py writes it: one segment per (resumed_at, value offset, last iteration or None for
    max_iters), evals every 10 iterations, a 'done' record if the last segment finished; a fine-tune's source in
    its first header only."""
    os.makedirs(out_dir, exist_ok=True)
    config = dict(max_iters=max_iters, learning_rate=lr, seed=seed, taper_start=4, taper_end=10, n_layer=1,
                  n_embd=n_embd)
    model_args = dict(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=n_embd)
    with open(os.path.join(out_dir, 'log.jsonl'), 'w') as f:
        for resumed_at, offset, stop in segments:
            f.write(json.dumps(dict(kind='header', resumed_at=resumed_at, config=config, commit='abc', device='cpu',
                                    model_args=model_args, source=None if resumed_at else source)) + '\n')
            for it in range(resumed_at or 0, (max_iters if stop is None else stop) + 1):
                if it % 10 == 0:
                    val = final if it == max_iters else 4.0 - it / 10 + offset
                    f.write(json.dumps(dict(kind='eval', iter=it, val=val, train=val, gate=1.0)) + '\n')
                if it < max_iters:
                    rec = dict(kind='train', iter=it, s=s + offset, loss=2.0, logit_norm=10.0, ms=1.0)
                    f.write(json.dumps(rec) + '\n')
        if segments[-1][2] is None:
            f.write(json.dumps(dict(kind='done', iter=max_iters, wall_s=12.5)) + '\n')


def test_a_resumed_log_is_read_with_the_later_segment_winning(tmp_path):
    # a first segment that got to iteration 15 (offset 100 marks its values), resumed from the checkpoint at 10
    write_log(tmp_path / 'layernorm-lr0.001-s1', 1e-3, 1, 2.0, segments=((None, 100, 15), (10, 0, None)))
    run = report.read_log(tmp_path / 'layernorm-lr0.001-s1' / 'log.jsonl')
    assert run['header']['resumed_at'] == 10 and run['done']['wall_s'] == 12.5
    assert sorted(run['train']) == list(range(20)) and sorted(run['eval']) == [0, 10, 20]
    assert [run['train'][i]['s'] for i in (9, 10, 19)] == [101.0, 1.0, 1.0]   # before the resume: first segment
    [row] = report.load_runs(tmp_path)
    assert (row['variant'], row['learning_rate'], row['seed'], row['val_loss'], row['s']) == ('layernorm', 1e-3, 1,
                                                                                             2.0, 1.0)
    # a first segment that had finished (its eval at 20 logged) but whose checkpoint was at 10; the resumed run
    # died at 15: the old eval at 20 is not this run's, so the run is unfinished
    write_log(tmp_path / 'rmsnorm-lr0.001-s1', 1e-3, 1, 2.0, segments=((None, 100, 20), (10, 0, 15)))
    assert 20 not in report.read_log(tmp_path / 'rmsnorm-lr0.001-s1' / 'log.jsonl')['eval']
    assert [r['variant'] for r in report.load_runs(tmp_path)] == ['layernorm']
    # a resumed fine-tune stays a fine-tune of its source
    write_log(tmp_path / 'finetune_taper-lr0.001-s1', 1e-3, 1, 2.0, segments=((None, 100, 15), (10, 0, None)),
              source=dict(ckpt='/runs/layernorm-lr0.004-s1/ckpt.pt', iter=2000))
    assert {r['variant']: r['source'] for r in report.load_runs(tmp_path)} == {
        'finetune_taper': 'layernorm-lr0.004-s1@2000', 'layernorm': ''}
    os.remove(tmp_path / 'finetune_taper-lr0.001-s1' / 'log.jsonl')
    # a run that diverged at its final evaluation: train.py logs that evaluation, then stops without 'done'. It
    # is a result (val_loss nan), not a run to resume: it would diverge again
    write_log(tmp_path / 'taper_ln-lr0.001-s1', 1e-3, 1, float('nan'), segments=((None, 0, 20),))
    assert 20 in report.read_log(tmp_path / 'taper_ln-lr0.001-s1' / 'log.jsonl')['eval']
    rows = {r['variant']: r for r in report.load_runs(tmp_path)}
    assert sorted(rows) == ['layernorm', 'taper_ln'] and math.isnan(rows['taper_ln']['val_loss'])
    assert rows['taper_ln']['best_val_loss'] == 3.0 and rows['taper_ln']['wall_s'] is None   # evals 4.0, 3.0, nan
    # one that diverged between evaluations: its last training record is not finite, its largest s the largest finite
    write_log(tmp_path / 'all_taper-lr0.001-s1', 1e-3, 1, 2.0, segments=((None, 0, 15),), s=5.0)
    with open(tmp_path / 'all_taper-lr0.001-s1' / 'log.jsonl', 'a') as f:
        f.write(json.dumps(dict(kind='train', iter=16, s=float('inf'), loss=float('nan'), logit_norm=1.0)) + '\n')
    rows = {r['variant']: r for r in report.load_runs(tmp_path)}
    assert math.isnan(rows['all_taper']['val_loss']) and rows['all_taper']['largest_s'] == 5.0


def synthetic_sweep(root):
    """layernorm best at lr 2e-3, taper_ln best at 4e-3; at their best rates 3 paired seeds; one unfinished run."""
    finals = {('layernorm', 1e-3): [2.00, 2.02, 2.04], ('layernorm', 2e-3): [1.90, 1.95, 1.91],
              ('taper_ln', 2e-3): [1.92, 1.99, 1.93], ('taper_ln', 4e-3): [1.89, 1.93, 1.92]}
    for (variant, lr), vals in finals.items():
        for seed, final in zip((1, 2, 3), vals):
            write_log(root / f'{variant}-lr{lr:g}-s{seed}', lr, seed, final)
    write_log(root / 'taper_ln-lr0.004-s4', 4e-3, 4, 1.0, max_iters=20)
    os.remove(root / 'taper_ln-lr0.004-s4' / 'log.jsonl')            # no log: not a run
    write_log(root / 'taper_ln-lr0.008-s1', 8e-3, 1, 0.5)
    with open(root / 'taper_ln-lr0.008-s1' / 'log.jsonl') as f:      # stopped before the final evaluation
        lines = [line for line in f if '"iter": 20' not in line and '"done"' not in line]
    (root / 'taper_ln-lr0.008-s1' / 'log.jsonl').write_text(''.join(lines))
    return finals


def test_best_rates_and_the_paired_interval(tmp_path):
    finals = synthetic_sweep(tmp_path)
    runs = report.load_runs(tmp_path)
    assert len(runs) == 12 and report.best_rates(runs) == {'layernorm': 2e-3, 'taper_ln': 4e-3}
    n, mean, half, base = report.paired(runs, 'taper_ln', 'layernorm', 4e-3, 2e-3)
    diffs = [a - b for a, b in zip(finals[('taper_ln', 4e-3)], finals[('layernorm', 2e-3)])]   # -0.01, -0.02, +0.01
    assert (n, mean, base) == (3, pytest.approx(statistics.fmean(diffs)), pytest.approx(1.92))
    assert half == pytest.approx(4.303 * statistics.stdev(diffs) / 3 ** 0.5)   # t(0.975, 2 degrees of freedom)
    write_log(tmp_path / 'layernorm-lr0.002-s9', 2e-3, 9, 5.0)             # a seed the taper lacks: not paired,
    assert report.paired(report.load_runs(tmp_path), 'taper_ln', 'layernorm', 4e-3, 2e-3) == (n, mean, half, base)
    (tmp_path / 'layernorm-lr0.002-s9' / 'log.jsonl').unlink()               # so neither in the relative's base
    # a rate where a seed diverged is never the best, however well its other seeds did; its tuning cell says nan
    write_log(tmp_path / 'taper_ln-lr0.001-s1', 1e-3, 1, 1.0)
    write_log(tmp_path / 'taper_ln-lr0.001-s2', 1e-3, 2, float('nan'), segments=((None, 0, 20),))
    runs = report.load_runs(tmp_path)
    assert len(runs) == 14 and report.best_rates(runs) == {'layernorm': 2e-3, 'taper_ln': 4e-3}
    assert "| taper_ln | nan (2) | 1.9467 (3) | **1.9133 (3)** |" in report.lr_table(runs, ('taper_ln',),
                                                                                      report.best_rates(runs), 'x')


def test_report_writes_runs_csv_tables_plots_and_the_readme(tmp_path):
    pytest.importorskip('matplotlib')
    synthetic_sweep(tmp_path / 'sweep')
    readme = tmp_path / 'README.md'
    readme.write_text("# x\n<!-- report:results -->\nold\n<!-- /report:results -->\ntail\n")
    report.main(report.ReportConfig(sweep_dir=str(tmp_path / 'sweep'), out=str(tmp_path / 'out'), readme=str(readme)))
    with open(tmp_path / 'out' / 'runs.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and list(rows[0]) == [
        'variant', 'learning_rate', 'seed', 'n_layer', 'n_embd', 'params', 'source', 'val_loss', 'best_val_loss',
        'max_iters', 'taper_start', 'taper_end', 's', 'largest_s', 'largest_s_drift', 'logit_norm',
        'fold_max_logit_diff', 'wall_s', 'commit']
    assert {(r['variant'], float(r['learning_rate']), int(r['seed']), float(r['val_loss'])) for r in rows} >= \
        {('taper_ln', 4e-3, 2, 1.93), ('layernorm', 1e-3, 3, 2.04)}
    table = (tmp_path / 'out' / 'results.md').read_text()
    assert "| layernorm | 0.002 | 3 | 1.9200 ± 0.0265 | baseline |" in table
    assert "| taper_ln | 0.004 | 3 | 1.9133 ± 0.0208 | -0.0067 (3 seeds) |" in table and "-0.35%" in table
    text = readme.read_text()
    assert text.startswith("# x\n<!-- report:results -->\n") and text.endswith("<!-- /report:results -->\ntail\n")
    tuning, paired = table.split("\nEach variant at its own best")                # the README: all but the tuning
    assert "| layernorm | 2.0200 (3) | **1.9200 (3)** |  |" in tuning                # results.md: every rate tried
    assert ("Each variant at its own best" + paired) in text and tuning not in text and '\nold\n' not in text
    for name in ('val_loss.png', 'scale.png'):
        assert (tmp_path / 'out' / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_the_robust_table_pairs_each_setting_and_shows_the_worst_same_seed_scale(tmp_path):
    for seed, (ln, taper, s) in zip((1, 2, 3), [(2.0, 2.02, 1.5), (2.1, 2.11, 3.0), (2.05, 2.06, 1.0)]):
        write_log(tmp_path / f'layernorm-it300-lr0.004-s{seed}', 4e-3, seed, ln, max_iters=300)
        write_log(tmp_path / f'taper_ln_follow-it300-lr0.004-s{seed}', 4e-3, seed, taper, max_iters=300, s=s)
    write_log(tmp_path / 'taper_ln_follow-it300-lr0.002-s1', 2e-3, 1, 9.9, max_iters=300, s=50.0)  # another rate
    text = report.robust_tables(report.load_runs(tmp_path))[1]
    assert "| 300 steps | layernorm-it300 | 0.004 | 3 | 2.0500 ± 0.0500 | baseline |" in text
    assert "| 300 steps | taper_ln_follow-it300 | 0.004 | 3 | 2.0633 ± 0.0451 | +0.0133 (3 seeds) |" in text
    assert "| 3.00x |" in text and "50.00x" not in text                  # the worst seed, at the row's rate only
    assert report.robust_tables(report.load_runs(tmp_path / 'nothing')) == ('', '')


def test_the_fold_table_pairs_fold_when_gone_with_the_explicit_run_it_continues(tmp_path):
    for seed, (taper, fold) in zip((1, 2, 3), [(1.70, 1.71), (1.72, 1.74), (1.71, 1.72)]):
        write_log(tmp_path / f'taper_ln_follow-lr0.004-s{seed}', 4e-3, seed, taper)
        write_log(tmp_path / f'taper_ln_follow_fold-lr0.004-s{seed}', 4e-3, seed, fold)
    write_log(tmp_path / 'taper_ln_follow_fold-lr0.008-s1', 8e-3, 1, 1.80)  # one seed: no interval
    write_log(tmp_path / 'taper_ln_follow-lr0.008-s1', 8e-3, 1, 1.60)       # not the default's rate: not shown
    for seed, (taper, fold) in zip((1, 2), [(1.80, 1.80), (1.90, 1.92)]):  # from RMSNorm, against its own
        write_log(tmp_path / f'taper_rms_follow-lr0.004-s{seed}', 4e-3, seed, taper)
        write_log(tmp_path / f'taper_rms_follow_fold-lr0.004-s{seed}', 4e-3, seed, fold)
    text = report.fold_table(report.load_runs(tmp_path))[1]
    rows = [line for line in text.splitlines() if line.startswith('| taper')]
    assert rows == ["| taper_ln_follow_fold | 0.004 | 3 | 1.7233 ± 0.0153 | +0.0133 (3 seeds) | [-0.0010, +0.0277] | "
                    "+0.78% |",  # the differences: 0.01, 0.02, 0.01
                    "| taper_ln_follow_fold | 0.008 | 1 | 1.8000 ± 0.0000 |  |  |  |",
                    "| taper_rms_follow_fold | 0.004 | 2 | 1.8600 ± 0.0849 | +0.0100 (2 seeds) | [-0.1171, +0.1371] | "
                    "+0.54% |"]  # 0 and 0.02: t(1 dof) 12.706 x 0.01414 / sqrt(2); 0.01 of 1.85
    assert "11 runs of 20 iterations" in text
    assert report.fold_table(report.load_runs(tmp_path / 'nothing')) == ('', '')


def test_a_fold_at_another_rate_is_paired_with_the_explicit_run_at_the_defaults_rate(tmp_path):
    """By hand: 1.80 - 1.70 and 1.82 - 1.72, 0.1 both seeds (an interval of width 0), 0.1 / 1.71 = 5.85%; the
    explicit runs at the fold's own rate are not its pair."""
    for seed, (explicit, other, fold) in zip((1, 2), [(1.70, 1.60, 1.80), (1.72, 1.60, 1.82)]):
        write_log(tmp_path / f'taper_ln_follow-lr0.004-s{seed}', 4e-3, seed, explicit)
        write_log(tmp_path / f'taper_ln_follow-lr0.008-s{seed}', 8e-3, seed, other)
        write_log(tmp_path / f'taper_ln_follow_fold-lr0.008-s{seed}', 8e-3, seed, fold)
    text = report.fold_table(report.load_runs(tmp_path))[1]
    assert ("| taper_ln_follow_fold | 0.008 | 2 | 1.8100 ± 0.0141 | +0.1000 (2 seeds) | [+0.1000, +0.1000] | "
            "+5.85% |") in text


def test_every_calibration_point_runs_at_taper_lns_rate_and_one_that_diverged_shows_as_nan(tmp_path):
    for seed, (ln, taper, early, found) in zip((1, 2), [(1.70, 1.72, 2.1, 1.73), (1.71, 1.72, float('nan'), 1.74)]):
        for variant, final in (('layernorm', ln), ('taper_ln', taper), ('taper_ln_start100', early),
                               ('taper_ln_start_auto', found), ('taper_ln_follow', taper), ('rmsnorm', ln),
                               ('taper_rms', taper), ('taper_rms_follow', taper)):
            write_log(tmp_path / f'{variant}-lr0.004-s{seed}', 4e-3, seed, final)
    with open(tmp_path / 'taper_ln_start_auto-lr0.004-s2' / 'log.jsonl', 'a') as f:  # each seed finds its own point
        f.write(json.dumps(dict(kind='calibrate', taper_start=7, taper_end=12)) + '\n')
    more, readme = report.tables(report.load_runs(tmp_path))
    rows = [line.split(' | ')[0] for line in readme.splitlines() if line.startswith('| ') and '---' not in line]
    assert rows == ['| variant', '| layernorm', '| taper_ln_follow', '| taper_ln',  # each baseline once, above both
                    '| rmsnorm', '| taper_rms_follow', '| taper_rms']
    text = more                                                          # results.md's, under the README's table
    assert "| taper_ln_start100 | 0.004 | 2 | nan ± nan |  |  |  | 4 |" in text      # not left out: it diverged
    assert "| taper_ln_start_auto | 0.004 | 2 | 1.7350 ± 0.0071 | +0.0150 (2 seeds) |" in text and "| 4/7 |" in text


def test_the_finetune_and_size_sections_pair_by_seed_and_report_the_fold_and_the_size(tmp_path):
    pytest.importorskip('matplotlib')
    source = dict(ckpt='/x/layernorm-lr0.004-s1/ckpt.pt', iter=20)
    for seed, (control, taper, fakeln) in zip((1, 2, 3), [(1.70, 1.72, 1.74), (1.71, 1.72, 1.76), (1.69, 1.72, 1.73)]):
        for variant, final in (('finetune_layernorm', control), ('finetune_taper', taper), ('finetune_fakeln', fakeln)):
            write_log(tmp_path / 'sweep' / f'{variant}-lr0.001-s{seed}', 1e-3, seed, final, source=source)
        with open(tmp_path / 'sweep' / f'finetune_taper-lr0.001-s{seed}' / 'log.jsonl', 'a') as f:
            f.write(json.dumps(dict(kind='fold', max_logit_diff=seed * 1e-6)) + '\n')
        for width, cost in ((64, 0.02), (128, 0.01)):
            write_log(tmp_path / 'sweep' / f'layernorm-8x{width}-lr0.002-s{seed}', 2e-3, seed, 2.0, n_embd=width)
            write_log(tmp_path / 'sweep' / f'taper_ln-8x{width}-lr0.002-s{seed}', 2e-3, seed, 2.0 + cost * seed,
                      n_embd=width, s=5.0)
        write_log(tmp_path / 'sweep' / f'taper_ln_start400-8x64-lr0.002-s{seed}', 2e-3, seed, 2.0 + 0.03 * seed,
                  n_embd=64)
    with open(tmp_path / 'sweep' / 'taper_ln-8x64-lr0.002-s1' / 'log.jsonl', 'a') as f:  # the point it found
        f.write(json.dumps(dict(kind='calibrate', taper_start=6, taper_end=11)) + '\n')
    write_log(tmp_path / 'sweep' / 'layernorm-8x256-lr0.001-s1', 1e-3, 1, 1.9, n_embd=256)  # a width begun
    write_log(tmp_path / 'sweep' / 'taper_ln_start400-8x128-lr0.002-s1', 2e-3, 1, math.nan, n_embd=128, s=50.0)
    write_log(tmp_path / 'sweep' / 'taper_ln_start400-8x64-lr0.004-s1', 4e-3, 1, 2.1, n_embd=64, s=99.0)  # no partner
    report.main(report.ReportConfig(sweep_dir=str(tmp_path / 'sweep'), out=str(tmp_path / 'out'), readme=''))
    text = (tmp_path / 'out' / 'results.md').read_text()
    assert "| layernorm-8x256 | **1.9000 (1)** |" in text and "| layernorm-8x256 | 0.001 |" not in text  # tuning only
    assert "| finetune_layernorm | 0.001 | 3 | 1.7000 ± 0.0100 | baseline |  |  | 1.0 | 10.0 |  |" in text
    diffs = [0.02, 0.01, 0.03]                                          # taper - control, by seed
    half = 4.303 * statistics.stdev(diffs) / 3 ** 0.5
    assert (f"| finetune_taper | 0.001 | 3 | 1.7200 ± 0.0000 | +0.0200 (3 seeds) | [{0.02 - half:+.4f}, "
            f"{0.02 + half:+.4f}] | +1.18% | 1.0 | 10.0 | 3.00e-06 |") in text      # the largest fold difference
    assert "| finetune_taper | 0.001 | 3 | 1.7200 ± 0.0000 | -0.0233 (3 seeds) |" in text  # head to head, vs fakeln
    assert "| +2.55% | 1.0 | 10.0 |  |" in text                         # finetune_fakeln: not folded, no figure
    assert "Every fine-tune starts at validation loss 4.0000" in text and "9 runs of 20 iterations" in text
    with open(tmp_path / 'out' / 'runs.csv') as f:
        rows = {(r['variant'], r['seed']): r for r in csv.DictReader(f)}
    assert rows[('finetune_taper', '2')]['source'] == 'layernorm-lr0.004-s1@20'
    assert rows[('taper_ln-8x128', '1')]['n_embd'] == '128' and rows[('layernorm-8x64', '1')]['source'] == ''
    assert int(rows[('taper_ln-8x128', '1')]['params']) > int(rows[('taper_ln-8x64', '1')]['params'])
    assert "| taper_ln-8x64 | 0.002 | 3 | 2.0400 ± 0.0200 | +0.0400 (3 seeds) |" in text and "| +2.00% |" in text
    assert "| taper_ln_start400-8x64 | 0.002 | 3 | 2.0600 ± 0.0300 | +0.0600 (3 seeds) |" in text  # the fixed point
    assert (rows[('taper_ln-8x64', '1')]['taper_start'], rows[('taper_ln-8x64', '2')]['taper_start']) == ('6', '4')
    # the largest s of every run of a variant, at every rate: a runaway at a rate other than the best one shows
    assert re.search(r"\| taper_ln_start400-8x64 \| 0.002 \|.*\| 99.0 \|$", text, re.M)     # its 4e-3 run
    assert re.search(r"\| taper_ln-8x64 \| 0.002 \|.*\| 5.0 \|$", text, re.M)
    assert "| taper_ln_start400-8x128 |" not in text                    # a diverged run has no mean
    assert (tmp_path / 'out' / 'size_cost.png').read_bytes()[:4] == b'\x89PNG'
    assert len(os.listdir(tmp_path / 'out' / 'logs')) == 27                # every finished or diverged log


def test_the_lr_stage_widens_the_range_at_an_edge(tmp_path):
    rates = sweep.TUNED['lr'][1]
    for variant in sweep.MAIN:
        for lr, final in zip(rates, (2.0, 1.9, 1.85, 1.8 if variant == 'taper_rms' else 1.95)):
            for seed in sweep.SEEDS[:2]:
                write_log(tmp_path / f'{variant}-lr{lr:g}-s{seed}', lr, seed, final, max_iters=20)
    todo = sweep.plan(sweep.SweepConfig(out_root=str(tmp_path), logs=str(tmp_path / 'logs')), 'lr')
    grid = {(v, lr, s) for v in sweep.MAIN for lr in rates for s in sweep.SEEDS[:2]}
    assert set(todo) - grid == {('taper_rms', 0.016, 1337), ('taper_rms', 0.016, 1338)}   # best at the top edge
    best = sweep.plan(sweep.SweepConfig(out_root=str(tmp_path), logs=str(tmp_path / 'logs')), 'best')
    assert ('taper_rms', 8e-3, 1342) in best and ('layernorm', 4e-3, 1342) in best and len(best) == 24


def test_a_real_tiny_sweep_resumes_an_interrupted_run_and_skips_finished_ones(shakespeare_slice, tmp_path,
                                                                           monkeypatch):
    cfg = sweep.SweepConfig(stage='lr', out_root=str(tmp_path), logs=str(tmp_path / 'logs'),
                            extra=f"{TINY} --data_root={shakespeare_slice}")
    # seed 8 ran before and was killed in iteration 25: its checkpoint holds iteration 20, its log runs to 24
    action, argv = sweep.command(cfg, 'taper_ln', 3e-3, 8, finished=set())
    assert action == 'start'
    stop_training_at(monkeypatch, 25, KeyboardInterrupt)
    with pytest.raises(SystemExit, match='interrupted at iteration 25'):
        train.train(parse_config(train.TrainConfig, argv[2:]))
    monkeypatch.undo()
    assert report.load_runs(tmp_path) == [] and sweep.command(cfg, 'taper_ln', 3e-3, 8, set())[0] == 'resume'
    monkeypatch.setitem(sweep.TUNED, 'lr', (('taper_ln',), (3e-3,)))  # a sweep of one variant, one rate, 2 seeds
    monkeypatch.setattr(sweep, 'SEEDS', (7, 8))

    sweep.main(cfg)                                                   # starts seed 7, resumes seed 8
    runs = {r['seed']: r for r in report.load_runs(tmp_path)}
    assert sorted(runs) == [7, 8] and runs[8]['log']['header']['resumed_at'] == 20
    assert sorted(runs[8]['log']['train']) == [4, 9, 14, 19, 24, 29]     # one record per log_interval of 5
    assert runs[7]['log']['header']['resumed_at'] is None
    log = tmp_path / 'taper_ln-lr0.003-s8' / 'log.jsonl'
    lines = log.read_text().count('\n')
    sweep.main(cfg)                                                   # everything finished: nothing runs again
    assert log.read_text().count('\n') == lines


def bench_record():
    def cells(mode, compiled, B, T, **values):
        return [dict(mode=mode, compiled=compiled, B=B, T=T, ratio=k.replace('_over_', '/'), value=v)
                for k, v in values.items()]
    inference = dict(folded_rms_over_rmsnorm=1.116, taper_rms_over_rmsnorm=1.078, folded_ln_over_layernorm=1.01,
                     taper_ln_over_layernorm=1.0)
    return dict(device='cpu', torch='2.x', dtype='float32', commit='abc', params=dict(rmsnorm=30.4e6),
                config=dict(repeats=20, iters=1, n_layer=8, n_embd=512, vocab_size=10000),
                ratios=cells('last', False, 1, 128, **inference, folded_rms_over_none=0.995) +
                cells('last', True, 1, 128, **inference, folded_rms_over_none=1.002) +
                cells('decode', False, 1, 128, **inference, folded_rms_over_none=0.98) +
                cells('train', False, 4, 128, taper_rms_over_rmsnorm=1.25, taper_ln_over_layernorm=1.0,
                      blend_rms_over_rmsnorm=0.8, blend_ln_over_layernorm=0.5, folded_rms_over_rmsnorm=1.6,
                      folded_ln_over_layernorm=1.25))


def test_the_bench_table_the_control_and_the_training_cost_sentence():
    table = report.bench_table(bench_record())
    assert "| last | eager | 1 | 128 | 1.116 | 1.078 | 1.010 | 1.000 | 0.995 |" in table   # the paper's rows first
    assert "| last | compiled | 1 | 128 |" in table and "| train |" not in table
    assert "8 layers x 512 wide, vocabulary 10000, 30.4M parameters" in table
    assert "the minimum of 20 interleaved repeats" in table
    assert "more than 1% from 1 in decode eager B=1 T=128 (0.980)." in table             # the control's exception
    assert ("takes 0.800x RMSNorm's time (1.000x LayerNorm's), while tapering (g = 0.5, both branches) 1.250x "
            "(2.000x), and folded (fold_when_gone) 0.625x (0.800x)") in table           # time = 1 / tok/s ratio


def test_the_readme_speed_table_is_regenerated_from_the_bench_record_alone(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text("intro\n<!-- report:bench -->\nold table\n<!-- /report:bench -->\nend\n")
    bench = tmp_path / 'bench.txt'
    bench.write_text("the table bench.py prints first\n" + json.dumps(bench_record()) + "\n")
    report.main(report.ReportConfig(sweep_dir=str(tmp_path / 'no-sweep'), out=str(tmp_path / 'out'),
                                    bench=str(bench), readme=str(readme)))
    text = readme.read_text()
    assert 'old table' not in text and '| last | eager | 1 | 128 |' in text and text.endswith('end\n')
    assert not (tmp_path / 'out').exists()                      # no sweep: no runs.csv, tables or plots
    with pytest.raises(UserError, match='no such file'):
        report.main(report.ReportConfig(sweep_dir=str(tmp_path / 'no-sweep'), bench=str(tmp_path / 'missing.json')))


def test_the_removal_section_reports_the_control_s_move_and_each_way_in_cross_entropy_in_the_readme(tmp_path):
    """The converged recipe's section goes to the README (the first recipe's to results.md only): how far the control
    moves each seed's source (start 4.0, finals 1.70, 1.71, 1.69: -57.50%, seeds -57.75% to -57.25%), and each way's
    paired increase over the control in cross-entropy beside the relative one."""
    pytest.importorskip('matplotlib')
    source = dict(ckpt='/x/layernorm-converged-lr0.004-s1/ckpt.pt', iter=8000)
    for seed, (control, fakeln) in zip((1, 2, 3), [(1.70, 1.72), (1.71, 1.72), (1.69, 1.72)]):
        for variant, final in (('remove_layernorm', control), ('remove_fakeln', fakeln)):
            write_log(tmp_path / 'sweep' / f'{variant}-lr0.0005-s{seed}', 5e-4, seed, final, source=source)
        for variant, final in (('finetune_layernorm', control), ('finetune_fakeln', fakeln)):  # the first recipe
            write_log(tmp_path / 'sweep' / f'{variant}-lr0.001-s{seed}', 1e-3, seed, final, source=source)
    readme = tmp_path / 'README.md'
    readme.write_text(''.join(f"<!-- report:{name} -->\nold\n<!-- /report:{name} -->\n"
                              for name in ('results', 'robust', 'size', 'removal')) + "after\n")
    report.main(report.ReportConfig(sweep_dir=str(tmp_path / 'sweep'), out=str(tmp_path / 'out'), readme=str(readme)))
    text = readme.read_text().split("<!-- report:removal -->")[1]
    assert "the control alone moves it by -57.50% (seeds -57.75% to -57.25%)" in text and "\nold\n" not in text
    half = 4.303 * statistics.stdev([0.02, 0.01, 0.03]) / 3 ** 0.5
    assert (f"| remove_fakeln | 0.0005 | 3 | 1.7200 ± 0.0000 | +0.0200 (3 seeds) | [{0.02 - half:+.4f}, "
            f"{0.02 + half:+.4f}] | +1.18% |") in text
    assert text.endswith("<!-- /report:removal -->\nafter\n") and "finetune_" not in readme.read_text()
    results = (tmp_path / 'out' / 'results.md').read_text()                # the first recipe: results.md's alone
    assert "Head to head (finetune)" in results and "| finetune_fakeln | 0.001 | 3 | 1.7200 ± 0.0000 |" in results
