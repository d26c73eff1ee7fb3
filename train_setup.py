"""What train.py needs around its loop, the plumbing of a run: the keys that make its model, the refusals of settings
that cannot run, the config a resume or a fine-tune starts from, the processes under torchrun, the data, the model
it starts from and the log. train.py reads as the method; this file is what any such training script needs."""
import json
import os
import pickle
import runpy
from dataclasses import asdict, fields, replace

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from checkpoint import load_checkpoint, load_gpt2, load_model
from configurator import UserError
from model import GPT, GPTConfig
from runtime import REPO, git_commit, pick_device

SHAPE_KEYS = ('block_size', 'n_layer', 'n_head', 'n_embd', 'bias', 'norm')  # what a fine-tune keeps of its source
MODEL_KEYS = SHAPE_KEYS + ('dropout', 'taper', 'removal', 'anchor_lambda', 'anchor_target', 'follow_c',  # a run's
                           'fakeln_divisor', 'fakeln_aux')


def model_config(cfg, vocab_size=GPTConfig.vocab_size):
    """The GPT that cfg describes; its vocabulary comes from the data (read_vocab_size), else GPT-2's."""
    return GPTConfig(vocab_size=vocab_size, **{key: getattr(cfg, key) for key in MODEL_KEYS})


def validate(cfg):
    """Refuse settings that cannot run, naming the key and the fix."""
    if not cfg.out_dir or os.path.isfile(cfg.out_dir):
        raise ValueError(f"out_dir={cfg.out_dir!r} must name a folder (the run writes ckpt.pt and log.jsonl there)")
    training = not cfg.eval_only  # eval_only reads the schedules at one iteration, which may lie past the end
    if training and cfg.decay_lr and cfg.lr_decay_iters <= cfg.warmup_iters:
        raise ValueError(f"lr_decay_iters={cfg.lr_decay_iters} (max_iters when left out) must exceed warmup_iters="
                         f"{cfg.warmup_iters}: train longer, or warm up for fewer steps")
    gpt2 = cfg.init_from.startswith('gpt2')
    if cfg.init_from not in ('scratch', 'resume') and not gpt2 and not cfg.init_from.endswith('.pt'):
        raise ValueError(f"init_from={cfg.init_from!r} must be 'scratch', 'resume', 'gpt2[-medium|-large|-xl]' or "
                         "the path of a checkpoint (ending in .pt)")
    if gpt2 and cfg.norm != 'layernorm':
        raise ValueError(f"GPT-2 comes with LayerNorms: init_from={cfg.init_from!r} needs norm='layernorm'")
    if cfg.removal == 'fakeln' and cfg.fakeln_divisor == 'heldout' and cfg.init_from == 'scratch':
        raise ValueError("fakeln_divisor='heldout' measures FakeLN's divisors through a trained model: fine-tune one "
                         "(init_from=<its ckpt.pt> or 'gpt2'), or set fakeln_divisor='ema'")
    if cfg.fold_when_gone and cfg.taper == 'off':
        raise ValueError("fold_when_gone=True folds the norms that taper away: set taper='internal' or 'all'")
    fits = 0 <= cfg.taper_start < cfg.taper_end and (cfg.taper_end <= cfg.max_iters or not training)
    if model_config(cfg).scheduled and not fits:
        raise ValueError(f"the gate schedule needs 0 <= taper_start < taper_end <= max_iters, got taper_start="
                         f"{cfg.taper_start}, taper_end={cfg.taper_end}, max_iters={cfg.max_iters}: set both inside "
                         f"the run, or leave them out (then the taper starts after the warmup, warmup_iters="
                         f"{cfg.warmup_iters}, and takes half of the rest)")


def saved_config(values, config_cls):
    """The base beneath the command line's values (config_cls: TrainConfig): under --init_from=resume the run's own
    saved config; from a checkpoint (a fine-tune), the shape and norm of the model it holds."""
    init_from = values.get('init_from', '')
    if init_from.endswith('.pt'):
        if not os.path.isfile(init_from):
            raise UserError(f"init_from={init_from}: no checkpoint there to fine-tune; train a baseline there first "
                            f"(config/layernorm.py --out_dir={os.path.dirname(init_from) or '.'}), or point at one")
        args = load_checkpoint(init_from, mmap=True)['model_args']
        return {key: args[key] for key in SHAPE_KEYS if key in args}
    if init_from != 'resume':
        return {}
    path = os.path.join(values.get('out_dir', config_cls.out_dir), 'ckpt.pt')
    saved = load_checkpoint(path, need=('config',), mmap=True)['config']
    for key in MODEL_KEYS + ('taper_start', 'taper_end'):  # and the schedule
        if key in values and key in saved and values[key] != saved[key]:
            raise UserError(f"{key}={values[key]!r} (a flag or config file), but the run in {path} has {key}="
                            f"{saved[key]!r}: a resumed run keeps its model and schedule; resume with only --init_from="
                            "resume and keys that may change (max_iters, ...), or start a new run in another --out_dir")
    return {f.name: saved[f.name] for f in fields(config_cls) if f.name in saved and f.name != 'init_path'}


