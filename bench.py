"""Time the norm variants side by side: one shape, one device, one process (METHOD.md §8).
  rmsnorm, layernorm   the normalized baselines (RMSNorm is the paper's)
  taper_rms, taper_ln  TaperNorm at g = 0 built from each: the explicit scaling L(h), not folded
  folded_rms, _ln      the g = 0 model after fold.py, no norm in its blocks: each against its own baseline
  blend_rms, _ln       TaperNorm at g = 0.5, both branches (training only: the cost of the taper itself)
  none                 no norm at all: the limit, and the control for folded_rms (the same work but for ln_f)
Modes: 'last' the logits of the last position after one forward over a prompt (the paper's v1 benchmark),
'decode' KV-cached greedy decoding (v2), 'train' one training step (forward, backward, AdamW).
$ python bench.py                  # the paper's benchmark model (random weights: time depends on the shape alone)
$ python bench.py --vocab_size=50304 --n_embd=384 --n_head=6   # GPT-2's vocabulary instead: the output layer dominates
Each repeat is one round over every variant in a rotated order, so drift and other jobs hit all alike. A variant's
time is its minimum over the repeats (noise only ever adds time: the steadiest estimate of what the code costs)."""
import json
import os
import timeit
from dataclasses import asdict, dataclass, replace

import torch

from configurator import Positive, run_main
from fold import fold_model, fold_pairs, unfolded_coordinates
from model import GPT, GPTConfig, KVCache
from runtime import autocast, device_name, git_commit, pick_device, pick_dtype

INFERENCE = ('rmsnorm', 'taper_rms', 'folded_rms', 'layernorm', 'taper_ln', 'folded_ln', 'none')
VARIANTS = {'last': INFERENCE, 'decode': INFERENCE,  # a training step: a fold's too (fold_when_gone), and the blend
            'train': INFERENCE + ('blend_rms', 'blend_ln')}
RATIOS = (('folded_rms', 'rmsnorm'), ('taper_rms', 'rmsnorm'), ('folded_ln', 'layernorm'), ('taper_ln', 'layernorm'),
          ('folded_rms', 'none'), ('blend_rms', 'rmsnorm'), ('blend_ln', 'layernorm'))
NORMS = {'rms': 'rmsnorm', 'ln': 'layernorm'}


@dataclass
class BenchConfig:
    # the paper's benchmark model as far as it says (8 layers, context 512, its own 10k-token vocabulary) at our width,
    # 512: about 30M parameters, 25.2M of them in the blocks, 5.1M in the tied embedding / lm_head
    n_layer: Positive = 8           # transformer blocks
    n_head: Positive = 8            # attention heads (64 wide)
    n_embd: Positive = 512          # width
    vocab_size: Positive = 10000    # the paper's tokenizer's
    block_size: Positive = 512      # context
    bias: bool = False              # biases in Linear layers and LayerNorms
    taper: str = 'internal'         # 'internal' (ln_f stays, the paper's default) or 'all'
    modes: str = 'last,decode,train'  # which of last, decode, train to run
    batch_sizes: str = '1,4'        # B of the last-token and decode cells
    seq_lens: str = '128,256,512'   # prompt lengths T of the last-token cells
    decode_prompt: Positive = 128   # tokens in the KV cache when decoding starts
    decode_tokens: Positive = 32    # new tokens per timed decode iteration
    train_batch: Positive = 4       # the training cell: train_batch x train_seq tokens
    train_seq: Positive = 128       # its sequence length
    warmup: int = -1                # untimed iterations per variant and cell; -1: 10 on CUDA (the paper), 1 on CPU
    iters: int = -1                 # timed iterations per repeat; -1: 50 on CUDA (the paper), 1 on CPU
    repeats: int = -1               # interleaved repeats per cell; -1: 5 on CUDA, 20 on CPU
    threads: int = -1               # CPU threads; -1: 1 (on a shared CPU, more threads stall each other at every op)
    compile: bool = False           # after eager, time torch.compile'd models too
    device: str = 'auto'            # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', ...
    dtype: str = 'auto'             # CUDA: bf16 weights for inference, bf16 autocast for training; CPU: float32
    seed: int = 1337                # weights and tokens
    quick: bool = False             # a tiny model and grid, whatever else is given: seconds, for tests (ratios: noise)
    out: str = ''                   # write the JSON record of every figure here; '' prints it as the last line

    def __post_init__(self):  # --quick's grid, then refusals: each a ValueError, one line from parse_config
        if self.quick:
            vars(self).update(n_layer=2, n_head=2, n_embd=64, vocab_size=256, block_size=64, warmup=1, iters=2,
                              repeats=2, batch_sizes='1', seq_lens='32', decode_prompt=8, decode_tokens=4,
                              train_batch=1, train_seq=32)
        GPTConfig(n_head=self.n_head, n_embd=self.n_embd)  # refuses a width that the heads do not divide
        if self.taper not in ('internal', 'all'):
            raise ValueError(f"taper={self.taper!r} must be 'internal' or 'all': the tapered variants need norms to go")
        if set(csv(self, 'modes')) - set(VARIANTS):
            raise ValueError(f"modes={self.modes!r}: choose from {', '.join(VARIANTS)}")
        csv(self, 'batch_sizes', int)  # refused now, not after the timings of a mode before it is read
        longest = max(csv(self, 'seq_lens', int) + [self.decode_prompt + self.decode_tokens, self.train_seq])
        if longest > self.block_size:
            raise ValueError(f"the grid needs {longest} positions but block_size={self.block_size}: lower --seq_lens, "
                             "--decode_prompt + --decode_tokens or --train_seq, or raise --block_size")


