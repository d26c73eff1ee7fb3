"""The GPT of nanotaper: nanoGPT's GPT-2 with a switchable norm, TaperNorm (and FakeLN) among the choices.
Read alongside METHOD.md; "§n" below points at its sections. The model knows nothing about training
runs: the training loop drives it through
    set_gate(g)           TaperNorm's one global gate g in [0, 1] (§4)        or, for FakeLN (§11),
    remove_norms(k)       the first k of its norms replaced by their linear maps, the rest whole
    update_calibration()  once per optimizer step: every norm's statistics into its EMAs and c, the anchor's s_tgt
and the forward pass (logits, the loss and its parts). The rest follows from the phase: the norms whole, going, gone."""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

FAKELN_DECAY = 0.9  # FakeLN's EMA momentum (their code's), applied per optimizer step rather than per forward
EOT = 50256         # GPT-2's end-of-text token: FakeLN's aux loss leaves it out of its target (§11)


@dataclass
class GPTConfig:
    block_size: int = 1024      # longest context, in tokens
    vocab_size: int = 50304     # GPT-2's 50257 padded up to a multiple of 64
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True           # biases in Linear layers and LayerNorms (nanoGPT's switch)
    norm: str = 'layernorm'     # 'layernorm' | 'rmsnorm' | 'none' (identity in every ln_* slot)
    taper: str = 'off'          # 'off' | 'internal' (ln_1, ln_2 taper; ln_f stays) | 'all' (ln_f too)
    removal: str = 'taper'      # how those norms go: 'taper' (one global cosine gate) | 'fakeln' (one at a time)
    anchor_lambda: float = 0.0  # weight of the scale-anchor loss (§6); 0 turns it off
    anchor_target: float | None = None  # a fixed s_tgt; None: the EMA of s, frozen as the norms start to go
    ema_decay: float = 0.99     # decay of the calibration EMAs (§3)
    follow_c: bool = True       # c follows its statistics until g = 0 (ours, §3); False: frozen as g leaves 1 (paper)
    fakeln_divisor: str = 'heldout'  # FakeLN's: measured on held-out tokens and held (theirs) | 'ema': then followed
    fakeln_aux: float = 0.0     # weight of FakeLN's auxiliary loss (§11), s(h) evened out around its batch mean; 0 off
    norm_eps: float = 1e-5
    gelu: str = 'none'          # nn.GELU's approximate: 'none' (exact, nanoGPT) or 'tanh' (OpenAI's GPT-2)
    folded: bool = False        # tapered norms were folded into the next Linear (§7)

    def __post_init__(self):
        for key, allowed in (('norm', ('layernorm', 'rmsnorm', 'none')), ('taper', ('off', 'internal', 'all')),
                             ('removal', ('taper', 'fakeln')), ('gelu', ('none', 'tanh')),
                             ('fakeln_divisor', ('heldout', 'ema'))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r} is not one of {allowed}")
        tapers = self.taper != 'off'
        if self.removal == 'fakeln' and not tapers:
            raise ValueError("removal='fakeln' removes the norms that taper selects: set taper='internal' or 'all'")
        if tapers and self.norm == 'none':
            raise ValueError("taper needs a norm to taper: set norm='layernorm' or 'rmsnorm', or taper='off'")
        if self.folded and not tapers:
            raise ValueError("folded=True describes a model with taper='internal' or 'all'")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of n_head={self.n_head}")
        if self.anchor_lambda < 0 or self.fakeln_aux < 0:
            raise ValueError(f"anchor_lambda={self.anchor_lambda} and fakeln_aux={self.fakeln_aux} must be >= 0")
        if self.anchor_target is not None and not self.anchor_target > 0:
            raise ValueError(f"anchor_target={self.anchor_target} must be > 0 (or None: the EMA of s)")

    @property
    def anchor_from_ema(self):
        """The anchor's s_tgt is the EMA of s, frozen when the norms start to go (not a fixed anchor_target)."""
        return self.anchor_lambda > 0 and self.anchor_target is None

    @property
    def scheduled(self):
        """The schedule drives something: the norms that go (and their c), or an anchor whose s_tgt freezes."""
        return self.taper != 'off' or self.anchor_from_ema


