#!/usr/bin/env bash
# Every GPU check in one run, for a lent card: the suite on CUDA, a real Shakespeare run through the
# whole gate schedule, its fold, and the full bench.py grid eager and compiled. Results land in $OUT.
#   OUT=gpu-results bash experiments/bench_gpu.sh       # on the GPU machine (about 10 minutes on an H100)
#   QUICK=1 OUT=/tmp/gpu bash experiments/bench_gpu.sh  # a few-minute rehearsal of the same steps (any device)
# NANOTAPER_SHARED must hold data/tinyshakespeare.txt (and data/tiktoken_cache) when data/ has no input.txt.
set -uo pipefail
cd "$(dirname "$0")/.."  # the repo
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export NANOTAPER_SHARED=${NANOTAPER_SHARED:-$(cd .. && pwd)/shared} PYTHONUNBUFFERED=1
export TIKTOKEN_CACHE_DIR=${TIKTOKEN_CACHE_DIR:-$NANOTAPER_SHARED/data/tiktoken_cache}
[ -e data/shakespeare_char/input.txt ] || ln -s "$NANOTAPER_SHARED/data/tinyshakespeare.txt" data/shakespeare_char/input.txt
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
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  git rev-parse --short HEAD; } | tee "$OUT/device.txt"

if [ -n "${QUICK:-}" ]; then
  step tests python -m pytest -q tests/test_cuda.py tests/test_fold.py
  step train python train.py config/taper.py --out_dir="$OUT/taper" --max_iters=200 --lr_decay_iters=200 \
       --warmup_iters=10 --eval_interval=100 --eval_iters=5 --log_interval=50
  step fold python fold.py --ckpt="$OUT/taper/ckpt.pt"
  step bench python bench.py --quick --compile
else
  step tests python -m pytest -q tests
  step train python train.py config/taper.py --out_dir="$OUT/taper"
  step fold python fold.py --ckpt="$OUT/taper/ckpt.pt"
  step bench python bench.py --compile
fi
grep '^{' "$OUT/bench.txt" | tail -n 1 > "$OUT/bench.json"  # bench.py's last line: every figure
exit $status
