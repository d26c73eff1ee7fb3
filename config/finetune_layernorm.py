# The control for config/finetune_taper.py and config/finetune_fakeln.py: the same fine-tune, nothing removed.
# $ python train.py config/finetune_layernorm.py     (after the source: see config/finetune_taper.py)
extends = 'finetune_taper.py'
out_dir = 'out-finetune-layernorm'
taper = 'off'
