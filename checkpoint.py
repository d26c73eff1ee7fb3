"""
Checkpoints hold tensors and plain dicts only, so torch.load(weights_only=True) reads them and no code runs on load.
Each is written to a temporary file and renamed: a crash leaves the last good one whole. load_checkpoint is the one
reader (train.py's resume, fold.py, sample.py): whatever is wrong with a file, it says so in one line.
"""
import os
import re
import warnings

import torch

from configurator import UserError
from model import GPT

KIND = 'nanotaper'  # written into every checkpoint; anything else is refused on load


def save_checkpoint(obj, path):
    tmp = f"{path}.tmp"
    with open(tmp, 'wb') as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, need=('model_args', 'model'), mmap=False):
    """The checkpoint at path, a dict holding at least the keys in need; mmap=True maps its tensors rather than
    reading them (cheap when only the plain entries are wanted)."""
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path}: train one first (python train.py config/taper.py), or point at "
                        "the right one (--out_dir; --ckpt in fold.py and sample.py)")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path} is empty: it was never written whole; delete it (or use another checkpoint)")
    try:
        with warnings.catch_warnings():  # torch warns about some foreign files before refusing them
            warnings.simplefilter('ignore')
            ckpt = torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
    except Exception as e:  # torch.load raises many types; each means a file we cannot use
        code = re.search(r'GLOBAL (\S+)', str(e))  # weights_only refused to import a Python object
        if code:
            raise UserError(f"{path} holds a {code.group(1)} object, which only code could rebuild: nanotaper "
                            "checkpoints hold tensors and plain dicts, so this file is not ours and not safe to load")
        raise UserError(f"{path} is not a readable torch checkpoint (truncated or another format: "
                        f"{type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get('kind') != KIND:
        raise UserError(f"{path} is not a nanotaper checkpoint (no kind={KIND!r} entry): this project reads only "
                        "the checkpoints its train.py and fold.py write")
    missing = [k for k in need if k not in ckpt]
    if missing:
        what = "a folded model has no optimizer state to resume" if 'optimizer' in missing else "incomplete"
        raise UserError(f"{path} lacks {', '.join(missing)} ({what})")
    return ckpt


def run_data_dir(ckpt):
    """The data folder of the run that wrote ckpt (relative to where that run trained)."""
    run = ckpt.get('config') or {}
    return os.path.join(run.get('data_root', 'data'), run.get('dataset', ''))


def load_model(path, device='cpu', need=('model_args', 'model')):
    """(model, checkpoint) from path; a model that does not fit its own weights is a UserError too."""
    ckpt = load_checkpoint(path, need)
    try:
        model = GPT.from_checkpoint(ckpt)
    except (TypeError, ValueError, RuntimeError) as e:  # bad model_args; missing, unexpected or misshapen weights
        why = ' '.join(str(e).split())[:400] or type(e).__name__  # load_state_dict's message spans lines
        raise UserError(f"{path} does not hold a model this code can build: {why}") from None
    broken = [k for k, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
    if broken:
        raise UserError(f"{path} holds weights that are not finite (nan or inf, {broken[0]} among them): the run "
                        "that wrote it diverged; train it again (a lower --learning_rate, or a later --taper_start)")
    return model.to(device), ckpt
