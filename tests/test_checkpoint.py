"""Checkpoints: tensors and plain dicts, written atomically, read by one loader that refuses every bad file in one
line; and training that is interrupted and resumed computes exactly what the uninterrupted run computes."""
import json
import math
import os
import pickle
import re
from dataclasses import asdict

import pytest
import torch
from conftest import assert_one_error_line, cli, run_config, stop_training_at

import checkpoint
import train as train_module
from train_setup import saved_config
from checkpoint import KIND, load_checkpoint, load_model, save_checkpoint
from configurator import UserError
from model import GPT, GPTConfig


def tiny_run(data_root, out_dir, **kw):
    """All-Taper with the anchor and dropout: every piece of run state a resume must restore."""
    every_state = dict(dropout=0.1, taper_start=2, taper_end=6, eval_interval=2, norm='layernorm', taper='all',
                       anchor_lambda=0.1, bias=True)
    return run_config(data_root, out_dir, **{**every_state, **kw})


def log_records(out_dir, kind):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [rec for rec in map(json.loads, f) if rec['kind'] == kind]


@pytest.mark.parametrize('fold,crash', [(False, 5), (True, 5), (True, 7)])  # fold_when_gone: before, after the fold
def test_interrupted_and_resumed_training_matches_the_uninterrupted_run(shakespeare_slice, tmp_path, monkeypatch,
                                                                        fold, crash):
    whole = tiny_run(shakespeare_slice, tmp_path / 'whole', fold_when_gone=fold)
    train_module.train(whole)

    # the same run, crashed inside iteration 5 (after the checkpoint at 4, past calibration at 2), or 7 (the fold at 6)
    stop_training_at(monkeypatch, crash, RuntimeError("the machine went down"))
    with pytest.raises(RuntimeError, match='went down'):
        train_module.train(tiny_run(shakespeare_slice, tmp_path / 'split', fold_when_gone=fold))
    assert load_checkpoint(tmp_path / 'split' / 'ckpt.pt')['iter_num'] == crash - 1
    monkeypatch.undo()
    summary = train_module.train(tiny_run(shakespeare_slice, tmp_path / 'split', init_from='resume',
                                          fold_when_gone=fold))

    # the resumed log continues the first: iterations 4 and 5 logged twice, the later records are the resumed run's
    a = {r['iter']: r for r in log_records(tmp_path / 'whole', 'train')}
    b = {r['iter']: r for r in log_records(tmp_path / 'split', 'train')}
    assert sorted(a) == sorted(b) == list(range(8))                     # exactly max_iters iterations
    for it in range(8):
        for key in ('loss', 'ce', 'anchor', 'gate', 'lr', 's', 'logit_norm'):
            assert a[it][key] == b[it][key], (it, key)
    assert [h['resumed_at'] for h in log_records(tmp_path / 'split', 'header')] == [None, crash - 1]
    assert a[7]['anchor'] > 0 and a[3]['gate'] < 1 and a[7]['gate'] == 0
    assert summary['iter_num'] == 8
    sa = load_checkpoint(tmp_path / 'whole' / 'ckpt.pt')
    sb = load_checkpoint(tmp_path / 'split' / 'ckpt.pt')
    assert sa['model_args']['folded'] == sb['model_args']['folded'] == fold
    for key, tensor in sa['model'].items():
        assert torch.equal(tensor, sb['model'][key]), key
    assert sa['best_val_loss'] == sb['best_val_loss']


def test_a_resumed_run_keeps_the_schedules_it_began_with(shakespeare_slice, tmp_path):
    """Left out, taper_start, taper_end and lr_decay_iters follow max_iters once, at the start: the checkpoint's
    config holds the numbers, so a resume that trains longer keeps them, and one that changes them is refused."""
    derived = dict(taper_start=None, taper_end=None, lr_decay_iters=None, max_iters=8)  # warmup_iters=2
    train_module.train(tiny_run(shakespeare_slice, tmp_path, **derived))
    saved = saved_config({'init_from': 'resume', 'out_dir': str(tmp_path), 'max_iters': 12}, train_module.TrainConfig)
    assert (saved['taper_start'], saved['taper_end'], saved['lr_decay_iters']) == (2, 5, 8)
    for key, value in (('taper_end', 7), ('follow_c', False), ('anchor_target', 3.0)):
        resumed = cli('train.py', '--init_from=resume', f'--out_dir={tmp_path}', f'--{key}={value}')
        assert_one_error_line(resumed, f'{key}={value}', 'a resumed run keeps its model and schedule')


def test_a_resume_with_max_iters_behind_the_checkpoint_says_so_instead_of_doing_nothing(shakespeare_slice, tmp_path):
    train_module.train(tiny_run(shakespeare_slice, tmp_path, max_iters=6, taper_end=4))
    resumed = cli('train.py', '--init_from=resume', f'--out_dir={tmp_path}', '--max_iters=5')
    assert_one_error_line(resumed, 'is at iteration 6, past max_iters=5: raise it')


