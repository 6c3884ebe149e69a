#!/usr/bin/env bash
# direct.sh -- benchmark of fulcrum's direct-routing mode in a network-namespace lab.
#
# Builds its own lab (tools/bench/lab.sh; namespaces fdb<PID>-*: bridge, client, lb1, srv1, srv2; VIP on the
# nodes' lo with arp_ignore=1/arp_announce=2, as in netlab/lab.sh), starts nginx on the
# nodes and `fulcrum serve --mode direct` on lb1, then runs each workload twice:
#   via  = client -> VIP -> fulcrum (lb1) -> node, replies node -> client
#   node = client -> srv1 straight (the same traffic without a distributor)
# Workloads (wrk and iperf3 from the client namespace):
#   close : new connection per request (Connection: close)      -> connections/s
#   ka    : keep-alive requests, 50 connections                  -> requests/s
#   par   : keep-alive requests, 2 client threads x 200 conns    -> requests/s (packets/s per core)
#   bulk  : iperf3 upload, one node behind fulcrum               -> Gbit/s
#   pps   : trafgen (netsniff-ng) sends 64-byte TCP ACKs of 1,024 flows to VIP:9 as fast
#           as one core can, the nodes drop them at their netdev ingress (nftables), so
#           what is measured is forwarding alone       -> packets/s forwarded
# For each run: packets/s forwarded (lb1 eth0 TX delta; for `node`, srv1 eth0 RX delta;
# a forwarded super-frame counts once), fulcrum's on-CPU time (all threads,
# /proc/PID/task/*/schedstat) per second and per forwarded packet, and packets/s per
# fulcrum core (packets/s / CPU fraction), and the whole machine's busy CPU (/proc/stat,
# both cores) per packet: on veth much of the work moves between threads (a send runs the
# receiver's stack), so only the machine total compares the two paths. Medians of --reps runs.
# Offloads stay at the kernel's defaults on every interface (TSO/GSO/GRO on): fulcrum
# forwards super-frames whole. --wire turns tx-csum/TSO/GSO off on the bridge port toward
# lb1 for every workload (`lab.sh wire lb1`: what a real wire does, the old setup).
#
# Usage: tools/bench/direct.sh [--reps N] [--duration S] [--workers N] [--ring slots|blocks|xdp]
#        [--host-sink on|off] [--offload on|off] [--nodes 1|2] [--fabric bridge|macvlan] [--wire] [--bin PATH] [-w "close ka par bulk pps"] [-o FILE]
# Needs root, wrk, iperf3, nginx, ethtool, iproute2; trafgen (netsniff-ng) and nft for pps. Every process it starts is ended by
# PID and every namespace deleted on exit (also on Ctrl-C). Traffic stays in the lab.
set -euo pipefail

REPS=3
DUR=5
BIN=""
OUT=""
WORKERS=1
WIRE=0
RING=""
SINK=""
OFFLOAD=""
NODES=2
FABRIC=bridge
WORKLOADS="close ka par bulk pps"
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --wire) WIRE=1; shift ;;
    --ring) RING=$2; shift 2 ;;
    --host-sink) SINK=$2; shift 2 ;;
    --offload) OFFLOAD=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --fabric) FABRIC=$2; shift 2 ;;
    -w) WORKLOADS=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ -n "$BIN" ] || BIN="$ROOT/target/release/fulcrum"
[ -x "$BIN" ] || { echo "no fulcrum binary at $BIN (cargo build --release)" >&2; exit 1; }
need="wrk iperf3 nginx ethtool ip"
[[ " $WORKLOADS " == *" pps "* ]] && need+=" trafgen nft"
for t in $need; do
  command -v "$t" >/dev/null || { echo "missing $t (pps needs: apt install netsniff-ng nftables)" >&2; exit 1; }
done

LAB="fdb$$"
TMP=$(mktemp -d "/tmp/$LAB.XXXX")
VIP=10.99.0.100
HOSTS="client lb1 srv1 srv2"
declare -A IP=([client]=10.99.0.10 [lb1]=10.99.0.11 [srv1]=10.99.0.21 [srv2]=10.99.0.22)
declare -A MAC=([client]=02:99:00:00:00:10 [lb1]=02:99:00:00:00:11 [srv1]=02:99:00:00:00:21 [srv2]=02:99:00:00:00:22)
PIDS=()
. "$ROOT/tools/bench/lab.sh"

