#!/usr/bin/env bash
# One lent-GPU session, prepared and tested on CPU first (DEVICE=cpu bash benchmarks/gpu_session.sh):
# install, the GPU bench (benchmarks/gpu_mfu.py), the `gpu` profile. The CUDA tests: pytest -m gpu. Everything lands under $OUT (results, logs; no weights).
# Datasets come from the git-ignored .gpu-data/ (copied from ../shared/datasets, carried to the machine).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export TINYLM_DATA_MIRROR=$PWD/.gpu-data MPLBACKEND=Agg
log() { echo "[$(date +%T)] $*"; }
log "install"
python -m pip install --no-deps --no-build-isolation -q -e . > "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
python -c "import numpy, torch; print(numpy.__version__, torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" \
  | tee "$OUT/device.txt"
log "GPU bench: matmul peaks, d=768 GPT and baby GPT, eager and compiled"
OUT=$OUT timeout "${BENCH_TIMEOUT:-150}" python benchmarks/gpu_mfu.py "$DEVICE" > "$OUT/gpu_mfu.log" 2>&1
echo "gpu_mfu exit $?"; tail -4 "$OUT/gpu_mfu.log"
log "gpu profile"
# The archive is written after every run too, so a timeout keeps what finished (see the loop below).
( while sleep 20; do tar czf "$OUT/runs.tgz.part" -C "$OUT/results" --exclude=model.safetensors --exclude=last \
    --exclude=.lock runs 2>/dev/null && mv "$OUT/runs.tgz.part" "$OUT/runs.tgz"; done ) &
saver=$!
extra=()
[ "$DEVICE" = cpu ] && extra=(--device cpu --set train.max_time=1 --set train.eval_tokens=2048)
timeout "${SUITE_TIMEOUT:-430}" python -m tinylm.cli suite --profile gpu --results-dir "$OUT/results" --data-dir /tmp/gpu-data \
  --quiet "${extra[@]}" > "$OUT/suite.log" 2>&1
echo "suite exit $?"; kill $saver; grep -E "trained|error" "$OUT/suite.log" | cut -c1-220
# Only shallow paths come back from the device machine: the runs travel as one archive (no weights).
tar czf "$OUT/runs.tgz" -C "$OUT/results" --exclude=model.safetensors --exclude=last --exclude=.lock runs
rm -rf "$OUT/results/runs"
log "done"