def setup_processes(cfg):
    """(ddp, rank, world_size, device): one process per GPU under torchrun (CPU processes without GPUs), else one."""
    if int(os.environ.get('RANK', -1)) == -1:
        return False, 0, 1, pick_device(cfg.device)
    torch.distributed.init_process_group(backend='nccl' if torch.cuda.is_available() else 'gloo')
    rank, local_rank, world_size = (int(os.environ[k]) for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'))
    device = f'cuda:{local_rank}' if torch.cuda.is_available() else 'cpu'
    if device != 'cpu':
        torch.cuda.set_device(device)
    if cfg.gradient_accumulation_steps % world_size != 0:
        raise UserError(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps} must be a multiple of the "
                        f"number of processes ({world_size})")
    return True, rank, world_size, device


def wrap_model(model, cfg, ddp, device):
    """The model that the loop runs: compiled if cfg says so, under DDP in a torchrun job."""
    config = model.config
    if cfg.compile:  # (FakeLN compiles a graph for each count of norms removed)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, len(model.taper_norms()) + 4)
        model = torch.compile(model)
    if ddp:  # gamma_t is unused while g = 1 and gamma at g = 0: DDP must expect unused parameters
        model = DDP(model, device_ids=[device] if device.startswith('cuda') else None,
                    find_unused_parameters=config.taper != 'off' and not config.folded)
    return model


def prepare_data(cfg):
    """The dataset's folder once it holds every file it should; Shakespeare is small enough to prepare here."""
    data_dir = os.path.join(cfg.data_root, cfg.dataset)
    script = os.path.join(REPO, 'data', cfg.dataset, 'prepare.py')
    prepare = runpy.run_path(script) if os.path.isfile(script) else {}
    needed = [os.path.join(data_dir, name) for name in prepare.get('OUTPUTS', ('train.bin', 'val.bin'))]
    missing = [p for p in needed if not os.path.isfile(p) or os.path.getsize(p) == 0
               or p.endswith('.bin') and os.path.getsize(p) % 2]  # a .bin holds 2 bytes a token: odd is truncated
    if missing and not prepare.get('PREPARE_ON_DEMAND'):
        how = f"run python {os.path.relpath(script)} first" if prepare else f"there is no data/{cfg.dataset}/prepare.py"
        raise UserError(f"{cfg.dataset!r} is incomplete, {', '.join(missing)} missing, empty or truncated: {how}")
    if missing:
        try:
            prepare['prepare'](out_dir=data_dir)  # writes every file under a temporary name, then renames
        except OSError as e:  # offline with no local copy of the text, most often; the message says what to do
            raise UserError(str(e)) from None
    return data_dir


def read_vocab_size(data_dir):
    """The character vocabulary's size from meta.pkl, else GPT-2's 50257 BPE tokens padded to a multiple of 64."""
    path = os.path.join(data_dir, 'meta.pkl')
    if not os.path.isfile(path):
        return 50304
    with open(path, 'rb') as f:
        return pickle.load(f)['vocab_size']


