"""Checkpoints hold tensors and plain dicts only, so torch.load(weights_only=True) reads them and no code runs on load.
Each is written to a temporary file and renamed: a crash leaves the last good one whole. load_checkpoint is the one
reader (resume, fold.py, sample.py; load_gpt2 reads GPT-2's weights): whatever is wrong, it says so in one line."""
import os
import re
import warnings

import torch

from configurator import UserError
from model import GPT, GPTConfig

KIND = 'nanotaper'  # written into every checkpoint; anything else is refused on load


def save_checkpoint(obj, path):
    tmp = f"{path}.tmp"
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
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
        if code := re.search(r'GLOBAL (\S+)', str(e)):  # weights_only refused to import a Python object
            raise UserError(f"{path} holds a {code.group(1)} object, which only code could rebuild: nanotaper "
                            "checkpoints hold tensors and plain dicts, so this file is not ours and not safe to load")
        raise UserError(f"{path} is not a readable torch checkpoint (truncated or another format: "
                        f"{type(e).__name__}); point at another, or train again") from None
    if not isinstance(ckpt, dict) or ckpt.get('kind') != KIND:
        raise UserError(f"{path} is not a nanotaper checkpoint (no kind={KIND!r} entry): this project reads only "
                        "the checkpoints its train.py and fold.py write")
    if missing := [k for k in need if k not in ckpt]:
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
    if broken := [k for k, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]:
        raise UserError(f"{path} holds weights that are not finite (nan or inf, {broken[0]} among them): the run "
                        "that wrote it diverged; train it again (a lower --learning_rate)")
    return model.to(device), ckpt


def load_gpt2(model_type, override_args=None, local_path=None):
    """OpenAI's GPT-2 ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl') through `transformers` (optional): from the
    Hub, or local_path, a save_pretrained folder or one .safetensors / .bin file with its config.json beside it.
    Any taper: a TaperNorm starts as exactly the LayerNorm it replaces (g = 1). override_args sets the rest."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        raise UserError("GPT-2's weights come through transformers, an optional dependency: pip install transformers")
    if model_type not in ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'):
        raise UserError(f"model_type={model_type!r} is not one of gpt2, gpt2-medium, gpt2-large, gpt2-xl")
    if local_path is not None and not os.path.exists(local_path):  # else transformers reads it as a Hub name
        raise UserError(f"no GPT-2 weights at {local_path!r} (--init_path)")
    try:
        if local_path is not None and os.path.isfile(local_path):  # one weights file, its config beside it
            hf_cfg = GPT2Config.from_pretrained(os.path.dirname(local_path) or '.')
            from safetensors.torch import load_file  # (transformers brings safetensors)
            sd = (load_file(local_path) if local_path.endswith('.safetensors') else
                  torch.load(local_path, map_location='cpu', weights_only=True))
        else:  # the Hub, or a save_pretrained folder
            hf = GPT2LMHeadModel.from_pretrained(local_path or model_type)
            sd, hf_cfg = hf.state_dict(), hf.config
    except Exception as e:  # offline, most often; else a file that is not GPT-2's weights
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]  # its first line, not its advice and links
        raise UserError(f"could not load {model_type!r} through transformers ({why}); offline, give --init_path: a "
                        f"save_pretrained folder of {model_type}, or its model.safetensors with config.json beside it")
    if hf_cfg.activation_function not in ('gelu', 'gelu_new'):
        raise UserError(f"activation {hf_cfg.activation_function!r}: this GPT's MLP computes GELU")
    args = dict(n_layer=hf_cfg.n_layer, n_head=hf_cfg.n_head, n_embd=hf_cfg.n_embd, bias=True,
                vocab_size=hf_cfg.vocab_size, block_size=hf_cfg.n_positions, norm_eps=hf_cfg.layer_norm_epsilon,
                gelu='tanh' if hf_cfg.activation_function == 'gelu_new' else 'none')  # GPT-2's own GELU
    override_args = dict(override_args or {})
    if override_args.pop('norm', 'layernorm') != 'layernorm' or set(override_args) & set(args):
        raise UserError(f"GPT-2 fixes norm='layernorm' and {sorted(args)}; override_args sets only the rest")
    model = GPT(GPTConfig(**args, **override_args))
    # Hugging Face names, with or without 'transformer.'; the causal-mask buffers of old files are not weights
    sd = {k if k.startswith(('transformer.', 'lm_head.')) else f'transformer.{k}': v for k, v in sd.items()
          if not k.endswith(('.attn.bias', '.attn.masked_bias'))}
    head = sd.pop('lm_head.weight', None)
    if head is not None and not torch.equal(head, sd.get('transformer.wte.weight', head)):  # (none: load_weights says)
        raise UserError("the checkpoint's lm_head is not tied to wte, as this GPT's is")
    # GPT-2's Conv1D stores W as (in, out); nn.Linear wants (out, in)
    conv1d = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')
    try:
        model.load_weights({k: v.t() if k.endswith(conv1d) else v for k, v in sd.items()})
    except ValueError as e:
        raise UserError(f"{local_path or model_type}: {e}") from None
    return model
