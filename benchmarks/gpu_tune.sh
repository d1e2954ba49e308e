#!/usr/bin/env bash
# A short lent-GPU window for what issue 15 left open: the d=768 GPT's MFU at a bigger batch (compiled), and
# variants of the gpu profile's PTB transformer (selected on valid afterwards). Tested on CPU first:
# DEVICE=cpu bash benchmarks/gpu_tune.sh. Everything lands under $OUT (logs, runs without weights as runs.tgz).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export TINYLM_DATA_MIRROR=$PWD/.gpu-data MPLBACKEND=Agg
log() { echo "[$(date +%T)] $*"; }
log "install"
python -m pip install --no-deps --no-build-isolation -q -e . > "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
python -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
log "MFU: d768 GPT compiled, batch 16 and 32"
MFU_CASES=d768 MFU_COMPILED=1 MFU_BATCHES=${MFU_BATCHES:-16,32} OUT=$OUT timeout "${BENCH_TIMEOUT:-170}" \
  python benchmarks/gpu_mfu.py "$DEVICE" > "$OUT/gpu_mfu.log" 2>&1
echo "gpu_mfu exit $?"; tail -3 "$OUT/gpu_mfu.log"
extra=()
[ "$DEVICE" = cpu ] && extra=(--device cpu --set train.eval_tokens=2048)
T=${PTB_TIME:-90}
# PTB transformer variants of the gpu profile (60 s, dropout 0.4 gave valid ppl 94.9, still improving)
variants=(
  "--set train.max_time=$T"
  "--set train.max_time=$T --set model.dropout=0.5"
  "--set train.max_time=$T --set model.dropout=0.5 --set model.embed_dim=512 --set model.n_heads=8"
)
for i in "${!variants[@]}"; do
  log "ptb variant $i: ${variants[$i]}"
  # shellcheck disable=SC2086
  timeout $((T + 60)) python -m tinylm.cli train --profile gpu --model transformer --dataset ptb --quiet \
    --results-dir "$OUT/results" --data-dir /tmp/gpu-data ${variants[$i]} "${extra[@]}" 2>&1 | tail -2 | cut -c1-250
  tar czf "$OUT/runs.tgz" -C "$OUT/results" --exclude=model.safetensors --exclude=last --exclude=.lock runs
done
rm -rf "$OUT/results/runs"
log "done"
