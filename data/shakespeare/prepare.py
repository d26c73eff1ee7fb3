"""Tiny Shakespeare in GPT-2's BPE (nanoGPT's shakespeare): train.bin / val.bin (uint16 token ids), written beside
this file or into out_dir. The text and its 90/10 split by characters are shakespeare_char's; each part is encoded
on its own, so nanoGPT's counts come out: 301,966 train and 36,059 val tokens.
$ python data/shakespeare/prepare.py                  # the text of data/shakespeare_char (downloaded if missing)
$ python data/shakespeare/prepare.py path/to/input.txt  # a local copy (offline, TIKTOKEN_CACHE_DIR too)
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for `data.` when run as a script
from data.common import OUTPUTS, gpt2_encoding, publish  # noqa: E402
from data.shakespeare_char.prepare import read_text, write_splits  # noqa: E402  (one text, one reader, one split)

PREPARE_ON_DEMAND = True  # small: train.py runs prepare() itself when a file is missing


def prepare(src=None, out_dir=HERE):
    text = read_text(src, out_dir)
    write_splits(text, gpt2_encoding().encode_ordinary, out_dir)  # encode_ordinary: '<|endoftext|>' is text
    publish(out_dir, OUTPUTS)
    print(f"{len(text):,} characters in GPT-2's BPE, written to {out_dir}")


if __name__ == '__main__':
    try:
        prepare(sys.argv[1] if len(sys.argv) > 1 else None)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
