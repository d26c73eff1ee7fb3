# Fine-tune pretrained GPT-2 on Shakespeare (BPE) while its internal LayerNorms taper away (Internal-Taper; the
# paper fine-tunes GPT-2 S/M/L/XL with the LayerNorm variant). nanoGPT's finetune_shakespeare.py plus the gate.
# $ python train.py config/finetune_gpt2_taper.py    (train.py prepares data/shakespeare itself)
# The control is config/finetune_gpt2_layernorm.py. Not yet run on a GPU: treat the step counts as a first guess.
out_dir = 'out-finetune-gpt2-taper'
eval_interval = 10
eval_iters = 40
log_interval = 1

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

# GPT-2's LayerNorms in ln_1 and ln_2 become TaperNorms (exactly the LayerNorm at g = 1); ln_f stays.
# A trained model's scale has settled, so the paper's rule will do: c frozen at iteration 24 (20%), where the gate
# starts to close, gate 0 from 60 on (a following c would need a taper of 100 steps or more: METHOD.md §4).
taper = 'internal'
taper_start = 24
taper_end = 60
follow_c = False
