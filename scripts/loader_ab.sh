#!/usr/bin/env bash
# Interleaved A/B of the training loader between two source trees (e.g. this branch and main):
# samples per CPU-second (main process and workers, start-up included) and main-process CPU per batch,
# for 0, 1 and 2 workers at batch 16 and 64, each setting in a fresh process, the two trees alternating.
#
#   CACHE=runs/bench/cache OLD=/path/to/main/src R=3 S=5 scripts/loader_ab.sh > ab.txt
set -u
cd "$(dirname "$0")/.."
CACHE=${CACHE:-runs/bench/cache}; OLD=${OLD:?OLD: the other tree's src folder}; NEW=${NEW:-$PWD/src}
R=${R:-3}; S=${S:-5}; PY=${PYTHON:-python3}
for r in $(seq "$R"); do for b in 16 64; do for w in 0 1 2; do for code in old new; do
  src=$NEW; [ "$code" = old ] && src=$OLD
  echo "$code $(PYTHONPATH=$src timeout 300 "$PY" scripts/loader_ab_one.py "$CACHE" "$w" "$b" "$S")"
done; done; done; done