def test_a_fresh_run_starts_its_own_log(shakespeare_slice, tmp_path):
    train_module.train(tiny_run(shakespeare_slice, tmp_path, max_iters=4, taper_end=4))
    train_module.train(tiny_run(shakespeare_slice, tmp_path, max_iters=4, taper_end=4, seed=7))
    headers = log_records(tmp_path, 'header')
    assert len(headers) == 1 and headers[0]['config']['seed'] == 7      # the first run's records are gone
    assert [r['iter'] for r in log_records(tmp_path, 'train')] == [0, 1, 2, 3]


def test_resume_takes_the_runs_own_config_as_its_base(shakespeare_slice, tmp_path):
    """`python train.py --init_from=resume --out_dir=...` with no config file continues the run as it was."""
    cfg = tiny_run(shakespeare_slice, tmp_path, max_iters=4, taper_end=4)
    train_module.train(cfg)
    base = saved_config({'init_from': 'resume', 'out_dir': str(tmp_path)}, train_module.TrainConfig)
    assert base == {k: v for k, v in asdict(cfg).items() if k != 'init_path'}
    r = cli('train.py', '--init_from=resume', f'--out_dir={tmp_path}', '--max_iters=6', '--lr_decay_iters=6')
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = log_records(tmp_path, 'header')[-1]['config']
    assert (resumed['n_embd'], resumed['block_size'], resumed['max_iters']) == (32, 32, 6)  # saved, then overrides
    assert load_checkpoint(tmp_path / 'ckpt.pt')['iter_num'] == 6
    same = saved_config({'init_from': 'resume', 'out_dir': str(tmp_path), 'n_layer': 2}, train_module.TrainConfig)
    assert same['n_layer'] == 2                                         # restating the model's shape is fine
    assert_one_error_line(cli('train.py', '--init_from=resume', f'--out_dir={tmp_path}', '--n_layer=6'),
                          'n_layer=6', 'has n_layer=2', 'keeps its model')


def test_ctrl_c_says_how_to_resume(shakespeare_slice, tmp_path, monkeypatch, capsys):
    stop_training_at(monkeypatch, 5, KeyboardInterrupt)
    with pytest.raises(SystemExit) as stop:
        train_module.train(tiny_run(shakespeare_slice, tmp_path))
    assert str(stop.value) == (f"interrupted at iteration 5; {tmp_path / 'ckpt.pt'} holds iteration 4: continue with "
                               f"python train.py --init_from=resume --out_dir={tmp_path}")


@pytest.mark.parametrize('eval_interval,seen_by', [(2, 'eval'), (4, 'train')])
def test_a_diverged_run_stops_in_one_line_and_keeps_its_last_finite_checkpoint(shakespeare_slice, tmp_path,
                                                                               monkeypatch, eval_interval, seen_by):
    real_get_lr = train_module.get_lr
    monkeypatch.setattr(train_module, 'get_lr', lambda it, cfg: float('nan') if it == 5 else real_get_lr(it, cfg))
    with pytest.raises(UserError, match=re.escape(f"nan at iteration 6: the run diverged ({tmp_path / 'ckpt.pt'} "
                                                  "still holds iteration 4")):  # step 5 poisons, iteration 6 sees it
        train_module.train(tiny_run(shakespeare_slice, tmp_path, eval_interval=eval_interval))
    ckpt = load_checkpoint(tmp_path / 'ckpt.pt')
    assert ckpt['iter_num'] == 4 and all(t.isfinite().all() for t in ckpt['model'].values() if t.is_floating_point())
    last = log_records(tmp_path, seen_by)[-1]  # the evaluation at 6, or the train line of 6, is logged, then the stop
    assert last['iter'] == 6 and math.isnan(last['val' if seen_by == 'eval' else 'loss'])


def test_checkpoint_round_trip_gives_identical_logits(shakespeare_slice, tmp_path):
    train_module.train(tiny_run(shakespeare_slice, tmp_path, max_iters=4, taper_end=4))
    raw = torch.load(tmp_path / 'ckpt.pt', weights_only=True)          # tensors and plain containers only
    assert raw['kind'] == 'nanotaper' and raw['iter_num'] == 4
    m = GPT.from_checkpoint(raw)
    assert m.gate.item() == 0.0 and m.c_frozen() and not m.collecting_s
    assert all(tn.mode == 'linear' for tn in m.taper_norms())          # Python-side state follows the buffers
    again, _ = load_model(tmp_path / 'ckpt.pt')
    x = torch.randint(0, m.config.vocab_size, (2, 16))
    assert torch.equal(m.eval()(x, x)[0], again.eval()(x, x)[0])


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
    monkeypatch.setattr(checkpoint.torch, 'save', dies_halfway)
    with pytest.raises(OSError):
        save_checkpoint({'kind': 'nanotaper', 'w': torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path, need=())['w'], torch.ones(3))


# ----------------------------------------------------------------------------------------------
# The one loader: every way a file can be wrong, named in one line

class Hostile:
    def __reduce__(self):  # unpickling would run this
        return (os.system, ('echo owned',))


def good_checkpoint():
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8))
    return dict(kind=KIND, model_args=asdict(model.config), model=model.state_dict(), config={})