log() { printf '[direct.sh %s] %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  lab_down
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up_direct() {
  lab_up "net.ipv4.ip_local_port_range=1024 65000" net.ipv4.tcp_tw_reuse=1
  for h in srv1 srv2; do
    nsx "$h" sysctl -qw net.ipv4.conf.all.arp_ignore=1
    nsx "$h" sysctl -qw net.ipv4.conf.all.arp_announce=2
    ip -n "$(ns "$h")" addr add "$VIP/32" dev lo
  done
}

nginx_up() {
  local h=$1 d="$TMP/$1"
  mkdir -p "$d"
  cat > "$d/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $d/nginx.pid; error_log $d/error.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 60;
  client_body_temp_path $d/b; proxy_temp_path $d/p; fastcgi_temp_path $d/f; uwsgi_temp_path $d/u; scgi_temp_path $d/s;
  server { listen 80 backlog=4096; location / { return 200 "$h\n"; } } }
EOF
  # `ip netns exec` execs the command, so $! is the server's own PID (a shell function
  # in the background would give a subshell's).
  ip netns exec "$(ns "$h")" nginx -c "$d/nginx.conf" -e "$d/error.log" & PIDS+=($!)
  ip netns exec "$(ns "$h")" iperf3 -s -p 5201 >/dev/null 2>&1 & PIDS+=($!)
}

FUL=""
fulcrum_up() { # backends...
  local args=(serve --mode direct --interface eth0 --listen "$VIP:$1" --check none --drain-timeout 1s)
  # Only a ring binary knows --workers in direct mode: pass it when asked for more than one.
  [ "$WORKERS" -gt 1 ] && args+=(--workers "$WORKERS")
  [ -n "$RING" ] && args+=(--ring "$RING")
  [ -n "$SINK" ] && args+=(--host-sink "$SINK")
  [ -n "$OFFLOAD" ] && args+=(--offload "$OFFLOAD")
  shift
  for b in "$@"; do args+=(--backend "$b"); done
  # fulcrum::direct at info: its final counters line gives the batch sizes.
  RUST_LOG=warn,fulcrum::direct=info ip netns exec "$(ns lb1)" "$BIN" "${args[@]}" >>"$TMP/fulcrum.log" 2>&1 & FUL=$!
  PIDS+=("$FUL")
  sleep 0.5
  kill -0 "$FUL" || { cat "$TMP/fulcrum.log" >&2; exit 1; }
  # What the bridge may hand lb1 whole: attaching XDP to a veth takes segmentation
  # offloads off its peer (veth_fix_features), so super-frames stop with --ring xdp.
  local feat
  [ "$FABRIC" = bridge ] || { log "fulcrum up (ring=${RING:-default}); fabric $FABRIC"; return 0; }
  feat=$(nsx br ethtool -k p-lb1 | awk -F': ' '/^(tcp-segmentation-offload|generic-segmentation-offload):/ {printf "%s=%s ", $1, $2}')
  log "fulcrum up (ring=${RING:-default}); bridge port p-lb1: $feat"
  echo "$feat" > "$TMP/p-lb1.features"
}
fulcrum_down() { # workload
  kill "$FUL" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$FUL" 2>/dev/null || break; sleep 0.1; done
  wait "$FUL" 2>/dev/null || true
  FUL=""
  # Batch sizes over the workload's runs (a binary without rings has no such counters).
  local line
  line=$(grep 'fulcrum::direct\] stopped:' "$TMP/fulcrum.log" | tail -1)
  : > "$TMP/fulcrum.log"
  kv() { tr ' ' '\n' <<<"$line" | awk -F= -v k="$1" '$1==k {print $2}'; }
  local rx bl tx tb sf
  rx=$(kv rx_frames); bl=$(kv rx_batches); tx=$(kv tx_packets); tb=$(kv tx_batches); sf=$(kv super_frames)
  if [ -n "$bl" ] && [ "${bl:-0}" -gt 0 ] && [ "${tb:-0}" -gt 0 ]; then
    awk -v w="$1" -v rx="$rx" -v bl="$bl" -v tx="$tx" -v tb="$tb" -v sf="$sf" 'BEGIN {
      printf "%s: %.1f frames per ring batch, %.1f frames per sendmmsg, %d super-frames\n", w, rx / bl, tx / tb, sf }' >> "$TMP/batches"
  fi
}

