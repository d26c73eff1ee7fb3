"""bench.py --quick: runs in seconds, its last line is one JSON record with a figure for every variant and
ratio, and each figure is the minimum over the interleaved repeats, as the header says."""
import json

import pytest
import torch

from bench import RATIOS, VARIANTS, BenchConfig, main as bench_main
from configurator import UserError, parse_config


def test_quick_flag_parses():
    assert parse_config(BenchConfig, ['--quick']).quick and not parse_config(BenchConfig, ['--quick=False']).quick


def test_bench_quick_emits_every_figure(capsys):
    threads = torch.get_num_threads()
    bench_main(parse_config(BenchConfig, ['--quick', '--device=cpu']))
    assert torch.get_num_threads() == threads                    # bench sets 1 CPU thread, then restores
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
    assert sum('tokens/s | ratios' in line for line in lines) == 3   # a human-readable table per mode first


@pytest.mark.parametrize('args,words', [(['--modes=last,fast'], 'modes'), (['--seq_lens=1024'], 'block_size'),
                                        (['--batch_sizes=1,x'], 'comma-separated')])
def test_a_bad_grid_is_refused_naming_the_option(args, words):
    with pytest.raises(UserError, match=words):
        bench_main(parse_config(BenchConfig, ['--device=cpu', *args]))
