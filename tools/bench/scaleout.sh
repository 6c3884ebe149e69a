#!/usr/bin/env bash
# Scale-out benchmark (issue #11): fulcrum distributors announcing one VIP over BGP to a
# BIRD 2 router that spreads flows over them with ECMP, in network namespaces built by
# ../shared/netlab/ecmp.sh (every distributor namespace bare: the real fulcrum peers).
#
#   tools/bench/scaleout.sh [-o report.md] [--runs N] [--secs S]
#
# Measures, in one run:
#   1. new connections/s (wrk, Connection: close, from the client namespace) through 1, 2
#      and 3 active distributors, each distributor's CPU per connection, then keep-alive
#      requests/s (wrk, 50 connections spread by the router);
#   2. how long until the router's kernel route loses a distributor's next hop after:
#      SIGKILL; a dead host (nft drops everything in its namespace) with BFD 100 ms x 3;
#      the same without BFD (hold time 3 s); `fulcrum ctl bgp withdraw`. N runs each
#      (default 10), polled every ~3 ms with `ip route` in the router namespace.
#
# Each distributor forwards to an nginx in its own namespace (127.0.0.1:8080): what is
# measured is the distributor and the routing, not a shared backend. Traffic stays in the
# lab's namespaces; every process started here is stopped by PID, and the lab deleted,
# also on error or Ctrl-C. Needs root, bird2, nginx, wrk, nftables.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ecmp=${ECMP_SH:-$repo/../shared/netlab/ecmp.sh}
out=""
runs=10
secs=5
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    *) echo "usage: $0 [-o report.md] [--runs N] [--secs S]" >&2; exit 2 ;;
  esac
done
[ -f "$ecmp" ] || { echo "lab script not found: $ecmp (set ECMP_SH)" >&2; exit 1; }
for c in bird wrk nginx nft; do command -v "$c" >/dev/null || { echo "missing: $c" >&2; exit 1; }; done
(cd "$repo" && cargo build --release --locked --quiet)
bin=$repo/target/release/fulcrum

export ECMP_PREFIX="fsb$$-" ECMP_RUN="/tmp/fsb$$-run" ECMP_STANDIN="" ECMP_BARE_VIP=0 ECMP_BFD=1
P=$ECMP_PREFIX
RUN=$ECMP_RUN
VIP=10.98.0.100
declare -A lbpid=()
pids=()
cleanup() {
  for p in "${pids[@]}" "${lbpid[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}" "${lbpid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  bash "$ecmp" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[scaleout %s] %s\n' "$(date +%T)" "$*" >&2; }

log "lab up ($P)"
bash "$ecmp" up >/dev/null
# One nginx per distributor namespace, on its loopback.
for k in 1 2 3; do
  d=$RUN/nginx$k
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $d/nginx.pid; error_log $d/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $d/b; proxy_temp_path $d/p; fastcgi_temp_path $d/f;
  uwsgi_temp_path $d/u; scgi_temp_path $d/s;
  server { listen 127.0.0.1:8080; location / { default_type text/plain; return 200 "lb$k\n"; } } }
EOF
  ip netns exec "${P}lb$k" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" &
  pids+=($!)
done

