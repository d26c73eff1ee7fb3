"""TinyStories (Eldan & Li 2023, the paper's pre-training set) in GPT-2's BPE, by data/openwebtext/prepare.py's code:
from the Hugging Face Hub (2.1M train stories, ~470M tokens; its own validation split becomes val), or local files.
$ python data/tinystories/prepare.py --num_proc=8
$ python data/tinystories/prepare.py --files TinyStories/data/*.parquet   # local files: 0.05% of them become val
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for `data.` when run as a script
from data.openwebtext.prepare import main  # noqa: E402

PREPARE_ON_DEMAND = False  # a long download: train.py asks you to run this script first

if __name__ == '__main__':
    main('roneneldan/TinyStories', HERE, __doc__)
