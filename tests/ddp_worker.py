"""
`python train.py ...` for tests/test_ddp.py to launch with torchrun, plus a window into every rank (only rank 0
writes checkpoints): right after calibrate(), each rank saves its c and s_tgt to $DDP_SPY_DIR/rank<RANK>.pt.
"""
import os

import torch

import train
from common import run_main
from model import GPT

calibrate = GPT.calibrate


def calibrate_and_save(model):
    calibrate(model)
    torch.save(dict(c=[m.c.clone() for m in model.taper_norms()], s_tgt=model.s_tgt.clone()),
               os.path.join(os.environ['DDP_SPY_DIR'], f"rank{os.environ['RANK']}.pt"))


GPT.calibrate = calibrate_and_save
run_main(train.train, train.TrainConfig)
