"""
checkpoint.load_gpt2 against the reference itself: a tiny random GPT-2 built with `transformers` (random gains and
biases too), saved locally, loaded through each local path, must give transformers' logits (float64) and the same
greedy tokens, with LayerNorm and with TaperNorm at g = 1. No network: the Hub path is the same code as the
directory path (GPT2LMHeadModel.from_pretrained with a name instead of a folder).
"""
import os

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from checkpoint import load_checkpoint, load_gpt2
from configurator import UserError, parse_config
from model import GPT
from train import TrainConfig, train
from train_setup import get_batch

transformers = pytest.importorskip('transformers')
save_file = pytest.importorskip('safetensors.torch').save_file  # safetensors comes with transformers

# 'gelu' (exact) here; real GPT-2's tanh approximation ('gelu_new') is checked on its own below.
TINY = dict(vocab_size=96, n_positions=32, n_embd=24, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None)


def tiny_gpt2(tmp_path_factory, activation):
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(activation_function=activation, **TINY))
    with torch.no_grad():  # GPT-2's init leaves gains at 1 and biases at 0: a mapping that mixed them up would pass
        for p in hf.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp(f'tiny-gpt2-{activation}')
    hf.save_pretrained(path)                               # config.json + model.safetensors
    torch.save(hf.state_dict(), path / 'pytorch_model.bin')  # a bare .bin beside the same config.json
    # the layout of OpenAI's files on the Hub: GPT2Model's names (no 'transformer.', no lm_head) and causal masks
    masks = {f'h.{i}.attn.bias': torch.ones(1, 1, 32, 32).tril() for i in range(TINY['n_layer'])}
    save_file({k.removeprefix('transformer.'): v.contiguous() for k, v in hf.state_dict().items()
               if k != 'lm_head.weight'} | masks, path / 'hub-layout.safetensors')
    return hf.double().eval(), path


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    return tiny_gpt2(tmp_path_factory, 'gelu')


def load(path, **override):
    return load_gpt2('gpt2', override, local_path=str(path)).double().eval()


def full_logits(model, idx):
    return model(idx, targets=idx)[0]  # with targets the model returns every position's logits


@pytest.mark.parametrize('where, taper', [('directory', 'off'), ('directory', 'internal'), ('directory', 'all'),
                                          ('model.safetensors', 'internal'), ('pytorch_model.bin', 'all'),
                                          ('hub-layout.safetensors', 'off')])
