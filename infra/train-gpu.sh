#!/usr/bin/env bash
# Measure and train Super SloMo on one GPU inside a single bounded command, resuming the run it is given.
#
# Made for a rented or lent GPU box that may hold no project install and no network: it needs only
# python3 with torch, numpy, opencv and scikit-image (synthetic photo sequences; no PyAV needed). Synthetic
# frames are rendered on the GPU in batches (--renderer auto), so the step is not left waiting for data.
#
# In priority order, each under its own `timeout`, writing to $OUT (when set) as it goes:
#   1. python -m bench.train_speed on the GPU (BENCH_SECONDS, default 75; BENCH_SECONDS=0 skips it)
#      -> $OUT/train_speed.md
#   2. training for MINUTES (default 6.5) of wall time, then a checkpoint; SIGINT at the hard limit also
#      checkpoints -> $OUT/run/: state.pt and best.pt split into parts of at most 15 MB (with sha256 files),
#      curve.csv and the log.
# Both fit one 9-minute command with the default settings, start-up included.
#
# To resume, put the parts (or a whole state.pt) in the run folder and carry it into the next call:
#   mkdir -p runs/gpu && cp OUTDIR/run/* runs/gpu/
# The parts are joined and checked against their sha256 before training; a mismatch stops the run.
set -euo pipefail
RUN=${RUN:-runs/gpu}
PRESET=${PRESET:-light}
MINUTES=${MINUTES:-6.5}
BATCH=${BATCH:-32}
CROP=${CROP:-256}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
BENCH_SECONDS=${BENCH_SECONDS:-75}
BENCH_ARGS=${BENCH_ARGS:-}
PART_BYTES=15000000
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$RUN"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "train-gpu: nvidia-smi not found"

join_parts() {  # FILE: rebuild FILE from FILE.part-* when only the parts came back
  local file=$1
  compgen -G "$file.part-*" >/dev/null || return 0
  [[ -e "$file" ]] && return 0
  cat "$file".part-* >"$file.joining"
  if [[ -e "$file.sha256" ]] && [[ "$(sha256sum <"$file.joining" | cut -d' ' -f1)" != "$(cut -d' ' -f1 "$file.sha256")" ]]; then
    rm -f "$file.joining"
    echo "train-gpu: $file.part-* do not match $file.sha256 (a part is missing or damaged)" >&2
    exit 1
  fi
  mv "$file.joining" "$file"
  rm -f "$file".part-*
}

split_into() {  # FILE DIR: FILE as parts of at most PART_BYTES in DIR, with its sha256
  local file=$1 dir=$2 name
  name=$(basename "$file")
  [[ -e "$file" ]] || return 0
  rm -f "$dir/$name".part-*
  split -b "$PART_BYTES" "$file" "$dir/$name.part-"
  sha256sum <"$file" | cut -d' ' -f1 >"$dir/$name.sha256"
}

join_parts "$RUN/state.pt"
join_parts "$RUN/best.pt"

if [[ "$BENCH_SECONDS" != 0 ]]; then
  bench_out=${OUT:+$OUT/train_speed.md}
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
  timeout -k 5 "$BENCH_SECONDS" "$PYTHON" -m bench.train_speed --devices "$DEVICE" --preset "$PRESET" \
    --crop "$CROP" --batch-size "$BATCH" --dtype "$DTYPE" --channels-last --steps 10 --repeats 3 \
    ${bench_out:+--out "$bench_out"} $BENCH_ARGS || echo "train-gpu: train_speed stopped (exit $?)" >&2
fi

# The trainer stops itself at MINUTES; the hard limit sends SIGINT, which also writes a checkpoint.
limit=$("$PYTHON" -c "print(int(float('$MINUTES') * 60 + 45))")
status=0
timeout -s INT -k 15 "$limit" "$PYTHON" -m training train --out "$RUN" --preset "$PRESET" --device "$DEVICE" \
  --dtype "$DTYPE" --channels-last --batch-size "$BATCH" --crop "$CROP" --max-shift 48 \
  --max-minutes "$MINUTES" --checkpoint-every 500 --eval-every 500 2>&1 | tee "$RUN/train.log" || status=$?

if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/run"
  split_into "$RUN/state.pt" "$OUT/run"
  split_into "$RUN/best.pt" "$OUT/run"
  for file in curve.csv train.log; do
    if [[ -e "$RUN/$file" ]]; then cp "$RUN/$file" "$OUT/run/"; fi
  done
fi
exit "$status"
