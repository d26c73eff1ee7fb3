"""
The BPE datasets: data/shakespeare (nanoGPT's token counts), data/openwebtext on local files (the OWT-like sample,
34 documents), and the clear offline error of the Hub sources. Shared data is read where it lies (NANOTAPER_SHARED,
default ../shared); nothing is copied into the repo.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('NANOTAPER_SHARED', os.path.join(REPO, '..', 'shared'))
TEXT = os.path.join(SHARED, 'data', 'tinyshakespeare.txt')
OWT_SAMPLE = os.path.join(SHARED, 'data', 'owt_sample', 'owt_like_sample.jsonl')
os.environ.setdefault('TIKTOKEN_CACHE_DIR', os.path.join(SHARED, 'data', 'tiktoken_cache'))  # offline GPT-2 BPE

tiktoken = pytest.importorskip('tiktoken')
needs_shared = pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, 'data', 'tiktoken_cache')),
                                  reason=f"no shared data at {SHARED} (set NANOTAPER_SHARED to the shared folder)")


def tokens(path):
    return np.fromfile(path, dtype=np.uint16)


def run_script(script, *args, tmp_path, **env):
    """Run a prepare.py as a user would, with the Hugging Face caches inside tmp_path."""
    env = dict(os.environ, HF_HOME=str(tmp_path / 'hf'), HF_DATASETS_CACHE=str(tmp_path / 'hf' / 'datasets'), **env)
    return subprocess.run([sys.executable, os.path.join(REPO, 'data', script, 'prepare.py'), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


@needs_shared
def test_shakespeare_bpe_matches_nanogpt_counts(tmp_path):
    import train
    (tmp_path / 'shakespeare').mkdir()
    os.symlink(TEXT, tmp_path / 'shakespeare' / 'input.txt')  # prepare() finds the text in its out_dir
    cfg = train.TrainConfig(dataset='shakespeare', data_root=str(tmp_path))
    data_dir = train.prepare_data(cfg, master=True)  # PREPARE_ON_DEMAND: train.py runs prepare() itself
    train_ids, val_ids = tokens(os.path.join(data_dir, 'train.bin')), tokens(os.path.join(data_dir, 'val.bin'))
    assert (len(train_ids), len(val_ids)) == (301_966, 36_059)  # nanoGPT's data/shakespeare/prepare.py
    enc = tiktoken.get_encoding('gpt2')
    with open(TEXT, encoding='utf-8') as f:
        assert enc.decode(train_ids.tolist()) + enc.decode(val_ids.tolist()) == f.read()
    assert train.read_vocab_size(data_dir) == 50304  # no meta.pkl: GPT-2's vocabulary, padded


@needs_shared
def test_openwebtext_from_local_files(tmp_path):
    with open(OWT_SAMPLE) as f:
        docs = [json.loads(line)['text'] for line in f]
    out = tmp_path / 'owt'
    r = run_script('openwebtext', '--files', OWT_SAMPLE, '--out_dir', str(out), '--num_proc', '2', tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    enc = tiktoken.get_encoding('gpt2')
    split = {s: tokens(out / f'{s}.bin') for s in ('train', 'val')}
    assert len(split['val']) > 0 and len(split['train']) > len(split['val'])
    # every document is whole in one split, ends with the end-of-text token, and none is lost or doubled
    found = []
    for ids in split.values():
        assert ids[-1] == enc.eot_token
        cuts = np.flatnonzero(ids == enc.eot_token)
        found += [enc.decode(d.tolist()) for d in np.split(ids, cuts + 1)[:-1]]
    assert sorted(found) == sorted(d + '<|endoftext|>' for d in docs)
    assert sum(map(len, split.values())) == sum(len(enc.encode_ordinary(d)) + 1 for d in docs)
    print(f"owt sample: train {len(split['train']):,} tokens, val {len(split['val']):,} tokens")


def test_hub_source_offline_says_how_to_give_files(tmp_path):
    # tinystories runs openwebtext's code on another Hub source, so this covers both scripts' error path
    r = run_script('tinystories', '--out_dir', str(tmp_path / 'out'), tmp_path=tmp_path, HF_HUB_OFFLINE='1')
    assert r.returncode != 0
    assert '--files' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / 'out' / 'train.bin').exists()
