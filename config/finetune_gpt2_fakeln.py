# FakeLN on GPT-2 small as its authors ran it for their paper (Baroni et al. 2025; their config.py, gpt2_aux; METHOD.md
# §11): OpenWebText, 300 steps of 2^19 tokens, a 25-step warmup, a cosine from 6e-4 to 3e-4, AdamW with beta2 0.999
# and weight decay 0.01, GPT-2's dropout 0.1, their aux loss at 0.1, every norm removed (ln_f too). Ours differs in
# the spacing (25 removals evenly from step 20 to 104, where theirs are 2 or 3 steps apart over the same span), in
# removing each ln_1 whole (theirs: its q/k input, then its v input), in the divisor's tokens (eval_iters held-out
# batches, theirs one training sequence), and as every run here does (METHOD.md §11): end-of-text is a target, the
# weights are float32 under bf16 autocast, gamma is not decayed and gamma_t starts a fresh AdamW state. Not yet run
# here: it needs a GPU and the data.
# $ python data/openwebtext/prepare.py && python train.py config/finetune_gpt2_fakeln.py   (the control: --taper=off)
out_dir = 'out-finetune-gpt2-fakeln'
dataset = 'openwebtext'
init_from = 'gpt2'  # offline: --init_path=<a save_pretrained folder of gpt2>
eval_interval = 100
eval_iters = 40

batch_size = 16
gradient_accumulation_steps = 32
block_size = 1024
dropout = 0.1

max_iters = 300
warmup_iters = 25
learning_rate = 6e-4
min_lr = 3e-4
beta2 = 0.999
weight_decay = 0.01

taper = 'all'
removal = 'fakeln'
fakeln_aux = 0.1
taper_start = 16
taper_end = 104
follow_c = False  # the EMA of s (the runaway check's reference) stops at the first removal
