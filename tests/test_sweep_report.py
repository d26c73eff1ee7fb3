"""The sweep skips finished runs and resumes interrupted ones; the report turns logs into a table and plots."""
import json
import os
import statistics

import pytest

import report
import sweep

TINY = ("--max_iters=30 --lr_decay_iters=30 --warmup_iters=2 --taper_start=5 --taper_end=20 --eval_interval=10 "
        "--eval_iters=2 --log_interval=5 --n_layer=1 --n_head=2 --n_embd=16 --block_size=16 --batch_size=4")


def write_log(out_dir, max_iters, evals, train=()):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'log.jsonl'), 'w') as f:
        config = {'max_iters': max_iters, 'taper_start': max_iters // 4, 'taper_end': max_iters // 2}
        f.write(json.dumps({'kind': 'header', 'config': config, 'device': 'cpu'}) + '\n')
        for it, val in evals:
            f.write(json.dumps({'kind': 'eval', 'iter': it, 'train': val, 'val': val, 'gate': 1.0}) + '\n')
        for it, s, logit, ms in train:
            f.write(json.dumps({'kind': 'train', 'iter': it, 's': s, 'logit_norm': logit, 'ms': ms}) + '\n')


def test_plan_skips_finished_resumes_checkpointed_and_starts_the_rest(tmp_path):
    write_log(sweep.run_dir(tmp_path, 'layernorm', 1), 10, [(0, 4.0), (10, 2.0)])
    write_log(sweep.run_dir(tmp_path, 'layernorm', 2), 10, [(0, 4.0), (5, 3.0)])     # stopped at 5
    (tmp_path / 'layernorm-s2' / 'ckpt.pt').write_bytes(b'')
    cfg = sweep.SweepConfig(variants='layernorm', seeds='1,2,3', out_root=str(tmp_path))  # one variant, 3 seeds
    actions = [(os.path.basename(d), a, '--init_from=resume' in cmd) for d, a, cmd in sweep.plan(cfg)]
    assert actions == [('layernorm-s1', 'skip', False), ('layernorm-s2', 'resume', True),
                       ('layernorm-s3', 'start', False)]
    with pytest.raises(SystemExit, match='unknown variant'):
        sweep.plan(sweep.SweepConfig(variants='batchnorm', out_root=str(tmp_path)))


def test_a_real_tiny_sweep_runs_then_skips_what_it_finished(shakespeare_slice, tmp_path, monkeypatch):
    monkeypatch.chdir(sweep.os.path.dirname(os.path.abspath(sweep.__file__)))
    cfg = sweep.SweepConfig(variants='taper_ln', seeds='7', out_root=str(tmp_path), jobs=1,
                            extra=f"{TINY} --data_root={shakespeare_slice}")
    sweep.main(cfg)
    log = tmp_path / 'taper_ln-s7' / 'log.jsonl'
    assert sweep.is_finished(str(tmp_path / 'taper_ln-s7'))
    lines = log.read_text().count('\n')
    sweep.main(cfg)                                                   # finished: nothing runs again
    assert log.read_text().count('\n') == lines


def test_report_tables_and_plots_synthetic_logs(tmp_path):
    pytest.importorskip('matplotlib')
    finals = {'layernorm': [2.0, 2.2], 'taper_ln': [2.1, 2.3]}
    for variant, vals in finals.items():
        for seed, final in enumerate(vals):
            write_log(tmp_path / 'sweep' / f'{variant}-s{seed}', 20, [(0, 4.0), (10, 3.0), (20, final)],
                      train=[(4, 0.5, 10.0, 100.0 + seed), (9, 0.5, 10.0, 200.0), (19, 1.0 + seed, 20.0, 300.0)])
    write_log(tmp_path / 'sweep' / 'layernorm-s9', 20, [(0, 4.0), (10, 9.9)])    # unfinished: left out
    bench = dict(device='cpu', torch='x', config=dict(repeats=3), ratios=[
        dict(mode='last', compiled=False, B=1, T=8, ratio=r, value=v)
        for r, v in (('folded/layernorm', 1.1), ('taper/layernorm', 1.05), ('folded/none', 0.99))])
    (tmp_path / 'bench.json').write_text('table lines first\n' + json.dumps(bench) + '\n')
    report.main(report.ReportConfig(sweep_dir=str(tmp_path / 'sweep'), out=str(tmp_path / 'out'),
                                    bench=str(tmp_path / 'bench.json')))
    table = (tmp_path / 'out' / 'results.md').read_text()
    gap = 100 * (statistics.fmean(finals['taper_ln']) / statistics.fmean(finals['layernorm']) - 1)
    assert f"| layernorm | 2 | 2.1000 +- {statistics.stdev([2.0, 2.2]):.4f} | baseline | 1.50 | 20.0 |" in table
    assert f"| taper_ln | 2 | 2.2000 +- " in table and f"{gap:+.2f}% vs layernorm" in table
    assert "| layernorm | 2 | 100.5 | 200.0 | 300.0 | cpu |" in table               # phases: < 5, 5..9, >= 10
    for name in ('val_loss.png', 'scale.png', 'speedup.png'):
        assert (tmp_path / 'out' / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
