"""
Shared plumbing for the scripts: typed configuration, device and precision, batches, checkpoints.
train.py, sample.py, fold.py and bench.py import it instead of pasting it.
"""
import ast
import dataclasses
import difflib
import os
import subprocess
import sys
import types
import typing
from contextlib import nullcontext

import numpy as np
import torch

from model import GPT, GPTConfig

CHECKPOINT_KIND = 'nanotaper'  # written into every checkpoint; anything else is refused on load
REPO = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------------------------
# Configuration: defaults live in a dataclass; a config file (plain `key = value` lines) and then
# `--key=value` overrides change them, in the order given, each value checked against the field's type.

class ConfigError(ValueError):
    pass


def _coerce(name, value, typ, source):
    """Return value as typ (an int is fine for a float; 'true'/'false' for a bool) or raise ConfigError."""
    if typing.get_origin(typ) in (typing.Union, types.UnionType):  # `int | None`: None, or the other type
        if value is None or value == 'None':
            return None
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
    if typ is bool:
        if isinstance(value, str) and value.lower() in ('true', 'false'):
            return value.lower() == 'true'
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif typ is str:
        return value if isinstance(value, str) else str(value)
    raise ConfigError(f"{source}: {name} must be {getattr(typ, '__name__', typ)}, got {value!r}")


def _parse_literal(text):
    """'3e-4' -> 0.0003, 'False' -> False, 'cpu' -> 'cpu' (anything that is not a Python literal stays text)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_config(cls, argv):
    """Build a `cls` dataclass from [config_file] [--key=value ...] (a bool key alone, --compile, means True).
    Unknown keys and bad values raise."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}

    def assign(key, value, source, raw=None):
        if key not in fields:
            near = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{source}: unknown config key {key!r}{hint}; run with --help to list the keys")
        if hints[key] is str and raw is not None:
            value = raw if not isinstance(value, str) else value  # '--out_dir=123' stays the text '123'
        values[key] = _coerce(key, value, hints[key], source)

    for arg in argv:
        if arg in ('-h', '--help'):
            print(f"usage: python {os.path.basename(sys.argv[0])} [config_file.py] [--key=value ...]\n")
            for name, f in fields.items():
                print(f"  --{name}={f.default!r}  ({getattr(hints[name], '__name__', hints[name])})")
            sys.exit(0)
        if arg.startswith('--'):
            key, sep, raw = arg[2:].partition('=')
            if not sep and hints.get(key) is bool:  # a bare switch: --quick is --quick=True
                sep, raw = '=', 'True'
            if not sep:
                raise ConfigError(f"{arg}: overrides take the form --key=value")
            assign(key, _parse_literal(raw), arg, raw)
        else:
            if not os.path.isfile(arg):
                raise ConfigError(f"config file {arg!r} not found (give a path such as config/taper.py)")
            namespace = {}
            with open(arg) as f:
                exec(compile(f.read(), arg, 'exec'), namespace)  # a private namespace, never our globals
            for key, value in namespace.items():
                if not key.startswith('_') and not callable(value) and not isinstance(value, type(os)):
                    assign(key, value, arg)
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def run_main(main, cls):
    """`python script.py [config] [--k=v]`: parse, then run; configuration errors exit with their message."""
    try:
        cfg = parse_config(cls, sys.argv[1:])
    except ConfigError as e:
        sys.exit(f"error: {e}")
    return main(cfg)


# ----------------------------------------------------------------------------------------------
# Device, precision, provenance

def pick_device(device='auto'):
    if device != 'auto':
        return device
    if torch.cuda.is_available():
        return 'cuda'
    if getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available():
        return 'mps'
    return 'cpu'


def pick_dtype(dtype, device):
    """'auto' is bfloat16 on CUDA cards that have it, else float16 on CUDA, float32 elsewhere."""
    if dtype != 'auto':
        if dtype not in ('float32', 'bfloat16', 'float16'):
            raise ConfigError(f"dtype={dtype!r} must be 'auto', 'float32', 'bfloat16' or 'float16'")
        return dtype
    if device.startswith('cuda'):
        return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    return 'float32'


def autocast(device, dtype):
    """Mixed precision on CUDA (bf16/fp16 matmuls, fp32 weights); plain float32 everywhere else."""
    if not device.startswith('cuda') or dtype == 'float32':
        return nullcontext()
    return torch.amp.autocast(device_type='cuda', dtype=getattr(torch, dtype))


def git_commit():
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(['git', 'status', '--porcelain'], cwd=REPO, capture_output=True, text=True).stdout
        return out.stdout.strip() + ('-dirty' if dirty.strip() else '') if out.returncode == 0 else 'unknown'
    except OSError:
        return 'unknown'


def device_name(device):
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(device)
    return f"{device} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


# ----------------------------------------------------------------------------------------------
# Data: uint16 token files written by data/<name>/prepare.py

def get_batch(data_dir, split, batch_size, block_size, generator, device):
    """Random windows of the token file: x (B, T) and y (B, T), y shifted by one."""
    # a new memmap per batch avoids a memory leak (nanoGPT, after a StackOverflow answer)
    data = np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r')
    if len(data) <= block_size:
        raise ValueError(f"{data_dir}/{split}.bin holds {len(data)} tokens, fewer than block_size+1")
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in ix.tolist()])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64)) for i in ix.tolist()])
    if device.startswith('cuda'):
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def read_meta(data_dir):
    """The character vocabulary that prepare.py wrote as meta.pkl (a plain dict), or None (GPT-2 BPE data)."""
    path = os.path.join(data_dir, 'meta.pkl')
    if not os.path.isfile(path):
        return None
    import pickle
    with open(path, 'rb') as f:
        return pickle.load(f)


def checkpoint_data_dir(ckpt):
    """The data folder of the run that wrote ckpt (relative to where it trained)."""
    tcfg = ckpt.get('config') or {}
    return os.path.join(tcfg.get('data_root', 'data'), tcfg.get('dataset', ''))


# ----------------------------------------------------------------------------------------------
# Checkpoints: tensors and plain containers only, written atomically

def save_checkpoint(obj, path):
    """Write to a temporary file beside path, then rename: a crash leaves the old file whole."""
    tmp = f"{path}.tmp"
    with open(tmp, 'wb') as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, map_location='cpu'):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}: train one first (python train.py config/taper.py)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a nanotaper checkpoint (torch.load with weights_only failed: {e})")
    if not isinstance(ckpt, dict) or ckpt.get('kind') != CHECKPOINT_KIND:
        raise ValueError(f"{path} is not a nanotaper checkpoint (no kind={CHECKPOINT_KIND!r} entry); "
                         "this project reads only checkpoints written by its own train.py or fold.py")
    return ckpt


def model_from_checkpoint(ckpt, device='cpu'):
    model = GPT(GPTConfig(**ckpt['model_args']))
    model.load_state_dict(ckpt['model'])
    return model.to(device)