def per_token_scale(h, kind, eps):
    """The per-token statistic a norm divides by: r(h) for RMS, s(h) (the std) for LayerNorm. (..., d) -> (...)"""
    h = h - h.mean(-1, keepdim=True) if kind == 'layernorm' else h
    return torch.sqrt(h.pow(2).mean(-1) + eps)


# ---- Norms. Every norm slot takes (x, gate); only TaperNorm uses the gate. -------------------
class Identity(nn.Module):
    """An empty norm slot: the 'none' model, and the blocks of a folded model."""
    def forward(self, x, gate=None):
        return x


class Norm(nn.Module):
    """The ordinary norm N(h): LayerNorm (with optional bias, as nanoGPT) or RMSNorm."""
    def __init__(self, ndim, kind, bias, eps):
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(ndim))                                      # gamma
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias and kind == 'layernorm' else None  # beta

    def forward(self, x, gate=None):
        if self.kind == 'layernorm':
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class TaperNorm(Norm):
    """§2: y = g * N(h) + (1 - g) * L(h)  with  L(h) = c * h * gamma_t              (RMS)
                                                L(h) = c * (h - mu) * gamma_t + beta  (LayerNorm; beta shared)
    The mode is a Python value that follows the model's phase (GPT.apply_phase), so each of three graphs is its own:
      'norm'   g = 1: exactly N(h); gamma_t gets no gradient (it follows gamma, §3).
      'blend'  0 < g < 1: the convex mix; gamma_t trains.
      'linear' g = 0: L(h) alone; no per-token scale is computed and gamma gets no gradient.
    While `collecting` (while c follows the stream, GPT.apply_phase), training forwards add to acc the sums behind c*,
    the c fitting L(h) to N(h) in least squares (§3); once per step GPT.update_calibration hands them to update."""
    def __init__(self, ndim, kind, bias, eps, ema_decay):
        super().__init__(ndim, kind, bias, eps)
        self.ema_decay = ema_decay                                     # of the EMAs c is the ratio of (§3)
        self.weight_t = nn.Parameter(torch.ones(ndim))                 # gamma_t, a copy of gamma while g = 1
        self.register_buffer('c', torch.ones(()))                      # the scalar c (§3), frozen once not collecting
        self.register_buffer('ema', torch.zeros(2))                    # EMAs of num / tokens, den / tokens
        self.register_buffer('acc', torch.zeros(3), persistent=False)  # this step's sums: num, den, tokens
        self.register_buffer('c_gamma_t', torch.ones(ndim), persistent=False)  # c * gamma_t, as eval() left them
        self.mode = 'norm'       # 'norm', 'blend' or 'linear': what forward computes (GPT.apply_phase)
        self.collecting = True   # training forwards feed acc (GPT.apply_phase)

    def linear(self, x):
        """L(h): sample-independent. The LayerNorm mean is linear too (it folds into W, §7). At inference c and gamma_t
        are fixed, so their product is made once, by eval(): RMS multiplies once, LayerNorm centres and multiplies."""
        h = x - x.mean(-1, keepdim=True) if self.kind == 'layernorm' else x
        if not self.training:
            return h * self.c_gamma_t if self.bias is None else torch.addcmul(self.bias, h, self.c_gamma_t)
        y = h * (self.c * self.weight_t)
        return y if self.bias is None else y + self.bias

    def train(self, mode=True):
        if not mode:  # (a non-persistent buffer: .to() moves it, checkpoints leave it out)
            self.c_gamma_t = (self.c * self.weight_t).detach()
        return super().train(mode)

    def forward(self, x, gate):
        if self.mode == 'linear':
            return self.linear(x)
        if self.collecting and self.training:
            self.accumulate(x)
        y = super().forward(x)
        return gate * y + (1 - gate) * self.linear(x) if self.mode == 'blend' else y

    def accumulate(self, x):
        """Add this micro-batch's sums of |h*gamma|^2 / r(h) and |h*gamma|^2 to acc, in acc's precision (float32,
        or float64 in a double model) whatever autocast computes the forward in. gamma, not gamma_t: c follows the
        scale of the stream, and leaves the scale of L(h) that gamma_t learns in the blend to gamma_t (§3)."""
        h = x.detach().to(self.acc.dtype)
        scale = per_token_scale(h, self.kind, self.eps)                 # (B, T)
        h = h - h.mean(-1, keepdim=True) if self.kind == 'layernorm' else h
        hg2 = (h * self.weight.detach().to(h.dtype)).pow(2).sum(-1)        # (B, T)
        self.acc += torch.stack([(hg2 / scale).sum(), hg2.sum(), hg2.new_tensor(hg2.numel())])

    @torch.no_grad()
    def update(self, sums):
        """Once per optimizer step, with its (num, den, tokens) summed over the ranks: gamma_t <- gamma while the norm
        is whole; while collecting, the sums into the EMAs and c <- EMA(num) / EMA(den) (the bias corrections cancel
        in the ratio, §3). Then acc starts the next step."""
        if self.mode == 'norm':
            self.weight_t.copy_(self.weight)
        if self.collecting:  # the EMAs hold num / tokens and den / tokens
            self.ema.mul_(self.ema_decay).add_((1 - self.ema_decay) * (sums[:2] / sums[2]))
            self.c.copy_(self.ema[0] / self.ema[1])
        self.acc.zero_()


