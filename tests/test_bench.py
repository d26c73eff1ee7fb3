"""bench.py: by default the paper's benchmark model against its RMSNorm baseline; --quick runs in seconds, its last
line is one JSON record with a figure for every variant and ratio, and each figure is the minimum over the
interleaved repeats, as the header says."""
import json
import os
import re
import sys
from contextlib import contextmanager

import pytest
import torch

import bench
from bench import RATIOS, VARIANTS, BenchConfig, main as bench_main, variants
from configurator import UserError, parse_config
from model import Norm, TaperNorm
from runtime import REPO


def test_the_default_shape_is_the_papers_benchmark_model_of_about_30m_parameters():
    cfg = BenchConfig()
    assert (cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.block_size) == (8, 512, 10000, 512)
    assert cfg.n_embd // cfg.n_head == 64 and (cfg.batch_sizes, cfg.seq_lens) == ('1,4', '128,256,512')
    models = variants(cfg, ('rmsnorm', 'taper_rms', 'folded_rms', 'taper_ln', 'folded_ln'))
    assert 29e6 < models['rmsnorm'].get_num_params(non_embedding=False) < 31e6
    # each TaperNorm, and each fold, is built from the baseline it is compared with
    for name, kind in (('taper_rms', 'rmsnorm'), ('taper_ln', 'layernorm')):
        assert {m.kind for m in models[name].taper_norms()} == {kind} and models[name].gate.item() == 0.0
    for name, kind in (('folded_rms', 'rmsnorm'), ('folded_ln', 'layernorm')):
        assert models[name].config.folded and models[name].transformer.ln_f.kind == kind
        assert not any(isinstance(m, (Norm, TaperNorm)) for m in models[name].transformer.h.modules())
    assert ('folded_rms', 'rmsnorm') == RATIOS[0] and ('taper_rms', 'rmsnorm') == RATIOS[1]  # the paper's rows lead


def test_quick_flag_parses():
    assert parse_config(BenchConfig, ['--quick']).quick and not parse_config(BenchConfig, ['--quick=False']).quick


def test_bench_quick_emits_every_figure(capsys):
    bench_main(parse_config(BenchConfig, ['--quick', '--device=cpu']))
    assert torch.get_num_threads() == 1                          # on a CPU, bench times one thread
    lines = capsys.readouterr().out.strip().splitlines()
    record = json.loads(lines[-1])
    assert record['bench'] == 'nanotaper' and record['torch'] and record['device'].startswith('cpu')
    assert record['estimator'] == 'min' and 'the minimum of 2 interleaved repeats' in lines[1]
    for mode, names in VARIANTS.items():
        rows = {r['variant']: r for r in record['results'] if r['mode'] == mode}
        assert sorted(rows) == sorted(names), mode
        for r in rows.values():
            assert len(r['ms_repeats']) == 2 and r['ms'] == min(r['ms_repeats']) > 0
        ratios = {r['ratio']: r['value'] for r in record['ratios'] if r['mode'] == mode}
        assert set(ratios) == {f"{a}/{b}" for a, b in RATIOS if a in names and b in names}
        for name, value in ratios.items():                       # a/b = b's time over a's
            a, b = name.split('/')
            assert value == pytest.approx(rows[b]['ms'] / rows[a]['ms'])
    assert set(record['params']) == {v for names in VARIANTS.values() for v in names}
    assert {k: record['config'][k] for k in ('n_layer', 'n_embd', 'vocab_size')} == dict(n_layer=2, n_embd=64,
                                                                                      vocab_size=256)  # the shape
    assert sum('tokens/s | ratios' in line for line in lines) == 3   # a human-readable table per mode first


def test_the_training_cell_steps_each_fold_as_fold_when_gone_does_and_no_other_variant(monkeypatch):
    """A fold's training step pays for the passes of unfolded_coordinates, one column scale per folded weight (--quick:
    one cell, 2 layers x ln_1 and ln_2); no other variant's optimizer holds one."""
    scales, real = {}, bench.unfolded_coordinates

    @contextmanager
    def spy(optimizer):  # keyed by the optimizer itself: held, so no id is reused
        scales[optimizer] = sum('fold_scale' in state for state in optimizer.state.values())
        with real(optimizer):
            yield
    monkeypatch.setattr(bench, 'unfolded_coordinates', spy)
    bench_main(parse_config(BenchConfig, ['--quick', '--device=cpu', '--modes=train']))
    assert sorted(scales.values()) == sorted(2 * 2 * name.startswith('folded_') for name in VARIANTS['train'])


def test_with_out_the_record_goes_to_a_file_and_the_screen_says_the_quick_ratios_are_noise(tmp_path, capsys):
    out = tmp_path / 'new' / 'b.json'                                  # its folder is made, as train.py's out_dir
    bench_main(parse_config(BenchConfig, ['--quick', '--device=cpu', '--modes=last', f'--out={out}']))
    screen = capsys.readouterr().out
    assert '{' not in screen and 'its ratios are noise' in screen and str(out) in screen
    record = json.loads(out.read_text())
    assert record['config']['out'] == str(out) and {r['mode'] for r in record['results']} == {'last'}


@pytest.mark.parametrize('args,words', [
    (['--modes=last,fast'], "modes='last,fast': choose from"), (['--seq_lens=1024'], 'block_size'),
    (['--batch_sizes=1,x'], "batch_sizes='1,x': needs numbers >= 1"), (['--batch_sizes=0'], "batch_sizes='0'"),
    (['--seq_lens=4,-1'], "seq_lens='4,-1'"), (['--seq_lens='], "seq_lens=''"), (['--modes='], "modes='': needs names"),
    (['--decode_tokens=0'], 'decode_tokens must be >= 1'), (['--train_batch=0'], 'train_batch must be >= 1'),
    (['--vocab_size=0'], 'vocab_size must be >= 1'), (['--n_head=0'], 'n_head must be >= 1, got 0'),
    (['--n_head=7'], 'n_embd=512 must be a multiple of n_head=7'), (['--taper=off'], "taper='off' must be")])
def test_a_bad_grid_or_shape_is_refused_naming_the_option_before_any_timing(args, words, monkeypatch):
    monkeypatch.setattr(bench, 'time_cell', lambda *a: pytest.fail('timed a grid it should have refused'))
    with pytest.raises(UserError, match=re.escape(words)):
        bench_main(parse_config(BenchConfig, ['--device=cpu', *args]))


def test_the_profile_lists_each_cells_ten_costliest_operations_by_their_own_time():
    """experiments/profile_norms.py (bench_gpu.sh's profiler step): a table per mode and norm, ten rows, sorted by
    self time, largest first."""
    sys.path.insert(0, os.path.join(REPO, 'experiments'))
    import profile_norms
    tables = profile_norms.main(BenchConfig(quick=True, device='cpu'))
    assert set(tables) == {(m, v) for m in ('train', 'last') for v in ('rmsnorm', 'taper_rms')}
    for table in tables.values():
        lines = table.splitlines()
        header = re.split(r'\s{2,}', lines[1].strip())
        rows = [re.split(r'\s{2,}', line.strip()) for line in lines[3:] if line.strip() and not line.startswith('-')]
        rows = [row for row in rows if len(row) == len(header)]
        self_us = [float(value) * {'us': 1, 'ms': 1e3, 's': 1e6}[unit]
                   for value, unit in (re.fullmatch(r'([\d.]+)(us|ms|s)', row[2]).groups() for row in rows)]
        assert header[2] == 'Self CPU' and len(rows) == profile_norms.ROWS
        assert self_us == sorted(self_us, reverse=True)
