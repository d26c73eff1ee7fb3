"""
The KV cache (cached and uncached logits and greedy tokens agree for every kind of model) and sample.py
(character and GPT-2 BPE vocabularies, prompts from files, a clear error for characters outside the vocabulary).
"""
import os
import pickle
from dataclasses import asdict

import pytest
import torch
from conftest import OFFLINE, REPO, assert_one_error_line, cli
from torch.testing import assert_close

from checkpoint import KIND
from configurator import UserError, parse_config
from fold import fold_model
from model import GPT, GPTConfig, KVCache, sample_next
from sample import SampleConfig, main as sample_main
from tests.test_fold import V, one_thread, tapered_model  # noqa: F401 (one_thread: an autouse fixture)

MODELS = {  # name -> a tiny float64 model of that kind, with random non-identity norm parameters
    'layernorm': lambda: tapered_model('layernorm', 'off', bias=True),
    'rmsnorm': lambda: tapered_model('rmsnorm', 'off'),
    'none': lambda: tapered_model('none', 'off'),
    'taper g=1': lambda: tapered_model('layernorm', 'all', gate=1.0),
    'taper g=0.4': lambda: tapered_model('layernorm', 'internal', bias=True, gate=0.4),
    'taper g=0': lambda: tapered_model('rmsnorm', 'all', gate=0.0),
    'folded': lambda: fold_model(tapered_model('layernorm', 'all', bias=True)),
}


