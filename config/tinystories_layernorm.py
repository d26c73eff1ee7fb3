# The control for config/tinystories_taper.py: the same run with LayerNorm everywhere (nothing tapers).
# $ python train.py config/tinystories_layernorm.py
extends = 'tinystories_taper.py'
out_dir = 'out-tinystories-layernorm'
taper = 'off'
