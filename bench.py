"""
Time the norm variants side by side, one shape, one device, one process (PAPER.md section 8):
  layernorm, rmsnorm   the normalized baselines
  taper                TaperNorm at g = 0, explicit scaling L(h) (unfolded)
  folded               the same model after fold.py: no norm in its blocks
  none                 the norms deleted outright (norm='none'): the limit, zero norm cost
Modes: 'last' the logits of the last position after one forward over a prompt (the paper's v1 benchmark),
'decode' KV-cached greedy decoding (v2), 'train' one training step (forward, backward, AdamW; no folded variant).
$ python bench.py                          # the default grid, random weights: ~30M parameters, 8 layers
$ python bench.py --compile                # eager, then torch.compile
$ python bench.py --ckpt=out-taper/ckpt.pt # a checkpoint's shape, and its weights where they fit a variant
$ python bench.py --quick                  # a tiny model and grid, a few seconds (tests, CI)
Variants are interleaved (each repeat is a round over all variants in a rotated order, so machine drift hits
all); tok/s is the median over repeats and a ratio the median of the rounds' own ratios (paired, so load that
shifts between rounds cancels). The last line printed is one JSON record holding every figure.
"""
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace

import torch

from common import (ConfigError, autocast, device_name, git_commit, load_checkpoint, model_from_checkpoint,
                    pick_device, pick_dtype, run_main)
from fold import fold_model
from model import GPT, GPTConfig, KVCache
from train import TrainConfig, configure_optimizer

VARIANTS = ('layernorm', 'rmsnorm', 'taper', 'folded', 'none')
RATIOS = (('taper', 'layernorm'), ('folded', 'layernorm'), ('taper', 'rmsnorm'), ('folded', 'rmsnorm'),
          ('folded', 'none'))
SHORT = {'layernorm': 'LN', 'rmsnorm': 'RMS', 'none': 'none'}
MODES = {'last': 'last-token logits', 'decode': 'KV-cached decoding', 'train': 'training step'}


@dataclass
class BenchConfig:
    ckpt: str = ''               # a checkpoint: its shape, and its weights for the variant it is; '' = random weights
    # the default shape: GPT-2's blocks (heads of 64) and vocabulary at 8 layers, 384 wide, context 512:
    # 33.7M parameters: 14.2M in the blocks, 19.3M in the tied embedding / lm_head, 0.2M in positions
    n_layer: int = 8
    n_head: int = 6
    n_embd: int = 384
    vocab_size: int = 50304
    block_size: int = 512
    bias: bool = False
    norm: str = 'layernorm'      # the norm the taper and folded variants taper away
    taper: str = 'internal'      # 'internal' (ln_f stays, the paper's default) or 'all'
    modes: str = 'last,decode,train'
    batch_sizes: str = '1,4'     # B of every mode
    seq_lens: str = '128,256,512'  # prompt lengths T of 'last'
    decode_prompt: int = 128     # tokens in the KV cache when decoding starts
    decode_tokens: int = 32      # new tokens per timed decode iteration
    train_batch: int = 4         # the 'train' step's one cell: train_batch x train_seq tokens
    train_seq: int = 128
    warmup: int = -1             # untimed iterations per variant and cell; -1: 10 on CUDA (the paper), 1 on CPU
    iters: int = -1              # timed iterations per repeat; -1: 50 on CUDA (the paper), 1 on CPU
    repeats: int = -1            # interleaved repeats per cell, each figure their median; -1: 3 on CUDA, 5 on CPU
    threads: int = -1            # CPU threads; -1: 1, since on a CPU shared with other jobs more threads stall
                                 # each other at every op (measured: 5x slower, 10x noisier on 2 shared cores)
    compile: bool = False        # after eager, time torch.compile'd models too
    device: str = 'auto'         # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', ...
    dtype: str = 'auto'          # CUDA: bf16 weights for inference, bf16 autocast for training; CPU: float32
    seed: int = 1337
    quick: bool = False          # a tiny model on a tiny grid, seconds: for tests and CI


def resolve(cfg, device):
    """Fill in the quick settings and the device-dependent defaults (the -1s)."""
    if cfg.quick:
        cfg = replace(cfg, n_layer=2, n_head=2, n_embd=64, vocab_size=256, block_size=64, batch_sizes='1',
                      seq_lens='32', decode_prompt=8, decode_tokens=4, train_batch=1, train_seq=32, warmup=1, iters=2,
                      repeats=2)
    cuda = device.startswith('cuda')
    cfg = replace(cfg, warmup=cfg.warmup if cfg.warmup >= 0 else 10 if cuda else 1,
                  iters=cfg.iters if cfg.iters > 0 else 50 if cuda else 1,
                  repeats=cfg.repeats if cfg.repeats > 0 else 3 if cuda else 5,
                  threads=cfg.threads if cfg.threads > 0 else torch.get_num_threads() if cuda else 1)
    unknown = set(csv(cfg.modes)) - set(MODES)
    if unknown:
        raise ConfigError(f"modes must be drawn from {sorted(MODES)}, got {sorted(unknown)}")
    return cfg