class FakeLN(TaperNorm):
    """§11, FakeLN (Baroni et al. 2025): the norm stays whole until its own removal step, then is replaced by
    L(h) = (h - mu) / sigma * gamma + beta  (RMS: h / sigma * gamma). That is TaperNorm's linear branch with
    c = 1 / sigma and gamma_t = gamma, so it folds the same way; GPT.remove_norms switches these norms one at a
    time, never blends. sigma is measured before training, through the model the run starts from, on held-out tokens
    (GPT.measure_divisors), and held (their default); fakeln_divisor='ema' (their flag) goes on from there as an
    EMA of the batch-mean s(h), every position (theirs too, unlike the measurement), until the norm's removal."""
    def set_divisor(self, sigma):
        """c = 1 / sigma, held in the EMAs as (1, sigma): the state the 'ema' divisor follows the stream from."""
        self.ema.copy_(torch.stack([torch.ones_like(sigma), sigma]))
        self.c.copy_(1 / sigma)

    def accumulate(self, x):
        """Sums for c = 1 / E[s(h)] in TaperNorm's slots: num = tokens (each counts 1), den = the sum of s(h). Then
        update's c = EMA(num / tokens) / EMA(den / tokens) = 1 / EMA(mean s), from set_divisor's (1, sigma) on."""
        scale = per_token_scale(x.detach().to(self.acc.dtype), self.kind, self.eps)  # (B, T)
        tokens = scale.new_tensor(scale.numel())
        self.acc += torch.stack([tokens, scale.sum(), tokens])


# ---- The GPT-2 blocks (nanoGPT), with an optional KV cache for generation. -------------------
class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout

    def forward(self, x, cache=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        mask = None
        if cache is not None:                       # write this step's keys/values, attend to all so far
            k_buf, v_buf, pos = cache
            k_buf[:, :, pos:pos + T], v_buf[:, :, pos:pos + T] = k, v
            k, v = k_buf[:, :, :pos + T], v_buf[:, :, :pos + T]  # (B, nh, pos+T, hs)
            if pos > 0:                             # query i sits at position pos+i and sees keys 0..pos+i
                mask = torch.ones(T, pos + T, dtype=torch.bool, device=x.device).tril(diagonal=pos)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate=config.gelu)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


def make_norm(config, tapered):
    if config.norm == 'none' or (tapered and config.folded):
        return Identity()
    if not tapered:
        return Norm(config.n_embd, config.norm, config.bias, config.norm_eps)
    if config.removal == 'fakeln':  # with their momentum, not the config's ema_decay
        return FakeLN(config.n_embd, config.norm, config.bias, config.norm_eps, FAKELN_DECAY)
    return TaperNorm(config.n_embd, config.norm, config.bias, config.norm_eps, config.ema_decay)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = make_norm(config, tapered=config.taper != 'off')
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config, tapered=config.taper != 'off')
        self.mlp = MLP(config)

    def forward(self, x, gate, cache=None):
        x = x + self.attn(self.ln_1(x, gate), cache)
        return x + self.mlp(self.ln_2(x, gate))


