"""
Train a GPT, optionally tapering its norms away (PAPER.md section 4). Runs on one device:
$ python train.py config/taper.py
$ python train.py config/taper.py --batch_size=32 --compile=True
or on many GPUs with DDP:
$ torchrun --standalone --nproc_per_node=8 train.py config/owt_taper.py
"""
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.distributed import destroy_process_group, init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP

from common import (CHECKPOINT_KIND, ConfigError, autocast, device_name, get_batch, git_commit, load_checkpoint,
                    pick_device, pick_dtype, read_meta, run_main, save_checkpoint)
from model import GPT, GPTConfig


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = 'out'
    eval_interval: int = 2000
    log_interval: int = 1
    eval_iters: int = 200
    eval_only: bool = False             # evaluate once, then exit
    always_save_checkpoint: bool = True  # else only when val loss improves
    init_from: str = 'scratch'          # 'scratch' | 'resume' | 'gpt2' | 'gpt2-medium' | 'gpt2-large' | 'gpt2-xl'
    init_path: str | None = None        # with init_from='gpt2*': a local save_pretrained folder or weights file
    wandb_log: bool = False
    wandb_project: str = 'nanotaper'
    wandb_run_name: str = 'run'
    # data
    dataset: str = 'shakespeare_char'   # reads <data_root>/<dataset>/{train,val}.bin
    data_root: str = 'data'
    gradient_accumulation_steps: int = 1  # micro-steps per optimizer step (over all GPUs)
    batch_size: int = 12                # sequences per micro-step per GPU
    block_size: int = 1024
    # model (see GPTConfig)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = False
    norm: str = 'layernorm'             # 'layernorm' | 'rmsnorm' | 'none'
    taper: str = 'off'                  # 'off' | 'internal' | 'all'
    anchor_lambda: float = 0.0          # scale-anchor loss weight (PAPER.md section 6)
    anchor_target: float = 0.0          # 0: calibrate s_tgt at taper_start
    # AdamW
    learning_rate: float = 6e-4
    max_iters: int = 600000             # optimizer steps, exactly
    weight_decay: float = 1e-1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0              # 0 disables clipping
    # learning rate: linear warmup, then cosine down to min_lr
    decay_lr: bool = True
    warmup_iters: int = 2000
    lr_decay_iters: int = 600000
    min_lr: float = 6e-5
    # the gate: 1 up to taper_start (EMAs collect, then calibrate), cosine to 0 at taper_end
    taper_start: int | None = None      # None: warmup_iters
    taper_end: int | None = None        # None: max_iters // 2
    # system
    device: str = 'auto'                # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
    dtype: str = 'auto'                 # 'auto' (bf16 if the GPU has it, fp16 on older GPUs, fp32 off CUDA)
    compile: bool = False               # torch.compile the model
    seed: int = 1337
    backend: str = 'nccl'               # DDP backend: 'nccl' on GPUs, 'gloo' on CPUs

    def __post_init__(self):
        if self.taper_start is None:
            self.taper_start = self.warmup_iters
        if self.taper_end is None:
            self.taper_end = self.max_iters // 2
        validate(self)


def validate(cfg):
    """Refuse settings that cannot run, naming the key and the fix."""
    for key in ('eval_interval', 'log_interval', 'eval_iters', 'batch_size', 'block_size',
                'gradient_accumulation_steps', 'n_layer', 'n_head', 'n_embd'):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}={getattr(cfg, key)} must be >= 1")
    if cfg.max_iters < 0 or cfg.warmup_iters < 0:
        raise ConfigError("max_iters and warmup_iters must be >= 0")
    if cfg.decay_lr and cfg.lr_decay_iters <= cfg.warmup_iters:
        raise ConfigError(f"lr_decay_iters={cfg.lr_decay_iters} must exceed warmup_iters={cfg.warmup_iters}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout={cfg.dropout} must lie in [0, 1)")
    if cfg.init_from not in ('scratch', 'resume') and not cfg.init_from.startswith('gpt2'):
        raise ConfigError(f"init_from={cfg.init_from!r} must be 'scratch', 'resume' or 'gpt2[-medium|-large|-xl]'")
    if cfg.init_from.startswith('gpt2') and cfg.norm != 'layernorm':
        raise ConfigError(f"GPT-2's weights come with LayerNorms: init_from={cfg.init_from!r} needs norm='layernorm'")
    if cfg.init_path is not None and not cfg.init_from.startswith('gpt2'):
        raise ConfigError(f"init_path is read only with init_from='gpt2*', not init_from={cfg.init_from!r}")
    if not 0 <= cfg.taper_start < cfg.taper_end <= cfg.max_iters and not cfg.eval_only:
        raise ConfigError(f"the gate schedule needs 0 <= taper_start < taper_end <= max_iters, got "
                          f"taper_start={cfg.taper_start}, taper_end={cfg.taper_end}, max_iters={cfg.max_iters}; "
                          "set --taper_start and --taper_end (iterations) inside the run")
    model_config(cfg, vocab_size=1)  # GPTConfig checks norm, taper and the anchor


