# The control for config/taper.py: the same run with ordinary LayerNorm everywhere (nothing tapers).
# $ python train.py config/layernorm.py
extends = 'taper.py'
out_dir = 'out-layernorm'
taper = 'off'
