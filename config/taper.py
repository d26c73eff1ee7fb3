# The main job: Internal-Taper on Shakespeare characters (ln_1, ln_2 taper away; ln_f stays as the anchor).
# nanoGPT's CPU recipe for shakespeare_char: about 2 minutes on one core of an idle CPU, or seconds on a GPU.
# $ python train.py config/taper.py
out_dir = 'out-taper'
dataset = 'shakespeare_char'
eval_interval = 250
eval_iters = 50
log_interval = 50

# one CPU thread: the setting of every run in results/, which it reproduces to the digit (more threads are faster
# on an idle machine, slower on a busy one, and sum floats in another order, which moves the digits)
threads = 1

# 12 sequences x 64 characters per iteration, 2000 iterations
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64

# a small GPT: 4 layers, 4 heads, 128 wide (0.8M parameters)
n_layer = 4
n_head = 4
n_embd = 128

# AdamW and a cosine learning rate: nanoGPT's shakespeare_char values, but for the peak rate, which the sweep
# tuned (experiments/sweep.py: 1e-3 to 8e-3; the best for the tapered model and for its control alike)
learning_rate = 4e-3
max_iters = 2000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

# the norms: LayerNorm in ln_1 and ln_2 tapers to a fixed scaling, then folds away (METHOD.md §2-§4).
# The schedules keep their defaults, so they follow max_iters: the lr decays until the last step, and the gate
# stays 1 through the warmup, then closes over half of what is left (100 to 1050), c following its statistics.
taper = 'internal'
