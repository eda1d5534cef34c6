#!/usr/bin/env bash
# One-call GPU check (docs/benchmarks.md, "GPU check"): AVCL training speed of r3d, r21d and c3d at the
# paper's sizes (16x112x112 clips, 112x112 spectrogram crops), batch 64, bf16, with channels_last_3d
# and torch.compile on and off; compute only (random uint8 batches made on the GPU) and from a prepared
# cache through 15 loader workers (the data wait). The cache is random JPEG frames and spectrograms
# written here without PyAV or librosa; once more with the JPEG frames decoded on the GPU
# (data.decode_device=device, r3d). Writes $OUT/gpu_check.json and $OUT/gpu_check.md (and each
# run's bench_train.json and log under $OUT/runs/).
#
#   OUT=/some/folder scripts/gpu_check.sh                 # on a GPU machine: fits 8 minutes on one H200
#   DEVICE=cpu OUT=/tmp/gpu-dry scripts/gpu_check.sh      # dry run of the same steps, tiny, on the CPU
#
# Environment: OUT (default runs/gpu_check), DEVICE (cuda | cpu), BUDGET (seconds for the runs,
# default 400: runs that would start later are skipped and listed), PYTHON (default python3),
# WORKERS (loader workers of the cache runs, default 15), DRY_COMPILE=1 (also compile in a CPU dry run).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-400}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT/runs"
START=$(date +%s)
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

if [ "$DEVICE" = cpu ]; then  # dry run: the same commands, tiny sizes
  BATCH=2; STEPS=(--steps 1 --warmup 1); WORKERS=${WORKERS:-2}; VIDEOS=16; FRAMES=20
  COMMON=(--batch-size "$BATCH" "${STEPS[@]}" train.device=cpu train.amp=auto)  # auto: fp32 on the CPU
  COMPILE=${DRY_COMPILE:-0}
else
  BATCH=64; STEPS=(--steps 20 --warmup 8); WORKERS=${WORKERS:-15}; VIDEOS=256; FRAMES=32
  COMMON=(--batch-size "$BATCH" "${STEPS[@]}" train.device=cuda train.amp=bf16)
  COMPILE=1
fi

say "preflight (device $DEVICE)"
"$PY" - > "$OUT/preflight.txt" 2>&1 <<'PYEOF'
import importlib, platform, sys
print("python", platform.python_version())
for name in ("torch", "torchvision", "numpy", "yaml", "tqdm", "av", "librosa", "simplejpeg"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except ImportError as error:
        print(name, "missing:", error)
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
import avcl.bench.train  # the package imports without the optional modules
PYEOF
PRE=$?
cat "$OUT/preflight.txt" | tee -a "$LOG"
if [ $PRE -ne 0 ]; then say "preflight failed: avcl does not import here"; fi

CACHE="$OUT/random-cache"
say "random cache: $VIDEOS videos x $FRAMES frames of 128x171 in $CACHE"
"$PY" -m avcl.bench.random_cache "$CACHE" --videos "$VIDEOS" --frames "$FRAMES" >> "$LOG" 2>&1 \
  || say "the random cache failed: the cache runs will fail too"

# name | data | backbones | overrides. Order = priority: what is cheap and most wanted first; compiled
# runs (tens of seconds of compilation per backbone) one backbone at a time so that a run cut by the
# budget loses one backbone only.
RUNS=(
  "synthetic-eager|synthetic|r3d,r21d,c3d|train.channels_last=false train.compile=false"
  "synthetic-cl|synthetic|r3d,r21d,c3d|train.channels_last=true train.compile=false"
  "cache-cl-w$WORKERS|cache|r3d,r21d,c3d|train.channels_last=true train.compile=false data.num_workers=$WORKERS"
  "cache-cl-gpudecode-w$WORKERS|cache|r3d|train.channels_last=true train.compile=false data.num_workers=$WORKERS data.decode_device=device"
)
if [ "$COMPILE" = 1 ]; then
  for b in r3d r21d c3d; do
    RUNS+=("synthetic-cl-compile-$b|synthetic|$b|train.channels_last=true train.compile=true")
  done
  for b in r3d r21d c3d; do
    RUNS+=("cache-cl-compile-w$WORKERS-$b|cache|$b|train.channels_last=true train.compile=true data.num_workers=$WORKERS")
  done
  for b in r3d r21d c3d; do
    RUNS+=("synthetic-compile-$b|synthetic|$b|train.channels_last=false train.compile=true")
  done
fi

: > "$OUT/runs.txt"
for spec in "${RUNS[@]}"; do
  IFS='|' read -r name data backbones overrides <<< "$spec"
  left=$(( BUDGET - ($(date +%s) - START) ))
  if [ $left -lt 20 ]; then
    say "skip $name: budget spent"
    echo "$name|skipped (budget)" >> "$OUT/runs.txt"
    continue
  fi
  if [ "$data" = cache ]; then source=(--cache "$CACHE"); else source=(--data synthetic); fi
  say "run $name ($backbones; $overrides; at most ${left}s)"
  # shellcheck disable=SC2086
  timeout --kill-after=10 "$left" "$PY" -m avcl.cli bench train "${source[@]}" --backbones "$backbones" \
    --out "$OUT/runs/$name" --quiet "${COMMON[@]}" $overrides > "$OUT/runs/$name.log" 2>&1
  rc=$?
  tail -n 4 "$OUT/runs/$name.log" | tee -a "$LOG"
  echo "$name|rc $rc" >> "$OUT/runs.txt"
done

say "report"
"$PY" scripts/gpu_check_report.py "$OUT" 2>&1 | tee -a "$LOG"
say "done: $OUT/gpu_check.json, $OUT/gpu_check.md"
