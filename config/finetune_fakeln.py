# config/finetune_taper.py with FakeLN's removal (Baroni et al. 2025, METHOD.md §11): each internal norm stays
# whole until its own step, then divides by its average scale; block by block, every ln_2, then every ln_1.
# $ python train.py config/layernorm.py && python train.py config/finetune_fakeln.py
extends = 'finetune_taper.py'
out_dir = 'out-finetune-fakeln'
removal = 'fakeln'
