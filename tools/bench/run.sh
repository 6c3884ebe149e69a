#!/usr/bin/env bash
# Side-by-side proxy benchmark on loopback: fulcrum vs no proxy (direct) vs HAProxy
# (mode tcp, with and without splice) vs nginx stream, one worker each, in one run.
#
#   tools/bench/run.sh                 # full run (~6 min), report on stdout
#   tools/bench/run.sh --quick         # ~3 min
#   tools/bench/run.sh -o report.md    # also write the report
#
# Drives an external harness, found through $L4BENCH (default: l4bench.sh beside this
# checkout); what it runs and measures is in tools/bench/METHOD.md. It starts every
# process itself on 127.0.0.1, stops each by PID, and bounds every run in time.
# Needs: wrk, iperf3, nginx (+ libnginx-mod-stream), haproxy, python3, taskset;
# `--install` installs the Debian packages first (as root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
l4=${L4BENCH:-$repo/../shared/bench/l4bench.sh}
if [ "${1:-}" = "--install" ]; then
  shift
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk iperf3 nginx libnginx-mod-stream haproxy >/dev/null
fi
[ -f "$l4" ] || { echo "harness not found: $l4 (set L4BENCH)" >&2; exit 1; }
(cd "$repo" && cargo build --release --locked --quiet)
exec bash "$l4" \
  -c direct -c haproxy -c haproxy+splice -c nginx \
  -c "cmd@fulcrum:$repo/target/release/fulcrum serve --workers 1 --listen {listen} {each:--backend }" \
  "$@"
