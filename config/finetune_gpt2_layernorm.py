# The control for config/finetune_gpt2_taper.py: the same fine-tuning of GPT-2 on Shakespeare (BPE) with its
# LayerNorms kept (taper = 'off'); everything else identical, so the two validation curves compare directly.
# $ python train.py config/finetune_gpt2_layernorm.py
out_dir = 'out-finetune-gpt2-layernorm'
eval_interval = 10
eval_iters = 40
log_interval = 1
always_save_checkpoint = True

dataset = 'shakespeare'
init_from = 'gpt2'  # 124M; 'gpt2-medium' | 'gpt2-large' | 'gpt2-xl' (nanoGPT's choice) need more memory
# init_path = 'path/to/gpt2'  # a save_pretrained folder or a .safetensors file instead of the Hub

# 1 sequence x 8 micro-steps x 1024 tokens = 8,192 tokens per iteration: Shakespeare's 301,966 train tokens
# are ~37 iterations, so 120 iterations are ~3 passes (nanoGPT takes ~2 in bigger steps; the taper wants steps)
batch_size = 1
gradient_accumulation_steps = 8
block_size = 1024
max_iters = 120

# fine-tune at nanoGPT's constant learning rate
learning_rate = 3e-5
decay_lr = False

# the norms: GPT-2's LayerNorms everywhere (nothing tapers; the schedule keys below go unused)
norm = 'layernorm'
taper = 'off'
taper_start = 10
taper_end = 80
