# The control for config/owt_taper.py: GPT-2 124M on OpenWebText with LayerNorm everywhere (nanoGPT's run itself).
# $ torchrun --standalone --nproc_per_node=8 train.py config/owt_layernorm.py
extends = 'owt_taper.py'
out_dir = 'out-owt-layernorm'
wandb_run_name = 'gpt2-124M-layernorm'
taper = 'off'
