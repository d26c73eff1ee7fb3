"""Checkpoints: tensors and plain containers, written atomically, refused when foreign; and training
that is interrupted and resumed computes exactly what the uninterrupted run computes."""
import json
import os

import pytest
import torch

import common
import train as train_module
from common import load_checkpoint, model_from_checkpoint, save_checkpoint
from train import TrainConfig


def tiny_run(data_root, out_dir, **kw):
    args = dict(out_dir=str(out_dir), data_root=data_root, dataset='shakespeare_char', device='cpu',
                n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, dropout=0.1,
                learning_rate=3e-3, max_iters=8, warmup_iters=2, lr_decay_iters=8, min_lr=3e-4,
                taper_start=2, taper_end=6, eval_interval=2, eval_iters=2, log_interval=1,
                norm='layernorm', taper='all', anchor_lambda=0.1, bias=True)
    args.update(kw)
    return TrainConfig(**args)


def train_records(out_dir):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        recs = [json.loads(line) for line in f]
    return {r['iter']: r for r in recs if r['kind'] == 'train'}


def test_interrupted_and_resumed_training_matches_the_uninterrupted_run(shakespeare_slice, tmp_path, monkeypatch):
    whole = tiny_run(shakespeare_slice, tmp_path / 'whole')
    train_module.train(whole)

    # the same run, crashed inside iteration 5 (after the checkpoint at 4, past calibration at 2)
    real_get_lr = train_module.get_lr

    def crash_at_5(it, cfg):
        if it == 5:
            raise KeyboardInterrupt
        return real_get_lr(it, cfg)
    monkeypatch.setattr(train_module, 'get_lr', crash_at_5)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(tiny_run(shakespeare_slice, tmp_path / 'split'))
    assert load_checkpoint(tmp_path / 'split' / 'ckpt.pt')['iter_num'] == 4
    monkeypatch.setattr(train_module, 'get_lr', real_get_lr)
    summary = train_module.train(tiny_run(shakespeare_slice, tmp_path / 'split', init_from='resume'))

    a, b = train_records(tmp_path / 'whole'), train_records(tmp_path / 'split')
    assert sorted(a) == sorted(b) == list(range(8))                     # exactly max_iters iterations
    for it in range(8):
        for key in ('loss', 'ce', 'anchor', 'gate', 'lr', 's', 'logit_norm'):
            assert a[it][key] == b[it][key], (it, key)
    assert a[7]['anchor'] > 0 and a[3]['gate'] < 1 and a[7]['gate'] == 0
    assert summary['iter_num'] == 8
    sa = load_checkpoint(tmp_path / 'whole' / 'ckpt.pt')
    sb = load_checkpoint(tmp_path / 'split' / 'ckpt.pt')
    for key, tensor in sa['model'].items():
        assert torch.equal(tensor, sb['model'][key]), key
    assert sa['best_val_loss'] == sb['best_val_loss']


def test_checkpoint_round_trip_gives_identical_logits(shakespeare_slice, tmp_path):
    train_module.train(tiny_run(shakespeare_slice, tmp_path, max_iters=4, taper_end=4))
    raw = torch.load(tmp_path / 'ckpt.pt', weights_only=True)          # tensors and plain containers only
    assert raw['kind'] == 'nanotaper' and raw['iter_num'] == 4
    m = model_from_checkpoint(raw)
    assert m.gate.item() == 0.0 and bool(m.calibrated)
    assert all(tn.mode == 'linear' for tn in m.taper_norms())          # Python-side state follows the buffers
    again = model_from_checkpoint(load_checkpoint(tmp_path / 'ckpt.pt')).eval()
    x = torch.randint(0, m.config.vocab_size, (2, 16))
    assert torch.equal(m.eval()(x, x)[0], again(x, x)[0])


def test_best_val_loss_is_the_minimum_seen(shakespeare_slice, tmp_path):
    summary = train_module.train(tiny_run(shakespeare_slice, tmp_path, max_iters=6, taper_end=6))
    vals = [e['val'] for e in summary['evals']]
    assert summary['best_val_loss'] == min(vals)
    assert load_checkpoint(tmp_path / 'ckpt.pt')['best_val_loss'] == min(vals)


def test_a_crash_while_writing_leaves_the_last_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pt'
    save_checkpoint({'kind': 'nanotaper', 'w': torch.ones(3)}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b'partial bytes')
        raise OSError("disk full")
    monkeypatch.setattr(common.torch, 'save', dies_halfway)
    with pytest.raises(OSError):
        save_checkpoint({'kind': 'nanotaper', 'w': torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)['w'], torch.ones(3))


def test_foreign_and_missing_checkpoints_are_refused_with_a_reason(tmp_path):
    torch.save({'model': {}}, tmp_path / 'other.pt')
    with pytest.raises(ValueError, match='not a nanotaper checkpoint'):
        load_checkpoint(tmp_path / 'other.pt')
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint at all')
    with pytest.raises(ValueError, match='not a nanotaper checkpoint'):
        load_checkpoint(tmp_path / 'junk.pt')
    with pytest.raises(FileNotFoundError, match='train one first'):
        load_checkpoint(tmp_path / 'absent.pt')
