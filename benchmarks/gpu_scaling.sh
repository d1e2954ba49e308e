#!/usr/bin/env bash
# The scaling profile's GPU extension (issue 16) on one lent GPU: `tinylm suite --profile scaling-gpu --jobs 12`, the
# workers sharing the card (through MPS where its daemon starts, else time-sliced), with the GPU's use sampled
# every 2 s. Tested on CPU first: DEVICE=cpu bash benchmarks/gpu_scaling.sh (tiny budgets, same code path).
# Everything lands under $OUT: runs.tgz (the run folders, no weights), suite.log, gpu.csv, timing.txt.
# Datasets come from the git-ignored .gpu-data/ (copied from ../shared/datasets, carried to the machine).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
DEVICE=${DEVICE:-cuda}
JOBS=${JOBS:-12}
mkdir -p "$OUT"
export TINYLM_DATA_MIRROR=$PWD/.gpu-data MPLBACKEND=Agg PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*"; }
log "install"
python -m pip install --no-deps --no-build-isolation -q -e . > /tmp/install.log 2>&1 || { tail -20 /tmp/install.log; exit 1; }
python -c "import numpy, scipy, torch; print(numpy.__version__, torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" \
  | tee "$OUT/device.txt"
config=configs/default.yaml
extra=()
if [ "$DEVICE" = cpu ]; then  # the same suite at budgets 1e4 times smaller, on this machine's CPU
  config=/tmp/scaling-gpu-test.yaml
  sed -e 's/\[1.0e+13, 3.0e+13\]/[1.0e+9, 3.0e+9]/' -e 's/\[1.0e+11, 3.0e+11\], ptb: \[3.0e+12, 1.0e+13\]/[1.0e+7, 3.0e+7], ptb: [3.0e+8, 1.0e+9]/' \
    configs/default.yaml > "$config"
  extra=(--device cpu --set train.eval_tokens=1024)
fi
mps=off
if [ "$DEVICE" = cuda ] && command -v nvidia-cuda-mps-control > /dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d && timeout 60 python -c "import torch; print(torch.ones(2, device='cuda').sum().item())"; then
    mps=on
  else
    echo quit | timeout 20 nvidia-cuda-mps-control
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
fi
log "MPS $mps; suite scaling-gpu with $JOBS workers"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 > "$OUT/gpu.csv" 2>&1 &
  smi=$!
fi
# The archive is written every 20 s too, so a timeout keeps what finished.
( while sleep 20; do tar czf "$OUT/runs.tgz.part" -C "$OUT/results" --exclude=model.safetensors --exclude=last \
    --exclude=.lock runs 2>/dev/null && mv "$OUT/runs.tgz.part" "$OUT/runs.tgz"; done ) &
saver=$!
# Beside the suite: the CPU's config trained on this device, at the CPU's batch and the extension's (gpu_bridge.py).
bridge_flops=()
[ "$DEVICE" = cpu ] && bridge_flops=(1e10)
python benchmarks/gpu_bridge.py /tmp/bridge "$DEVICE" "${bridge_flops[@]}" > "$OUT/bridge.log" 2>&1 &
bridge=$!
start=$(date +%s)
timeout "${SUITE_TIMEOUT:-480}" python -m tinylm.cli suite --profile scaling-gpu --config "$config" --jobs "$JOBS" \
  --results-dir "$OUT/results" --data-dir /tmp/gpu-data --quiet "${extra[@]}" > "$OUT/suite.log" 2>&1
code=$?
end=$(date +%s)
kill $saver ${smi:-} 2> /dev/null
timeout 60 tail --pid=$bridge -f /dev/null; cp /tmp/bridge/bridge.json "$OUT/" 2> /dev/null; tail -4 "$OUT/bridge.log" | cut -c1-220
echo "suite exit $code; wall $((end - start)) s; MPS $mps; jobs $JOBS; $(grep -c trained "$OUT/suite.log") runs trained" \
  | tee "$OUT/timing.txt"
grep -E "error|Traceback" "$OUT/suite.log" | head -5
tail -3 "$OUT/suite.log" | cut -c1-200
# Only shallow paths come back from the device machine: the runs travel as one archive (no weights).
tar czf "$OUT/runs.tgz" -C "$OUT/results" --exclude=model.safetensors --exclude=last --exclude=.lock runs
rm -rf "$OUT/results" "$OUT/runs.tgz.part"
[ "$mps" = on ] && echo quit | timeout 20 nvidia-cuda-mps-control
log "done"
