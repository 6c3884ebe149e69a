#!/usr/bin/env bash
# Does the number of services cost anything on the forwarding path? Side by side on
# loopback, in one run: no proxy (direct), fulcrum serving one service, and fulcrum
# serving 50 services of which one carries the load (the other 49 listen on their own
# loopback addresses, have the same nodes and run their health checks, idle).
#
#   tools/bench/services.sh                 # ~3 min (l4bench --quick)
#   tools/bench/services.sh --reps 5        # any l4bench option
#   tools/bench/services.sh -o report.md
#
#   tools/bench/services.sh --serve N LISTEN BACKEND…   (internal: writes a file with N
#                                                       services and execs fulcrum)
#
# Drives the same harness as tools/bench/run.sh ($L4BENCH, default l4bench.sh beside
# this checkout); every process runs on 127.0.0.0/8 and is stopped by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [ "${1:-}" = "--serve" ]; then
  n=$2 listen=$3
  shift 3
  backends=""
  for b in "$@"; do backends+="\"$b\", "; done
  conf=$(mktemp /tmp/fulcrum-services-XXXXXX.toml)
  {
    echo "workers = 1"
    echo "[defaults]"
    echo "check = \"tcp\""
    echo "[[service]]"
    echo "name = \"loaded\""
    echo "listen = [\"$listen\"]"
    echo "backend = [${backends%, }]"
    for i in $(seq 2 "$n"); do
      # Idle services: their own loopback address each, an ephemeral port.
      echo "[[service]]"
      echo "name = \"idle$i\""
      echo "listen = [\"127.0.$((i / 250 + 2)).$((i % 250 + 1)):0\"]"
      echo "backend = [${backends%, }]"
    done
  } >"$conf"
  # The file is read before exec replaces this shell; remove it once fulcrum has it.
  (sleep 5; rm -f "$conf") &
  exec "$repo/target/release/fulcrum" serve --config "$conf"
fi

l4=${L4BENCH:-$repo/../shared/bench/l4bench.sh}
[ -f "$l4" ] || { echo "harness not found: $l4 (set L4BENCH)" >&2; exit 1; }
(cd "$repo" && cargo build --release --locked --quiet)
exec bash "$l4" --quick -w ka,close \
  -c direct \
  -c "cmd@fulcrum-1-service:bash $here/services.sh --serve 1 {listen} {backends_space}" \
  -c "cmd@fulcrum-50-services:bash $here/services.sh --serve 50 {listen} {backends_space}" \
  --ref fulcrum-1-service "$@"
