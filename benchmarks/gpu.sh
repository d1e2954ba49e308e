#!/usr/bin/env bash
# The benchmarks that need a CUDA GPU, as tasks of one script, run in the order given:
#
#   bash benchmarks/gpu.sh TASK... [train ARGS... [-- TASK...]]
#
#   tests    The CUDA-only tests (pytest -m gpu tests/test_gpu.py): bf16 training scored in fp32 as on a CPU, the
#            padded vocabulary head, the byte-mask dropout on CUDA. Takes about 20 seconds on an H100.
#   bench    benchmarks/gpu_mfu.py: bf16 and TF32 matmul peaks, training tokens/s and MFU of the d=768 GPT and of
#            the baby GPT, eager and compiled (MFU_CASES, MFU_COMPILED, MFU_BATCHES, MFU_PADS pick fewer: see the
#            script). Takes about 2 minutes on an H100 with every case.
#   profile  tinylm suite --profile gpu: every architecture on every dataset at the sizes one GPU makes cheap
#            (bf16 training, fp32 evaluation). Takes about 9 minutes on an H100 for linear, mlp, attention and
#            the transformer (5 of them training); the lstm, llama and mamba rows add minutes each (each has a
#            420 s cap). PROFILE_ONLY (models) trains fewer, PROFILE_JOBS (1) runs that many side by side.
#   scaling  tinylm suite --profile scaling-gpu --jobs $JOBS (default 12): the scaling study's two GPU budgets, the
#            workers sharing the card through CUDA MPS where its daemon starts (else time-sliced), the GPU's use
#            sampled every 2 s; beside it benchmarks/gpu_bridge.py trains the CPU's compute-optimal transformers of
#            3e12 FLOPs at batch 16 and 64 (BRIDGE=0: not). Takes about 5 minutes on an H100 (the 100 runs: 4).
#            SCALING_ONLY (models) trains fewer.
#   ray      The scaling-gpu profile twice, back to back, from nothing: through Ray (tinylm suite --backend ray,
#            --gpus-per-run 1/JOBS, --cpus-per-run 1) and with --jobs $JOBS, each run on the card through MPS;
#            both wall times in ray-timing.json. A Python without ray takes the bundle that
#            benchmarks/ray_bundle.sh builds in .ray-bundle/ (carry it). SCALING_ONLY as for scaling.
#            Takes about 8 minutes with SCALING_ONLY="linear mlp attention transformer lstm" (2 x 100 runs,
#            which took 3.4 minutes with --jobs 12 on an H100).
#   sweep    The full profile's Tiny Shakespeare transformer (d=192 x 6 layers, context 128, 12M tokens, fp32 with
#            TF32 products), PAR runs at a time: SWEEP=changes (default) trains it with one change per run (20
#            runs), SWEEP=seeds with 6 more seeds and its 4-layer variant with 4 (11 runs); each run is chosen on
#            valid only (benchmarks/sweep_summary.py, best on valid first). Takes about 7 minutes (changes) or 3
#            (seeds) on an H100, the runs sharing the card.
#   train    tinylm train ARGS... (up to a lone `--`), e.g. a variant of a profile's run:
#            train --profile gpu --model transformer --dataset ptb --set model.dropout=0.5
#            Takes about 1 to 2 minutes on an H100 for the gpu profile's transformers (as long as its budget).
#
# PARALLEL=1 starts every task at once instead of one after another (each `train` then writes its own
# train-N-runs.tgz), the card shared through CUDA MPS where its daemon starts: for a session's short lease, e.g.
#   PARALLEL=1 PROFILE_ONLY="llama mamba" PROFILE_JOBS=6 bash benchmarks/gpu.sh tests profile \
#     train --profile nanogpt --model transformer --dataset tinyshakespeare-nanogpt
#
# Test it on a CPU first: DEVICE=cpu runs the same code path on this machine's CPU at budgets small enough for a
# dry run (no install, the CUDA tests skip), e.g. (takes about 15 seconds on 2 cores):
#   DEVICE=cpu TINYLM_DATA_MIRROR=../shared/datasets bash benchmarks/gpu.sh tests train --quick --model linear \
#     --max-steps 20
# `profile`, `scaling` and `sweep` take minutes on 2 cores even then (every run is still evaluated in full).
#
# Settings (environment variables):
#   OUT          (/tmp/gpu-out) every record, at most two levels deep: <task>.log, device.txt, gpu_mfu.json,
#                scaling-gpu.csv, ..., and each task's run folders as <task>-runs.tgz without weights, resume
#                state or snapshots (rewritten every 20 s during a long task, so a cut keeps what finished).
#   WORK         (/tmp/gpu-work) the run folders themselves, outside OUT; a second call on the same machine skips
#                the runs it completed (remove WORK for a fresh timing).
#   DEVICE       (cuda) cpu for the dry run.
#   TINYLM_DATA_MIRROR  (.gpu-data/ of the checkout, git-ignored) the dataset files carried to the machine, e.g.
#                a copy of the verified datasets; DATA_DIR (/tmp/gpu-data) the token caches.
#   INSTALL      (1 on cuda, 0 on cpu) pip install --no-deps --no-build-isolation -q -e . first.
#   A timeout per task, in seconds: TESTS_TIMEOUT (120), BENCH_TIMEOUT (240), PROFILE_TIMEOUT (3600),
#   SCALING_TIMEOUT (480), RAY_TIMEOUT (900), SWEEP_TIMEOUT (900), TRAIN_TIMEOUT (300, each train).
#   JOBS, BRIDGE (scaling); SWEEP, PAR (10; 2 on cpu), TOKENS_SCALE (1; 0.0005 on cpu) (sweep).
# The exit status is 0 when every task exited 0, else 1; 2 for an unknown task (nothing is run).
set -u
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$SELF")/.."
TASKS="tests bench profile scaling ray sweep train"
OUT=${OUT:-/tmp/gpu-out}
WORK=${WORK:-/tmp/gpu-work}
DEVICE=${DEVICE:-cuda}
DATA_DIR=${DATA_DIR:-/tmp/gpu-data}
export TINYLM_DATA_MIRROR=${TINYLM_DATA_MIRROR:-$PWD/.gpu-data} MPLBACKEND=Agg PYTHONUNBUFFERED=1

