#!/usr/bin/env bash
# Paper-scale models on one GPU: one seed's models trained at once, each in its own
# process (a 4.8 M-parameter model leaves a GPU mostly idle), then shipped as float16
# safetensors with their manifest entries into checkpoints/paper/. Then the head-pruning
# and KV-cache experiments (hours on a CPU at this size) run on the shipped weights and
# their results are shipped beside them (set EXPERIMENTS=0 to skip; they need all five).
#
#   ATTNPOD_DATA=path/to/input.txt bash scripts/paper_gpu.sh [SEED] [MODEL ...]
#
# MODEL is a variant (base, ega1, ega_morlet, conv_l4), or ega1_causal for the
# causal gate; the default is all five. Each training's log is in the artifact
# store's logs/ folder. PROFILE, DEVICE, SHIP_TO (default checkpoints/$PROFILE/)
# and PYTHON change the defaults paper, cuda, the checkout's folder and python3
# (the tests run it on a CPU). Needs torch with CUDA, numpy, safetensors, tqdm,
# filelock and threadpoolctl; no matplotlib or pandas (nothing here draws), no
# pooch (the corpus is given by path), no jupyter.
# Each manifest entry records the code it was made with (git's commit); a machine handed the working
# tree without its history is told it: ATTNPOD_CODE_REVISION=$(git rev-parse --short=12 HEAD).
#
# A GPU machine that copies the working tree takes at most 64 MiB of it, and the laptop
# profile's shipped models alone are about 60 MB: before the call, move the other
# profiles' checkpoints out (bash scripts/stash_checkpoints.sh out), and back after it
# (bash scripts/stash_checkpoints.sh back), before committing what the run shipped.
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
options=(--profile "$profile" --seed "$seed" --device "${DEVICE:-cuda}" --model "${models[@]}")
"$python" -m attnpod train "${options[@]}"
"$python" -m attnpod ship "${options[@]}" --to "${SHIP_TO:-checkpoints/$profile}"
if [ "${EXPERIMENTS:-1}" != 0 ]; then
  "$python" -m attnpod experiments --profile "$profile" --seed "$seed" --device "${DEVICE:-cuda}" \
    --to "${SHIP_TO:-checkpoints/$profile}"
fi
