# config/finetune_gpt2_taper.py with FakeLN's one-at-a-time removal (METHOD.md §11), the paper's baseline for
# this setting: GPT-2's 24 internal LayerNorms go one by one, every ln_2, then every ln_1, from iteration 26 to 60.
# $ python train.py config/finetune_gpt2_fakeln.py    (offline: --init_path=<a save_pretrained folder of gpt2>)
extends = 'finetune_gpt2_taper.py'
out_dir = 'out-finetune-gpt2-fakeln'
removal = 'fakeln'