def get_batch(data_dir, split, batch_size, block_size, generator, device):
    """Random windows of the token file: x (B, T) and y (B, T), y shifted by one."""
    # a new memmap per batch avoids a memory leak (nanoGPT, after a StackOverflow answer)
    data = np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r')
    if len(data) <= block_size:
        raise UserError(f"{data_dir}/{split}.bin: {len(data)} tokens, fewer than block_size + 1 (lower --block_size)")
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in ix.tolist()])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64)) for i in ix.tolist()])
    if device.startswith('cuda'):
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def init_model(cfg, data_dir):
    """(model, checkpoint or None, source or None): from scratch, from GPT-2's weights, from a checkpoint's weights
    (a fine-tune; the source says which), or resumed with all it needs to go on."""
    if cfg.init_from == 'resume':
        path = os.path.join(cfg.out_dir, 'ckpt.pt')
        model, ckpt = load_model(path, need=('model_args', 'model', 'optimizer', 'scaler', 'iter_num', 'best_val_loss'))
        if ckpt['iter_num'] > cfg.max_iters:
            raise UserError(f"{path} is at iteration {ckpt['iter_num']}, past max_iters={cfg.max_iters}: raise it")
        return model, ckpt, None
    override = {key: getattr(cfg, key) for key in MODEL_KEYS if key not in SHAPE_KEYS}  # loaded weights fix the shape
    if cfg.init_from.endswith('.pt'):
        return finetune_model(cfg, data_dir, override)
    if not cfg.init_from.startswith('gpt2'):
        return GPT(model_config(cfg, read_vocab_size(data_dir))), None, None
    model = load_gpt2(cfg.init_from, override, local_path=cfg.init_path)
    if cfg.block_size > model.config.block_size:
        raise UserError(f"block_size={cfg.block_size} exceeds {cfg.init_from}'s {model.config.block_size}")
    return model, None, None


def finetune_model(cfg, data_dir, override):
    """(model, None, source): the baseline at cfg.init_from in a new run (gate 1, nothing calibrated, override's)."""
    source, ckpt = load_model(cfg.init_from)
    args = source.config
    vocab_size = read_vocab_size(data_dir)
    refuse = f"init_from={cfg.init_from}: "
    if args.folded:
        raise UserError(refuse + "it holds a folded model (by fold.py or fold_when_gone): fine-tune an unfolded one")
    if args.taper != 'off':
        raise UserError(refuse + f"its model already tapers (taper={args.taper!r}): start from a baseline's "
                        "checkpoint (taper='off'), or continue that run with --init_from=resume")
    if changed := [key for key in SHAPE_KEYS if getattr(cfg, key) != getattr(args, key)]:
        raise UserError(refuse + f"its model has {', '.join(f'{k}={getattr(args, k)!r}' for k in changed)}, this run "
                        f"asks for {', '.join(f'{k}={getattr(cfg, k)!r}' for k in changed)}: a fine-tune keeps its "
                        "model's shape and norm (drop those keys, or train from scratch)")
    if args.vocab_size != vocab_size and {args.vocab_size, vocab_size} != {50257, 50304}:  # GPT-2's, padded or not
        raise UserError(refuse + f"its vocabulary has {args.vocab_size} tokens, dataset {cfg.dataset!r} {vocab_size}: "
                        "fine-tune on data in the model's own vocabulary")
    if os.path.abspath(cfg.init_from) == os.path.abspath(os.path.join(cfg.out_dir, 'ckpt.pt')):
        raise UserError(refuse + "it is out_dir's own checkpoint, which the run would overwrite: use another --out_dir")
    model = GPT(replace(args, **override))
    model.load_weights(dict(source.named_parameters()))
    return model, None, dict(ckpt=os.path.abspath(cfg.init_from), iter=ckpt.get('iter_num'))


def open_log(cfg, resumed_at, **header):
    """log.jsonl: a header with the provenance, then one JSON record per line. A fresh run starts a new file;
    a resumed one appends (readers let the records from resumed_at on replace the older ones)."""
    path = os.path.join(cfg.out_dir, 'log.jsonl')
    with open(path, 'a' if resumed_at is not None else 'w') as f:
        f.write(json.dumps(dict(kind='header', commit=git_commit(), torch=torch.__version__, resumed_at=resumed_at,
                                config=asdict(cfg), **header)) + '\n')
    if cfg.wandb_log:
        try:
            import wandb
        except ImportError:
            raise UserError("wandb_log=True needs wandb: pip install wandb, or drop --wandb_log") from None
        wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, config=asdict(cfg))

    def write(rec):
        with open(path, 'a') as f:
            f.write(json.dumps(rec) + '\n')
        if cfg.wandb_log:
            wandb.log(rec)
    return write


def check_finite(loss, it, ckpt_path, saved_at):
    """A nan or inf loss means the run diverged: stop before a checkpoint can save it."""
    if not np.isfinite(loss):
        kept = f"{ckpt_path} still holds iteration {saved_at}" if saved_at is not None else "no checkpoint was written"
        raise UserError(f"the loss is {loss} at iteration {it}: the run diverged ({kept}); lower --learning_rate, "
                        "or give the taper more steps (--taper_end), and train again")
