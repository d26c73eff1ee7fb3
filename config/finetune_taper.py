# Remove the norms of a trained model (METHOD.md §11): the main job's LayerNorm control fine-tuned for 1,000
# iterations while its internal norms taper away. With FakeLN: config/finetune_fakeln.py; the control, nothing
# removed: config/finetune_layernorm.py.
# $ python train.py config/layernorm.py && python train.py config/finetune_taper.py
extends = 'taper.py'
out_dir = 'out-finetune-taper'
init_from = 'out-layernorm/ckpt.pt'  # a new run from its weights; the model's shape and norm come with them

# a short warmup (the optimizer starts fresh), then a cosine from the sweep's best rate for all five ways
max_iters = 1000
warmup_iters = 50
learning_rate = 2e-3
min_lr = 1e-5

# a trained model's scale has settled: tapering right after the warmup beat tapering later (METHOD.md §11)
taper = 'internal'
taper_start = 50
taper_end = 350