class KVCache:
    """Keys and values of every layer for positions [0, pos), preallocated up to max_len."""
    def __init__(self, config, batch_size, max_len, device, dtype):
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd), wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout), h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config, tapered=config.taper == 'all')))
        # a folded ln_f scales lm_head's columns (its beta gives lm_head a bias): that lm_head is untied from wte
        head_folded = config.folded and config.taper == 'all'
        head_bias = head_folded and config.norm == 'layernorm' and config.bias
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=head_bias)
        if not head_folded:
            self.transformer.wte.weight = self.lm_head.weight  # weight tying (nanoGPT)
        # Run state, all in buffers so checkpoints carry it and torch.compile sees tensors, not floats.
        self.register_buffer('gate', torch.ones(()))                       # TaperNorm's global gate g: set_gate
        if config.removal == 'fakeln':
            self.register_buffer('removed', torch.zeros((), dtype=torch.long))  # FakeLN's norms gone: remove_norms
        self.register_buffer('ema_steps', torch.zeros((), dtype=torch.long))  # steps in s_ema so far
        self.register_buffer('s_ema', torch.zeros(()))                     # EMA of the batch-mean s(h)
        self.register_buffer('s_tgt', torch.tensor(float(config.anchor_target or 0.0)))  # the anchor's target (§6)
        self.register_buffer('s_acc', torch.zeros(2), persistent=False)    # this step's sum of s, tokens
        # Python-side state: collecting_s (training forwards feed the EMA of s) and anchoring (the anchor term is on),
        # from the phase by apply_phase (Python values, so compile sees each regime as its graph), and
        self.g = 1.0              # the gate as set_gate got it: the float32 buffer rounds g = 1 - 1e-9 to 1
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():  # scaled init of the residual projections (GPT-2)
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        self.apply_phase()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)

    def get_num_params(self, non_embedding=True):
        return sum(p.numel() for p in self.parameters()) - (self.transformer.wpe.weight.numel() if non_embedding else 0)

    def taper_norms(self):
        """The norms that go away (TaperNorm or FakeLN), in FakeLN's order of removal (§11): every block's ln_2
        from the first block on, then every ln_1, then ln_f if it tapers."""
        norms = [b.ln_2 for b in self.transformer.h] + [b.ln_1 for b in self.transformer.h] + [self.transformer.ln_f]
        return [m for m in norms if isinstance(m, TaperNorm)]

    def forward(self, idx, targets=None, kv_cache=None):
        """idx (B, T) token ids. Returns (logits, loss, parts):
          with targets: logits (B, T, V); loss = CE + anchor, the scale term (§6's anchor and FakeLN's aux loss,
                        §11, as set); parts holds detached ce, anchor, s, logit_norm;
          without:      logits of the last position (B, 1, V); loss and parts are None."""
        B, T = idx.size()
        pos0 = kv_cache.pos if kv_cache is not None else 0
        if pos0 + T > self.config.block_size:
            raise ValueError(f"sequence of length {pos0 + T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(pos0, pos0 + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, self.gate, (kv_cache.k[i], kv_cache.v[i], kv_cache.pos) if kv_cache is not None else None)
        if kv_cache is not None:
            kv_cache.pos += T
        h = x                                                 # pre-logit residual stream, before ln_f
        x = self.transformer.ln_f(x, self.gate)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None, None     # inference: the last position only
        logits = self.lm_head(x)
        # autocast computes cross-entropy in float32; a double model keeps float64 throughout
        ce = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        s = per_token_scale(h, self.config.norm, self.config.norm_eps)  # (B, T); the RMS when norm='none'
        if self.training and self.collecting_s:
            self.s_acc += torch.stack([s.detach().sum(), s.new_tensor(s.numel())])
        anchor = torch.zeros((), device=idx.device)          # the scale term: §6's anchor, FakeLN's aux loss
        if self.anchoring:                                    # off until s_tgt is frozen (a fixed target: always on)
            anchor = self.config.anchor_lambda * (s - self.s_tgt).pow(2).mean()
        if self.config.fakeln_aux > 0:  # FakeLN's aux loss: s held near this batch's mean, wherever that goes (§11)
            counted = ((idx != EOT) & (pos > 0)).to(s.dtype)  # (B, T): the target leaves out EOT and position 0
            target = (s.detach() * counted).sum() / counted.sum().clamp(min=1)
            anchor = anchor + self.config.fakeln_aux * (s - target).pow(2).mean()
        scaled = self.anchoring or self.config.fakeln_aux > 0
        loss = ce + anchor if scaled else ce  # (never ce + a constant zero: torch 2.13's compile drops that sum's grad)
        parts = dict(ce=ce.detach(), anchor=anchor.detach(), s=s.detach().mean(),
                     logit_norm=logits.detach().float().norm(dim=-1).mean())
        return logits, loss, parts

    # ---- The removal as a state machine (§3, §4, §6, §11): TaperNorm's gate g, or FakeLN's count of norms removed,
    # gives the phase: 'whole' (g = 1, none) -> 'going' (0 < g < 1, some) -> 'gone' (g = 0, all); the rest follows.

    def set_gate(self, g):
        """TaperNorm's global gate (§4): every tapering norm computes g * N(h) + (1 - g) * L(h)."""
        g = float(g)
        if self.config.removal == 'fakeln' or not 0.0 <= g <= 1.0:
            raise ValueError(f"set_gate({g}) needs 0 <= g <= 1, and norms that taper (FakeLN's go by remove_norms)")
        self.gate.fill_(g)
        self.g = g
        self.apply_phase()

    def remove_norms(self, k):
        """FakeLN's removals (§11): the first k of taper_norms() compute their linear map L(h), the rest N(h)."""
        if self.config.removal != 'fakeln' or not 0 <= k <= len(self.taper_norms()):
            raise ValueError(f"remove_norms({k}) needs a FakeLN model and 0 <= k <= {len(self.taper_norms())}")
        self.removed.fill_(k)
        self.apply_phase()

    def phase(self):
        """'whole', 'going' or 'gone': where the norms stand, by the gate (FakeLN: the count removed; folded: gone)."""
        if self.config.removal == 'fakeln' and not self.config.folded:
            return 'whole' if self.removed == 0 else 'gone' if self.removed == len(self.taper_norms()) else 'going'
        return 'gone' if self.g == 0.0 or self.config.folded else 'whole' if self.g == 1.0 else 'going'

    def apply_phase(self):
        """The Python-side state, from the phase:      'whole'      'going'                          'gone'
              a TaperNorm computes (mode)              N(h)         the blend                        L(h)
              c and the EMA of s (collecting)          follow       follow (follow_c=False: frozen)  frozen (§3)
              the anchor (anchoring)                   off          on: s_tgt frozen                 on (§6)
        A fixed target: always on. FakeLN: the first `removed` norms L(h), the rest N(h) (if 'ema', collect)."""
        phase = self.phase()
        if phase != 'whole' and self.config.scheduled and not self.config.folded and int(self.ema_steps) == 0:
            raise RuntimeError("the norms can go only after update_calibration() has taken a step's statistics")
        c_follows = phase != 'gone' if self.config.follow_c else phase == 'whole'
        self.collecting_s = self.config.scheduled and c_follows
        self.anchoring = self.config.anchor_lambda > 0 and (not self.config.anchor_from_ema or phase != 'whole')
        for i, m in enumerate(self.taper_norms()):
            if isinstance(m, FakeLN):  # switched, never blended: whole until its own removal
                m.mode = 'linear' if i < int(self.removed) else 'norm'
                m.collecting = m.mode == 'norm' and self.config.fakeln_divisor == 'ema'  # (else its divisor is held)
            else:
                m.mode = {'whole': 'norm', 'going': 'blend', 'gone': 'linear'}[phase]
                m.collecting = c_follows

    def load_state_dict(self, state_dict, strict=True, assign=False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.g = self.gate.item()
        self.apply_phase()  # the Python-side state follows the loaded buffers,
        self.train(self.training)  # and an eval model's c * gamma_t the loaded c and gamma_t
        return result

    # ---- Calibration: the statistics behind c (§3), FakeLN's divisors (§11) and the EMA of s (§4, §6) ----

    @torch.no_grad()
    def update_calibration(self):
        """Once per optimizer step: its statistics, summed over the ranks (so all update alike), to every tapering norm
        (TaperNorm.update) and into the EMA of s; while the norms are whole, an EMA anchor's s_tgt follows it (§6)."""
        norms = self.taper_norms()
        if not self.collecting_s and not any(m.collecting or m.mode == 'norm' for m in norms):
            return  # nothing to take in (a baseline, or every c frozen): no collective, no sync with the device
        sums = torch.cat([m.acc for m in norms] + [self.s_acc])  # (3 * norms + 2,)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)  # the global token means
        for m, norm_sums in zip(norms, sums[:-2].view(-1, 3)):
            m.update(norm_sums)
        s_sum, s_tokens = sums[-2:]
        if s_tokens > 0:
            self.s_ema.mul_(self.config.ema_decay).add_((1 - self.config.ema_decay) * s_sum / s_tokens)
            self.ema_steps += 1
        self.s_acc.zero_()
        if self.config.anchor_from_ema and not self.anchoring:
            self.s_tgt.copy_(self.s_mean())

    @torch.no_grad()
    def measure_divisors(self, batches):
        """FakeLN's divisors, before training (§11; their generate_std_dict.py): each norm that goes divides by the
        pooled scale of its input, sqrt(mean of s(h)^2), over the held-out token ids in batches [(B, T)], positions
        1 onwards (GPT-2's first position carries a scale many times the others')."""
        norms = self.taper_norms()
        squares = {m: [] for m in norms}  # each norm's s(h)^2 of every batch, (B, T - 1)
        hooks = [m.register_forward_pre_hook(lambda m, args: squares[m].append(
            per_token_scale(args[0][:, 1:].to(m.acc.dtype), m.kind, m.eps).pow(2))) for m in norms]
        self.eval()
        for idx in batches:
            self(idx)
        self.train()  # (it runs before training)
        for m, hook in zip(norms, hooks):
            hook.remove()
            m.set_divisor(torch.cat([s.flatten() for s in squares[m]]).mean().sqrt())

    def c_frozen(self):
        """No c and no EMA of s follows the stream now: once the norms are gone (the paper's rule: once they go)."""
        return self.config.taper != 'off' and not (self.collecting_s or any(m.collecting for m in self.taper_norms()))

    def s_mean(self):
        """The EMA of s, bias-corrected: the anchor's s_tgt while the norms are whole (§6); once collecting stops, s as
        it was when c froze, the reference of the runaway check (§4)."""
        return self.s_ema / (1 - self.config.ema_decay ** int(self.ema_steps))

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True):
        """Sample max_new_tokens after idx (B, T). With use_cache, a KV cache makes each new token one position's work
        until the sequence outgrows block_size; from there the window slides (nanoGPT's cropping), every position
        changes and the cached keys no longer apply, so each step re-reads the last block_size tokens."""
        cache = (KVCache(self.config, idx.size(0), self.config.block_size, idx.device, self.lm_head.weight.dtype)
                 if use_cache and idx.size(1) < self.config.block_size else None)  # longer prompts crop from the start
        for _ in range(max_new_tokens):
            if cache is not None and idx.size(1) > self.config.block_size:
                cache = None                        # the window is about to slide: crop from here on
            step_input = idx[:, -self.config.block_size:] if cache is None else idx[:, cache.pos:]  # uncached tokens
            logits, _, _ = self(step_input, kv_cache=cache)
            next_token = sample_next(logits[:, -1, :], temperature, top_k, top_p)
            idx = torch.cat((idx, next_token), dim=1)
        return idx

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW; weight decay on matrices only, never on gamma, gamma_t, beta or other biases (all 1-d)."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': weight_decay},
                  {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=device_type == 'cuda')

    def load_weights(self, weights):
        """Trained weights (no run state) into this fresh model. Only what a new run starts fresh may be missing: the
        run-state buffers, gamma_t, and lm_head (tied to wte); anything else missing or unexpected is refused."""
        missing, unexpected = self.load_state_dict(weights, strict=False)
        fresh = {n for n, _ in self.named_buffers()} | {n for n, _ in self.named_parameters() if 'weight_t' in n}
        if wrong := [k for k in missing if k not in fresh | {'lm_head.weight'}] + unexpected:
            raise ValueError(f"the weights do not fit this GPT: {wrong[:5]} (of {len(wrong)} names)")

    @classmethod
    def from_checkpoint(cls, ckpt):
        """The model a checkpoint dict describes (its model_args) holding its weights and run state, exactly."""
        model = cls(GPTConfig(**ckpt['model_args']))
        model.load_state_dict(ckpt['model'])  # strict: a missing, unexpected or misshapen tensor raises, naming it
        return model


def sample_next(logits, temperature=1.0, top_k=None, top_p=None):
    """logits (B, V) -> (B, 1). temperature 0 is greedy; top_k and top_p (nucleus) trim the tail."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], -float('inf'))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cum - F.softmax(sorted_logits, dim=-1) > top_p   # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), -float('inf'))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
