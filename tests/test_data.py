"""
The datasets: every prepare.py leaves a folder whole or without its files, train.py prepares (or names) what is
missing; data/shakespeare gives nanoGPT's token counts, data/openwebtext works on local files (the OWT-like
sample, 34 documents), and every offline failure is one line. Shared data is read where it lies
(NANOTAPER_SHARED, default ../shared); nothing is copied into the repo.
"""
import json
import os
import runpy
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import OFFLINE, assert_one_error_line, shakespeare_path

import train
import train_setup
from configurator import UserError

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
    (tmp_path / 'shakespeare').mkdir()
    os.symlink(TEXT, tmp_path / 'shakespeare' / 'input.txt')  # prepare() finds the text in its out_dir
    cfg = train.TrainConfig(dataset='shakespeare', data_root=str(tmp_path))
    data_dir = train_setup.prepare_data(cfg)  # PREPARE_ON_DEMAND: train.py runs prepare() itself
    train_ids, val_ids = tokens(os.path.join(data_dir, 'train.bin')), tokens(os.path.join(data_dir, 'val.bin'))
    assert (len(train_ids), len(val_ids)) == (301_966, 36_059)  # nanoGPT's data/shakespeare/prepare.py
    enc = tiktoken.get_encoding('gpt2')
    with open(TEXT, encoding='utf-8') as f:
        assert enc.decode(train_ids.tolist()) + enc.decode(val_ids.tolist()) == f.read()
    assert train_setup.read_vocab_size(data_dir) == 50304  # no meta.pkl: GPT-2's vocabulary, padded


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
    r = run_script('tinystories', '--out_dir', str(tmp_path / 'out'), tmp_path=tmp_path, **OFFLINE)
    assert_one_error_line(r, '--files')
    assert not (tmp_path / 'out' / 'train.bin').exists()
    r = run_script('tinystories', '--files', str(tmp_path / 'a.csv'), tmp_path=tmp_path)
    assert_one_error_line(r, '--files takes files of one format')


# ----------------------------------------------------------------------------------------------
# A dataset folder is whole or lacks its files; train.py re-prepares or says what to run

@pytest.mark.parametrize('dataset', ['shakespeare_char', pytest.param('shakespeare', marks=needs_shared)])
def test_an_interrupted_preparation_leaves_no_file_under_its_real_name(tmp_path, dataset):
    prepare = runpy.run_path(os.path.join(REPO, 'data', dataset, 'prepare.py'))['prepare']

    def killed(*args):
        raise KeyboardInterrupt  # the moment before the finished files would be renamed into place
    prepare.__globals__['publish'] = killed
    with pytest.raises(KeyboardInterrupt):
        prepare(src=shakespeare_path(), out_dir=str(tmp_path))
    assert not any(name.endswith(('.bin', '.pkl')) for name in os.listdir(tmp_path)), os.listdir(tmp_path)


def test_each_process_writes_under_temporary_names_of_its_own(tmp_path):
    code = f"from data.common import temporary; print(temporary({str(tmp_path)!r}, 'train.bin'))"
    other = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True).stdout.strip()
    from data.common import temporary
    mine = temporary(str(tmp_path), 'train.bin')
    assert other != mine and os.path.dirname(other) == os.path.dirname(mine) == str(tmp_path)


def test_two_runs_preparing_one_dataset_at_once_both_succeed(tmp_path):
    """A sweep starts two runs at once on a fresh clone: each prepares shakespeare_char into the same folder, each
    under temporary names of its own, and both publish whole files."""
    script = os.path.join(REPO, 'data', 'shakespeare_char', 'prepare.py')
    code = f"import runpy; runpy.run_path({script!r})['prepare'](src={shakespeare_path()!r}, out_dir={str(tmp_path)!r})"
    runs = [subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)]
    assert [r.wait(timeout=120) for r in runs] == [0, 0], [r.stderr.read() for r in runs]
    assert sorted(os.listdir(tmp_path)) == ['meta.pkl', 'train.bin', 'val.bin']
    n = os.path.getsize(shakespeare_path())                             # tiny Shakespeare is ASCII: a byte a token
    assert (tmp_path / 'train.bin').stat().st_size + (tmp_path / 'val.bin').stat().st_size == 2 * n


@pytest.mark.parametrize('left', [{'train.bin': b''},                                   # what the old code left
                                  {'train.bin': b'', 'val.bin': b'12', 'meta.pkl': b'x'},   # one empty file
                                  {'train.bin': b'1234', 'val.bin': b'123', 'meta.pkl': b'x'}])  # half a token
def test_train_prepares_an_incomplete_folder_again(tmp_path, left):
    data_dir = tmp_path / 'shakespeare_char'
    data_dir.mkdir()
    for name, content in left.items():
        (data_dir / name).write_bytes(content)
    os.symlink(shakespeare_path(), data_dir / 'input.txt')
    train_setup.prepare_data(train.TrainConfig(dataset='shakespeare_char', data_root=str(tmp_path)))
    assert all((data_dir / name).stat().st_size > 0 for name in ('train.bin', 'val.bin', 'meta.pkl'))
    assert train_setup.read_vocab_size(str(data_dir)) == 65


def test_train_names_what_to_run_for_a_dataset_it_cannot_prepare(tmp_path):
    with pytest.raises(UserError, match=r"'openwebtext' is incomplete.*val\.bin.*python data/openwebtext/prepare\.py"):
        train_setup.prepare_data(train.TrainConfig(dataset='openwebtext', data_root=str(tmp_path)))
    os.makedirs(tmp_path / 'openwebtext')
    (tmp_path / 'openwebtext' / 'train.bin').write_bytes(b'1234')
    (tmp_path / 'openwebtext' / 'val.bin').write_bytes(b'12345')     # 2 bytes a token: cut inside its last token
    with pytest.raises(UserError, match=r"incomplete, \S*openwebtext/val\.bin missing, empty or truncated: run python"):
        train_setup.prepare_data(train.TrainConfig(dataset='openwebtext', data_root=str(tmp_path)))


def test_offline_without_the_text_is_one_line(tmp_path):
    """A fresh copy of the repo without tiny Shakespeare, and no network: train.py and prepare.py say where to put
    the text, in one line."""
    copy = tmp_path / 'repo'
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns('.git', 'input.txt', '*.bin', '*.pkl', 'out*', 'results'))
    env = dict(os.environ, OMP_NUM_THREADS='1', **OFFLINE)
    for cmd in (['train.py', 'config/taper.py'], ['data/shakespeare_char/prepare.py']):
        r = subprocess.run([sys.executable, *cmd], cwd=copy, env=env, capture_output=True, text=True, timeout=120)
        assert_one_error_line(r, 'could not download tiny Shakespeare', 'put the text at')
    assert not any(name.endswith(('.bin', '.pkl')) for name in os.listdir(copy / 'data' / 'shakespeare_char'))
