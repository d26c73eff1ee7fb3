import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.environ.get('NANOTAPER_SHARED', os.path.join(os.path.dirname(REPO), 'shared'))
os.environ.setdefault('TIKTOKEN_CACHE_DIR', os.path.join(SHARED, 'data', 'tiktoken_cache'))


def shakespeare_path():
    for path in (os.path.join(SHARED, 'data', 'tinyshakespeare.txt'),
                 os.path.join(REPO, 'data', 'shakespeare_char', 'input.txt')):
        if os.path.isfile(path):
            return path
    pytest.skip("tiny Shakespeare not found: set NANOTAPER_SHARED or put it at data/shakespeare_char/input.txt")


@pytest.fixture(scope='session')
def shakespeare_slice(tmp_path_factory):
    """A data root holding shakespeare_char prepared from the first 200,000 characters of the real text."""
    import runpy
    root = tmp_path_factory.mktemp('data')
    with open(shakespeare_path(), encoding='utf-8') as f:
        text = f.read()[:200_000]
    src = root / 'slice.txt'
    src.write_text(text, encoding='utf-8')
    prepare = runpy.run_path(os.path.join(REPO, 'data', 'shakespeare_char', 'prepare.py'))['prepare']
    prepare(src=str(src), out_dir=str(root / 'shakespeare_char'))
    return str(root)