usage() { sed -n '2,/^set -u/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; }
log() { echo "[$(date +%T)] $*"; }

# Check every task name before running anything: a typo must not cost a device session.
if [ $# -eq 0 ]; then usage; exit 2; fi
in_train=0
seen=" "
for arg in "$@"; do
  if [ "$in_train" = 1 ]; then [ "$arg" = -- ] && in_train=0; continue; fi
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    train) in_train=1 ;;
    tests|bench|profile|scaling|ray|sweep)
      if [ "${PARALLEL:-0}" = 1 ] && [[ "$seen" == *" $arg "* ]]; then  # one folder, log and flag a task
        echo "gpu.sh: task '$arg' is given twice; side by side (PARALLEL=1) each task runs once" >&2; exit 2
      fi
      seen+="$arg " ;;
    *) echo "gpu.sh: unknown task '$arg'; tasks: $TASKS (bash benchmarks/gpu.sh --help)" >&2; exit 2 ;;
  esac
done

mkdir -p "$OUT" "$WORK"
# What a train task adds before its own arguments (which win): on a CPU, evaluations small enough for a dry run.
on_device=()
case "$DEVICE" in
  cuda) ;;
  cpu) on_device=(--device cpu --set train.eval_tokens=2048 --set train.eval_interval=10) ;;
  *) on_device=(--device "$DEVICE") ;;
esac

# The task's deadline: every command of a task runs under `timeout "$(left)"`.
deadline=0
start_task() { deadline=$(($(date +%s) + $2)); log "$1 (up to $2 s)"; }
left() { local s=$((deadline - $(date +%s))); echo $((s > 1 ? s : 1)); }

