"""Where a run runs: the device, the precision, and what to record about both (train.py, sample.py, bench.py)."""
import os
import subprocess
from contextlib import nullcontext

import torch

from configurator import UserError

REPO = os.path.dirname(os.path.abspath(__file__))


def pick_device(device='auto'):
    """'auto' is cuda > mps > cpu; a device this machine lacks is a UserError that says so."""
    mps = getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available()
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'mps' if mps else 'cpu'
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise UserError(f"device={device!r} is not a device: use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    if (kind == 'cuda' and not torch.cuda.is_available()) or (kind == 'mps' and not mps):
        raise UserError(f"device={device!r}, but this torch ({torch.__version__}) sees no {kind.upper()} device "
                        "here: use --device=cpu (or auto), or a torch build and machine that have one")
    return device


def pick_dtype(dtype, device):
    """'auto' is bfloat16 on CUDA cards that have it, float16 on older ones, float32 elsewhere."""
    if dtype not in ('auto', 'float32', 'bfloat16', 'float16'):
        raise UserError(f"dtype={dtype!r} must be 'auto', 'float32', 'bfloat16' or 'float16'")
    if dtype in ('bfloat16', 'float16') and not device.startswith('cuda'):  # else it would run float32 unsaid
        raise UserError(f"dtype={dtype!r} is mixed precision on CUDA only: on {device} use float32 (or auto)")
    if dtype != 'auto' or not device.startswith('cuda'):
        return 'float32' if dtype == 'auto' else dtype
    return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'


def autocast(device, dtype):
    """Mixed precision on CUDA (bf16/fp16 matmuls, fp32 weights); plain float32 everywhere else."""
    if not device.startswith('cuda') or dtype == 'float32':
        return nullcontext()
    return torch.amp.autocast(device_type='cuda', dtype=getattr(torch, dtype))


def device_name(device):
    """The card, or the CPU's model name with its cores and torch's threads (Linux names it in /proc/cpuinfo)."""
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(device)
    info = open('/proc/cpuinfo').read() if os.path.isfile('/proc/cpuinfo') else ''
    model = next((line.split(':', 1)[1].strip() for line in info.splitlines() if line.startswith('model name')), '')
    return f"{device} ({model + ', ' if model else ''}{os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def git_commit():
    """The checkout's commit, with '-dirty' when tracked files differ from it; 'unknown' outside git."""
    try:  # describe names the commit by its short hash (with every tag excluded), and marks a dirty checkout
        return subprocess.run(['git', 'describe', '--always', '--dirty', '--exclude=*'], cwd=REPO, capture_output=True,
                              text=True).stdout.strip() or 'unknown'
    except OSError:
        return 'unknown'
