# All-Taper: config/taper.py with ln_f tapered too. With no final norm left to anchor the scale of the pre-logit
# state, the scale-anchor loss does it (METHOD.md §5-§6); s_tgt is the EMA of s, frozen at taper_start.
# $ python train.py config/all_taper.py
extends = 'taper.py'
out_dir = 'out-all_taper'
taper = 'all'
anchor_lambda = 0.1
