# config/finetune_taper.py with FakeLN's removal, as their code runs by default (METHOD.md §11): each internal norm
# whole until its own step (every ln_2, then every ln_1, from step 20 to 45), then a division by a constant measured
# before training on held-out tokens. Their paper's configs also remove ln_f and add their aux loss:
# --taper=all --taper_end=48 --fakeln_aux=0.1. Their EMA divisor: --fakeln_divisor=ema.
# $ python train.py config/finetune_fakeln.py
extends = 'finetune_taper.py'
out_dir = 'out-finetune-fakeln'
removal = 'fakeln'