def bad_files(tmp_path):
    """{what is wrong: (path, words the error must hold)}"""
    good = good_checkpoint()
    torch.save(good, tmp_path / 'good.pt')
    data = (tmp_path / 'good.pt').read_bytes()
    files = {
        'missing': (tmp_path / 'absent.pt', b'', ['no checkpoint at', 'train one first']),
        'empty': (tmp_path / 'empty.pt', b'', ['is empty']),
        'truncated': (tmp_path / 'truncated.pt', data[:len(data) // 2], ['not a readable torch checkpoint']),
        'text': (tmp_path / 'text.pt', b'hello, not a checkpoint', ['not a readable torch checkpoint']),
        'plain pickle': (tmp_path / 'pickle.pt', pickle.dumps({'kind': KIND}), ['not a readable torch checkpoint']),
    }
    for name, obj, words in [
            ('foreign', {'model': good['model']}, ['not a nanotaper checkpoint']),
            ('needs code', {**good, 'extra': Hostile()}, ['posix.system', 'not safe to load']),
            ('no model', {k: v for k, v in good.items() if k != 'model'}, ['lacks model']),
            ('missing weight', {**good, 'model': {k: v for k, v in good['model'].items() if 'c_fc' not in k}},
             ['does not hold a model', 'Missing key', 'c_fc']),
            ('unexpected weight', {**good, 'model': {**good['model'], 'extra.weight': torch.ones(2)}},
             ['does not hold a model', 'Unexpected key', 'extra.weight']),
            ('wrong shape', {**good, 'model': {**good['model'], 'transformer.wpe.weight': torch.ones(9, 8)}},
             ['does not hold a model', 'size mismatch', 'wpe']),
            ('bad model_args', {**good, 'model_args': {**good['model_args'], 'norm': 'batchnorm'}},
             ['does not hold a model', 'batchnorm']),
            ('diverged', {**good, 'model': {**good['model'], 'transformer.h.0.mlp.c_fc.weight': torch.full(
                (32, 8), float('nan'))}}, ['not finite', 'c_fc.weight', 'diverged'])]:
        torch.save(obj, tmp_path / f"{name.replace(' ', '_')}.pt")
        files[name] = (tmp_path / f"{name.replace(' ', '_')}.pt", None, words)
    for path, content, _ in files.values():
        if content:
            path.write_bytes(content)
    (tmp_path / 'empty.pt').write_bytes(b'')
    return {name: (str(path), words) for name, (path, _, words) in files.items()}


def test_the_loader_names_the_file_and_what_is_wrong(tmp_path):
    for name, (path, words) in bad_files(tmp_path).items():
        with pytest.raises(UserError) as err:
            load_model(path)
        message = str(err.value)
        assert path in message and '\n' not in message, (name, message)
        assert 'weights_only=False' not in message                    # never advise loading a hostile file
        for word in words:
            assert word in message, (name, message)


@pytest.mark.parametrize('buffer', ['transformer.h.0.ln_1.c', 'transformer.h.0.ln_2.ema', 'transformer.ln_f.c',
                                    's_tgt', 's_ema'])
def test_the_loader_refuses_run_state_that_is_not_finite(tmp_path, buffer):
    """c, the EMAs, s_tgt and the gate are buffers, not parameters: a nan there is refused like one in a weight."""
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8, taper='all', anchor_lambda=0.1))
    state = model.state_dict()
    state[buffer] = torch.full_like(state[buffer], float('nan'))
    torch.save(dict(kind=KIND, model_args=asdict(model.config), model=state, config={}), tmp_path / 'ckpt.pt')
    with pytest.raises(UserError, match=f"not finite \\(nan or inf, {re.escape(buffer)} among them\\)"):
        load_model(tmp_path / 'ckpt.pt')


@pytest.mark.parametrize('script,arg', [('sample.py', '--ckpt='), ('fold.py', '--ckpt=')])
def test_scripts_refuse_bad_checkpoints_in_one_line(tmp_path, script, arg):
    for name in ('truncated', 'needs code', 'missing weight'):
        path, words = bad_files(tmp_path)[name]
        assert_one_error_line(cli(script, arg + path, '--device=cpu' if script == 'sample.py' else '--seed=1'),
                              path, *words)


def test_resume_refuses_bad_checkpoints_in_one_line(shakespeare_slice, tmp_path):
    r = cli('train.py', 'config/taper.py', '--init_from=resume', f'--out_dir={tmp_path / "nowhere"}')
    assert_one_error_line(r, 'no checkpoint at', 'nowhere')
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'ckpt.pt').write_bytes(b'')
    assert_one_error_line(cli('train.py', '--init_from=resume', f'--out_dir={tmp_path / "run"}'), 'is empty')
    run = dict(data_root=shakespeare_slice, dataset='shakespeare_char')
    torch.save({**good_checkpoint(), 'config': run}, tmp_path / 'run' / 'ckpt.pt')  # a folded model: no optimizer
    assert_one_error_line(cli('train.py', '--init_from=resume', f'--out_dir={tmp_path / "run"}', '--device=cpu'),
                          'lacks optimizer', 'no optimizer state to resume')
