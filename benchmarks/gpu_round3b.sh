#!/usr/bin/env bash
# The rest of this session's GPU window (after gpu_round3.sh): the CUDA tests again (the padded-head test now turns
# TF32 off: an earlier run in the same process had turned it on), and two more PTB transformer variants of the gpu
# profile's (3,500 steps), selected on valid afterwards. Same outputs as gpu_round3.sh.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export TINYLM_DATA_MIRROR=$PWD/.gpu-data MPLBACKEND=Agg PYTHONUNBUFFERED=1
python -m pip install --no-deps --no-build-isolation -q -e . > "$OUT/install.log" 2>&1 || exit 1
timeout 60 python -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tail -3
extra=()
[ "${DEVICE:-cuda}" = cpu ] && extra=(--device cpu --set train.eval_tokens=2048 --set train.eval_interval=10)
S=${PTB_STEPS:-3500}
for v in "--set model.n_layers=8 --set model.dropout=0.45" \
         "--set model.embed_dim=256 --set model.n_heads=4 --set model.n_layers=8 --set model.dropout=0.3 --set train.learning_rate=0.001"; do
  echo "[$(date +%T)] ptb: max_steps $S $v"
  # shellcheck disable=SC2086
  timeout 110 python -m tinylm.cli train --profile gpu --model transformer --dataset ptb --quiet \
    --results-dir "$OUT/results" --data-dir /tmp/gpu-data --max-steps "$S" $v "${extra[@]}" 2>&1 | tail -1 | cut -c1-250
  tar czf "$OUT/runs.tgz" -C "$OUT/results" --exclude=model.safetensors --exclude=last --exclude=.lock \
    --exclude=snapshots runs
done
echo "[$(date +%T)] done"
