#!/usr/bin/env bash
# Every GPU check in one run, sized for a lease of about ten minutes on one card, the numbers to publish first: the
# bench at the paper's shape and grid (bf16, CUDA events, eager), the CUDA tests (bf16 autocast, fused AdamW, compile),
# config/taper.py through the whole gate schedule and its fold, the same run folding at g = 0 and training on
# (--fold_when_gone: fused AdamW with the fold's column scales in its state), the profiler's ten costliest operations of
# a training step and a last-token forward, RMSNorm against TaperNorm at g = 0 (experiments/profile_norms.py), then
# compiled bench cells for every variant, a last-token cell and a training step (capped at COMPILE_S seconds). Each
# step's output lands in $OUT; a step that fails or runs out of time does not stop the rest.
#   OUT=gpu-results bash experiments/bench_gpu.sh       # on the GPU machine
#   QUICK=1 OUT=/tmp/gpu bash experiments/bench_gpu.sh  # a short rehearsal of the same steps (any device, no compile)
# NANOTAPER_SHARED must hold data/tinyshakespeare.txt when data/shakespeare_char has no input.txt.
set -uo pipefail
cd "$(dirname "$0")/.."  # the repo
OUT=${OUT:-gpu-results} PY=${PYTHON:-python3}
mkdir -p "$OUT"
export NANOTAPER_SHARED=${NANOTAPER_SHARED:-$(cd .. && pwd)/shared} PYTHONUNBUFFERED=1
[ -e data/shakespeare_char/input.txt ] ||
  ln -s "$NANOTAPER_SHARED/data/tinyshakespeare.txt" data/shakespeare_char/input.txt
status=0
step() {  # step NAME COMMAND...: run it, keep its whole output in $OUT/NAME.txt, note its exit status
  local name=$1; shift
  echo "== $name: $*" | tee -a "$OUT/summary.txt"
  "$@" 2>&1 | tee "$OUT/$name.txt" | tail -n 25
  local rc=${PIPESTATUS[0]}
  echo "== $name exit $rc" | tee -a "$OUT/summary.txt"
  [ "$rc" = 0 ] || status=1
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  git rev-parse --short HEAD 2>/dev/null; } | tee "$OUT/summary.txt"

if [ -n "${QUICK:-}" ]; then
  step bench $PY bench.py --quick --out="$OUT/bench.json"
  step tests $PY -m pytest -q tests/test_cuda.py tests/test_fold.py
  step train $PY train.py config/taper.py --out_dir="$OUT/taper" --max_iters=200 --lr_decay_iters=200 \
       --warmup_iters=10 --eval_interval=100 --eval_iters=5 --log_interval=50
  step fold $PY fold.py --ckpt="$OUT/taper/ckpt.pt"
  step train_fold $PY train.py config/taper.py --out_dir="$OUT/taper_fold" --max_iters=200 --lr_decay_iters=200 \
       --warmup_iters=10 --eval_interval=100 --eval_iters=5 --log_interval=50 --fold_when_gone=True
  step profile $PY experiments/profile_norms.py --quick
else
  step bench $PY bench.py --iters=20 --decode_tokens=16 --out="$OUT/bench.json"  # eager decoding: ~3 ms a token
  step tests $PY -m pytest -q tests/test_cuda.py
  step train $PY train.py config/taper.py --out_dir="$OUT/taper" --log_interval=250
  step fold $PY fold.py --ckpt="$OUT/taper/ckpt.pt"
  step train_fold $PY train.py config/taper.py --out_dir="$OUT/taper_fold" --log_interval=250 --fold_when_gone=True
  step profile $PY experiments/profile_norms.py
  step bench_compiled timeout "${COMPILE_S:-180}" $PY bench.py --compile --modes=last,train --batch_sizes=1 \
       --seq_lens=256
fi
# too large to bring back; the logs and outputs stay
rm -f "$OUT/taper/ckpt.pt" "$OUT/taper/ckpt_folded.pt" "$OUT/taper_fold/ckpt.pt"
exit $status
