# All-Taper: config/taper.py with ln_f tapered too, anchored by the scale loss (PAPER.md sections 5-6).
# sized for a laptop CPU (nanoGPT's CPU recipe for shakespeare_char). A few minutes on 2 cores.
# $ python train.py config/taper.py
out_dir = 'out-all_taper'
dataset = 'shakespeare_char'
eval_interval = 250
eval_iters = 50
log_interval = 50
always_save_checkpoint = True  # the last checkpoint is the tapered one (gate 0) that fold.py takes

# model: 4 layers, 4 heads, 128 wide, 64-character context
block_size = 64
batch_size = 12
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

# AdamW and a cosine learning rate (nanoGPT's shakespeare_char values)
learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

# the norms: every LayerNorm tapers, ln_f included; the scale-anchor loss replaces ln_f's anchoring,
# with s_tgt frozen from its EMA at taper_start (PAPER.md section 6)
norm = 'layernorm'
taper = 'all'
anchor_lambda = 0.1
# Calibrate late: until about step 500 the residual stream is still growing fast (s 0.15 -> 1.2), and a c frozen
# at warmup's end (step 100) leaves the linear branch too large once it grows: that run diverged (see README).
taper_start = 500    # g = 1 and the EMAs collect until here; then c, gamma_t (and s_tgt) are frozen
taper_end = 1250     # g = 0 from here: the last 750 steps train without internal norms

# device = 'auto' (the default) takes a GPU when there is one; the run is small enough for a CPU
compile = False
