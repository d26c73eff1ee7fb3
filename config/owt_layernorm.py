# The control for config/owt_taper.py: GPT-2 124M on OpenWebText with LayerNorm everywhere (taper = 'off'),
# nanoGPT's 8-GPU recipe; everything else identical, so the two validation curves compare directly.
# $ torchrun --standalone --nproc_per_node=8 train.py config/owt_layernorm.py
out_dir = 'out-owt-layernorm'
wandb_log = False
wandb_project = 'owt'
wandb_run_name = 'gpt2-124M-layernorm'
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

# the norms: ordinary LayerNorm everywhere (nothing tapers; the schedule keys below go unused)
norm = 'layernorm'
taper = 'off'
taper_start = 2000
taper_end = 300000