# Run folders travel as one archive without weights (only shallow paths come back from a lent machine).
pack() {  # name, results folder
  [ -d "$2/runs" ] || return 0
  tar czf "$OUT/$1-runs.tgz.part" -C "$2" --exclude=model.safetensors --exclude=last --exclude=snapshots \
    --exclude=.lock runs 2> /dev/null && mv "$OUT/$1-runs.tgz.part" "$OUT/$1-runs.tgz"
}
# The saver packs every 20 s until its flag file goes; stopping it waits for a pack under way to finish.
saver=""
saving=""
start_saver() {
  saving=$WORK/.saving-$1  # one flag a task: tasks may run side by side
  touch "$saving"
  ( n=0; while [ -e "$saving" ]; do sleep 2; n=$((n + 1)); [ $((n % 10)) -eq 0 ] && pack "$1" "$2"; done ) &
  saver=$!
}
stop_saver() { [ -n "$saver" ] && { rm -f "$saving"; wait "$saver"; }; saver=""; }
smi=""
mps=off
mps_owner=""  # the shell that started the daemon (BASHPID): only it stops it, not a task running beside others
stop_mps() {
  [ "$mps" = on ] && [ "$mps_owner" = "$BASHPID" ] && echo quit | timeout 20 nvidia-cuda-mps-control
  [ "$mps_owner" = "$BASHPID" ] && mps=off
  return 0
}
cleanup() { stop_saver; [ -n "$smi" ] && kill "$smi" 2> /dev/null; stop_mps; }
trap cleanup EXIT

task_tests() {
  start_task tests "${TESTS_TIMEOUT:-120}"
  timeout "$(left)" python -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider > "$OUT/tests.log" 2>&1
  local code=$?
  tail -3 "$OUT/tests.log"
  return $code
}

task_bench() {
  start_task bench "${BENCH_TIMEOUT:-240}"
  if [ "$DEVICE" = cpu ]; then  # the baby GPT, eager, batch 1: the d=768 GPT would take hours on a CPU
    export MFU_CASES=${MFU_CASES:-baby} MFU_COMPILED=${MFU_COMPILED:-0} MFU_BATCHES=${MFU_BATCHES:-1}
  fi
  OUT=$OUT timeout "$(left)" python benchmarks/gpu_mfu.py "$DEVICE" > "$OUT/bench.log" 2>&1
  local code=$?
  tail -6 "$OUT/bench.log" | cut -c1-220
  return $code
}

task_profile() {
  start_task "profile gpu" "${PROFILE_TIMEOUT:-3600}"
  local results=$WORK/profile extra=()
  [ "$DEVICE" = cpu ] && extra=(--device cpu --set train.max_time=1 --set train.eval_tokens=2048)
  # shellcheck disable=SC2206
  [ -n "${PROFILE_ONLY:-}" ] && extra+=(--only ${PROFILE_ONLY})
  start_saver profile "$results"
  timeout "$(left)" python -m tinylm.cli suite --profile gpu --results-dir "$results" --data-dir "$DATA_DIR" \
    --jobs "${PROFILE_JOBS:-1}" --quiet "${extra[@]}" > "$OUT/profile.log" 2>&1
  local code=$?
  stop_saver
  pack profile "$results"
  grep -E "trained|error|Traceback" "$OUT/profile.log" | cut -c1-220
  return $code
}

start_mps() {
  [ "$DEVICE" = cpu ] || [ "$mps" = on ] && return 0
  # side by side, the main shell has tried: a task that started it would stop it under the others
  [ "${PARALLEL:-0}" = 1 ] && [ "$BASHPID" != "$$" ] && return 0
  command -v nvidia-cuda-mps-control > /dev/null || return 0
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d && timeout 60 python -c "import torch; print(torch.ones(2, device='cuda').sum().item())"
  then
    mps=on
    mps_owner=$BASHPID
  else
    echo quit | timeout 20 nvidia-cuda-mps-control
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
}

# The scaling-gpu profile for a dry run on a CPU: the suite's config folder copied with its budgets 1e4 times
# smaller; prints the copy's default.yaml.
cpu_scaling_config() {  # TASK: a folder of its own, tasks may run side by side
  local dir=$WORK/cpu-configs-$1
  rm -rf "$dir" && cp -r configs "$dir" || return 1
  python - "$dir/profiles/scaling-gpu.yaml" <<'EOF' || return 1
import sys

import yaml

path = sys.argv[1]
prof = yaml.safe_load(open(path, encoding="utf-8"))


def scale(v):
    return [b * 1e-4 for b in v] if isinstance(v, list) else {k: scale(b) for k, b in v.items()}


prof["flop_budgets"] = scale(prof["flop_budgets"])
yaml.safe_dump(prof, open(path, "w", encoding="utf-8"))
EOF
  echo "$dir/default.yaml"
}

