"""Train a GPT, tapering its norms away as it trains (METHOD.md §4). On one device:
$ python train.py config/taper.py
$ python train.py config/taper.py --batch_size=32 --compile
$ python train.py --init_from=resume --out_dir=out-taper     # continue a run exactly where it stopped
$ python train.py config/finetune_taper.py                   # a new run from a trained model's weights
On many GPUs, with DDP:
$ torchrun --standalone --nproc_per_node=8 train.py config/owt_taper.py
`python train.py --help` lists every key, its default and what it means."""
import math
import os
import time
from dataclasses import asdict, dataclass
from datetime import timedelta

import numpy as np
import torch

from checkpoint import KIND, save_checkpoint
from configurator import Count, Fraction, NonNegative, Positive, run_main
from fold import carry_moments, fold_model, unfolded_coordinates
from runtime import autocast, device_name, pick_dtype
from train_setup import (check_finite, get_batch, init_model, model_config, open_log, prepare_data, saved_config,
                         setup_processes, validate, wrap_model)

RUNAWAY = 4.0  # s_drift above this: s has outgrown, this many times over, the stream that the frozen c was fitted to


@dataclass
class TrainConfig:
    # The defaults are nanoGPT's: GPT-2 124M on OpenWebText with LayerNorm, nothing tapering. config/ varies them.
    out_dir: str = 'out'                 # checkpoint (ckpt.pt) and log (log.jsonl) of the run
    eval_interval: Positive = 2000       # iterations between evaluations, each followed by a checkpoint
    log_interval: Positive = 1           # iterations between log lines
    eval_iters: Positive = 200           # batches per split in an evaluation
    eval_only: bool = False              # evaluate once, then exit
    always_save_checkpoint: bool = True  # save at every evaluation, else only when val loss improves
    init_from: str = 'scratch'           # 'scratch', 'resume' (out_dir/ckpt.pt), 'gpt2[-medium|..]', or a ckpt.pt
    init_path: str | None = None         # with init_from='gpt2*': a local save_pretrained folder or weights file
    wandb_log: bool = False              # also log to Weights & Biases (pip install wandb)
    wandb_project: str = 'nanotaper'     # its project
    wandb_run_name: str = 'run'          # its run name
    dataset: str = 'openwebtext'         # reads <data_root>/<dataset>/{train,val}.bin
    data_root: str = 'data'              # the folder holding the datasets
    gradient_accumulation_steps: Positive = 40  # micro-steps per optimizer step, over all processes
    batch_size: Positive = 12            # sequences per micro-step per process
    block_size: Positive = 1024          # tokens per sequence (the context)
    # model (GPTConfig in model.py)
    n_layer: Positive = 12               # transformer blocks
    n_head: Positive = 12                # attention heads per block
    n_embd: Positive = 768               # width of the residual stream
    dropout: Fraction = 0.0              # dropout probability (0 for pre-training, as nanoGPT)
    bias: bool = False                   # biases in Linear layers and LayerNorms
    norm: str = 'layernorm'              # 'layernorm', 'rmsnorm' or 'none' (identity in every norm slot)
    taper: str = 'off'                   # 'off', 'internal' (ln_1, ln_2 taper; ln_f stays) or 'all' (ln_f too)
    removal: str = 'taper'               # how they go: 'taper' (one cosine gate) or 'fakeln' (one at a time, §11)
    anchor_lambda: NonNegative = 0.0     # weight of the scale-anchor loss (METHOD.md §6); 0 turns it off
    anchor_target: float | None = None   # a fixed s_tgt; None: the EMA of s, frozen as the norms start to go
    follow_c: bool = True                # c follows its statistics to g = 0 (ours, §3); False: frozen at taper_start
    fakeln_divisor: str = 'heldout'      # FakeLN's: measured on held-out tokens, then held (theirs) | 'ema': followed
    fakeln_aux: NonNegative = 0.0        # weight of FakeLN's auxiliary loss (§11), on from the first step; 0 off
    fold_when_gone: bool = False         # once the norms are gone, fold them away and train on without (§7)
    # AdamW, and the learning rate: linear warmup, then cosine down to min_lr
    learning_rate: NonNegative = 6e-4    # the peak learning rate
    max_iters: Count = 600000            # optimizer steps, exactly
    weight_decay: NonNegative = 1e-1     # on matrices only
    beta1: Fraction = 0.9                # AdamW's first-moment decay
    beta2: Fraction = 0.95               # AdamW's second-moment decay
    grad_clip: NonNegative = 1.0         # clip the gradient norm at this value; 0 disables clipping
    decay_lr: bool = True                # False keeps learning_rate throughout
    warmup_iters: Count = 2000           # iterations of linear warmup
    lr_decay_iters: Count | None = None  # iteration where the cosine reaches min_lr; None: max_iters
    min_lr: NonNegative = 6e-5           # the floor of the cosine
    # the gate (METHOD.md §4): 1 through taper_start, a half cosine down to 0 at taper_end (FakeLN: a staircase)
    taper_start: Count | None = None     # the last step at g = 1; None: the end of the lr warmup (0 if not decay_lr)
    taper_end: Count | None = None       # where the gate reaches 0; None: half-way through the steps after taper_start
    device: str = 'auto'                 # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
    dtype: str = 'auto'                  # 'auto' (bf16 on GPUs that have it, else fp16; fp32 off CUDA), or a name
    compile: bool = False                # torch.compile the model
    seed: Count = 1337                   # weights, batches and dropout all follow from it
    threads: Count = 0                   # CPU threads for torch; 0: torch's default (results/ used 1: see README)

    def __post_init__(self):
        # Left out, the schedules follow from the run's length (METHOD.md §4), written here so that the log shows
        # them and a resumed run keeps them: 2000 steps with 100 of warmup taper from 100 to 1050.
        if self.lr_decay_iters is None:
            self.lr_decay_iters = self.max_iters
        if self.taper_start is None:
            self.taper_start = self.warmup_iters if self.decay_lr else 0
        if self.taper_end is None:
            self.taper_end = self.taper_start + max(1, (self.max_iters - self.taper_start) // 2)
        validate(self)


# ---- The run: set-up (its plumbing, refusals and resume in train_setup.py), then the loop; the schedules follow it
def train(cfg):
    """Run the training job cfg describes. Returns a summary (evaluations, iterations, gate and phase, wall time)."""
    ddp, rank, world_size, device = setup_processes(cfg)
    master = rank == 0                                            # rank 0 evaluates, saves and logs
    accum_steps = cfg.gradient_accumulation_steps // world_size  # micro-steps per optimizer step, in this process
    dtype = pick_dtype(cfg.dtype, device)
    ctx = autocast(device, dtype)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # the order of float sums, so a CPU run's last digits, depends on it
    if master:
        os.makedirs(cfg.out_dir, exist_ok=True)
        print(f"tokens per iteration: {cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size:,} "
              f"({device}, {dtype}, {torch.get_num_threads()} CPU threads)")
    data_dir = prepare_data(cfg) if master else os.path.join(cfg.data_root, cfg.dataset)
    if ddp:
        torch.distributed.barrier()  # the other ranks wait while rank 0 prepares
    # the model, its optimizer and the mixed-precision scaler: fresh, or exactly as the checkpoint left them
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    raw_model, ckpt, source = init_model(cfg, data_dir)  # what checkpoints save: no `_orig_mod.`/`module.` prefix
    gptconf = raw_model.config
    device_type = device.split(':')[0]
    adamw_args = (cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), device_type)  # fold_when_gone's too
    raw_model.to(device)
    optimizer = raw_model.configure_optimizers(*adamw_args)
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == 'float16'))
    if gptconf.removal == 'fakeln' and not ckpt:  # FakeLN's divisors, measured through the starting model (§11)
        gen = torch.Generator().manual_seed(cfg.seed)  # on the held-out batches that evaluation reads
        with ctx:
            raw_model.measure_divisors([get_batch(data_dir, 'val', cfg.batch_size, cfg.block_size, gen, device)[0]
                                        for _ in range(cfg.eval_iters)])
    iter_num, best_val_loss = (ckpt['iter_num'], ckpt['best_val_loss']) if ckpt else (0, float('inf'))
    if ckpt:
        optimizer.load_state_dict(ckpt['optimizer'])
        scaler.load_state_dict(ckpt['scaler'])
    del ckpt  # free the memory
    n_norms = len(raw_model.taper_norms())  # the norms that go
    model = wrap_model(raw_model, cfg, ddp, device)  # compiled, under DDP, as asked
    resumed_at = saved_at = iter_num if cfg.init_from == 'resume' else None  # saved_at: the iteration ckpt_path holds
    ckpt_path = os.path.join(cfg.out_dir, 'ckpt.pt')
    if master:
        source_note = f"; fine-tuning {source['ckpt']} (its iteration {source['iter']})" if source else ""
        print(f"model: {raw_model.get_num_params() / 1e6:.2f}M parameters, norm={gptconf.norm}, taper={gptconf.taper}, "
              f"removal={gptconf.removal}, folded={gptconf.folded}{source_note}")
        write_log = open_log(cfg, resumed_at, device=device_name(device), dtype=dtype, world_size=world_size,
                             model_args=asdict(gptconf), source=source)
        if warning := schedule_warning(cfg):
            print(warning)
            write_log(dict(kind='warning', text=warning))
    # The loop. Iteration k sets g(k) (FakeLN: the norms removed by k) and the lr, takes step k and folds its
    # statistics into c; evaluations and checkpoints come between steps (a checkpoint at k holds g(k)), out of the
    # timings. So, at the edges:
    #   c holds the statistics of every step before the first at g = 0 (follow_c=False: through taper_start);
    #   gamma_t and s_tgt those through taper_start (FakeLN: a norm's, and its EMA divisor, up to its removal).
    summary = dict(evals=[])
    t_start = t_log = time.time()  # the run's start; the log line's means cover iter_log on, timed from t_log
    iter_log = iter_num
    parts_sum = {}       # the loss parts summed over those iterations
    try:
        while True:
            if gptconf.removal == 'fakeln' and not gptconf.folded:  # (folded by fold_when_gone: no norm is left)
                raw_model.remove_norms(norms_removed(iter_num, cfg.taper_start, cfg.taper_end, n_norms))
            elif gptconf.scheduled and not gptconf.folded:  # else g stays 1, unused
                raw_model.set_gate(get_gate(iter_num, cfg.taper_start, cfg.taper_end))
            if cfg.fold_when_gone and raw_model.phase() == 'gone' and not gptconf.folded:  # from here on, no norm
                folded = fold_model(raw_model)
                optimizer = carry_moments(raw_model, folded, optimizer, folded.configure_optimizers(*adamw_args))
                raw_model, gptconf = folded, folded.config
                model = wrap_model(raw_model, cfg, ddp, device)
                if master:
                    print(f"iteration {iter_num}: the norms are gone, folded away (fold_when_gone)")
            if master and (iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters):
                losses = estimate_loss(raw_model, cfg, data_dir, device, ctx)
                g = raw_model.gate.item()
                print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, gate {g:.3f}")
                write_log(dict(kind='eval', iter=iter_num, train=losses['train'], val=losses['val'], gate=g))
                check_finite(losses['val'], iter_num, ckpt_path, saved_at)
                summary['evals'].append(dict(iter=iter_num, **losses))
                is_best = losses['val'] < best_val_loss
                best_val_loss = min(best_val_loss, losses['val'])
                if (is_best or cfg.always_save_checkpoint) and iter_num > 0 and not cfg.eval_only:
                    save_checkpoint(dict(kind=KIND, model_args=asdict(gptconf), model=raw_model.state_dict(),
                                         optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                                         iter_num=iter_num, best_val_loss=best_val_loss, config=asdict(cfg)), ckpt_path)
                    saved_at = iter_num
                    print(f"saved checkpoint to {ckpt_path}")
                t_log = time.time()  # keep eval out of the training timings
            if iter_num >= cfg.max_iters or cfg.eval_only:
                break
            lr = get_lr(iter_num, cfg)
            for group in optimizer.param_groups:
                group['lr'] = lr
            seed = step_seed(cfg.seed, rank, iter_num)
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            for micro_step in range(accum_steps):  # forward/backward over the micro-steps, then one optimizer step
                X, Y = get_batch(data_dir, 'train', cfg.batch_size, cfg.block_size, gen, device)
                if ddp:  # sync gradients on the last micro-step only
                    model.require_backward_grad_sync = micro_step == accum_steps - 1
                with ctx:
                    _, loss, parts = model(X, Y)
                for k, v in dict(parts, loss=loss.detach()).items():  # the log shows the means over micro-steps
                    parts_sum[k] = parts_sum.get(k, 0) + v / accum_steps
                scaler.scale(loss / accum_steps).backward()  # summed over the micro-steps, these give their mean
            with unfolded_coordinates(optimizer):  # (a folded model's weights stepped as before the fold, §7)
                if cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)  # None, not 0: AdamW skips gamma_t while g = 1
            raw_model.update_calibration()          # this step's statistics into the EMAs of the norms collecting
            iter_num += 1
            # log the mean over the iterations since the last line (the .item() calls sync the device)
            if iter_num % cfg.log_interval == 0 or iter_num == cfg.max_iters:
                n = iter_num - iter_log
                rec = dict(kind='train', iter=iter_num - 1, gate=raw_model.gate.item(), lr=lr,
                           ms=1000 * (time.time() - t_log) / n, **{k: v.item() / n for k, v in parts_sum.items()})
                if gptconf.removal == 'fakeln':
                    rec['removed'] = int(raw_model.removed)
                if raw_model.c_frozen():  # has s outgrown the frozen c? (over the EMA of s where it stopped, §4)
                    rec['s_drift'] = rec['s'] / raw_model.s_mean().item()
                parts_sum = {}
                t_log = time.time()
                iter_log = iter_num
                if master:  # (under DDP the other ranks then wait until torchrun ends them)
                    print(log_line(rec, cfg.max_iters))
                    write_log(rec)
                    check_finite(rec['loss'], rec['iter'], ckpt_path, saved_at)
    except KeyboardInterrupt:
        where = (f"{ckpt_path} holds iteration {saved_at}: continue with python train.py --init_from=resume "
                 f"--out_dir={cfg.out_dir}" if saved_at is not None else "no checkpoint was written yet")
        raise SystemExit(f"interrupted at iteration {iter_num}; {where}")
    wall_s = time.time() - t_start
    if master and not cfg.eval_only:
        print(f"done: iteration {iter_num} in {wall_s:.0f} s (this process, evaluations included)")
        write_log(dict(kind='done', iter=iter_num, wall_s=wall_s))
    if ddp:
        torch.distributed.destroy_process_group()
    return dict(summary, iter_num=iter_num, best_val_loss=best_val_loss, gate=raw_model.gate.item(),
                phase=raw_model.phase(), wall_s=wall_s)


