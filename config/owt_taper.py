# GPT-2 124M from scratch on OpenWebText with Internal-Taper: nanoGPT's 8-GPU recipe (train_gpt2.py; ~4 days on
# 8 A100 40GB for 600k iterations) with the gate. The control is config/owt_layernorm.py.
# $ python data/openwebtext/prepare.py
# $ torchrun --standalone --nproc_per_node=8 train.py config/owt_taper.py
out_dir = 'out-owt-taper'
wandb_log = False
wandb_project = 'owt'
wandb_run_name = 'gpt2-124M-taper'
dataset = 'openwebtext'

# 12 sequences x 1024 tokens x 5 micro-steps x 8 GPUs = 491,520 tokens per iteration (~0.5M, as GPT-2)
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8  # over all GPUs: train.py divides it by the number of processes

# 600,000 iterations: ~300B tokens
max_iters = 600000
lr_decay_iters = 600000
warmup_iters = 2000
eval_interval = 1000
eval_iters = 200
log_interval = 10
weight_decay = 1e-1

# GPT-2 124M (12 layers, 12 heads, 768 wide); nanoGPT trains it without biases or dropout
n_layer = 12
n_head = 12
n_embd = 768
bias = False
dropout = 0.0

# the norms: LayerNorm in ln_1 and ln_2 tapers away after warmup; ln_f stays as the anchor (PAPER.md section 5)
norm = 'layernorm'
taper = 'internal'
taper_start = 2000    # = warmup_iters: calibrate c and gamma_t after 2000 steps of EMA
taper_end = 300000    # gate 0 from here: the second half trains without internal norms
