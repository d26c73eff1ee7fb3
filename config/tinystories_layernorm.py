# The control for config/tinystories_taper.py: the same TinyStories pre-training (8 layers, 512-token context,
# 384 wide) with LayerNorm everywhere (taper = 'off'); everything else identical.
# $ python train.py config/tinystories_layernorm.py
out_dir = 'out-tinystories-layernorm'
dataset = 'tinystories'
eval_interval = 500
eval_iters = 100
log_interval = 10

# 32 sequences x 512 tokens x 4 micro-steps = 65,536 tokens per iteration; 20,000 iterations = 1.3B tokens,
# about 3 passes over TinyStories' ~470M train tokens
batch_size = 32
block_size = 512
gradient_accumulation_steps = 4  # over all GPUs: use a multiple of their number

n_layer = 8
n_head = 6
n_embd = 384
bias = False
dropout = 0.0

# AdamW and a cosine learning rate, warmed up over the first 1000 iterations
learning_rate = 1e-3
max_iters = 20000
lr_decay_iters = 20000
min_lr = 1e-4
warmup_iters = 1000

# the norms: ordinary LayerNorm everywhere (nothing tapers; the schedule keys below go unused)
norm = 'layernorm'
taper = 'off'
taper_start = 1000
taper_end = 10000