def csv(cfg, key, typ=str):
    """cfg's list under key: '1,4' -> [1, 4]. It may not be empty, and its numbers are >= 1."""
    items = [s.strip() for s in getattr(cfg, key).split(',') if s.strip()]
    if not items or typ is int and not all(s.isdigit() and int(s) >= 1 for s in items):
        raise ValueError(f"{key}={getattr(cfg, key)!r}: needs {'numbers >= 1' if typ is int else 'names'} split by ','")
    return [typ(s) for s in items]


def variants(cfg, names):
    """The models of one mode: one shape, random weights; the tapered ones calibrated on one random batch."""
    shape = GPTConfig(block_size=cfg.block_size, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                      n_embd=cfg.n_embd, bias=cfg.bias, taper=cfg.taper)
    torch.manual_seed(cfg.seed)
    idx = torch.randint(cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(cfg.seed))
    models = {}
    for name in names:
        kind, _, norm = name.partition('_')          # 'folded_rms': a folded model built from RMSNorm
        if norm not in NORMS:                        # a baseline, or none
            models[name] = GPT(replace(shape, norm=kind, taper='off'))
            continue
        model = GPT(replace(shape, norm=NORMS[norm]))
        model(idx, idx)
        model.update_calibration()
        model.set_gate(0.5 if kind == 'blend' else 0.0)
        models[name] = fold_model(model) if kind == 'folded' else model
    return models


def make_step(mode, model, B, T, cfg, device, ctx):
    """(step, tokens): one timed iteration of the mode, and the tokens it processes."""
    gen = torch.Generator().manual_seed(cfg.seed)      # the same tokens for every variant
    idx = torch.randint(model.config.vocab_size, (B, T), generator=gen).to(device)
    model.train(mode == 'train')
    if mode == 'last':
        return torch.no_grad()(lambda: model(idx)), B * T   # logits of the last position, (B, 1, V)
    if mode == 'decode':
        cache = KVCache(model.config, B, T + cfg.decode_tokens, device, next(model.parameters()).dtype)
        with torch.no_grad():
            first = model(idx, kv_cache=cache)[0].argmax(-1)  # (B, 1): prefill once, untimed

        @torch.no_grad()
        def step():
            cache.pos, tok = T, first                  # decode the same positions again over the prefilled cache
            for _ in range(cfg.decode_tokens):
                tok = model(tok, kv_cache=cache)[0].argmax(-1)
        return step, B * cfg.decode_tokens
    optimizer = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device.split(':')[0])
    targets = torch.randint(model.config.vocab_size, (B, T), generator=gen).to(device)

    def step():
        with ctx:
            loss = model(idx, targets)[1]
        loss.backward()
        with unfolded_coordinates(optimizer):  # a folded model's weights: stepped as fold_when_gone steps them
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if model.config.folded:  # AdamW's state made by one step, then the column scales join it (any values cost alike)
        step()
        for weight in [model.get_parameter(f'{linear}.weight') for _, _, linear in fold_pairs(model)]:
            optimizer.state[weight]['fold_scale'] = weight.new_ones(weight.size(1))
    return step, B * T


def clock(step, n, device):
    """Seconds per call, over n calls; on CUDA, events around the queued work (no host-side guesswork)."""
    if not device.startswith('cuda'):
        return timeit.timeit(step, number=n) / n
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)  # device's own stream, not the current device's: --device=cuda:1 times cuda:1
    start.record(torch.cuda.current_stream(device))
    for _ in range(n):
        step()
    end.record(torch.cuda.current_stream(device))
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / 1000 / n


def time_cell(steps, cfg, device):
    """{variant: [seconds per iteration of each repeat]}: warm-ups, then rounds over the variants, rotated."""
    for step, _ in steps.values():
        for _ in range(cfg.warmup):
            step()
    names, times = list(steps), {v: [] for v in steps}
    for r in range(cfg.repeats):
        for v in names[r % len(names):] + names[:r % len(names)]:
            times[v].append(clock(steps[v][0], cfg.iters, device))
    return times


