"""
Sample from a trained model: any nanotaper checkpoint (a baseline, TaperNorm at any gate, a folded model).
$ python sample.py --out_dir=out-taper                                   # reads out-taper/ckpt.pt
$ python sample.py --ckpt=out-taper/ckpt_folded.pt --start="ROMEO:" --num_samples=2 --max_new_tokens=200
$ python sample.py --ckpt=out-taper/ckpt_folded.pt --start=FILE:prompt.txt --temperature=0   # greedy
Character vocabularies come from the training set's meta.pkl; without one, the GPT-2 BPE (tiktoken) is used.
"""
import os
import sys
from dataclasses import dataclass

import torch

from common import (REPO, autocast, checkpoint_data_dir, load_checkpoint, model_from_checkpoint, pick_device,
                    pick_dtype, read_meta, run_main)


@dataclass
class SampleConfig:
    out_dir: str = 'out'            # reads <out_dir>/ckpt.pt unless ckpt is given
    ckpt: str = ''                  # a checkpoint path (ckpt.pt, ckpt_folded.pt, ...); overrides out_dir
    start: str = '\n'               # the prompt, or FILE:path to read it from a file
    num_samples: int = 10
    max_new_tokens: int = 500
    temperature: float = 0.8        # 1.0 leaves the distribution as is, lower is more conservative, 0 is greedy
    top_k: int | None = 200         # keep only the top_k most likely tokens
    top_p: float | None = None      # nucleus: keep the smallest set of tokens holding top_p of the probability
    seed: int = 1337
    device: str = 'auto'            # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
    dtype: str = 'auto'             # 'auto' (bf16 if the GPU has it, fp16 on older GPUs, fp32 off CUDA)
    compile: bool = False           # torch.compile the model
    use_cache: bool = True          # the KV cache; False re-reads the whole context for every token (nanoGPT)


def load_codec(ckpt):
    """(encode, decode) for the checkpoint's data: the character vocabulary in its meta.pkl, else GPT-2 BPE."""
    data_dir = checkpoint_data_dir(ckpt)
    for path in (data_dir, os.path.join(REPO, data_dir)):  # data_root is relative to where training ran
        meta = read_meta(path)
        if meta is not None:
            stoi, itos = meta['stoi'], meta['itos']
            path = os.path.join(path, 'meta.pkl')

            def encode(text):
                unknown = sorted(set(text) - set(stoi))
                if unknown:
                    raise ValueError(f"the prompt holds characters outside the {len(stoi)}-character vocabulary "
                                     f"of {path}: {', '.join(repr(ch) for ch in unknown)}")
                return [stoi[ch] for ch in text]
            return encode, lambda ids: ''.join(itos[i] for i in ids)
    import tiktoken
    enc = tiktoken.get_encoding('gpt2')
    return lambda text: enc.encode(text, allowed_special={'<|endoftext|>'}), enc.decode


def read_prompt(start):
    if start.startswith('FILE:'):
        with open(start[5:], encoding='utf-8') as f:
            return f.read()
    return start


def main(cfg):
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    try:
        ctx = autocast(device, pick_dtype(cfg.dtype, device))
        ckpt = load_checkpoint(cfg.ckpt or os.path.join(cfg.out_dir, 'ckpt.pt'), map_location=device)
        encode, decode = load_codec(ckpt)
        ids = encode(read_prompt(cfg.start))
        if not ids:
            raise ValueError("the prompt is empty: give --start=text (nanoGPT's default is a newline)")
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    model = model_from_checkpoint(ckpt, device).eval()
    if cfg.compile:
        model.compile()  # compiles forward in place, so generate() calls the compiled graph
    cfg_m = model.config
    print(f"{model.get_num_params() / 1e6:.2f}M parameters, norm={cfg_m.norm}, taper={cfg_m.taper}, "
          f"gate={model.gate.item():.3g}, folded={cfg_m.folded}, kv cache={cfg.use_cache}")

    x = torch.tensor(ids, dtype=torch.long, device=device)[None, ...]  # (1, T)
    samples = []
    with torch.no_grad(), ctx:
        for _ in range(cfg.num_samples):
            y = model.generate(x, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                               top_p=cfg.top_p, use_cache=cfg.use_cache)
            samples.append(decode(y[0].tolist()))
            print(samples[-1])
            print('---------------')
    return samples


if __name__ == '__main__':
    run_main(main, SampleConfig)
