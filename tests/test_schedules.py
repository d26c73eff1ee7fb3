"""METHOD.md §4 and nanoGPT's learning rate: pure functions of the iteration, checked at their edges."""
import math

import pytest

from configurator import UserError, parse_config
from train import TrainConfig, get_gate, get_lr, norms_removed, schedule_warning


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


def test_fakeln_removes_its_norms_one_at_a_time_each_at_its_own_step():
    """METHOD.md §11: norm i of n goes at taper_start + ceil((i + 1) * (taper_end - taper_start) / n)."""
    removed_at = [5, 7, 10, 12]                                             # 2 + ceil(2.5), 2 + 5, 2 + ceil(7.5), 12
    assert [norms_removed(k, 2, 12, 4) for k in range(15)] == [sum(k >= r for r in removed_at) for k in range(15)]
    assert norms_removed(2, 2, 12, 40) == 0 and norms_removed(3, 2, 12, 40) == 4   # 4 norms a step
    assert norms_removed(12, 2, 12, 40) == 40


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
        parse_config(TrainConfig, ['--max_iters=2000', '--warmup_iters=100', '--taper=internal'] + overrides)


def test_eval_only_still_needs_an_ordered_schedule_but_not_one_inside_max_iters():
    with pytest.raises(UserError, match='taper_start'):  # the gate at any iteration needs start < end
        parse_config(TrainConfig, ['--max_iters=2000', '--taper=internal', '--eval_only', '--taper_start=500',
                                   '--taper_end=400'])
    cfg = parse_config(TrainConfig, ['--max_iters=0', '--taper=internal', '--eval_only', '--taper_start=500',
                                     '--taper_end=1250'])
    assert (cfg.taper_start, cfg.taper_end) == (500, 1250)


@pytest.mark.parametrize('max_iters,warmup,expected', [
    (2000, 100, (100, 1050, 2000)),      # the main job: g = 1 through the warmup, 0 half-way through the rest
    (300, 100, (100, 200, 300)),         # a short run keeps the shape: warmup, taper, as many steps at g = 0
    (4000, 100, (100, 2050, 4000)),
    (101, 100, (100, 101, 101)),         # one step left: the taper takes it
])
def test_left_out_the_schedules_follow_the_run_length(max_iters, warmup, expected):
    cfg = parse_config(TrainConfig, ['--taper=internal', f'--max_iters={max_iters}', f'--warmup_iters={warmup}'])
    assert (cfg.taper_start, cfg.taper_end, cfg.lr_decay_iters) == expected
    assert get_gate(cfg.max_iters, cfg.taper_start, cfg.taper_end) == 0.0   # every run that tapers ends foldable
    assert get_lr(cfg.max_iters, cfg) == cfg.min_lr                        # and with its learning rate decayed


def test_a_set_schedule_is_kept_and_no_warmup_starts_the_taper_at_once():
    cfg = parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', '--warmup_iters=100', '--taper_start=400'])
    assert (cfg.taper_start, cfg.taper_end) == (400, 1200)                # half of what follows the set start
    cfg = parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', '--warmup_iters=100', '--taper_start=400',
                                     '--taper_end=1000', '--lr_decay_iters=1500'])
    assert (cfg.taper_start, cfg.taper_end, cfg.lr_decay_iters) == (400, 1000, 1500)
    cfg = parse_config(TrainConfig, ['--taper=internal', '--max_iters=2000', '--decay_lr=False'])
    assert (cfg.taper_start, cfg.taper_end) == (0, 1000)                 # no warmup to wait for


def test_a_warmup_longer_than_the_run_is_refused_naming_both():
    with pytest.raises(UserError, match=r'lr_decay_iters=50 \(max_iters when left out\) must exceed warmup_iters=100'):
        parse_config(TrainConfig, ['--taper=internal', '--max_iters=50', '--warmup_iters=100'])
    with pytest.raises(UserError, match='taper_start=100, taper_end=101, max_iters=50'):  # the lr need not decay
        parse_config(TrainConfig, ['--taper=internal', '--max_iters=50', '--warmup_iters=100', '--lr_decay_iters=200'])


@pytest.mark.parametrize('args,warns', [
    (['--max_iters=300'], False),                          # a taper of 100 steps: as long as c's EMA averages over
    (['--max_iters=298'], True),                           # 99 steps: too short for c to follow the stream
    (['--max_iters=2000', '--taper_start=400', '--taper_end=450'], True),
    (['--max_iters=298', '--follow_c=False'], False),     # c is frozen at taper_start anyway: nothing to follow
    (['--max_iters=298', '--removal=fakeln', '--fakeln_divisor=ema'], False),  # FakeLN switches each at once
    (['--max_iters=298', '--taper=off'], False),
])
def test_a_taper_shorter_than_the_ema_of_c_warns_in_one_line_with_the_fix(args, warns):
    cfg = parse_config(TrainConfig, ['--taper=internal', '--warmup_iters=100'] + args)
    warning = schedule_warning(cfg)
    assert (warning is not None) == warns
    if warns:
        assert warning.startswith('warning: ') and '\n' not in warning
        assert f'taper_start={cfg.taper_start} to taper_end={cfg.taper_end}' in warning and 'max_iters >= ' in warning


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