def csv(text, typ=str):
    """'1,4' -> [1, 4]"""
    return [typ(s) for s in text.split(',') if s.strip()]


# ----------------------------------------------------------------------------------------------
# The variants: one shape, built fresh for each mode (random weights unless the checkpoint supplies them)

def close_gate(model, seed):
    """Calibrate a tapered model on one random batch and set g = 0, as if trained to taper_end."""
    idx = torch.randint(model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(seed))
    model.train()
    model(idx, idx)
    model.update_calibration()
    model.calibrate()
    model.set_gate(0.0)
    return model.eval()


def build_variants(cfg, names, device, dtype):
    ckpt_model = model_from_checkpoint(load_checkpoint(cfg.ckpt)) if cfg.ckpt else None
    shape = ckpt_model.config if ckpt_model is not None else GPTConfig(
        block_size=cfg.block_size, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
        n_embd=cfg.n_embd, bias=cfg.bias, norm=cfg.norm, taper=cfg.taper)
    plain = replace(shape, taper='off', folded=False)
    tapered = replace(shape, folded=False) if shape.taper != 'off' else replace(plain, norm=cfg.norm, taper=cfg.taper)
    torch.manual_seed(cfg.seed)
    models = {v: GPT(replace(plain, norm=v)) for v in ('layernorm', 'rmsnorm', 'none')}
    models['taper'] = close_gate(GPT(tapered), cfg.seed)
    models['folded'] = fold_model(models['taper']) if 'folded' in names else None
    if ckpt_model is not None:          # the checkpoint's own weights in the variant it is
        if shape.folded:
            models['folded'] = ckpt_model
        elif shape.taper != 'off' and ckpt_model.gate.item() == 0:
            models['taper'], models['folded'] = ckpt_model, fold_model(ckpt_model)
        elif shape.taper == 'off':
            models[shape.norm] = ckpt_model
    return {v: models[v].to(device=device, dtype=dtype) for v in names}


# ----------------------------------------------------------------------------------------------
# One timed iteration of each mode: step() runs it, `tokens` is what it processes (for tok/s)

