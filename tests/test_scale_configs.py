"""
The scale-up configs load and validate, and each LayerNorm control is its taper run with taper='off': the pairs
are standalone files (a config reads alone), so this is what keeps them from drifting apart.
"""
import dataclasses
import os

import pytest

from common import parse_config
from train import TrainConfig

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config')
RUN_NAMES = ('out_dir', 'wandb_run_name')  # where the two runs must differ


@pytest.mark.parametrize('taper_run, control', [('finetune_gpt2_taper', 'finetune_gpt2_layernorm'),
                                                ('owt_taper', 'owt_layernorm'),
                                                ('tinystories_taper', 'tinystories_layernorm')])
def test_control_is_the_taper_run_without_taper(taper_run, control):
    a, b = (dataclasses.asdict(parse_config(TrainConfig, [os.path.join(CONFIG, f'{name}.py')]))
            for name in (taper_run, control))
    assert (a['taper'], b['taper']) == ('internal', 'off')
    assert a['out_dir'] != b['out_dir']
    assert {k: v for k, v in a.items() if k not in ('taper', *RUN_NAMES)} == \
        {k: v for k, v in b.items() if k not in ('taper', *RUN_NAMES)}
