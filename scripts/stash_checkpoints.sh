#!/usr/bin/env bash
# Shipped checkpoints out of the working tree for a GPU call, and back afterwards.
#
# The GPU machine takes at most 64 MiB of working tree (tracked files and untracked ones
# git does not ignore); the laptop profile's 25 shipped models alone are about 60 MB. Before
# the call, move every checkpoints/<profile>/ folder except $KEEP (default: paper, the one
# the run writes into) out of the tree and out of git's index; after it, move them back and
# restore their index entries from HEAD, so `git status` is as it was.
#
#   bash scripts/stash_checkpoints.sh out  [STASH]   # default STASH: ../attnpod-checkpoints-stash
#   ... the GPU call (scripts/paper_gpu.sh) ...
#   bash scripts/stash_checkpoints.sh back [STASH]
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: stash_checkpoints.sh out|back [STASH]}
stash=${2:-../attnpod-checkpoints-stash}
keep=${KEEP:-paper}
case "$action" in
  out)
    if [ -e "$stash" ]; then echo "$stash exists: move its folders back first (back)" >&2; exit 1; fi
    mkdir -p "$stash"
    for dir in checkpoints/*/; do
      [ -d "$dir" ] || continue
      name=$(basename "$dir")
      [ "$name" = "$keep" ] && continue
      git rm -r -q --cached --ignore-unmatch "checkpoints/$name"
      mv "checkpoints/$name" "$stash/$name"
      echo "moved checkpoints/$name to $stash/$name"
    done ;;
  back)
    if [ ! -d "$stash" ]; then echo "$stash: nothing to move back" >&2; exit 1; fi
    for dir in "$stash"/*/; do
      [ -d "$dir" ] || continue
      name=$(basename "$dir")
      if [ -e "checkpoints/$name" ]; then echo "checkpoints/$name exists: not overwritten" >&2; exit 1; fi
      mv "$stash/$name" "checkpoints/$name"
      git reset -q -- "checkpoints/$name"
      echo "restored checkpoints/$name"
    done
    rmdir "$stash" ;;
  *) echo "usage: stash_checkpoints.sh out|back [STASH]" >&2; exit 2 ;;
esac
