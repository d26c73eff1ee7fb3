# GPT-2 124M from scratch on OpenWebText with Internal-Taper: nanoGPT's 8-GPU recipe (train.py's defaults: ~4 days
# on 8 A100 40GB for 600k iterations) with the gate. The control is config/owt_layernorm.py.
# $ python data/openwebtext/prepare.py && torchrun --standalone --nproc_per_node=8 train.py config/owt_taper.py
# 12 sequences x 1024 tokens x 5 micro-steps x 8 GPUs = 491,520 tokens per iteration; 600k iterations, ~300B tokens.
# The gate keeps its defaults: 1 through the 2000-step warmup, then closing until 301k, half-way through the rest.
out_dir = 'out-owt-taper'
wandb_project = 'owt'
wandb_run_name = 'gpt2-124M-taper'
eval_interval = 1000
log_interval = 10
taper = 'internal'
