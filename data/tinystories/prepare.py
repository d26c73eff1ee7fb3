"""
TinyStories (Eldan & Li 2023, the paper's pre-training set) in GPT-2's BPE: train.bin / val.bin of uint16 token ids,
every story followed by the end-of-text token, written beside this file or into --out_dir. From the Hugging Face Hub
through `datasets` (2.1M train stories, ~470M tokens; its own validation split becomes val), or from local files:
$ python data/tinystories/prepare.py --num_proc=8
$ python data/tinystories/prepare.py --files TinyStories/data/*.parquet   # local files: 0.05% of them become val
The code is data/openwebtext/prepare.py's; only the source differs.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for `data.` when run as a script
from data.openwebtext.prepare import main  # noqa: E402

PREPARE_ON_DEMAND = False  # a long download: train.py asks you to run this script first

if __name__ == '__main__':
    main('roneneldan/TinyStories', HERE, __doc__)
