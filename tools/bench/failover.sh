#!/usr/bin/env bash
# Failover gap: fulcrum's failover vs keepalived (VRRP, unicast peers), same lab, same kill.
#
#   tools/bench/failover.sh [RUNS]        (root; RUNS per scenario, default 3, at most 10)
#
# Lab (tools/bench/lab.sh; namespaces fb<PID>-*, created here and always deleted on exit):
# client 10.99.0.10, lb1 .11 (priority 200), lb2 .12 (priority 100), srv1 .21 (nginx),
# VIP 10.99.0.100/24 — addresses that exist only inside these namespaces.
# Scenario fulcrum: `fulcrum serve --vip ...` on lb1 and lb2 (proxy on VIP:80).
# Scenario keepalived: keepalived (VRRP unicast) moves the VIP; a plain `fulcrum serve` on
# 0.0.0.0:80 proxies, so the data path is the same.
# One run: lb1 serves, then every process in lb1's namespace is killed with SIGKILL (the
# node "dies"; its kernel keeps the VIP, as after a crash), and the client retries
# `curl -m 0.2` (10 ms apart) until a request succeeds through lb2. Gap = kill -> that
# success. Every loop is bounded; prints a markdown table.
# Debugging: KEEP_LOGS=1 keeps the lab directory (daemon logs); ONLY=LABEL ONLY_KIND=
# fulcrum|keepalived ONLY_INT=100ms|0.1 runs a single scenario.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${1:-3}
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 10 ] || { echo "RUNS must be 1..10" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
for c in keepalived nginx curl ip; do
  command -v $c >/dev/null || { echo "missing $c (apt-get install keepalived nginx curl iproute2)" >&2; exit 1; }
done
BIN=target/release/fulcrum
[ -x $BIN ] || cargo build --release --quiet

LAB=fb$$
DIR=$(mktemp -d /tmp/fulcrum-failover-bench.XXXXXX)
VIP=10.99.0.100
HOSTS="client lb1 lb2 srv1"
declare -A IP=([client]=10.99.0.10 [lb1]=10.99.0.11 [lb2]=10.99.0.12 [srv1]=10.99.0.21)
declare -A MAC=([client]=02:99:00:00:00:10 [lb1]=02:99:00:00:00:11 [lb2]=02:99:00:00:00:12 [srv1]=02:99:00:00:00:21)
PIDS=() # started with `ip netns exec CMD &`, which execs: $! is CMD's own PID
. tools/bench/lab.sh

cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait "${PIDS[@]}" 2>/dev/null || true # reap them quietly
  lab_down
  if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

up() {
  lab_up
  mkdir -p "$DIR/nginx"
  cat >"$DIR/nginx/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log warn;
events { worker_connections 512; }
http { access_log off; client_body_temp_path $DIR/nginx/b; proxy_temp_path $DIR/nginx/p;
  fastcgi_temp_path $DIR/nginx/f; uwsgi_temp_path $DIR/nginx/u; scgi_temp_path $DIR/nginx/s;
  server { listen ${IP[srv1]}:80; location / { return 200 "srv1\n"; } } }
EOF
  ip netns exec "$(ns srv1)" nginx -p "$DIR/nginx" -e "$DIR/nginx/error.log" -c "$DIR/nginx/nginx.conf" &
  PIDS+=($!)
  (umask 077; head -c 32 /dev/urandom | base64 >"$DIR/ha.key")
}

start_fulcrum_ha() { # lb priority peer interval
  ip netns exec "$(ns "$1")" env RUST_LOG=info $BIN serve --listen $VIP:80 --backend ${IP[srv1]}:80 --workers 1 \
    --vip $VIP/24 --interface eth0 --peer "$3" --ha-key-file "$DIR/ha.key" --priority "$2" \
    --advert-interval "$4" >>"$DIR/$1.log" 2>&1 &
  PIDS+=($!)
}

start_keepalived() { # lb priority peer state advert_int version
  local conf="$DIR/keepalived-$1.conf"
  cat >"$conf" <<EOF
global_defs {
  router_id $1
  vrrp_version $6
}
vrrp_instance VI_1 {
  state $4
  interface eth0
  virtual_router_id 51
  priority $2
  advert_int $5
  unicast_src_ip ${IP[$1]}
  unicast_peer { $3 }
  virtual_ipaddress { $VIP/24 dev eth0 }
}
EOF
  ip netns exec "$(ns "$1")" keepalived -n -l -P -f "$conf" -p "$DIR/ka-$1.pid" -r "$DIR/ka-$1-vrrp.pid" \
    -c "$DIR/ka-$1-chk.pid" -b "$DIR/ka-$1-bfd.pid" >>"$DIR/$1.log" 2>&1 &
  PIDS+=($!)
  ip netns exec "$(ns "$1")" env RUST_LOG=warn $BIN serve --listen 0.0.0.0:80 --backend ${IP[srv1]}:80 --workers 1 \
    >>"$DIR/$1-proxy.log" 2>&1 &
  PIDS+=($!)
}

has_vip() { ip -n "$(ns "$1")" -4 -o addr show dev eth0 | grep -q " $VIP/"; }

reset() {
  kill_ns lb1; kill_ns lb2
  for h in lb1 lb2; do ip -n "$(ns $h)" addr del $VIP/24 dev eth0 2>/dev/null || true; done
  ip -n "$(ns client)" neigh flush all
  rm -f "$DIR"/ka-*.pid
}

# One run of a scenario; prints the gap in ms, or "fail".
run_once() { # kind interval
  reset
  if [ "$1" = fulcrum ]; then
    start_fulcrum_ha lb1 200 ${IP[lb2]} "$2"
    start_fulcrum_ha lb2 100 ${IP[lb1]} "$2"
  else
    local ver=2; [ "$2" = 1 ] || ver=3
    start_keepalived lb1 200 ${IP[lb2]} MASTER "$2" $ver
    start_keepalived lb2 100 ${IP[lb1]} BACKUP "$2" $ver
  fi
  # Wait (bounded) for lb1 to hold the VIP and serve, and give lb2 time to settle.
  for _ in $(seq 100); do has_vip lb1 && ! has_vip lb2 && break; sleep 0.1; done
  sleep 1.5
  nsx client curl -s -o /dev/null -m 1 http://$VIP/ || { echo fail; return; }
  local t0; t0=$(date +%s%N)
  kill_ns lb1
  nsx client bash -c '
    end=$(( '"$t0"' + 15000000000 ))
    while [ "$(date +%s%N)" -lt "$end" ]; do
      if curl -s -o /dev/null -m 0.2 http://'"$VIP"'/; then date +%s%N; exit 0; fi
      sleep 0.01
    done
    echo fail' | { read -r t1; if [ "$t1" = fail ]; then echo fail; else echo $(( (t1 - t0) / 1000000 )); fi; }
}

scenario() { # label kind interval
  local gaps=() g
  for _ in $(seq "$RUNS"); do
    g=$(run_once "$2" "$3"); gaps+=("$g")
  done
  local sorted; sorted=$(printf '%s\n' "${gaps[@]}" | grep -v fail | sort -n || true)
  local n; n=$(printf '%s\n' "$sorted" | grep -c . || true)
  local med="-" min="-" max="-"
  if [ "$n" -gt 0 ]; then
    med=$(printf '%s\n' "$sorted" | sed -n "$(( (n + 1) / 2 ))p")
    min=$(printf '%s\n' "$sorted" | head -1); max=$(printf '%s\n' "$sorted" | tail -1)
  fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$3" "$med" "$min" "$max" "$(IFS=,; echo "${gaps[*]}")"
}

up
echo "Failover gap: kill -9 of every process on the primary -> first successful request via the backup"
echo "(${RUNS} runs each; $(date -u +%Y-%m-%d), $(uname -r), $(nproc) CPUs, keepalived $(keepalived --version 2>&1 | head -1 | awk '{print $2}'))"
echo
echo "| failover | advert interval | median ms | min ms | max ms | runs ms |"
echo "|---|---|---:|---:|---:|---|"
if [ -n "${ONLY:-}" ]; then scenario "$ONLY" ${ONLY_KIND} ${ONLY_INT}; exit 0; fi
scenario "fulcrum (default)" fulcrum 100ms
scenario "fulcrum (fastest)" fulcrum 10ms
scenario "keepalived VRRPv2 (default)" keepalived 1
scenario "keepalived VRRPv3" keepalived 0.1
scenario "keepalived VRRPv3 (fastest)" keepalived 0.01
