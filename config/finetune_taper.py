# Remove the norms of a trained model (METHOD.md §11) in a short fine-tune on FakeLN's recipe (Baroni et al. 2025,
# their config.py for GPT-2 small, gpt2_aux): 300 steps, a 25-step warmup, a cosine down to half the peak rate,
# AdamW with beta2 0.999 and weight decay 0.01. The source is config/layernorm.py's model trained 4x as long:
# $ python train.py config/layernorm.py --max_iters=8000 --out_dir=out-layernorm-converged
# $ python train.py config/finetune_taper.py      # FakeLN: config/finetune_fakeln.py; the control: _layernorm.py
extends = 'taper.py'
out_dir = 'out-finetune-taper'
init_from = 'out-layernorm-converged/ckpt.pt'  # a new run from its weights; the model's shape and norm come with them
eval_interval = 100

max_iters = 300
warmup_iters = 25
learning_rate = 1e-3  # the sweep tunes the peak for each way (experiments/sweep.py, removal_lr)
min_lr = 5e-4
beta2 = 0.999
weight_decay = 0.01

# the removal window as their schedule places it for 4 layers: their first removal at step 20, their last internal
# one at 45 (ln_f's, with taper='all', at 48: taper_end=48). The gate closes from 16 to 45, c frozen at 16 (the
# paper's rule: a trained model's scale has settled, and a taper this short leaves a following c behind, §4).
taper = 'internal'
taper_start = 16
taper_end = 45
follow_c = False
