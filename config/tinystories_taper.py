# TinyStories pre-training in the paper's shape (8 layers, 512-token context) with Internal-Taper, 384 wide: 33.5M
# parameters (14.2M without the tied GPT-2 token embedding). The control is config/tinystories_layernorm.py; for
# the paper's RMS variant add --norm=rmsnorm to both. Not yet run on a GPU: the step counts are a first guess.
# $ python data/tinystories/prepare.py && python train.py config/tinystories_taper.py   (or with torchrun)
out_dir = 'out-tinystories-taper'
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

# AdamW and a cosine learning rate, warmed up over the first 1000 iterations
learning_rate = 1e-3
max_iters = 20000
min_lr = 1e-4
warmup_iters = 1000

taper = 'internal'  # the gate keeps its defaults: 1 through the warmup, 0 half-way through the rest