# ---- Schedules: pure functions of the iteration (METHOD.md §4), and what a run that tapers needs of them ----
def get_lr(it, cfg):
    """nanoGPT's: a linear warmup for warmup_iters steps, a cosine down to min_lr at lr_decay_iters, then min_lr."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it > cfg.lr_decay_iters:
        return cfg.min_lr
    coeff = 0.5 * (1.0 + math.cos(math.pi * (it - cfg.warmup_iters) / (cfg.lr_decay_iters - cfg.warmup_iters)))
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)  # coeff 1 -> 0


def get_gate(it, taper_start, taper_end):
    """METHOD.md §4: 1 through taper_start, a half cosine down to 0 at taper_end, then 0."""
    if not 0 <= taper_start < taper_end:
        raise ValueError(f"need 0 <= taper_start < taper_end, got {taper_start}, {taper_end}")
    progress = min(max((it - taper_start) / (taper_end - taper_start), 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # exactly 1 and 0 at the ends: cos(pi) is -1.0 in floats


def norms_removed(it, taper_start, taper_end, n):
    """FakeLN's schedule (§11): how many of its n norms are gone at iteration it. They go one at a time, norm i from
    iteration taper_start + ceil((i + 1) * (taper_end - taper_start) / n) on: the last at taper_end."""
    return sum(it >= taper_start + math.ceil((i + 1) * (taper_end - taper_start) / n) for i in range(n))


def schedule_warning(cfg):
    """A line for a run too short for the taper (METHOD.md §4), else None: c follows the stream through an EMA that
    averages over about 1 / (1 - ema_decay) = 100 steps, so a gate that closes faster leaves c behind."""
    steps = cfg.taper_end - cfg.taper_start
    follow = round(1 / (1 - model_config(cfg).ema_decay))  # GPTConfig's decay (no run sets it): 100 steps
    if cfg.taper == 'off' or cfg.removal != 'taper' or not cfg.follow_c or steps >= follow:
        return None  # (FakeLN switches each norm at once; with follow_c=False, c is frozen before the gate moves)
    return (f"warning: the gate closes in {steps} steps (taper_start={cfg.taper_start} to taper_end={cfg.taper_end}), "
            f"fewer than the {follow} that c's statistics average over, so c may lag and L(h) run away; train longer "
            f"(max_iters >= {cfg.taper_start + 2 * follow}, taper_end left out), or set them {follow}+ steps apart")


def step_seed(seed, rank, it):
    """Every iteration reseeds from (seed, rank, it): batches and dropout are a function of the step, so a
    resumed run draws exactly what the uninterrupted one drew, and every DDP rank draws different data."""
    return int(np.random.SeedSequence([seed, rank, it]).generate_state(1)[0])


# ---- What the run reports: evaluations and the log line --------------------------------------
@torch.no_grad()
def estimate_loss(model, cfg, data_dir, device, ctx):
    """Mean cross-entropy over eval_iters batches per split. The batches come from a generator seeded the
    same way at every eval, so curves compare like with like and training's RNG is never touched."""
    model.eval()
    out = {}
    for split in ('train', 'val'):
        gen = torch.Generator().manual_seed(cfg.seed)  # the same batches each time
        losses = torch.zeros(cfg.eval_iters)
        for k in range(cfg.eval_iters):
            X, Y = get_batch(data_dir, split, cfg.batch_size, cfg.block_size, gen, device)
            with ctx:
                losses[k] = model(X, Y)[2]['ce'].item()
        out[split] = losses.mean().item()
    model.train()
    return out


def log_line(rec, max_iters):
    eta = timedelta(seconds=round(rec['ms'] / 1000 * (max_iters - rec['iter'] - 1)))  # at this pace, evals aside
    line = (f"iter {rec['iter']:>{len(str(max_iters))}}/{max_iters} | loss {rec['loss']:.4f} | ce {rec['ce']:.4f} | "
            f"anchor {rec['anchor']:.4f} | gate {rec['gate']:.3f} | lr {rec['lr']:.2e} | {rec['ms']:.1f} ms/iter | "
            f"s {rec['s']:.3f} | logit norm {rec['logit_norm']:.2f} | eta {eta}")
    if 'removed' in rec:  # FakeLN: its norms go one at a time, the gate stays 1
        line += f" | removed {rec['removed']}"
    if rec.get('s_drift', 0.0) > RUNAWAY:
        line += f" | RUNAWAY: s is {rec['s_drift']:.1f}x what it was when c froze"
    return line


if __name__ == '__main__':
    run_main(train, TrainConfig, base=lambda values: saved_config(values, TrainConfig))