def main(cfg, run=None):
    device = pick_device(cfg.device)
    cuda = device.startswith('cuda')
    cfg = replace(cfg, warmup=cfg.warmup if cfg.warmup >= 0 else 10 if cuda else 1,  # the -1s: the device's defaults
                  iters=cfg.iters if cfg.iters > 0 else 50 if cuda else 1,
                  repeats=cfg.repeats if cfg.repeats > 0 else 5 if cuda else 20,
                  threads=cfg.threads if cfg.threads > 0 else torch.get_num_threads() if cuda else 1)
    os.makedirs(os.path.dirname(cfg.out) or '.', exist_ok=True)  # now, not after the timings it would lose
    torch.set_num_threads(cfg.threads)
    return (run or bench)(cfg, device)  # run: experiments/profile_norms.py's profile, on the same footing


def bench(cfg, device):
    dtype_name = pick_dtype(cfg.dtype, device)
    dtype, ctx = getattr(torch, dtype_name), autocast(device, dtype_name)
    print(f"nanotaper bench | {device_name(device)} | torch {torch.__version__} | commit {git_commit()} | "
          f"{dtype_name} | {cfg.n_layer} layers, {cfg.n_embd} wide, vocabulary {cfg.vocab_size}")
    print(f"time per variant: the minimum of {cfg.repeats} interleaved repeats of {cfg.iters} iteration(s), after "
          f"{cfg.warmup} warm-up(s); a ratio a/b is b's time over a's (above 1: a is faster)")
    if cfg.quick:
        print("--quick: a 2-layer model timed twice a cell, which checks that every cell runs; its ratios are noise")
    results, ratios, params = [], [], {}
    Bs, Ts = csv(cfg, 'batch_sizes', int), csv(cfg, 'seq_lens', int)  # the grid's batch sizes and prompt lengths
    for compiled in ([False, True] if cfg.compile else [False]):
        for mode in csv(cfg, 'modes'):
            names = VARIANTS[mode]
            wdtype = dtype if mode != 'train' else torch.float32  # training: float32 under autocast, as train.py
            models = {v: m.to(device=device, dtype=wdtype) for v, m in variants(cfg, names).items()}
            params.update({v: m.get_num_params(non_embedding=False) for v, m in models.items()})
            if compiled:  # the variants share GPT.forward's code: give dynamo room for a graph set per variant
                torch._dynamo.config.recompile_limit = 16 * len(names)
                models = {v: torch.compile(m) for v, m in models.items()}
            cells = ([(B, T) for B in Bs for T in Ts] if mode == 'last' else [(B, cfg.decode_prompt) for B in Bs]
                     if mode == 'decode' else [(cfg.train_batch, cfg.train_seq)])
            pairs = [(a, b) for a, b in RATIOS if a in names and b in names]
            print(f"\n{mode} ({'compiled' if compiled else 'eager'}): tokens/s | ratios of tokens/s\n"
                  f"{'B':>3} {'T':>4} |" + ''.join(f"{v:>11}" for v in names) + " |"
                  + ''.join(f"{a + '/' + b:>20}" for a, b in pairs))
            for B, T in cells:
                steps = {v: make_step(mode, m, B, T, cfg, device, ctx) for v, m in models.items()}
                times = time_cell(steps, cfg, device)
                best = {v: min(times[v]) for v in names}
                results += [dict(mode=mode, compiled=compiled, B=B, T=T, variant=v, tok_s=steps[v][1] / best[v],
                                 ms=1000 * best[v], ms_repeats=[1000 * t for t in times[v]]) for v in names]
                ratios += [dict(mode=mode, compiled=compiled, B=B, T=T, ratio=f"{a}/{b}", value=best[b] / best[a])
                           for a, b in pairs]
                print(f"{B:>3} {T:>4} |" + ''.join(f"{steps[v][1] / best[v]:>11,.0f}" for v in names) + " |"
                      + ''.join(f"{best[b] / best[a]:>19.3f}x" for a, b in pairs))
    record = json.dumps(dict(bench='nanotaper', device=device_name(device), torch=torch.__version__,
                             commit=git_commit(), dtype=dtype_name, estimator='min', config=asdict(cfg), params=params,
                             results=results, ratios=ratios))
    if not cfg.out:
        print(record)
        return results, ratios
    with open(f"{cfg.out}.tmp", 'w') as f:  # renamed when whole, as checkpoints are
        f.write(record + '\n')
    os.replace(f"{cfg.out}.tmp", cfg.out)
    print(f"\nwrote every figure to {cfg.out} (python experiments/report.py --bench={cfg.out} makes the table)")
    return results, ratios


if __name__ == '__main__':
    run_main(main, BenchConfig)