@pytest.mark.parametrize('kind', MODELS)
def test_kv_cache_logits_match_the_full_forward(kind):
    model = MODELS[kind]()
    idx = torch.randint(V, (2, 16), generator=torch.Generator().manual_seed(0))
    full, _, _ = model(idx, idx)                          # (B, T, V), every position at once
    cache = KVCache(model.config, 2, 16, 'cpu', torch.float64)
    prefill, _, _ = model(idx[:, :5], kv_cache=cache)     # (B, 1, V) at position 4
    steps = [prefill] + [model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(5, 16)]
    assert cache.pos == 16
    assert_close(torch.cat(steps, dim=1), full[:, 4:], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('kind', ['taper g=0.4', 'folded'])
def test_kv_cache_from_a_one_token_prompt_matches_the_full_forward(kind):
    """The cache's first step writes position 0 alone and every later one attends back to it (position 1 on)."""
    model = MODELS[kind]()
    idx = torch.randint(V, (2, 6), generator=torch.Generator().manual_seed(1))
    full, _, _ = model(idx, idx)
    cache = KVCache(model.config, 2, 16, 'cpu', torch.float64)
    steps = [model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(6)]
    assert_close(torch.cat(steps, dim=1), full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('kind', MODELS)  # prompts within block_size 16, growing past it (cropping), filling it, longer
@pytest.mark.parametrize('prompt_len,new', [(3, 12), (5, 30), (16, 4), (20, 4)])
def test_cached_and_uncached_greedy_tokens_agree(kind, prompt_len, new):
    model = MODELS[kind]()
    idx = torch.randint(V, (2, prompt_len), generator=torch.Generator().manual_seed(0))
    cached = model.generate(idx, new, temperature=0, use_cache=True)
    assert cached.shape == (2, prompt_len + new)
    assert torch.equal(cached, model.generate(idx, new, temperature=0, use_cache=False))


def test_generate_uses_the_cache_until_the_window_slides(monkeypatch):
    model = MODELS['folded']()
    seen = []
    forward = model.forward
    monkeypatch.setattr(model, 'forward', lambda idx, *a, **k: seen.append(idx.size(1)) or forward(idx, *a, **k))
    model.generate(torch.zeros(1, 3, dtype=torch.long), 16, temperature=0)
    # a 3-token prefill, one token per step until the block's 16 positions are full, then cropped windows of 16
    assert seen == [3] + [1] * 13 + [16] * 2


def drawn(logits, **options):
    """The set of tokens sample_next draws from one row of logits, over 4,000 draws (seeded): every token left
    with a probability above 1% is all but certain to appear (missed with probability below e^-40)."""
    torch.manual_seed(0)
    return set(sample_next(torch.tensor([logits]).expand(4000, -1), **options).flatten().tolist())


def test_top_k_keeps_exactly_the_k_most_likely_tokens():
    logits = [3.0, 2.0, 1.0, 0.0, -1.0]                                # probabilities 0.64 ... 0.012
    assert drawn(logits, top_k=1) == {0}
    assert drawn(logits, top_k=2) == {0, 1}                            # the k-th token stays
    assert drawn(logits, top_k=5) == drawn(logits) == {0, 1, 2, 3, 4}


def test_top_p_keeps_the_smallest_set_of_tokens_that_reaches_top_p():
    logits = torch.tensor([0.1, 0.6, 0.3]).log().tolist()              # not sorted: the nucleus is found by value
    assert drawn(logits, top_p=0.5) == {1}                             # 0.6 alone reaches 0.5
    assert drawn(logits, top_p=0.8) == {1, 2}                          # the token that crosses 0.8 stays
    assert drawn(logits, top_p=1.0) == {0, 1, 2}
    assert drawn(logits, top_k=1, top_p=1.0) == {1}                    # the two trims compose


def test_temperature_comes_first_so_the_nucleus_is_that_of_the_tempered_distribution():
    logits = torch.tensor([0.1, 0.6, 0.3]).log().tolist()
    # at temperature 3 the probabilities are those of p^(1/3): 0.23, 0.43, 0.34, and 0.43 alone no longer reaches 0.5
    assert drawn(logits, temperature=3.0, top_p=0.5) == {1, 2}
    assert drawn(logits, temperature=0.5, top_p=0.75) == {1}           # p^2: 0.78 of it on the first (untempered, 0.6)


# ----------------------------------------------------------------------------------------------
# sample.py

def char_checkpoint(tmp_path, chars='\n !,.:?ABCTabcdefghijklmnopqrstuvwxyz'):
    (tmp_path / 'chars').mkdir()
    with open(tmp_path / 'chars' / 'meta.pkl', 'wb') as f:
        pickle.dump(dict(vocab_size=len(chars), itos=dict(enumerate(chars)),
                         stoi={c: i for i, c in enumerate(chars)}), f)
    model = GPT(GPTConfig(block_size=16, vocab_size=len(chars), n_layer=1, n_head=2, n_embd=8))
    path = tmp_path / 'ckpt.pt'
    torch.save(dict(kind=KIND, model_args=asdict(model.config), model=model.state_dict(),
                    config=dict(data_root=str(tmp_path), dataset='chars')), path)
    return str(path)


def test_sample_char_vocabulary(tmp_path):
    ckpt = char_checkpoint(tmp_path)
    (tmp_path / 'prompt.txt').write_text('To be, or')
    samples = sample_main(SampleConfig(ckpt=ckpt, start='FILE:' + str(tmp_path / 'prompt.txt'), num_samples=2,
                                       max_new_tokens=20, device='cpu'))
    assert len(samples) == 2 and all(s.startswith('To be, or') and len(s) == 9 + 20 for s in samples)


def test_sample_names_characters_outside_the_vocabulary(tmp_path):
    ckpt = char_checkpoint(tmp_path)
    with pytest.raises(UserError, match=r"outside the 37-character vocabulary .*meta\.pkl: '#', 'Z', 'é'"):
        sample_main(SampleConfig(ckpt=ckpt, start='ZZ top# café', device='cpu'))


def test_a_character_model_without_its_vocabulary_is_refused_not_decoded_as_bpe(tmp_path):
    ckpt = char_checkpoint(tmp_path)
    os.remove(tmp_path / 'chars' / 'meta.pkl')
    with pytest.raises(UserError, match=r"no \S*chars/meta\.pkl for this 37-token model: sample where it trained"):
        sample_main(SampleConfig(ckpt=ckpt, device='cpu'))


def test_sample_gpt2_bpe(tmp_path):
    tiktoken = pytest.importorskip('tiktoken')
    try:
        tiktoken.get_encoding('gpt2')
    except Exception as e:  # offline without TIKTOKEN_CACHE_DIR pointing at the BPE files
        pytest.skip(f"GPT-2 BPE files unavailable: {e}")
    model = GPT(GPTConfig(block_size=16, vocab_size=50304, n_layer=1, n_head=2, n_embd=8))
    torch.save(dict(kind=KIND, model_args=asdict(model.config), model=model.state_dict(),
                    config=dict(data_root=str(tmp_path), dataset='owt')), tmp_path / 'ckpt.pt')
    samples = sample_main(SampleConfig(out_dir=str(tmp_path), start='Hello world', num_samples=1,
                                       max_new_tokens=5, device='cpu', top_p=0.9))
    assert samples[0].startswith('Hello world')


def test_top_p_one_keeps_every_token_and_is_accepted():
    assert parse_config(SampleConfig, ['--top_p=1.0']).top_p == 1.0


@pytest.mark.parametrize('option,words', [('--temperature=-1', 'temperature must be >= 0, got -1.0'),
                                          ('--top_k=0', 'top_k must be >= 1, got 0'), ('--top_p=1.5', 'top_p=1.5'),
                                          ('--top_p=0', 'top_p=0.0'), ('--max_new_tokens=-5', 'max_new_tokens'),
                                          ('--num_samples=0', 'num_samples')])
def test_sample_options_out_of_range_are_refused_by_name(option, words):
    with pytest.raises(UserError, match=words.replace('.', r'\.')):
        parse_config(SampleConfig, [option])


def test_the_defaults_find_the_quick_starts_run():
    from train import TrainConfig
    from fold import FoldConfig
    quick_start = parse_config(TrainConfig, [os.path.join(REPO, 'config', 'taper.py')]).out_dir
    assert SampleConfig().out_dir == quick_start and FoldConfig().ckpt == os.path.join(quick_start, 'ckpt.pt')


def test_sample_bpe_offline_is_one_line(tmp_path):
    model = GPT(GPTConfig(block_size=16, vocab_size=50304, n_layer=1, n_head=2, n_embd=8))
    torch.save(dict(kind=KIND, model_args=asdict(model.config), model=model.state_dict(),
                    config=dict(data_root=str(tmp_path), dataset='owt')), tmp_path / 'ckpt.pt')
    r = cli('sample.py', f'--out_dir={tmp_path}', '--device=cpu', cwd=tmp_path,
            TIKTOKEN_CACHE_DIR=str(tmp_path / 'no-cache'), **OFFLINE)
    assert_one_error_line(r, 'TIKTOKEN_CACHE_DIR')
