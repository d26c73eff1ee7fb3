"""OpenWebText in GPT-2's BPE (nanoGPT's openwebtext): train.bin / val.bin of uint16 token ids, every document
followed by the end-of-text token, written beside this file or into --out_dir. From the Hugging Face Hub through
`datasets` (8M documents, ~54 GB of cache; about 9B train and 4M val tokens), or from local files, offline:
$ python data/openwebtext/prepare.py --num_proc=8
$ python data/openwebtext/prepare.py --files owt/*.jsonl  # json/jsonl/parquet with 'text'; a .txt is one document
OpenWebText has only a train split, so 0.05% of its documents become val (nanoGPT's split, seed 2357).
data/tinystories/prepare.py runs the same code on another source.
"""
import argparse
import os
import sys

import numpy as np
from datasets import load_dataset
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root, for `data.` when run as a script
from data.common import OUTPUTS, gpt2_encoding, publish, temporary  # noqa: E402

PREPARE_ON_DEMAND = False  # a long download: train.py asks you to run this script first
FORMATS = {'.json': 'json', '.jsonl': 'json', '.parquet': 'parquet', '.txt': 'text'}


def load_source(hub_name, files, num_proc):
    """A DatasetDict from local files (all of one format) if given, else from the Hub."""
    if files:
        kinds = {FORMATS.get(os.path.splitext(f)[1]) for f in files}
        if len(kinds) != 1 or None in kinds:
            raise ValueError(f"--files takes files of one format, one of {sorted(FORMATS)}; got {files}")
        kind = kinds.pop()
        return load_dataset(kind, data_files=list(files), **({'sample_by': 'document'} if kind == 'text' else {}))
    try:
        return load_dataset(hub_name, num_proc=num_proc)
    except (OSError, RuntimeError) as e:  # offline (ConnectionError), not found, or a script `datasets` refuses
        raise FileNotFoundError(
            f"could not load {hub_name!r} from the Hugging Face Hub ({type(e).__name__}: {e}). Offline, give local "
            f"files: python {sys.argv[0]} --files a.jsonl b.jsonl ... (json/jsonl/parquet with a "
            "'text' field, or .txt files of one document each)") from None


def split(dsets, test_size, seed=2357):
    """train and val: the source's own validation split if it has one (TinyStories), else a slice of train."""
    if 'validation' in dsets:
        return {'train': dsets['train'], 'val': dsets['validation']}
    parts = dsets['train'].train_test_split(test_size=test_size, seed=seed, shuffle=True)  # >= 1 val document
    return {'train': parts['train'], 'val': parts['test']}


def tokenize(example, enc):
    ids = enc.encode_ordinary(example['text']) + [enc.eot_token]  # '<|endoftext|>' in a text is text; 50256 ends it
    return {'ids': ids, 'len': len(ids)}


def write(dset, path, shards=1024):
    """Concatenate dset's token lists into one uint16 memmap at path, a contiguous shard at a time."""
    n = int(np.sum(dset['len'], dtype=np.uint64))
    arr = np.memmap(path, dtype=np.uint16, mode='w+', shape=(n,))  # GPT-2's 50257 ids fit in 16 bits
    idx, shards = 0, min(shards, len(dset))                        # no empty shards for a small source
    for i in tqdm(range(shards), desc=f'writing {path}'):
        ids = np.concatenate(dset.shard(num_shards=shards, index=i, contiguous=True).with_format('numpy')['ids'])
        arr[idx:idx + len(ids)] = ids
        idx += len(ids)
    arr.flush()
    return n


def prepare(hub_name='openwebtext', files=None, out_dir=HERE, num_proc=8, test_size=0.0005):
    dsets = split(load_source(hub_name, files, num_proc), test_size)  # first: offline, its error says what to do
    enc = gpt2_encoding()
    for name, dset in dsets.items():
        if 'text' not in dset.column_names:
            raise ValueError(f"the {name} split has no 'text' column (it has {dset.column_names})")
        tokens = dset.map(tokenize, fn_kwargs=dict(enc=enc), remove_columns=dset.column_names,
                          desc=f'tokenizing {name}', num_proc=num_proc)
        n = write(tokens, temporary(out_dir, f'{name}.bin'))
        print(f"{name}: {len(dset):,} documents, {n:,} tokens")
    publish(out_dir, OUTPUTS)  # only now: an interrupted run leaves no half-written .bin


def main(hub_name, out_dir, doc):
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--files', nargs='+', help="local json/jsonl/parquet/txt files instead of the Hub")
    parser.add_argument('--hub', default=hub_name, help="the dataset's name on the Hugging Face Hub")
    parser.add_argument('--out_dir', default=out_dir)
    parser.add_argument('--num_proc', type=int, default=8, help="processes for loading and tokenizing")
    args = parser.parse_args()
    try:
        prepare(args.hub, args.files, args.out_dir, args.num_proc)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == '__main__':
    main('openwebtext', HERE, __doc__)
