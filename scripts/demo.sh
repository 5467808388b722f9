#!/usr/bin/env bash
# Builds hls-flow and runs it offline, against the bundled CMR + LP DAAC emulator:
#   1. generate-daily for three days of May 2024 (daily stac-geoparquet files),
#   2. run for the whole month (checkpointed DAG: daily files + monthly hive partitions),
#   3. status of that run.
# Usage: bash scripts/demo.sh [OUTPUT_FOLDER]   (default: demo-out)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo-out}
cargo build --locked --bins
mkdir -p "$OUT"
log="$OUT/emulator.log"
target/debug/hls-flow-emulator --port 0 --start 2024-05-01 --end 2024-05-31 \
    --granules-per-day 200 --seed 1 >"$log" 2>&1 &
emulator=$!
trap 'kill "$emulator" 2>/dev/null || true' EXIT
for _ in $(seq 200); do
    grep -q '^listening on ' "$log" && break
    sleep 0.05
done
url=$(sed -n 's/^listening on //p' "$log")
[ -n "$url" ] || { echo "the emulator did not start: $(cat "$log")" >&2; exit 1; }
echo "emulator: $url"
set -x
target/debug/hls-flow generate-daily 20240501 20240503 "$OUT/daily" --cmr-url "$url" --parallel
target/debug/hls-flow run 202405 --output "$OUT/cache" --state "$OUT/state.sqlite" --cmr-url "$url"
target/debug/hls-flow status --state "$OUT/state.sqlite"