# user-mode CPU of a process in nanoseconds (utime, clock ticks; %.0f: mawk prints large
# integers in exponent form, which shell arithmetic refuses)
user_ns() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.0f\n", $12 * 1e9 / hz }' /proc/"$1"/stat; }
# on-CPU nanoseconds of every thread of a process
cpu_ns() { local t s=0; for t in /proc/"$1"/task/*/schedstat; do s=$((s + $(cut -d' ' -f1 "$t"))); done; echo "$s"; }
# interface packet counters: "rx tx"
pkts() { local d=/sys/class/net/eth0/statistics; nsx "$1" sh -c "echo \$(cat $d/rx_packets) \$(cat $d/tx_packets)"; }
# busy nanoseconds of the whole machine, every CPU (/proc/stat: all but idle and iowait)
machine_ns() { awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.0f\n", ($2 + $3 + $4 + $7 + $8 + $9) * 1e9 / hz }' /proc/stat; }

# The pps workload's frames: TCP ACKs of 1,024 flows (source ports 20000-21023) from the
# client to DST_IP:9 at DST_MAC; the tcp() and ipv4() helpers fill in lengths and checksums.
pps_conf() { # DST_MAC DST_IP
  cat <<EOF
{ eth(da=$1, sa=${MAC[client]}),
  ipv4(saddr=${IP[client]}, daddr=$2, ttl=64),
  tcp(sp=dinc(20000, 21023), dp=9, seq=1, aseq=1, ack, win=512) }
EOF
}
# Drop the pps frames at the node's netdev ingress, before its IP stack: no RSTs back, and
# the node's share of the work is the smallest a receiver can have.
pps_sink() { # host
  nsx "$1" nft -f - <<EOF
table netdev ppsdrop {
  chain sink {
    type filter hook ingress device eth0 priority 0;
    tcp dport 9 drop
  }
}
EOF
}

# run WORKLOAD TARGET(via|node)
#   -> "rate pps cpu_pct us_per_pkt user_us_per_pkt pps_per_core machine_us_per_pkt"
run_one() {
  local w=$1 target=$2 host
  if [ "$target" = via ]; then host=$VIP; else host=${IP[srv1]}; fi
  local meter=lb1 col=2
  [ "$target" = node ] && meter=srv1 col=1
  local p0 p1 c0=0 c1=0 u0=0 u1=0 m0 m1 t0 t1 out rate
  p0=$(pkts $meter | cut -d' ' -f$col)
  local o0 o1
  o0=$(pkts $meter | cut -d' ' -f1)
  m0=$(machine_ns)
  [ -n "$FUL" ] && c0=$(cpu_ns "$FUL") && u0=$(user_ns "$FUL")
  t0=$(date +%s%N)
  case $w in
    close) out=$(nsx client wrk -t1 -c50 -d"${DUR}s" -H 'Connection: close' "http://$host/" 2>&1)
           rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out") ;;
    ka)    out=$(nsx client wrk -t1 -c50 -d"${DUR}s" "http://$host/" 2>&1)
           rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out") ;;
    par)   out=$(nsx client wrk -t2 -c200 -d"${DUR}s" "http://$host/" 2>&1)
           rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out") ;;
    bulk)  out=$(nsx client iperf3 -c "$host" -p 5201 -t "$DUR" -f m 2>&1)
           rate=$(awk '/sender/ {print $7/1000}' <<<"$out") ;;
    pps)   local mac=${MAC[lb1]}
           [ "$target" = node ] && mac=${MAC[srv1]}
           pps_conf "$mac" "$VIP" > "$TMP/pps.cfg"
           # Bounded twice: a count no run reaches, and SIGINT after the duration.
           out=$(nsx client timeout -s INT "$DUR" trafgen --dev eth0 --cpus 1 --conf "$TMP/pps.cfg" \
                   -n $((DUR * 5000000)) 2>&1) || true
           rate=pps ;;
  esac
  t1=$(date +%s%N)
  p1=$(pkts $meter | cut -d' ' -f$col)
  o1=$(pkts $meter | cut -d' ' -f1)
  m1=$(machine_ns)
  [ -n "$FUL" ] && c1=$(cpu_ns "$FUL") && u1=$(user_ns "$FUL")
  local secs pkts cpu
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print (b-a)/1e9}')
  pkts=$((p1 - p0))
  cpu=$((c1 - c0))
  [ -n "$rate" ] || { log "$w $target failed: $out"; rate=0; }
  if [ "$rate" = pps ]; then
    rate=$((pkts * 1000000000 / (t1 - t0)))
    # What reached the meter's host, against what it sent on (via: lb1 RX vs TX).
    log "pps $target: offered $(((o1 - o0) * 1000000000 / (t1 - t0)))/s, forwarded ${rate}/s"
  fi
  awk -v r="$rate" -v p="$pkts" -v s="$secs" -v c="$cpu" -v u="$((u1 - u0))" -v m="$((m1 - m0))" 'BEGIN {
    pps = p / s; printf "%s %.0f %.1f %s %s %s %s\n", r, pps, 100 * c / 1e9 / s,
      (p > 0 && c > 0) ? sprintf("%.2f", c / 1e3 / p) : "-", (p > 0 && c > 0) ? sprintf("%.2f", u / 1e3 / p) : "-",
      (p > 0 && c > 0) ? sprintf("%.0f", p / (c / 1e9)) : "-", (p > 0) ? sprintf("%.2f", m / 1e3 / p) : "-" }'
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

log "lab $LAB up"
lab_up_direct
nginx_up srv1
nginx_up srv2
sleep 0.5
RESULTS="$TMP/results"
: > "$RESULTS"
if [ "$WIRE" = 1 ]; then
  [ "$FABRIC" = bridge ] || { echo "--wire needs --fabric bridge" >&2; exit 2; }
  nsx br ethtool -K p-lb1 tx off tso off gso off >/dev/null
  log "wire emulation: tx-csum/TSO/GSO off on p-lb1"
fi
[[ " $WORKLOADS " == *" pps "* ]] && { pps_sink srv1; pps_sink srv2; }
for w in $WORKLOADS; do
  if [ "$w" = bulk ]; then
    fulcrum_up 5201 "${IP[srv1]}:5201"
  elif [ "$w" = pps ]; then
    fulcrum_up 9 "${IP[srv1]}:9" "${IP[srv2]}:9"
  elif [ "$NODES" = 1 ]; then
    # One node behind the distributor, the one the straight path reaches: the two paths
    # then differ by the hop alone (with two, the via path runs a third busy process,
    # the second nginx, on the same two cores).
    fulcrum_up 80 "${IP[srv1]}:80"
  else
    fulcrum_up 80 "${IP[srv1]}:80" "${IP[srv2]}:80"
  fi
  [ "$w" = pps ] || nsx client curl -s --max-time 3 -o /dev/null "http://$VIP/" || true
  for target in via node; do
    for r in $(seq "$REPS"); do
      nsx client ip neigh flush dev eth0 2>/dev/null || true
      res=$(run_one $w $target)
      log "$w $target rep $r: $res"
      echo "$w $target $res" >> "$RESULTS"
    done
  done
  fulcrum_down "$w"
done

unit() { case $1 in close) echo "connections/s" ;; ka|par) echo "requests/s" ;; bulk) echo "Gbit/s" ;; pps) echo "packets/s" ;; esac; }
{
  echo "| workload | path | rate (median) | unit | packets/s | fulcrum CPU % | CPU µs/packet (all) | of which user µs/packet | packets/s per fulcrum core | machine CPU µs/packet |"
  echo "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"
  for w in $WORKLOADS; do
    for target in via node; do
      sel() { awk -v w=$w -v t=$target -v k="$1" '$1==w && $2==t {print $k}' "$RESULTS"; }
      rate=$(sel 3 | median); pps=$(sel 4 | median); cpu=$(sel 5 | median)
      us=$( [ "$target" = via ] && sel 6 | median || echo "-")
      uu=$( [ "$target" = via ] && sel 7 | median || echo "-")
      ppc=$( [ "$target" = via ] && sel 8 | median || echo "-")
      mc=$(sel 9 | median)
      [ "$target" = node ] && cpu="-"
      label=$([ "$target" = via ] && echo "client → VIP → fulcrum → node" || echo "client → node (no distributor)")
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$w" "$label" "$rate" "$(unit $w)" "$pps" "$cpu" "$us" "$uu" "$ppc" "$mc"
    done
  done
  echo
  [ -s "$TMP/batches" ] && { echo; sed 's/^/- /' "$TMP/batches"; echo; }
  [ -s "$TMP/p-lb1.features" ] && echo "bridge port toward lb1 with fulcrum up: $(cat "$TMP/p-lb1.features")"
  echo "reps=$REPS duration=${DUR}s workers=$WORKERS ring=${RING:-default} host-sink=${SINK:-default} offload=${OFFLOAD:-default} nodes=$NODES fabric=$FABRIC wire=$([ "$WIRE" = 1 ] && echo on || echo off); packets/s = lb1 eth0 TX (via: packets forwarded) or srv1 eth0 RX (node); medians."
  echo "CPU = fulcrum's threads on-CPU (schedstat), user = its utime; on veth the kernel work of the send"
  echo "(bridge + the receiving node's TCP stack) runs in fulcrum's thread and is counted in 'all'."
  echo "machine = busy time of every CPU (/proc/stat) per packet of the row: the whole cost of the path, whoever is billed."
} | tee "${OUT:-/dev/null}"