def make_step(mode, model, B, T, cfg, device, ctx):
    gen = torch.Generator().manual_seed(cfg.seed)      # the same tokens for every variant
    idx = torch.randint(model.config.vocab_size, (B, T), generator=gen).to(device)
    model.train(mode == 'train')
    if mode == 'last':
        def step():
            with torch.no_grad():
                model(idx)                             # (B, 1, V): logits of the last position
        return step, B * T
    if mode == 'decode':
        P, D = T, cfg.decode_tokens
        cache = KVCache(model.config, B, P + D, device, next(model.parameters()).dtype)
        with torch.no_grad():
            first = model(idx, kv_cache=cache)[0].argmax(-1)  # (B, 1): prefill once, untimed

        def step():
            cache.pos = P                              # decode the same D positions again over the prefilled cache
            tok = first
            with torch.no_grad():
                for _ in range(D):
                    tok = model(tok, kv_cache=cache)[0].argmax(-1)
        return step, B * D
    optimizer = configure_optimizer(model, TrainConfig(), device.split(':')[0])
    targets = torch.randint(model.config.vocab_size, (B, T), generator=gen).to(device)

    def step():
        with ctx:
            _, loss, _ = model(idx, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step, B * T


def clock(step, n, device):
    """Seconds per call, over n calls; on CUDA, events around the queued work (no host-side guesswork)."""
    if device.startswith('cuda'):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(n):
            step()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000 / n
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def time_cell(steps, cfg, device):
    """Warm every variant up, then `repeats` rounds over the variants, each round in a rotated order."""
    for step, _ in steps.values():
        for _ in range(cfg.warmup):
            step()
    names, times = list(steps), {v: [] for v in steps}
    for r in range(cfg.repeats):
        for v in names[r % len(names):] + names[:r % len(names)]:
            times[v].append(clock(steps[v][0], cfg.iters, device))
    return times


# ----------------------------------------------------------------------------------------------

def print_table(title, rows, names):
    """rows: {(B, T): (tok_s by variant, ratio by (a, b))}"""
    pairs = [(a, b) for a, b in RATIOS if a in names]
    print(f"\n{title}: tokens/s per variant | ratios of tokens/s")
    print(f"{'B':>3} {'T':>4} |" + ''.join(f"{v:>11}" for v in names) + " |"
          + ''.join(f"{a + '/' + SHORT[b]:>12}" for a, b in pairs))
    for (B, T), (tok_s, ratio) in rows.items():
        print(f"{B:>3} {T:>4} |" + ''.join(f"{tok_s[v]:>11,.0f}" for v in names) + " |"
              + ''.join(f"{ratio[p]:>11.3f}x" for p in pairs))


def describe(models, cfg, Ts):
    """Print the shape and parameter counts once; refuse a grid longer than the context."""
    shape = models['taper'].config
    print(f"shape: {shape.n_layer} layers, {shape.n_head} heads, {shape.n_embd} wide, vocabulary {shape.vocab_size}, "
          f"bias={shape.bias}; taper/folded: norm={shape.norm}, taper={shape.taper}; "
          f"{'weights of ' + cfg.ckpt if cfg.ckpt else 'random weights'}")
    params = {v: m.get_num_params(non_embedding=False) for v, m in models.items()}
    print("parameters: " + ', '.join(f"{v} {n / 1e6:.2f}M" for v, n in params.items()))
    longest = max(Ts + [cfg.decode_prompt + cfg.decode_tokens, cfg.train_seq])
    if longest > shape.block_size:
        sys.exit(f"error: the grid needs {longest} positions, the model has block_size={shape.block_size}: "
                 "lower --seq_lens, --decode_prompt + --decode_tokens or --train_seq")
    return shape, params


def main(cfg):
    device = pick_device(cfg.device)
    cfg = resolve(cfg, device)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return bench(cfg, device)
    finally:
        torch.set_num_threads(threads)  # a caller (a test) gets its process back as it was


def bench(cfg, device):
    dtype_name = pick_dtype(cfg.dtype, device)
    dtype, ctx = getattr(torch, dtype_name), autocast(device, dtype_name)
    Bs, Ts = csv(cfg.batch_sizes, int), csv(cfg.seq_lens, int)
    print(f"nanotaper bench | {device_name(device)} | torch {torch.__version__} | commit {git_commit()} "
          f"| {dtype_name}")
    note = '' if (cfg.warmup, cfg.iters) == (10, 50) else " (the paper's 10 + 50 take too long on a CPU)"
    print(f"tok/s: the median of {cfg.repeats} interleaved repeats of {cfg.iters} timed iteration(s) after "
          f"{cfg.warmup} warm-up(s) per variant{note}; ratios: the median of the repeats' own ratios")

    results, ratios = [], []
    for compiled in ([False, True] if cfg.compile else [False]):
        for mode in csv(cfg.modes):
            names = [v for v in VARIANTS if not (mode == 'train' and v == 'folded')]
            # CUDA inference runs bf16 weights; training keeps float32 weights under bf16 autocast (as train.py)
            wdtype = dtype if mode != 'train' else torch.float32
            models = build_variants(cfg, names, device, wdtype)
            if not results:
                shape, params = describe(models, cfg, Ts)
            if compiled:  # the variants share GPT.forward's code: give dynamo room for a graph set per variant
                torch._dynamo.config.recompile_limit = 16 * len(VARIANTS)
                models = {v: torch.compile(m) for v, m in models.items()}
            cells = ([(B, T) for B in Bs for T in Ts] if mode == 'last' else
                     [(B, cfg.decode_prompt) for B in Bs] if mode == 'decode' else [(cfg.train_batch, cfg.train_seq)])
            rows = {}
            for B, T in cells:
                steps = {v: make_step(mode, m, B, T, cfg, device, ctx) for v, m in models.items()}
                times = time_cell(steps, cfg, device)
                median = {v: statistics.median(times[v]) for v in names}
                tok_s = {v: steps[v][1] / median[v] for v in names}
                # a ratio is the median of the rounds' own ratios: paired within a round, load shifts cancel
                ratio = {(a, b): statistics.median(tb / ta for ta, tb in zip(times[a], times[b]))
                         for a, b in RATIOS if a in names}
                rows[(B, T)] = tok_s, ratio
                results += [dict(mode=mode, compiled=compiled, B=B, T=T, variant=v, tok_s=tok_s[v],
                                 ms=1000 * median[v], ms_repeats=[1000 * t for t in times[v]]) for v in names]
                ratios += [dict(mode=mode, compiled=compiled, B=B, T=T, ratio=f"{a}/{b}", value=value)
                           for (a, b), value in ratio.items()]
            print_table(f"{MODES[mode]}, {'torch.compile' if compiled else 'eager'}"
                        + (f" ({cfg.decode_tokens} new tokens after {cfg.decode_prompt})" if mode == 'decode' else '')
                        + (" (forward, backward, AdamW)" if mode == 'train' else ''), rows, names)
            del models

    print(json.dumps(dict(bench='nanotaper', device=device_name(device), torch=torch.__version__, commit=git_commit(),
                          dtype=dtype_name, shape=asdict(shape), params=params, config=asdict(cfg),
                          results=results, ratios=ratios)))
    return results, ratios


if __name__ == '__main__':
    run_main(main, BenchConfig)
