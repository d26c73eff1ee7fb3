"""Fold a tapered model at gate 0 into an ordinary GPT whose blocks hold no norm (METHOD.md §7).
$ python fold.py                                 # out-taper/ckpt.pt (the quick start's) -> out-taper/ckpt_folded.pt
$ python fold.py --ckpt=out-all_taper/ckpt.pt
At g = 0 every TaperNorm is the affine map L(h) = c * (h - mu) * gamma_t + beta (RMS: no mu, no beta), so
Linear(L(h)) is one Linear with new weights: fold_model makes a new model (--fold_when_gone: train.py trains on)."""
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from checkpoint import KIND, load_model, run_data_dir, save_checkpoint
from configurator import Positive, UserError, run_main
from model import GPT, TaperNorm


@dataclass
class FoldConfig:
    ckpt: str = 'out-taper/ckpt.pt'  # a TaperNorm checkpoint trained to gate 0 (iteration >= taper_end)
    out: str = ''                    # where to write the folded checkpoint; '' is ckpt_folded.pt beside ckpt
    batch_size: Positive = 4         # sequences on which folded and unfolded logits are compared
    seed: int = 1337                 # of the random tokens used when the run's val.bin is not at hand


def fold_norm_into_linear(W, b, c, gamma_t, beta=None, centre=False):
    """W (out, in), b (out,) or None, the Linear after L(h) = c * (h - centre * mu) * gamma_t + beta.
    Returns (W', b') with h W'^T + b' = L(h) W^T + b, computed in float64 and cast back to W's dtype."""
    W64 = W.double()
    b_new = None if b is None else b.double()
    if beta is not None:               # beta passes through the original W: b' = b + W beta
        b_new = W64 @ beta.double() if b_new is None else b_new + W64 @ beta.double()
    W_new = W64 * (c.double() * gamma_t.double())[None, :]  # scale column j by c * gamma_t[j]
    if centre:                         # W'(I - 11^T/d): subtracting mu is folded in by centring each row
        W_new = W_new - W_new.mean(dim=1, keepdim=True)
    return W_new.to(W.dtype), None if b_new is None else b_new.to(W.dtype)


def fold_refusal(model):
    """Why model cannot be folded, or None when it can."""
    cfg = model.config
    if cfg.norm == 'none':
        return "norm='none': this model was never normalized, so it has no norm to fold and needs no fold"
    if cfg.taper == 'off':
        return f"taper='off': this {cfg.norm} baseline keeps its norms, there is nothing to fold (train with taper)"
    if cfg.folded:
        return "this model is already folded (by fold.py, or while training: fold_when_gone)"
    if model.phase() != 'gone':
        where = (f"{int(model.removed)} of its {len(model.taper_norms())} norms are removed" if cfg.removal == 'fakeln'
                 else f"the gate is {model.gate.item():.4g}, not 0")
        return (f"{where}: the norms still compute per-token statistics and only the g = 0 map folds exactly; train "
                "on to taper_end (where the last of them goes), then fold")
    return None


def fold_pairs(model):
    """[(norm name, norm, name of the Linear it feeds)] for every norm that goes."""
    pairs = [(f'transformer.h.{i}.{ln}', getattr(block, ln), f'transformer.h.{i}.{linear}')
             for i, block in enumerate(model.transformer.h)
             for ln, linear in (('ln_1', 'attn.c_attn'), ('ln_2', 'mlp.c_fc'))]
    if model.config.taper == 'all':    # lm_head is wte (tied): folding writes an untied copy
        pairs.append(('transformer.ln_f', model.transformer.ln_f, 'lm_head'))
    return pairs


@torch.no_grad()
def fold_model(model):
    """A new GPT (config folded=True) computing what the g = 0 model computes, with no norm in its blocks."""
    if reason := fold_refusal(model):
        raise ValueError(f"cannot fold: {reason}")
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for norm_name, norm, linear_name in fold_pairs(model):
        assert isinstance(norm, TaperNorm) and norm.mode == 'linear', norm_name
        W, b = fold_norm_into_linear(sd[f'{linear_name}.weight'], sd.get(f'{linear_name}.bias'), norm.c,
                                     norm.weight_t, norm.bias, centre=norm.kind == 'layernorm')
        sd[f'{linear_name}.weight'] = W
        if b is not None:
            sd[f'{linear_name}.bias'] = b
        sd = {k: v for k, v in sd.items() if not k.startswith(norm_name + '.')}  # the norm's tensors go
    p = next(model.parameters())
    folded = GPT(replace(model.config, folded=True)).to(device=p.device, dtype=p.dtype)
    folded.load_state_dict(sd)         # strict: every folded tensor lands in a slot, none is left over
    return folded.train(model.training)