# start_lb K PEER_OPTS: fulcrum in lbK, peering with the router.
start_lb() {
  local k=$1 opts=$2
  ip netns exec "${P}lb$k" "$bin" serve --listen "$VIP:80" --backend 127.0.0.1:8080 \
    --workers 1 --check-interval 1s --bgp-as 65001 --bgp-router-id "10.98.2.1$k" \
    --bgp-peer "10.98.2.1,as=65000,$opts" --announce "$VIP/32" \
    --control "$RUN/lb$k.sock" >"$RUN/lb$k.log" 2>&1 &
  lbpid[$k]=$!
  disown "${lbpid[$k]}"  # killed on purpose below: no job report
}
stop_lb() {
  local k=$1
  [ -n "${lbpid[$k]:-}" ] || return 0
  kill "${lbpid[$k]}" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "${lbpid[$k]}" 2>/dev/null || break; sleep 0.05; done
  kill -9 "${lbpid[$k]}" 2>/dev/null || true
  unset "lbpid[$k]"
}
hops() { ip -n "${P}rtr" route show "$VIP" | grep -c "nexthop via\|via 10.98" || true; }
has_hop() { ip -n "${P}rtr" route show "$VIP" | grep -q "10.98.2.1$1 "; }
wait_hops() {  # N [SECS]
  local end=$((SECONDS + ${2:-30}))
  while [ "$(hops)" != "$1" ]; do
    [ $SECONDS -lt $end ] || { log "route never had $1 next hops: $(ip -n "${P}rtr" route show "$VIP")"; return 1; }
    sleep 0.1
  done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
total() { "$bin" ctl --socket "$RUN/lb$1.sock" show stats --json | sed -n 's/.*"total":\([0-9]*\).*/\1/p'; }

report=$(mktemp)
{
  echo "# Scale-out benchmark (tools/bench/scaleout.sh)"
  echo
  echo "- date: $(date -Is); $(nproc) CPUs; $(uname -r); $(bird --version 2>&1 | head -1); $(wrk -v 2>&1 | head -1 | cut -c1-40)"
  echo "- wrk -t1 -c50 -d${secs}s, Connection: close, client namespace → VIP; router ECMP hash policy 3 (5-tuple)"
  echo
  echo "## Throughput through 1, 2 and 3 distributors"
  echo
  echo "| distributors | new conn/s | keep-alive req/s | per distributor (new connections): connections (share), CPU µs/conn |"
  echo "|---:|---:|---:|---|"
} >"$report"

hz=$(getconf CLK_TCK)
for n in 1 2 3; do
  start_lb "$n" "hold=9s,bfd"
  wait_hops "$n" 30
  sleep 1
  declare -A t0=() c0=()
  for k in $(seq 1 "$n"); do t0[$k]=$(total "$k"); c0[$k]=$(cpu_ticks "${lbpid[$k]}"); done
  rate=$(ip netns exec "${P}cli" timeout $((secs + 10)) wrk -t1 -c50 -d"${secs}s" \
    -H "Connection: close" "http://$VIP/" 2>&1 | awk '/Requests\/sec/ {print int($2)}')
  sum=0
  declare -A dn=() dc=()
  for k in $(seq 1 "$n"); do
    dn[$k]=$(( $(total "$k") - t0[$k] ))
    dc[$k]=$(( $(cpu_ticks "${lbpid[$k]}") - c0[$k] ))
    sum=$((sum + dn[$k]))
  done
  ka=$(ip netns exec "${P}cli" timeout $((secs + 10)) wrk -t1 -c50 -d"${secs}s" \
    "http://$VIP/" 2>&1 | awk '/Requests\/sec/ {print int($2)}')
  line="| $n | ${rate:-0} | ${ka:-0} |"
  for k in $(seq 1 "$n"); do
    cpu=${dc[$k]}
    us=$(awk -v c="$cpu" -v hz="$hz" -v d="${dn[$k]}" 'BEGIN { if (d > 0) printf "%.1f", c / hz * 1e6 / d; else print "-" }')
    share=$(awk -v d="${dn[$k]}" -v s="$sum" 'BEGIN { if (s > 0) printf "%.0f", 100 * d / s; else print 0 }')
    line+=" lb$k: ${dn[$k]} ($share %), $us µs;"
  done
  line="${line%;} |"
  echo "$line" >>"$report"
  log "$line"
done

# time_gone K ACTION: runs ACTION, then polls until lbK's next hop is gone; prints ms.
time_gone() {
  local k=$1
  shift
  local t0 t1
  t0=$(date +%s%N)
  "$@"
  local end=$(( $(date +%s) + 300 ))
  while has_hop "$k"; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timeout"; return; }
  done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}
nft_drop() { bash "$ecmp" fail "lb$1" drop >/dev/null; }
nft_restore() { bash "$ecmp" restore "lb$1" drop >/dev/null; }
kill9() { kill -9 "${lbpid[$1]}"; unset "lbpid[$1]"; }
withdraw() { "$bin" ctl --socket "$RUN/lb$1.sock" bgp withdraw >/dev/null; }
announce() { "$bin" ctl --socket "$RUN/lb$1.sock" bgp announce >/dev/null; }

stats() {  # values… → "median (min–max), n"
  printf '%s\n' "$@" | grep -v timeout | sort -n | awk '{a[NR]=$1} END {
    if (NR == 0) { print "-"; exit }
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "%s ms (%s–%s), n=%d", m, a[1], a[NR], NR }'
}
{
  echo
  echo "## Time until the router stops using a distributor ($runs runs each)"
  echo
  echo "| trigger on lb3 | median (min–max) | all runs (ms) |"
  echo "|---|---|---|"
} >>"$report"

mode_runs() {  # LABEL PEER_OPTS FAIL RESTORE
  local label=$1 opts=$2 fail=$3 restore=$4 vals=()
  for _ in $(seq "$runs"); do
    # A fresh process each run: a session that failed backs off (1 s doubling to 60 s)
    # before it connects again, which would stretch the runs, not change what is timed.
    stop_lb 3
    start_lb 3 "$opts"
    wait_hops 3 60 || break
    sleep 1
    v=$(time_gone 3 "$fail" 3)
    vals+=("$v")
    log "$label: $v ms"
    $restore 3
  done
  echo "| $label | $(stats "${vals[@]}") | ${vals[*]} |" >>"$report"
}
mode_runs "SIGKILL of fulcrum" "hold=9s,bfd" kill9 true
mode_runs "dead host (nft drop), BFD 100 ms x 3" "hold=9s,bfd" nft_drop nft_restore
mode_runs "dead host (nft drop), no BFD, hold 3 s" "hold=3s" nft_drop nft_restore
mode_runs "planned: ctl bgp withdraw" "hold=9s,bfd" withdraw announce

cat "$report"
[ -z "$out" ] || cp "$report" "$out"
rm -f "$report"