task_scaling() {
  local jobs=${JOBS:-12} results=$WORK/scaling config=configs/default.yaml extra=() bridge_flops=() bridge=""
  start_task "scaling-gpu, $jobs workers" "${SCALING_TIMEOUT:-480}"
  if [ "$DEVICE" = cpu ]; then  # the same suite at budgets 1e4 times smaller
    config=$(cpu_scaling_config scaling) || return 1
    extra=(--device cpu --set train.eval_tokens=1024)
    bridge_flops=(1e10)
  fi
  # shellcheck disable=SC2206
  [ -n "${SCALING_ONLY:-}" ] && extra+=(--only ${SCALING_ONLY})
  start_mps
  log "MPS $mps"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 > "$OUT/scaling-gpu.csv" 2>&1 &
    smi=$!
  fi
  start_saver scaling "$results"
  if [ "${BRIDGE:-1}" = 1 ]; then  # beside the suite: the CPU's config on this device, at the CPU's batch and 4x
    timeout "$(left)" python benchmarks/gpu_bridge.py "$WORK/bridge" "$DEVICE" "${bridge_flops[@]}" \
      > "$OUT/scaling-bridge.log" 2>&1 &
    bridge=$!
  fi
  local start end code
  start=$(date +%s)
  timeout "$(left)" python -m tinylm.cli suite --profile scaling-gpu --config "$config" --jobs "$jobs" \
    --results-dir "$results" --data-dir "$DATA_DIR" --quiet "${extra[@]}" > "$OUT/scaling.log" 2>&1
  code=$?
  end=$(date +%s)
  stop_saver
  [ -n "$smi" ] && kill "$smi" 2> /dev/null
  smi=""
  if [ -n "$bridge" ]; then
    wait "$bridge" || code=1
    cp "$WORK/bridge/bridge.json" "$OUT/scaling-bridge.json" 2> /dev/null
    tail -4 "$OUT/scaling-bridge.log" | cut -c1-220
  fi
  local util
  util=$(awk -F', ' 'NR > 1 && $2 ~ /%/ {sub(/ %/, "", $2); s += $2; n++} END {if (n) printf "%.1f", s / n}' \
    "$OUT/scaling-gpu.csv" 2> /dev/null)
  echo "suite exit $code; wall $((end - start)) s; MPS $mps; jobs $jobs; $(grep -c trained "$OUT/scaling.log") runs" \
    "trained; GPU use ${util:-?} % (mean of 2 s samples)" | tee "$OUT/scaling-timing.txt"
  grep -E "error|Traceback" "$OUT/scaling.log" | head -5
  pack scaling "$results"
  stop_mps
  return $code
}