def model_config(cfg, vocab_size):
    try:
        return GPTConfig(block_size=cfg.block_size, vocab_size=vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                         n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias, norm=cfg.norm, taper=cfg.taper,
                         anchor_lambda=cfg.anchor_lambda, anchor_target=cfg.anchor_target)
    except ValueError as e:
        raise ConfigError(str(e)) from None


# ----------------------------------------------------------------------------------------------
# Schedules: pure functions of the iteration

def get_lr(it, cfg):
    if not cfg.decay_lr:
        return cfg.learning_rate
    # 1) linear warmup for warmup_iters steps
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    # 2) past lr_decay_iters, min_lr
    if it > cfg.lr_decay_iters:
        return cfg.min_lr
    # 3) in between, cosine down to min_lr
    decay_ratio = (it - cfg.warmup_iters) / (cfg.lr_decay_iters - cfg.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


def get_gate(it, taper_start, taper_end):
    """PAPER.md section 4: 1 through taper_start, a half cosine down to 0 at taper_end, then 0."""
    if not 0 <= taper_start < taper_end:
        raise ValueError(f"need 0 <= taper_start < taper_end, got {taper_start}, {taper_end}")
    if it <= taper_start:
        return 1.0
    if it >= taper_end:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * (it - taper_start) / (taper_end - taper_start)))


def step_seed(seed, rank, it):
    """Every iteration reseeds from (seed, rank, it): batches and dropout are a function of the step, so a
    resumed run draws exactly what the uninterrupted one drew, and every DDP rank draws different data."""
    return int(np.random.SeedSequence([seed, rank, it]).generate_state(1)[0])


def configure_optimizer(model, cfg, device_type):
    """AdamW; weight decay on matrices only (not on gamma, gamma_t, beta or other biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': cfg.weight_decay},
              {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2),
                             fused=device_type == 'cuda')


@torch.no_grad()
def estimate_loss(model, cfg, data_dir, device, ctx):
    """Mean cross-entropy over eval_iters batches per split. The batches come from a generator seeded the
    same way at every eval, so curves compare like with like and training's RNG is never touched."""
    model.eval()
    out = {}
    for split in ('train', 'val'):
        gen = torch.Generator().manual_seed(cfg.seed)
        losses = torch.zeros(cfg.eval_iters)
        for k in range(cfg.eval_iters):
            X, Y = get_batch(data_dir, split, cfg.batch_size, cfg.block_size, gen, device)
            with ctx:
                _, _, parts = model(X, Y)
            losses[k] = parts['ce'].item()
        out[split] = losses.mean().item()
    model.train()
    return out


def prepare_data(cfg, master):
    """Locate the token files; Shakespeare is small enough to prepare on the spot."""
    data_dir = os.path.join(cfg.data_root, cfg.dataset)
    if not os.path.exists(os.path.join(data_dir, 'train.bin')):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', cfg.dataset, 'prepare.py')
        if master and os.path.isfile(script):
            import runpy
            prepare = runpy.run_path(script)
            if not prepare.get('PREPARE_ON_DEMAND', False):
                raise FileNotFoundError(f"{data_dir}/train.bin is missing: run python {script} first")
            prepare['prepare'](out_dir=data_dir)
        elif master:
            raise FileNotFoundError(f"{data_dir}/train.bin is missing and there is no data/{cfg.dataset}/prepare.py")
    return data_dir


def read_vocab_size(data_dir):
    meta = read_meta(data_dir)  # the character vocabulary, if the dataset has one
    return meta['vocab_size'] if meta else 50304  # else GPT-2's 50257 BPE tokens, padded to a multiple of 64


