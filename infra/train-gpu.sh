#!/usr/bin/env bash
# Train Super SloMo on one GPU inside a single bounded command, resuming the run folder it is given.
#
# Made for a rented or lent GPU box that may hold no project install and no network: it needs only
# python3 with torch, numpy, opencv and scikit-image (synthetic photo sequences; no PyAV needed).
# Each call trains for MINUTES, checkpoints, and (when OUT is set) leaves the run in $OUT split into
# parts of at most 15 MB, for transports that cap file sizes. Put the parts back together with
#   cat run/state.pt.part-* > runs/gpu/state.pt
# and carry runs/gpu into the next call: training resumes where it stopped.
set -euo pipefail
RUN=${RUN:-runs/gpu}
PRESET=${PRESET:-light}
MINUTES=${MINUTES:-8}
BATCH=${BATCH:-32}
CROP=${CROP:-256}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m training train --out "$RUN" --preset "$PRESET" --device cuda --dtype bf16 --channels-last \
  --batch-size "$BATCH" --crop "$CROP" --max-shift 48 --max-minutes "$MINUTES" \
  --checkpoint-every 500 --eval-every 500
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/run"
  split -b 15M "$RUN/state.pt" "$OUT/run/state.pt.part-"
  cp "$RUN/curve.csv" "$OUT/run/"
fi
