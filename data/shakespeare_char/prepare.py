"""Tiny Shakespeare as characters (nanoGPT's shakespeare_char): train.bin / val.bin (uint16 ids, 90/10 split)
and meta.pkl (the vocabulary), written beside this file or into out_dir.
$ python data/shakespeare_char/prepare.py                  # input.txt beside this file, else download it
$ python data/shakespeare_char/prepare.py path/to/input.txt  # a local copy of the text
"""
import os
import pickle
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for `data.` when run as a script
from data.common import OUTPUTS as BIN_FILES, publish, temporary  # noqa: E402

URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
PREPARE_ON_DEMAND = True  # small: train.py runs prepare() itself when a file is missing
OUTPUTS = BIN_FILES + ('meta.pkl',)


def read_text(src=None, out_dir=HERE):
    """The text from src (a path), else input.txt in out_dir or beside this file, else downloaded to HERE."""
    candidates = [src] if src else [os.path.join(out_dir, 'input.txt'), os.path.join(HERE, 'input.txt')]
    for path in candidates:
        if os.path.isfile(path):
            with open(path, encoding='utf-8') as f:
                return f.read()
    if src:
        raise FileNotFoundError(f"no file at {src}")
    import urllib.request
    target = os.path.join(HERE, 'input.txt')
    try:
        with urllib.request.urlopen(URL, timeout=30) as r:
            text = r.read().decode('utf-8')
    except OSError as e:
        raise FileNotFoundError(f"could not download tiny Shakespeare from {URL} ({e}). Offline, put the text at "
                                f"{target} (data/shakespeare reads it too), or pass its path: "
                                "python data/shakespeare_char/prepare.py PATH (or data/shakespeare/...)") from None
    with open(temporary(HERE, 'input.txt'), 'w', encoding='utf-8') as f:
        f.write(text)
    publish(HERE, ['input.txt'])
    return text


def write_splits(text, encode, out_dir):
    """train.bin and val.bin (uint16 ids): the first 90% of text's characters and the rest, each encoded on its own."""
    for split, part in (('train', text[:int(len(text) * 0.9)]), ('val', text[int(len(text) * 0.9):])):
        ids = np.array(encode(part), dtype=np.uint16)
        ids.tofile(temporary(out_dir, f'{split}.bin'))
        print(f"{split}: {len(ids):,} tokens")


def prepare(src=None, out_dir=HERE):
    text = read_text(src, out_dir)
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    write_splits(text, lambda part: [stoi[c] for c in part], out_dir)
    with open(temporary(out_dir, 'meta.pkl'), 'wb') as f:
        pickle.dump({'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': stoi}, f)
    publish(out_dir, OUTPUTS)
    print(f"{len(text):,} characters, vocabulary of {len(chars)}, written to {out_dir}")


if __name__ == '__main__':
    try:
        prepare(sys.argv[1] if len(sys.argv) > 1 else None)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
