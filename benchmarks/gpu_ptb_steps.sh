#!/usr/bin/env bash
# Second short GPU window (issue 15): the gpu profile's PTB transformer with a step budget instead of a time budget.
# On an H100, 80 s bought 7,362 steps and the run overfit from step ~2,250 (valid ppl 102); the H200's 60 s bought
# 3,846 steps, annealed in time and reached valid ppl 94.9. A step budget makes the schedule the same on every GPU.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export TINYLM_DATA_MIRROR=$PWD/.gpu-data MPLBACKEND=Agg
python -m pip install --no-deps --no-build-isolation -q -e . > "$OUT/install.log" 2>&1 || exit 1
extra=()
[ "${DEVICE:-cuda}" = cpu ] && extra=(--device cpu --set train.eval_tokens=2048)
S=${PTB_STEPS:-3500}
variants=(
  "--set model.dropout=0.4"
  "--set model.dropout=0.4 --set train.weight_decay=0.3"
  "--set model.dropout=0.45 --set model.attn_dropout=0.3"
)
for i in "${!variants[@]}"; do
  echo "[$(date +%T)] ptb variant $i: max_steps $S ${variants[$i]}"
  # shellcheck disable=SC2086
  timeout 150 python -m tinylm.cli train --profile gpu --model transformer --dataset ptb --quiet \
    --results-dir "$OUT/results" --data-dir /tmp/gpu-data --max-steps "$S" ${variants[$i]} "${extra[@]}" 2>&1 \
    | tail -1 | cut -c1-250
  tar czf "$OUT/runs.tgz" -C "$OUT/results" --exclude=model.safetensors --exclude=last --exclude=.lock runs
done
echo "[$(date +%T)] done"