@torch.no_grad()
def carry_moments(model, folded, optimizer, new_optimizer):
    """Fold during training (§7): new_optimizer (returned) takes AdamW's state of model by name, a folded weight's
    with its column scales a = c * gamma_t as 'fold_scale' (for unfolded_coordinates). The norms' parameters go;
    All-Taper's untied lm_head starts from the moments it shared with wte, its new bias from none."""
    scales = {f'{linear}.weight': norm.c * norm.weight_t for _, norm, linear in fold_pairs(model)}
    state = {name: optimizer.state[p] for name, p in model.named_parameters(remove_duplicate=False)
             if p in optimizer.state}
    for name, p in filter(lambda named: named[0] in state, folded.named_parameters()):
        new_optimizer.state[p] = {key: value.clone() for key, value in state[name].items()}
        if name in scales:
            new_optimizer.state[p]['fold_scale'] = scales[name]  # (in,): checkpoints carry it with the moments
    return new_optimizer


@contextmanager
@torch.no_grad()  # around the generator's own code only: the caller's block keeps its grad mode
def unfolded_coordinates(optimizer):
    """Within it each folded weight is W' / a, its gradient dL/dW' * a (left so: zero_grad follows): for RMSNorm,
    W' = W diag(a), exactly W and dL/dW, so clipping and AdamW step the folded model as they stepped the g = 0 model,
    c and gamma_t held (LayerNorm: near it, §7). Stepped as W', column j would move 1 / |a_j| times as far."""
    scaled = [(p, state['fold_scale']) for p, state in optimizer.state.items() if 'fold_scale' in state]
    for p, a in scaled:
        p.div_(a)
        p.grad.mul_(a)
    try:
        yield
    finally:  # W' again, whatever the block raised (the division and the product round once each)
        for p, a in scaled:
            p.mul_(a)


def main(cfg):
    model, ckpt = load_model(cfg.ckpt)
    reason = fold_refusal(model)
    if model.config.norm == 'none' or model.config.folded:  # not an error: it is norm-free as it stands
        print(f"{cfg.ckpt}: {reason}; sample.py and bench.py take it as it is")
        return None
    if reason and model.config.taper != 'off' and model.phase() != 'gone':
        reason += (f" (this checkpoint is at iteration {ckpt.get('iter_num')}: continue its run with python train.py "
                   f"--init_from=resume --out_dir={os.path.dirname(cfg.ckpt) or '.'})")
    if reason:
        raise UserError(f"cannot fold {cfg.ckpt}: {reason}")
    folded = fold_model(model.eval())
    # the check: both models on the same tokens, the start of the run's val.bin if it is here, else random ones
    T, val = model.config.block_size, os.path.join(run_data_dir(ckpt), 'val.bin')
    if os.path.isfile(val) and os.path.getsize(val) >= 2 * cfg.batch_size * T:  # uint16: 2 bytes a token
        x, source = torch.from_numpy(np.fromfile(val, np.uint16, cfg.batch_size * T).astype(np.int64)).view(-1, T), val
    else:
        gen, source = torch.Generator().manual_seed(cfg.seed), f"random tokens: {val} absent or short"
        x = torch.randint(model.config.vocab_size, (cfg.batch_size, T), generator=gen)
    x, y = x[:, :-1], x[:, 1:].contiguous()                            # inputs and next-token targets
    logits, _, parts = model(x, y)
    logits_f, _, parts_f = folded(x, y)
    print(f"folded {len(model.taper_norms())} norms (by {model.config.removal}): {model.get_num_params():,} -> "
          f"{folded.get_num_params():,} parameters; on {cfg.batch_size} x {T} tokens ({source}):")
    print(f"  max |logit difference| {(logits - logits_f).abs().max().item():.3e} (logits up to "
          f"{logits.abs().max().item():.2f}); loss {parts['ce'].item():.6f} -> {parts_f['ce'].item():.6f}")
    out = cfg.out or os.path.join(os.path.dirname(cfg.ckpt), 'ckpt_folded.pt')
    save_checkpoint(dict(kind=KIND, model_args=asdict(folded.config), model=folded.state_dict(),
                         config=ckpt.get('config'), iter_num=ckpt.get('iter_num'), folded_from=cfg.ckpt), out)
    print(f"wrote {out}")
    return out


if __name__ == '__main__':
    run_main(main, FoldConfig)
