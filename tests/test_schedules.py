"""METHOD.md §4 and nanoGPT's learning rate: pure functions of the iteration, checked at their edges."""
import math

import pytest

from configurator import UserError, parse_config
from model import GPT, GPTConfig
from train import TrainConfig, calibration_due, get_gate, get_lr


def test_gate_is_one_through_taper_start_then_a_half_cosine_to_zero():
    start, end = 100, 300
    assert [get_gate(k, start, end) for k in (0, 50, 100)] == [1.0, 1.0, 1.0]
    assert get_gate(101, start, end) < 1.0
    assert get_gate(200, start, end) == pytest.approx(0.5, abs=1e-12)       # midpoint of the cosine
    assert get_gate(150, start, end) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), abs=1e-12)
    assert get_gate(299, start, end) > 0.0
    assert [get_gate(k, start, end) for k in (300, 301, 10_000)] == [0.0, 0.0, 0.0]
    gates = [get_gate(k, start, end) for k in range(0, 400)]
    assert all(a >= b for a, b in zip(gates, gates[1:]))                    # never rises


def test_fakeln_gate_is_the_share_of_norms_still_on_each_removed_at_its_own_step():
    """METHOD.md §11: norm i of n goes at taper_start + ceil((i + 1) * (taper_end - taper_start) / n)."""
    removed_at = [5, 7, 10, 12]                                             # 2 + ceil(2.5), 2 + 5, 2 + ceil(7.5), 12
    assert [get_gate(k, 2, 12, removals=4) for k in range(15)] == \
        [1 - sum(k >= r for r in removed_at) / 4 for k in range(15)]
    assert get_gate(2, 2, 12, removals=40) == 1.0 and get_gate(3, 2, 12, removals=40) == 0.9  # 4 norms a step
    assert get_gate(12, 2, 12, removals=40) == 0.0


@pytest.mark.parametrize('start,end', [(100, 100), (200, 100), (-1, 10)])
def test_gate_rejects_an_empty_or_reversed_taper(start, end):
    with pytest.raises(ValueError, match='taper_start < taper_end'):
        get_gate(0, start, end)


@pytest.mark.parametrize('overrides,key', [
    (['--taper_start=500', '--taper_end=400'], 'taper_start'),
    (['--taper_end=2001'], 'taper_end'),
    (['--taper_start=-5'], 'taper_start'),
])
def test_the_config_rejects_a_schedule_outside_the_run(overrides, key):
    with pytest.raises(UserError, match=key):
        parse_config(TrainConfig, ['--max_iters=2000', '--taper=internal'] + overrides)


def test_eval_only_still_needs_an_ordered_schedule_but_not_one_inside_max_iters():
    with pytest.raises(UserError, match='taper_start'):  # the gate at any iteration needs start < end
        parse_config(TrainConfig, ['--max_iters=2000', '--taper=internal', '--eval_only', '--taper_start=500',
                                   '--taper_end=400'])
    cfg = parse_config(TrainConfig, ['--max_iters=0', '--taper=internal', '--eval_only', '--taper_start=500',
                                     '--taper_end=1250'])
    assert (cfg.taper_start, cfg.taper_end) == (500, 1250)


@pytest.mark.parametrize('start,expected_end', [(400, 1000), (200, 875), (1999, 2000), (1990, 1994)])
def test_a_set_taper_start_tapers_over_three_eighths_of_what_is_left(start, expected_end):
    """400 -> 1000 of 2000: the main job's schedule; 1999: the taper takes the one step that is left."""
    cfg = parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', f'--taper_start={start}'])
    assert (cfg.taper_start, cfg.taper_end) == (start, expected_end)


def test_left_out_the_calibration_point_is_found_during_the_run():
    cfg = parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', '--warmup_iters=100'])
    assert (cfg.taper_start, cfg.taper_end, cfg.level_window, cfg.level_growth) == (None, None, 100, 0.05)
    with pytest.raises(UserError, match='neither'):  # an end needs its start
        parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', '--taper_end=1000'])
    with pytest.raises(UserError, match='warmup_iters=3000'):  # it never calibrates inside the warmup
        parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', '--warmup_iters=3000'])
    parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', '--warmup_iters=3000', '--decay_lr=False'])


def test_calibration_is_due_once_s_levels_off_never_in_the_warmup_and_at_the_latest_half_way():
    cfg = parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', '--warmup_iters=300'])
    assert not calibration_due(200, cfg, growth=0.0)               # level, but inside the warmup
    assert not calibration_due(300, cfg, growth=0.0)               # ... a window that was all warmup
    assert calibration_due(400, cfg, growth=0.0)                   # level over a whole window after it
    assert calibration_due(600, cfg, growth=0.049)                 # grew by less than 5% over the window
    assert not calibration_due(600, cfg, growth=0.051)             # still growing
    assert not calibration_due(650, cfg)                           # between window ends: s is not read
    assert not calibration_due(900, cfg, growth=math.inf)          # no level window yet: not before half-way
    assert calibration_due(1000, cfg) and calibration_due(1000, cfg, growth=1.0)  # half-way: at the latest
    late = parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', '--warmup_iters=1500'])
    assert not calibration_due(1000, late) and calibration_due(1500, late)  # ... but never inside the warmup
    flat = parse_config(TrainConfig, ['--taper=internal', '--warmup_iters=1500', '--decay_lr=False'])
    assert calibration_due(100, flat, growth=0.0)                  # no warmup (a run's first window: inf)


def test_s_growth_compares_the_bias_corrected_ema_of_s_with_its_value_a_window_ago():
    """The EMA of s starts at 0: after k steps of a constant s it is s (1 - d^k), and bias-corrected exactly s."""
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8, taper='internal'))
    d = model.config.ema_decay
    for k, s, growth in ((100, 2.0, math.inf), (200, 2.2, 0.1), (300, 2.2, 0.0), (400, 2.09, -0.05)):
        model.s_ema.fill_(s * (1 - d ** k))
        model.ema_steps.fill_(k)
        # float32 buffers: a few roundings of 2^-24 each on values near 1
        assert model.s_growth() == (growth if math.isinf(growth) else pytest.approx(growth, abs=1e-6)), k
        assert model.s_ref.item() == pytest.approx(s, rel=1e-6)       # the next window compares with this


def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    cfg = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, lr_decay_iters=110, max_iters=200)
    assert get_lr(0, cfg) == pytest.approx(1e-3 / 11)
    assert get_lr(9, cfg) == pytest.approx(1e-3 * 10 / 11)
    assert get_lr(10, cfg) == pytest.approx(1e-3)                           # top of the cosine
    assert get_lr(60, cfg) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))     # halfway down
    assert get_lr(110, cfg) == pytest.approx(1e-4)
    assert get_lr(150, cfg) == 1e-4
    cfg.decay_lr = False
    assert get_lr(150, cfg) == 1e-3
