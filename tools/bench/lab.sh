# lab.sh -- the network-namespace lab of the benchmark scripts (sourced, not run).
#
# Before sourcing, set LAB (a namespace prefix unique to this run, e.g. "fb$$"), HOSTS
# (host names) and the associative arrays IP and MAC (host -> address in 10.99.0.0/24,
# host -> MAC). The lab is one bridge namespace "$LAB-br" and one namespace per host,
# each with eth0 on the bridge; these addresses exist only inside the namespaces.
#
#   ns HOST                the namespace's name
#   nsx HOST CMD...        run CMD in HOST's namespace
#   kill_ns HOST           SIGKILL every process in HOST's namespace (by PID), wait
#   lab_up [SYSCTL=V ...]  build it; extra sysctls are set in every host namespace
#   lab_down               end every process left in it and delete every namespace
#
# The bridge namespace has br_netfilter's iptables hook off: with it on, the bridge
# silently drops frames whose IP checksum or length is bad (see docs/direct-routing.md).
#
# FABRIC=macvlan (default: bridge) builds the same segment from macvlan devices in
# bridge mode on one device in the bridge namespace instead of veth pairs on a
# Linux bridge: a frame crosses to its host in one step, with no bridge, forwarding
# database or br_netfilter hook on the way -- closer to what a switch costs the hosts'
# CPUs (nothing). Only the benchmarks use it.

ns() { echo "$LAB-$1"; }
nsx() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }

kill_ns() {
  local n p
  n=$(ns "$1")
  for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do [ -z "$(ip netns pids "$n" 2>/dev/null)" ] && return 0; sleep 0.02; done
}

lab_up() {
  local h n kv
  ip netns add "$(ns br)"
  ip -n "$(ns br)" link set lo up
  if [ "${FABRIC:-bridge}" = macvlan ]; then
    # The lower device: one end of a veth pair (what it sends out is dropped at the
    # other end; a dummy device would do, where the kernel has one).
    ip -n "$(ns br)" link add fabric0 type veth peer name fabric1
    ip -n "$(ns br)" link set fabric1 up
    ip -n "$(ns br)" link set fabric0 up
  else
    ip -n "$(ns br)" link add br0 type bridge stp_state 0 mcast_snooping 0
    ip -n "$(ns br)" link set br0 up
    nsx br sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
  fi
  for h in $HOSTS; do
    n=$(ns "$h")
    ip netns add "$n"
    for kv in net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
              net.ipv4.ip_forward=0 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
              net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0 "$@"; do
      ip netns exec "$n" sysctl -qw "$kv"
    done
    if [ "${FABRIC:-bridge}" = macvlan ]; then
      ip -n "$(ns br)" link add "m-$h" link fabric0 type macvlan mode bridge
      ip -n "$(ns br)" link set "m-$h" netns "$n"
      ip -n "$n" link set "m-$h" name eth0
    else
      ip -n "$(ns br)" link add "p-$h" type veth peer name eth0 netns "$n"
      ip -n "$(ns br)" link set "p-$h" master br0
      ip -n "$(ns br)" link set "p-$h" up
    fi
    ip -n "$n" link set eth0 address "${MAC[$h]}"
    ip -n "$n" link set lo up
    ip -n "$n" link set eth0 up
    ip -n "$n" addr add "${IP[$h]}/24" dev eth0
  done
}

lab_down() {
  local h
  for h in br $HOSTS; do
    ip netns list | awk '{print $1}' | grep -qx "$(ns "$h")" || continue
    kill_ns "$h"
    ip netns del "$(ns "$h")"
  done
}