def test_same_logits_as_transformers(reference, where, taper):
    hf, path = reference
    model = load(path if where == 'directory' else path / where, taper=taper, dropout=0.0)
    assert (model.config.n_layer, model.config.n_embd, model.config.vocab_size) == (2, 24, 96)
    idx = torch.randint(96, (3, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(full_logits(model, idx), hf(idx).logits)
    for m in model.taper_norms():  # TaperNorm at g = 1 is the LayerNorm; gamma_t waits for its first step
        assert torch.equal(m.weight_t, torch.ones_like(m.weight_t))
    assert len(model.taper_norms()) == {'off': 0, 'internal': 4, 'all': 5}[taper]


@pytest.mark.parametrize('taper', ['off', 'internal'])
def test_same_greedy_tokens_as_transformers(reference, taper):
    hf, path = reference
    model = load(path, taper=taper)
    idx = torch.randint(96, (2, 5), generator=torch.Generator().manual_seed(2))
    ours = model.generate(idx, max_new_tokens=12, temperature=0)  # greedy, with the KV cache
    theirs = hf.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=12, do_sample=False,
                         pad_token_id=0)
    assert torch.equal(ours, theirs)
    assert len(set(ours[:, 5:].flatten().tolist())) > 2  # not a degenerate repeat of one token


def test_gpt2s_own_tanh_gelu_is_loaded_as_such(tmp_path_factory):
    hf, path = tiny_gpt2(tmp_path_factory, 'gelu_new')
    model = load(path)
    assert model.config.gelu == 'tanh'
    idx = torch.randint(96, (2, 17), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(full_logits(model, idx), hf(idx).logits, rtol=1e-10, atol=1e-10)
        exact = GPT(type(model.config)(**{**vars(model.config), 'gelu': 'none'})).double().eval()
        exact.load_state_dict(model.state_dict())
        assert (full_logits(exact, idx) - hf(idx).logits).abs().max() > 1e-6  # the field matters


def test_refuses_what_gpt2_weights_cannot_be(reference):
    _, path = reference
    with pytest.raises(UserError, match='layernorm'):
        load(path, norm='rmsnorm')
    with pytest.raises(UserError, match='n_layer'):
        load(path, n_layer=4)
    with pytest.raises(UserError, match='gpt2-small'):
        load_gpt2('gpt2-small', local_path=str(path))
    with pytest.raises(UserError, match='no GPT-2 weights'):
        load_gpt2('gpt2', local_path=str(path / 'missing.safetensors'))


def test_weights_that_lack_one_blocks_matrix_are_refused(reference, tmp_path):
    hf, path = reference
    state = {k: v.float().contiguous() for k, v in hf.state_dict().items() if k != 'transformer.h.1.mlp.c_fc.weight'}
    save_file(state, tmp_path / 'model.safetensors')
    (tmp_path / 'config.json').write_text((path / 'config.json').read_text())
    with pytest.raises(UserError, match='transformer.h.1.mlp.c_fc.weight'):
        load_gpt2('gpt2', local_path=str(tmp_path / 'model.safetensors'))


def test_the_run_chooses_how_gpt2s_norms_go(reference):
    """removal and the anchor are the run's, not the weights': FakeLN on GPT-2 builds FakeLN norms."""
    model = load(reference[1], taper='internal', removal='fakeln', anchor_lambda=0.1)
    assert {type(m).__name__ for m in model.taper_norms()} == {'FakeLN'} and model.config.anchor_lambda == 0.1


def test_train_fine_tunes_a_local_gpt2(reference, tmp_path):
    """config/finetune_gpt2_taper.py, shrunk: train.py starts from the GPT-2 weights, tapers, checkpoints."""
    hf, path = reference
    (tmp_path / 'tiny').mkdir()
    for split in ('train', 'val'):
        np.random.default_rng(0).integers(0, 96, 4096, dtype=np.uint16).tofile(tmp_path / 'tiny' / f'{split}.bin')
    config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config',
                          'finetune_gpt2_taper.py')
    cfg = parse_config(TrainConfig, [config, f'--init_path={path}', f'--data_root={tmp_path}', '--dataset=tiny',
                                     f'--out_dir={tmp_path / "out"}', '--device=cpu', '--block_size=16',
                                     '--batch_size=2', '--gradient_accumulation_steps=1', '--max_iters=4',
                                     '--taper_start=1', '--taper_end=3', '--eval_interval=4', '--eval_iters=2'])
    summary = train(cfg)
    # the eval before the first step saw GPT-2 itself: transformers' model on the same batches gives the same loss
    gen = torch.Generator().manual_seed(cfg.seed)  # estimate_loss reseeds like this for every split
    with torch.no_grad():
        ce = [F.cross_entropy(hf(X).logits.flatten(0, 1), Y.flatten()).item()
              for X, Y in (get_batch(str(tmp_path / 'tiny'), 'val', 2, 16, gen, 'cpu') for _ in range(2))]
    assert summary['evals'][0]['val'] == pytest.approx(np.mean(ce), rel=1e-5)
    ckpt = load_checkpoint(str(tmp_path / 'out' / 'ckpt.pt'))
    assert {k: ckpt['model_args'][k] for k in ('n_layer', 'vocab_size', 'bias', 'taper')} == \
        dict(n_layer=2, vocab_size=96, bias=True, taper='internal')
    assert summary['gate'] == 0.0 and int(ckpt['model']['ema_steps']) > 0