def log_line(rec):
    return (f"iter {rec['iter']:6d} | loss {rec['loss']:.4f} | ce {rec['ce']:.4f} | anchor {rec['anchor']:.4f} | "
            f"gate {rec['gate']:.3f} | lr {rec['lr']:.2e} | {rec['ms']:7.1f} ms/iter | {rec['tok_s']:8.0f} tok/s | "
            f"s {rec['s']:.3f} | logit norm {rec['logit_norm']:.2f}")


# ----------------------------------------------------------------------------------------------

def train(cfg):
    """Run the training job described by cfg. Returns a summary dict (iterations, losses, timing)."""
    # ---- processes and devices: one per GPU under torchrun, else one
    ddp = int(os.environ.get('RANK', -1)) != -1
    if ddp:
        init_process_group(backend=cfg.backend)
        rank, local_rank, world_size = (int(os.environ[k]) for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'))
        device = f'cuda:{local_rank}' if cfg.backend == 'nccl' else 'cpu'
        if device.startswith('cuda'):
            torch.cuda.set_device(device)
        if cfg.gradient_accumulation_steps % world_size != 0:
            raise ConfigError(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps} must be a multiple "
                              f"of the number of processes ({world_size})")
    else:
        rank, world_size, device = 0, 1, pick_device(cfg.device)
    master = rank == 0
    accum_steps = cfg.gradient_accumulation_steps // world_size
    device_type = 'cuda' if device.startswith('cuda') else device.split(':')[0]
    dtype = pick_dtype(cfg.dtype, device)
    ctx = autocast(device, dtype)
    tokens_per_iter = accum_steps * world_size * cfg.batch_size * cfg.block_size
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if master:
        os.makedirs(cfg.out_dir, exist_ok=True)
        print(f"tokens per iteration: {tokens_per_iter:,} ({device}, {dtype})")

    # ---- data
    data_dir = prepare_data(cfg, master)
    if ddp:
        torch.distributed.barrier()  # the other ranks wait while rank 0 prepares
    torch.manual_seed(cfg.seed)      # the same initial weights on every rank

    # ---- model: from scratch, from GPT-2's weights, or resumed with everything needed to continue exactly
    ckpt_path = os.path.join(cfg.out_dir, 'ckpt.pt')
    iter_num, best_val_loss, ckpt = 0, float('inf'), None
    if cfg.init_from == 'resume':
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        if 'optimizer' not in ckpt:
            raise ValueError(f"{ckpt_path} holds no optimizer state (a folded model?): it cannot be resumed")
        iter_num, best_val_loss = ckpt['iter_num'], ckpt['best_val_loss']
        model = GPT(GPTConfig(**ckpt['model_args']))
        model.load_state_dict(ckpt['model'])
    elif cfg.init_from.startswith('gpt2'):  # GPT-2's shape and weights; the norm choice and dropout are cfg's
        override = dict(dropout=cfg.dropout, taper=cfg.taper, anchor_lambda=cfg.anchor_lambda,
                        anchor_target=cfg.anchor_target)
        model = GPT.from_pretrained(cfg.init_from, override, local_path=cfg.init_path)
        if cfg.block_size > model.config.block_size:
            raise ConfigError(f"block_size={cfg.block_size} exceeds {cfg.init_from}'s {model.config.block_size}")
    else:
        model = GPT(model_config(cfg, read_vocab_size(data_dir)))
    gptconf = model.config
    model.to(device)
    if master:
        print(f"model: {model.get_num_params() / 1e6:.2f}M parameters, norm={gptconf.norm}, taper={gptconf.taper}")

    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == 'float16'))
    optimizer = configure_optimizer(model, cfg, device_type)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt['optimizer'])
        scaler.load_state_dict(ckpt['scaler'])
    ckpt = None  # free the memory

    raw_model = model  # checkpoints save raw_model: no `_orig_mod.` or `module.` prefixes
    if cfg.compile:
        model = torch.compile(model)
    if ddp:
        # gamma_t is unused before calibration and gamma at g = 0: DDP must expect unused parameters
        model = DDP(model, device_ids=[local_rank] if device_type == 'cuda' else None,
                    find_unused_parameters=gptconf.taper != 'off')

    # ---- logging: a header with the provenance, then one JSON record per log/eval line
    log_path = os.path.join(cfg.out_dir, 'log.jsonl')
    if master:
        with open(log_path, 'a') as f:
            f.write(json.dumps(dict(kind='header', commit=git_commit(), torch=torch.__version__,
                                    device=device_name(device), dtype=dtype, world_size=world_size,
                                    resumed_at=iter_num if cfg.init_from == 'resume' else None,
                                    config=asdict(cfg), model_args=asdict(gptconf))) + '\n')
    if cfg.wandb_log and master:
        import wandb
        wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, config=asdict(cfg))

    def write_log(rec):
        with open(log_path, 'a') as f:
            f.write(json.dumps(rec) + '\n')
        if cfg.wandb_log:
            wandb.log(rec)

    def checkpoint():
        save_checkpoint(dict(kind=CHECKPOINT_KIND, model_args=asdict(gptconf), model=raw_model.state_dict(),
                             optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), iter_num=iter_num,
                             best_val_loss=best_val_loss, config=asdict(cfg)), ckpt_path)

    # ---- the loop: iteration k sets the gate and lr of step k, takes the step, and after step
    # taper_start freezes the calibration. Evaluation and checkpoints happen between steps.
    summary, t_start = dict(evals=[]), time.time()
    last = dict(t=time.time(), iter=iter_num)
    parts_sum, loss_sum = None, None
    while True:
        if gptconf.taper != 'off':  # a model with nothing to taper keeps g = 1 (its gate is unused)
            raw_model.set_gate(get_gate(iter_num, cfg.taper_start, cfg.taper_end))
        if master and (iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters):
            losses = estimate_loss(raw_model, cfg, data_dir, device, ctx)
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, "
                  f"gate {raw_model.gate.item():.3f}")
            write_log(dict(kind='eval', iter=iter_num, train=losses['train'], val=losses['val'],
                           gate=raw_model.gate.item()))
            summary['evals'].append(dict(iter=iter_num, **losses))
            is_best = losses['val'] < best_val_loss
            best_val_loss = min(best_val_loss, losses['val'])
            if (is_best or cfg.always_save_checkpoint) and iter_num > 0 and not cfg.eval_only:
                checkpoint()
                print(f"saved checkpoint to {ckpt_path}")
            last['t'] = time.time()  # keep eval out of the training timings
        if iter_num >= cfg.max_iters or cfg.eval_only:
            break

        lr = get_lr(iter_num, cfg)
        for group in optimizer.param_groups:
            group['lr'] = lr

        # forward/backward over the micro-steps, then one optimizer step
        seed = step_seed(cfg.seed, rank, iter_num)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        for micro_step in range(accum_steps):
            X, Y = get_batch(data_dir, 'train', cfg.batch_size, cfg.block_size, gen, device)
            if ddp:  # sync gradients on the last micro-step only
                model.require_backward_grad_sync = micro_step == accum_steps - 1
            with ctx:
                _, loss, parts = model(X, Y)
                # the gradients of the micro-steps add up, so each loss is scaled to give their mean
                loss = loss / accum_steps
            scaler.scale(loss).backward()
            parts_sum = {k: v / accum_steps + (parts_sum[k] if parts_sum else 0) for k, v in parts.items()}
            loss_sum = loss.detach() + (loss_sum if loss_sum is not None else 0)
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)  # None, not 0: AdamW skips gamma_t before calibration
        raw_model.update_calibration()          # while g = 1: this step's statistics into the EMAs
        if iter_num == cfg.taper_start:
            raw_model.calibrate()               # c <- c*, gamma_t <- gamma, s_tgt frozen
        iter_num += 1

        # log the mean over the iterations since the last line (the .item() calls sync the device)
        if iter_num % cfg.log_interval == 0 or iter_num == cfg.max_iters:
            n = iter_num - last['iter']
            dt = (time.time() - last['t']) / max(n, 1)
            rec = dict(kind='train', iter=iter_num - 1, loss=loss_sum.item() / n, gate=raw_model.gate.item(),
                       lr=lr, ms=dt * 1000, tok_s=tokens_per_iter / dt,
                       **{k: v.item() / n for k, v in parts_sum.items()})
            parts_sum, loss_sum = None, None
            last.update(t=time.time(), iter=iter_num)
            if master:
                print(log_line(rec))
                write_log(rec)

    wall_s = time.time() - t_start
    if master and not cfg.eval_only:
        print(f"done: iteration {iter_num} in {wall_s:.0f} s (this process, evaluations included)")
        write_log(dict(kind='done', iter=iter_num, wall_s=wall_s))
    if ddp:
        destroy_process_group()
    summary.update(iter_num=iter_num, best_val_loss=best_val_loss, gate=raw_model.gate.item(), wall_s=wall_s)
    return summary


if __name__ == '__main__':
    run_main(train, TrainConfig)
