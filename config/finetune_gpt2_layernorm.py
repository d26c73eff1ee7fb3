# The control for config/finetune_gpt2_taper.py: the same fine-tuning with GPT-2's LayerNorms kept.
# $ python train.py config/finetune_gpt2_layernorm.py
extends = 'finetune_gpt2_taper.py'
out_dir = 'out-finetune-gpt2-layernorm'
taper = 'off'
