"""Sample from a trained model: any nanotaper checkpoint (a baseline, TaperNorm at any gate, a folded model).
$ python sample.py                                         # out-taper/ckpt.pt, the quick start's run
$ python sample.py --ckpt=out-taper/ckpt_folded.pt --start="ROMEO:" --num_samples=2 --max_new_tokens=200
$ python sample.py --out_dir=out-layernorm --start=FILE:prompt.txt --temperature=0   # greedy"""
import os
import pickle
from dataclasses import dataclass

import torch

from checkpoint import load_model, run_data_dir
from configurator import NonNegative, Positive, UserError, run_main
from runtime import REPO, autocast, pick_device, pick_dtype


@dataclass
class SampleConfig:
    out_dir: str = 'out-taper'      # reads <out_dir>/ckpt.pt unless ckpt is given
    ckpt: str = ''                  # a checkpoint path (ckpt.pt, ckpt_folded.pt, ...); overrides out_dir
    start: str = '\n'               # the prompt, or FILE:path to read it from a file
    num_samples: Positive = 10      # samples to draw
    max_new_tokens: Positive = 500  # tokens per sample
    temperature: NonNegative = 0.8  # 1.0 leaves the distribution as is, lower is more conservative, 0 is greedy
    top_k: Positive | None = 200    # keep only the top_k most likely tokens; None keeps all
    top_p: float | None = None      # nucleus: keep the smallest set of tokens holding top_p of the probability
    seed: int = 1337                # the same seed gives the same text
    device: str = 'auto'            # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
    dtype: str = 'auto'             # 'auto' (bf16 if the GPU has it, fp16 on older GPUs, fp32 off CUDA)
    compile: bool = False           # torch.compile the model
    use_cache: bool = True          # the KV cache; False re-reads the whole context for every token (nanoGPT)

    def __post_init__(self):
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must lie in (0, 1], or be None to keep every token")


def load_codec(ckpt):
    """(encode, decode) for the checkpoint's data: the character vocabulary in its meta.pkl, else GPT-2 BPE."""
    meta_path = os.path.join(run_data_dir(ckpt), 'meta.pkl')
    for path in (meta_path, os.path.join(REPO, meta_path)):  # relative to where training ran: here, or the repo
        if os.path.isfile(path):
            with open(path, 'rb') as f:
                meta = pickle.load(f)
            stoi, itos = meta['stoi'], meta['itos']

            def encode(text):
                if unknown := sorted(set(text) - set(stoi)):
                    raise UserError(f"the prompt holds characters outside the {len(stoi)}-character vocabulary "
                                    f"of {path}: {', '.join(repr(ch) for ch in unknown)}")
                return [stoi[ch] for ch in text]
            return encode, lambda ids: ''.join(itos[i] for i in ids)
    if (vocab_size := ckpt['model_args']['vocab_size']) < 50257:  # not GPT-2's BPE: the characters of a meta.pkl
        raise UserError(f"no {meta_path} for this {vocab_size}-token model: sample where it trained, or prepare it")
    import tiktoken
    try:
        enc = tiktoken.get_encoding('gpt2')
    except OSError as e:  # offline, and no cached copy of its two files
        raise UserError(f"could not fetch GPT-2's BPE files for tiktoken ({type(e).__name__}); offline, set "
                        "TIKTOKEN_CACHE_DIR to a folder holding them") from None
    return lambda text: enc.encode(text, allowed_special={'<|endoftext|>'}), enc.decode


def read_prompt(start):
    if not start.startswith('FILE:'):
        return start
    try:
        with open(start[5:], encoding='utf-8') as f:
            return f.read()
    except OSError as e:
        raise UserError(f"--start={start}: cannot read {start[5:]!r} ({e.strerror})") from None


def main(cfg):
    device = pick_device(cfg.device)
    ctx = autocast(device, pick_dtype(cfg.dtype, device))
    model, ckpt = load_model(cfg.ckpt or os.path.join(cfg.out_dir, 'ckpt.pt'), device)
    encode, decode = load_codec(ckpt)
    if not (ids := encode(read_prompt(cfg.start))):
        raise UserError("the prompt is empty: give --start=text (nanoGPT's default is a newline)")
    model.eval()
    if cfg.compile:
        model.compile()  # compiles forward in place, so generate() calls the compiled graph
    print(f"{model.get_num_params() / 1e6:.2f}M parameters, norm={model.config.norm}, taper={model.config.taper} "
          f"by {model.config.removal}, norms {model.phase()}, folded={model.config.folded}, kv cache={cfg.use_cache}")
    torch.manual_seed(cfg.seed)
    x = torch.tensor(ids, dtype=torch.long, device=device)[None, ...]  # (1, T)
    samples = []
    with torch.no_grad(), ctx:
        for _ in range(cfg.num_samples):
            y = model.generate(x, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.use_cache)
            samples.append(decode(y[0].tolist()))
            print(samples[-1] + '\n---------------')
    return samples


if __name__ == '__main__':
    run_main(main, SampleConfig)