# Ray from the carried bundle where this Python has none (benchmarks/ray_bundle.sh).
use_ray_bundle() {
  python -c "import ray" 2> /dev/null && return 0
  [ -f .ray-bundle/ray.tar.xz ] || { echo "no ray here: pip install ray, or carry .ray-bundle/" \
    "(bash benchmarks/ray_bundle.sh)" >&2; return 1; }
  mkdir -p /tmp/ray-site && tar xJf .ray-bundle/ray.tar.xz -C /tmp/ray-site \
    && python -m pip install -q --no-index --no-deps --target /tmp/ray-site .ray-bundle/*.whl > /dev/null || return 1
  export PYTHONPATH=/tmp/ray-site${PYTHONPATH:+:$PYTHONPATH}
  python -c "import ray; print('ray', ray.__version__, 'from the bundle')"
}

task_ray() {
  local jobs=${JOBS:-12} config=configs/default.yaml extra=() backend start code walls=() runs=()
  start_task "scaling-gpu through Ray, then with --jobs $jobs" "${RAY_TIMEOUT:-900}"
  use_ray_bundle || return 1
  local ray_args=(--backend ray --cpus-per-run 1 --gpus-per-run "$(python -c "print(int(1e4 / $jobs) / 1e4)")")
  if [ "$DEVICE" = cpu ]; then  # the dry run: budgets 1e4 times smaller, CPU tasks
    config=$(cpu_scaling_config ray) || return 1
    extra=(--device cpu --set train.eval_tokens=1024)
    ray_args=(--backend ray --cpus-per-run 1)
  fi
  # shellcheck disable=SC2206
  [ -n "${SCALING_ONLY:-}" ] && extra+=(--only ${SCALING_ONLY})
  start_mps
  for dataset in tinyshakespeare ptb; do  # tokenized once before either is timed
    python -m tinylm.cli data info "$dataset" --data-dir "$DATA_DIR" > /dev/null || return 1
  done
  for backend in ray jobs; do  # each from an empty results folder: nothing skipped
    rm -rf "$WORK/ray-$backend"
    local how=("${ray_args[@]}")
    [ "$backend" = jobs ] && how=(--jobs "$jobs")
    start=$(date +%s.%N)
    timeout "$(left)" python -m tinylm.cli suite --profile scaling-gpu --config "$config" "${how[@]}" \
      --results-dir "$WORK/ray-$backend" --data-dir "$DATA_DIR" --quiet "${extra[@]}" > "$OUT/ray-$backend.log" 2>&1
    code=$?
    walls+=("$(python -c "import time; print(round(time.time() - $start, 1))")")
    runs+=("$(grep -c trained "$OUT/ray-$backend.log")")
    log "$backend: exit $code, ${walls[-1]} s, ${runs[-1]} runs trained"
    [ $code -eq 0 ] || { grep -E "error|Traceback" "$OUT/ray-$backend.log" | head -5; stop_mps; return $code; }
  done
  python -c 'import json, sys; a = sys.argv[1:]; print(json.dumps({"profile": "scaling-gpu", "only": a[0],
"jobs": int(a[1]), "ray": a[2], "mps": a[3], "ray_wall_seconds": float(a[4]), "jobs_wall_seconds": float(a[5]),
"ray_runs": int(a[6]), "jobs_runs": int(a[7])}))' "${SCALING_ONLY:-}" "$jobs" "${ray_args[*]}" "$mps" \
    "${walls[@]}" "${runs[@]}" | tee "$OUT/ray-timing.json"
  stop_mps
}

task_sweep() {
  local set=${SWEEP:-changes} par=${PAR:-10} scale=${TOKENS_SCALE:-1} extra
  [ "$DEVICE" = cpu ] && { scale=${TOKENS_SCALE:-0.0005}; par=${PAR:-2}; }
  local results=$WORK/sweep-$set logs=$OUT/sweep-$set
  start_task "sweep $set, $par at a time" "${SWEEP_TIMEOUT:-900}"
  mkdir -p "$logs"
  if [ "$DEVICE" = cpu ]; then
    extra=(--device cpu --set train.eval_tokens=2048 --set train.eval_interval=5)
  else
    extra=(--device "$DEVICE" --precision fp32)
  fi
  tokens() { python -c "print(int($1 * $scale))"; }
  local -a variants
  case "$set" in
    changes)
      variants=(
        "base|"
        "d0.2|--set model.dropout=0.2"
        "d0.2-24M|--set model.dropout=0.2 --max-tokens $(tokens 24000000)"
        "d0.15-ad0.1|--set model.dropout=0.15 --set model.attn_dropout=0.1"
        "d0.05|--set model.dropout=0.05"
        "wd0.3|--set train.weight_decay=0.3"
        "wd1.0|--set train.weight_decay=1.0"
        "ctx256|--set model.context_length=256"
        "ctx64|--set model.context_length=64"
        "lr1e-3|--set train.learning_rate=0.001"
        "lr3e-3|--set train.learning_rate=0.003"
        "d256x4|--set model.embed_dim=256 --set model.n_layers=4 --set model.n_heads=8"
        "layers4|--set model.n_layers=4"
        "layers8-d0.2|--set model.n_layers=8 --set model.dropout=0.2"
        "b64-24M|--set train.batch_size=64 --max-tokens $(tokens 24000000)"
        "8M|--max-tokens $(tokens 8000000)"
        "18M|--max-tokens $(tokens 18000000)"
        "minlr0.01|--set train.min_lr_ratio=0.01"
        "seed2|--seed 2"
        "seed3|--seed 3"
      ) ;;
    seeds)  # the recipe's seed-to-seed spread, and that of its 4-layer variant
      variants=("base|")
      for seed in 4 5 6 7 8 9; do variants+=("seed$seed|--seed $seed"); done
      for seed in 2 3 4 5; do variants+=("layers4-seed$seed|--set model.n_layers=4 --seed $seed"); done ;;
    *) echo "SWEEP must be changes or seeds (got '$set')" >&2; return 1 ;;
  esac
  run_variant() {  # name|overrides
    local name=${1%%|*} args=${1#*|}
    # shellcheck disable=SC2086
    timeout "$(left)" python -m tinylm.cli train --profile full --model transformer --dataset tinyshakespeare \
      --quiet --results-dir "$results" --data-dir "$DATA_DIR" --max-tokens "$(tokens 12000000)" $args \
      "${extra[@]}" > "$logs/$name.log" 2>&1
    log "$name: exit $? $(tail -1 "$logs/$name.log" | cut -c1-200)"
  }
  log "${#variants[@]} runs"
  start_saver "sweep-$set" "$results"
  local v pids=()
  for v in "${variants[@]}"; do  # in waves of PAR runs
    run_variant "$v" &
    pids+=($!)
    [ ${#pids[@]} -ge "$par" ] && { wait "${pids[@]}"; pids=(); }
  done
  [ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
  stop_saver
  pack "sweep-$set" "$results"
  local base
  base=$(grep -o 'runs/[^ ]*' "$logs/base.log" | tail -1 | cut -d/ -f2)
  [ -n "$base" ] || { echo "the base run did not finish: no summary" >&2; return 1; }
  python benchmarks/sweep_summary.py "$results" "$base" > "$OUT/sweep-$set.json" && head -c 600 "$OUT/sweep-$set.json"
}

n_train=0
task_train() {  # tinylm train ARGS... (n_train counted by the caller: a task running beside others is a subshell)
  local name=train
  [ "${PARALLEL:-0}" = 1 ] && name=train-$n_train  # runs side by side: a folder and an archive each
  start_task "train $n_train: $*" "${TRAIN_TIMEOUT:-300}"
  timeout "$(left)" python -m tinylm.cli train --results-dir "$WORK/$name" --data-dir "$DATA_DIR" --quiet \
    "${on_device[@]}" "$@" > "$OUT/train-$n_train.log" 2>&1
  local code=$?
  tail -1 "$OUT/train-$n_train.log" | cut -c1-250
  pack "$name" "$WORK/$name"
  return $code
}

if [ "${INSTALL:-$([ "$DEVICE" = cpu ] && echo 0 || echo 1)}" = 1 ]; then
  log "install"
  python -m pip install --no-deps --no-build-isolation -q -e . > "$OUT/install.log" 2>&1 \
    || { tail -20 "$OUT/install.log"; exit 1; }
fi
python -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" \
  | tee "$OUT/device.txt"
if [ "$DEVICE" != cpu ] && ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device here: DEVICE=cpu runs the dry run" >&2
  exit 1
fi

failed=0
pids=()
if [ "${PARALLEL:-0}" = 1 ]; then
  start_mps
  log "side by side; MPS $mps"
fi
while [ $# -gt 0 ]; do
  task=$1
  shift
  cmd=("task_$task")
  if [ "$task" = train ]; then
    while [ $# -gt 0 ] && [ "$1" != -- ]; do cmd+=("$1"); shift; done
    [ $# -gt 0 ] && shift  # the --
    n_train=$((n_train + 1))
  fi
  if [ "${PARALLEL:-0}" = 1 ]; then
    "${cmd[@]}" &
    pids+=($!)
  else
    "${cmd[@]}" || failed=1
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
log "done"
exit $failed
