# No norm at all (identity in every norm slot) from the first step, the scale held by the anchor loss alone:
# config/taper.py otherwise. s_tgt is the EMA of the pre-logit scale over steps 0 .. taper_start (the warmup, one more).
# $ python train.py config/none_anchor.py
extends = 'taper.py'
out_dir = 'out-none_anchor'
norm = 'none'
taper = 'off'
anchor_lambda = 0.1
