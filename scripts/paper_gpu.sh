#!/usr/bin/env bash
# Paper-scale models on one GPU: one seed's models trained as concurrent processes
# (a 4.8 M-parameter model leaves a GPU mostly idle), then shipped as float16
# safetensors with their manifest entries into checkpoints/paper/.
#
#   ATTNPOD_DATA=path/to/input.txt bash scripts/paper_gpu.sh [SEED] [MODEL ...]
#
# MODEL is a variant (base, ega1, ega_morlet, conv_l4), or ega1_causal for the
# causal gate; the default is all five. Logs go to $LOGS (default logs/paper/).
# PROFILE, DEVICE, SHIP_TO (default checkpoints/$PROFILE/) and PYTHON change the
# defaults paper, cuda, the checkout's folder and python3 (the tests run it on a CPU).
# Needs torch with CUDA, numpy, safetensors, tqdm, filelock, threadpoolctl,
# pandas and matplotlib; no pooch (the corpus is given by path), no jupyter.
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-42}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(base ega1 ega_morlet conv_l4 ega1_causal)
: "${ATTNPOD_DATA:?set ATTNPOD_DATA to the path of the TinyShakespeare input.txt}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
profile=${PROFILE:-paper}
device=${DEVICE:-cuda}
ship_to=${SHIP_TO:-checkpoints/$profile}
logs=${LOGS:-logs/$profile}
mkdir -p "$logs"

options() {  # MODEL -> the CLI's model options
  local variant=${1%_causal} gate=""
  [ "$1" = "$variant" ] || gate=" --causal-gate"
  echo "--profile $profile --model $variant --seed $seed$gate --device $device"
}

start=$(date +%s)
pids=()
for m in "${models[@]}"; do
  # shellcheck disable=SC2046
  "$python" -m attnpod train $(options "$m") >"$logs/train-$m-seed$seed.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "training ${models[$i]} failed: see $logs/train-${models[$i]}-seed$seed.log"; failed=1; }
done
elapsed=$(( $(date +%s) - start ))
echo "trained ${models[*]} (seed $seed) concurrently in $elapsed s"
[ "$failed" = 0 ] || exit 1
for m in "${models[@]}"; do
  # shellcheck disable=SC2046
  "$python" -m attnpod ship $(options "$m") --to "$ship_to"
done
