"""bench.py --quick: runs in seconds, and its last line is one JSON record with a figure for every variant."""
import json

import torch

from bench import RATIOS, VARIANTS, BenchConfig, main as bench_main
from common import parse_config


def test_quick_flag_parses():
    assert parse_config(BenchConfig, ['--quick']).quick and not parse_config(BenchConfig, ['--quick=False']).quick


def test_bench_quick_emits_every_figure(capsys):
    threads = torch.get_num_threads()
    bench_main(parse_config(BenchConfig, ['--quick', '--device=cpu']))
    assert torch.get_num_threads() == threads                    # bench sets 1 CPU thread, then restores
    lines = capsys.readouterr().out.strip().splitlines()
    record = json.loads(lines[-1])
    assert record['bench'] == 'nanotaper' and record['torch'] and record['device'].startswith('cpu')
    for mode in ('last', 'decode', 'train'):
        rows = [r for r in record['results'] if r['mode'] == mode]
        expected = [v for v in VARIANTS if not (mode == 'train' and v == 'folded')]  # folded models do not train
        assert sorted(r['variant'] for r in rows) == sorted(expected), mode
        assert all(r['tok_s'] > 0 and len(r['ms_repeats']) == 2 for r in rows)
        ratios = {r['ratio'] for r in record['ratios'] if r['mode'] == mode}
        assert ratios == {f"{a}/{b}" for a, b in RATIOS if a in expected}
    assert set(record['params']) == set(VARIANTS)
    assert any('tokens/s per variant' in line for line in lines)   # the human-readable tables come first
