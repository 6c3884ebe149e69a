//! Direct mode's counters: frames seen, packets and bytes forwarded, ARP activity, flow
//! table events, and drops by reason.
//!
//! Written by the direct-mode worker with relaxed atomic adds (one thread writes, so
//! they are uncontended), read by stats and metrics through [`DirectShared`], which the
//! serve loop creates and hands to the worker, the control plane and failover. Per-node packets and bytes go to the pool's
//! [`crate::pool::NodeCounters`] (`bytes_in`), connections per node to its `active` and
//! `total` counters, as in proxy mode. This file decides nothing.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the direct-mode data plane shares with the control plane.
#[derive(Debug, Default)]
pub struct DirectShared {
    /// Counters (packets, bytes, ARP, flows, drops by reason), all workers together.
    pub stats: DirectStats,
    /// Switches (answer ARP).
    pub control: DirectControl,
    /// Per-worker counters, the first [`DirectShared::workers`] of them in use.
    pub per_worker: PerWorker,
    /// Data-plane workers running (set once at start).
    pub workers: std::sync::atomic::AtomicUsize,
    /// Workers that have stopped (the last one logs the totals).
    pub finished: std::sync::atomic::AtomicUsize,
}

/// The fixed array of [`WorkerStats`] (fixed so [`DirectShared`] is built before the
/// worker count is known, and never reallocated under a reader).
#[derive(Debug)]
pub struct PerWorker(pub [WorkerStats; MAX_WORKER_STATS]);

impl Default for PerWorker {
    fn default() -> Self {
        PerWorker(std::array::from_fn(|_| WorkerStats::default()))
    }
}

/// One per-worker counter as Prometheus shows it (a family labelled `worker`).
#[derive(Debug)]
pub struct WorkerCounter {
    /// Prometheus family name.
    pub metric: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Prometheus help text.
    pub help: &'static str,
    read: fn(&WorkerStats) -> &AtomicU64,
}

/// Every per-worker counter, in the order of [`DirectShared::worker_values`].
pub const WORKER_COUNTERS: [WorkerCounter; 5] = [
    WorkerCounter {
        metric: "fulcrum_direct_worker_frames_received_total",
        kind: "counter",
        help: "Frames received, by data-plane worker.",
        read: |w| &w.rx_frames,
    },
    WorkerCounter {
        metric: "fulcrum_direct_worker_packets_forwarded_total",
        kind: "counter",
        help: "Packets forwarded, by data-plane worker.",
        read: |w| &w.tx_packets,
    },
    WorkerCounter {
        metric: "fulcrum_direct_worker_syns_total",
        kind: "counter",
        help: "SYNs forwarded (flows opened), by data-plane worker.",
        read: |w| &w.syns,
    },
    WorkerCounter {
        metric: "fulcrum_direct_worker_flows",
        kind: "gauge",
        help: "Flows in each data-plane worker's table.",
        read: |w| &w.flows,
    },
    WorkerCounter {
        metric: "fulcrum_direct_worker_ring_ready",
        kind: "gauge",
        help:
            "Receive-ring fill: blocks (V3) or slots (V2) filled and waiting, by data-plane worker.",
        read: |w| &w.ring_ready,
    },
];

impl DirectShared {
    /// Each worker's counters, in [`WORKER_COUNTERS`] order.
    pub fn worker_values(&self) -> Vec<[u64; WORKER_COUNTERS.len()]> {
        self.worker_stats()
            .iter()
            .map(|w| std::array::from_fn(|i| (WORKER_COUNTERS[i].read)(w).load(Ordering::Relaxed)))
            .collect()
    }

    /// The counters of the workers in use.
    pub fn worker_stats(&self) -> &[WorkerStats] {
        let n = self.workers.load(Ordering::Relaxed).min(MAX_WORKER_STATS);
        &self.per_worker.0[..n]
    }
}

/// Why a received frame was not forwarded. Every variant has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the headers it claims (Ethernet, IPv4, TCP, ARP).
    Truncated,
    /// IPv4 total length or TCP data offset inconsistent with the frame.
    BadLength,
    /// IPv4 version is not 4 or header length below 20 bytes.
    BadHeader,
    /// IPv4 header checksum wrong.
    BadChecksum,
    /// An IPv4 fragment (MF set or non-zero offset): no ports to route on.
    Fragment,
    /// IPv4 options present (not supported; also a classic evasion vector).
    IpOptions,
    /// Neither IPv4, IPv6 nor ARP (or a VLAN-tagged frame). The name predates IPv6
    /// support and is kept so dashboards keep working.
    NotIpv4,
    /// IPv4 but not TCP.
    NotTcp,
    /// IPv4 to another address than the VIP.
    NotForVip,
    /// TCP to the VIP but another port than the service's.
    WrongPort,
    /// Not addressed to our MAC (broadcast, multicast, another host's).
    NotForUs,
    /// Source MAC is ours: a frame we sent, seen again.
    OwnFrame,
    /// Packet type OUTGOING: another socket's transmission on this host (pitfall #7).
    Outgoing,
    /// Longer than MTU + 14: a GRO/TSO super-frame we cannot send (pitfall #3).
    Oversize,
    /// Source address that no client can have (multicast, broadcast, zero, loopback, the VIP).
    Martian,
    /// ARP with the wrong hardware/protocol type or lengths, or an unknown opcode.
    ArpMalformed,
    /// ARP not for the VIP and not from a node.
    ArpIgnored,
    /// Another host claims the VIP in ARP (a peer distributor took over, or a misconfigured node).
    VipConflict,
    /// A new flow and no node is usable.
    NoNode,
    /// The chosen node's MAC address is not known yet (an ARP request is on its way).
    NoNeighbour,
    /// Not a SYN, flow unknown, and the scheduler cannot route statelessly (not Maglev).
    NoFlow,
    /// A new flow, the flow table is full and the scheduler cannot route statelessly.
    TableFull,
    /// A new flow while distribution is disabled.
    Disabled,
    /// A new flow while shutting down.
    Draining,
    /// The send itself failed (queue full, interface gone).
    SendFailed,
    /// A super-frame whose GSO type cannot be sent on (not TCP over IPv4).
    GsoUnsupported,
    /// IPv6 with an extension header (or a fragment header) before TCP: not parsed
    /// (RFC 8200 §4; hop-by-hop, routing and destination options are evasion vectors).
    Ipv6ExtHeader,
    /// A neighbour solicitation/advertisement that fails RFC 4861 §7.1 validation
    /// (hop limit ≠ 255, checksum, code, options, multicast target).
    NdpMalformed,
    /// ICMPv6 that is not ND for a VIP or from a node (and IPv6 that is not TCP/ICMPv6).
    NdpIgnored,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 29;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Truncated,
        DropReason::BadLength,
        DropReason::BadHeader,
        DropReason::BadChecksum,
        DropReason::Fragment,
        DropReason::IpOptions,
        DropReason::NotIpv4,
        DropReason::NotTcp,
        DropReason::NotForVip,
        DropReason::WrongPort,
        DropReason::NotForUs,
        DropReason::OwnFrame,
        DropReason::Outgoing,
        DropReason::Oversize,
        DropReason::Martian,
        DropReason::ArpMalformed,
        DropReason::ArpIgnored,
        DropReason::VipConflict,
        DropReason::NoNode,
        DropReason::NoNeighbour,
        DropReason::NoFlow,
        DropReason::TableFull,
        DropReason::Disabled,
        DropReason::Draining,
        DropReason::SendFailed,
        DropReason::GsoUnsupported,
        DropReason::Ipv6ExtHeader,
        DropReason::NdpMalformed,
        DropReason::NdpIgnored,
    ];

    /// Position in [`DropReason::ALL`] and in the counter array.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name used in logs, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadLength => "bad_length",
            DropReason::BadHeader => "bad_header",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Fragment => "fragment",
            DropReason::IpOptions => "ip_options",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::NotTcp => "not_tcp",
            DropReason::NotForVip => "not_for_vip",
            DropReason::WrongPort => "wrong_port",
            DropReason::NotForUs => "not_for_us",
            DropReason::OwnFrame => "own_frame",
            DropReason::Outgoing => "outgoing",
            DropReason::Oversize => "oversize",
            DropReason::Martian => "martian",
            DropReason::ArpMalformed => "arp_malformed",
            DropReason::ArpIgnored => "arp_ignored",
            DropReason::VipConflict => "vip_conflict",
            DropReason::NoNode => "no_node",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::NoFlow => "no_flow",
            DropReason::TableFull => "table_full",
            DropReason::Disabled => "disabled",
            DropReason::Draining => "draining",
            DropReason::SendFailed => "send_failed",
            DropReason::GsoUnsupported => "gso_unsupported",
            DropReason::Ipv6ExtHeader => "ipv6_ext_header",
            DropReason::NdpMalformed => "ndp_malformed",
            DropReason::NdpIgnored => "ndp_ignored",
        }
    }

    /// Is this drop a sign of a malformed or hostile frame (as opposed to ordinary
    /// traffic that is simply not ours, or a local condition)?
    pub fn is_malformed(self) -> bool {
        matches!(
            self,
            DropReason::Truncated
                | DropReason::BadLength
                | DropReason::BadHeader
                | DropReason::BadChecksum
                | DropReason::Fragment
                | DropReason::IpOptions
                | DropReason::Martian
                | DropReason::ArpMalformed
                | DropReason::Ipv6ExtHeader
                | DropReason::NdpMalformed
        )
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of the direct-mode data plane, shared with the control plane.
#[derive(Debug, Default)]
pub struct DirectStats {
    /// Frames received on the interface (after the socket filter).
    pub rx_frames: AtomicU64,
    /// Bytes of those frames.
    pub rx_bytes: AtomicU64,
    /// Packets forwarded to nodes.
    pub tx_packets: AtomicU64,
    /// Bytes forwarded to nodes (IPv4 packet length, Ethernet header excluded).
    pub tx_bytes: AtomicU64,
    /// Partial TCP checksums completed in userspace (`TP_STATUS_CSUMNOTREADY`).
    pub csum_completed: AtomicU64,
    /// ARP replies sent for the VIP.
    pub arp_replies: AtomicU64,
    /// ARP requests sent to resolve nodes.
    pub arp_requests: AtomicU64,
    /// Gratuitous ARPs sent for the VIP.
    pub garps: AtomicU64,
    /// Flows created.
    pub flows_created: AtomicU64,
    /// Flows removed (closed after linger, idle, evicted).
    pub flows_removed: AtomicU64,
    /// Flows in the table now (all states).
    pub flows: AtomicU64,
    /// Flows evicted to make room (oldest closing or half-open first).
    pub flows_evicted: AtomicU64,
    /// Packets routed by Maglev without a flow entry because the table was full.
    pub stateless: AtomicU64,
    /// Receive-loop batches that hit their cap (more frames were waiting).
    pub batch_cap_hits: AtomicU64,
    /// GRO/TSO super-frames forwarded whole (the kernel segments them toward the node).
    pub super_frames: AtomicU64,
    /// Partial checksums passed on in the virtio-net header instead of completed here.
    pub csum_offloaded: AtomicU64,
    /// Receive-ring batches taken from the kernel (a V3 block, or a run of V2 slots).
    pub rx_batches: AtomicU64,
    /// Frames in those batches (frames per batch = this / `rx_batches`).
    pub rx_batch_frames: AtomicU64,
    /// `sendmmsg` calls (send batches).
    pub tx_batches: AtomicU64,
    /// Frames handed to those calls (batch size = this / `tx_batches`).
    pub tx_batch_frames: AtomicU64,
    /// Frames the kernel dropped because a receive ring was full.
    pub ring_drops: AtomicU64,
    /// Ring blocks whose descriptors did not add up (handed back early).
    pub ring_bad_blocks: AtomicU64,
    /// Neighbour advertisements sent in answer to solicitations for an IPv6 VIP.
    pub nd_adverts: AtomicU64,
    /// Neighbour solicitations sent to resolve IPv6 nodes.
    pub nd_solicits: AtomicU64,
    /// Unsolicited neighbour advertisements sent for IPv6 VIPs.
    pub unsolicited_nas: AtomicU64,
    /// Flows installed in the kernel fast path (`--offload on`).
    pub offload_installs: AtomicU64,
    /// Flows withdrawn from it (closing, or idle).
    pub offload_withdrawals: AtomicU64,
    /// Installs the kernel refused (its map full): the flow stayed on the ring.
    pub offload_failures: AtomicU64,
    /// Frames the fast path forwarded, counted when their flow was withdrawn.
    pub offload_frames: AtomicU64,
    /// Their IP bytes.
    pub offload_bytes: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
}

/// Most data-plane workers whose own counters are kept (`--workers` above this still
/// works; the extra workers count only into the totals).
pub const MAX_WORKER_STATS: usize = 64;

/// One data-plane worker's own counters, so the operator (and a test) sees how the
/// fanout spread the traffic. Each is written by its worker only.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Frames received by this worker.
    pub rx_frames: AtomicU64,
    /// Packets this worker forwarded.
    pub tx_packets: AtomicU64,
    /// SYNs (without ACK) this worker forwarded: the flows it opened.
    pub syns: AtomicU64,
    /// Flows in this worker's table now.
    pub flows: AtomicU64,
    /// Receive-ring fill at the last look (a gauge): blocks (TPACKET_V3) or frame
    /// slots (TPACKET_V2) filled by the kernel and not yet handed back.
    pub ring_ready: AtomicU64,
}

/// How one direct-mode counter is shown: its `show stats` key, its Prometheus family,
/// and where it lives. One table for both outputs, so no counter reaches one and not
/// the other.
#[derive(Debug)]
pub struct Counter {
    /// Key in `show stats` (text and JSON).
    pub key: &'static str,
    /// Prometheus family name.
    pub metric: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Prometheus help text.
    pub help: &'static str,
    read: fn(&DirectStats) -> &AtomicU64,
}

const fn counter(
    key: &'static str,
    metric: &'static str,
    kind: &'static str,
    help: &'static str,
    read: fn(&DirectStats) -> &AtomicU64,
) -> Counter {
    Counter {
        key,
        metric,
        kind,
        help,
        read,
    }
}

/// A [`Counter`] read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterValue {
    /// Key in `show stats`.
    pub key: &'static str,
    /// Prometheus family name.
    pub metric: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Prometheus help text.
    pub help: &'static str,
    /// The value.
    pub value: u64,
}

/// Every direct-mode counter except drops (which are by reason).
pub const COUNTERS: [Counter; 30] = [
    counter(
        "direct_rx_frames",
        "fulcrum_direct_frames_received_total",
        "counter",
        "Frames received on the interface.",
        |s| &s.rx_frames,
    ),
    counter(
        "direct_rx_bytes",
        "fulcrum_direct_bytes_received_total",
        "counter",
        "Bytes of the frames received on the interface.",
        |s| &s.rx_bytes,
    ),
    counter(
        "direct_tx_packets",
        "fulcrum_direct_packets_forwarded_total",
        "counter",
        "Packets forwarded to nodes.",
        |s| &s.tx_packets,
    ),
    counter(
        "direct_tx_bytes",
        "fulcrum_direct_bytes_forwarded_total",
        "counter",
        "IPv4 bytes forwarded to nodes.",
        |s| &s.tx_bytes,
    ),
    counter(
        "direct_csum_completed",
        "fulcrum_direct_checksums_completed_total",
        "counter",
        "Partial TCP checksums completed in userspace.",
        |s| &s.csum_completed,
    ),
    counter(
        "direct_arp_replies",
        "fulcrum_direct_arp_replies_total",
        "counter",
        "ARP replies sent for the VIP.",
        |s| &s.arp_replies,
    ),
    counter(
        "direct_arp_requests",
        "fulcrum_direct_arp_requests_total",
        "counter",
        "ARP requests sent to resolve nodes.",
        |s| &s.arp_requests,
    ),
    counter(
        "direct_garps",
        "fulcrum_direct_garps_total",
        "counter",
        "Gratuitous ARPs sent for the VIP.",
        |s| &s.garps,
    ),
    counter(
        "direct_flows",
        "fulcrum_direct_flows",
        "gauge",
        "Flows in the flow table.",
        |s| &s.flows,
    ),
    counter(
        "direct_flows_created",
        "fulcrum_direct_flows_created_total",
        "counter",
        "Flows created.",
        |s| &s.flows_created,
    ),
    counter(
        "direct_flows_removed",
        "fulcrum_direct_flows_removed_total",
        "counter",
        "Flows removed (closed after linger, idle, evicted).",
        |s| &s.flows_removed,
    ),
    counter(
        "direct_flows_evicted",
        "fulcrum_direct_flows_evicted_total",
        "counter",
        "Flows evicted from a full table.",
        |s| &s.flows_evicted,
    ),
    counter(
        "direct_stateless",
        "fulcrum_direct_stateless_total",
        "counter",
        "Packets routed by Maglev without a flow entry (table full).",
        |s| &s.stateless,
    ),
    counter(
        "direct_batch_cap_hits",
        "fulcrum_direct_batch_cap_hits_total",
        "counter",
        "Receive batches that stopped at their cap with frames waiting.",
        |s| &s.batch_cap_hits,
    ),
    counter(
        "direct_super_frames",
        "fulcrum_direct_super_frames_forwarded_total",
        "counter",
        "GRO/TSO super-frames forwarded whole (segmented by the kernel toward the node).",
        |s| &s.super_frames,
    ),
    counter(
        "direct_csum_offloaded",
        "fulcrum_direct_checksums_offloaded_total",
        "counter",
        "Partial TCP checksums passed on in the virtio-net header.",
        |s| &s.csum_offloaded,
    ),
    counter(
        "direct_rx_batches",
        "fulcrum_direct_ring_batches_total",
        "counter",
        "Receive-ring batches taken from the kernel (a V3 block or a run of V2 slots).",
        |s| &s.rx_batches,
    ),
    counter(
        "direct_rx_batch_frames",
        "fulcrum_direct_ring_batch_frames_total",
        "counter",
        "Frames in the receive-ring batches taken (divide by batches: frames per batch).",
        |s| &s.rx_batch_frames,
    ),
    counter(
        "direct_tx_batches",
        "fulcrum_direct_send_batches_total",
        "counter",
        "sendmmsg calls made.",
        |s| &s.tx_batches,
    ),
    counter(
        "direct_tx_batch_frames",
        "fulcrum_direct_send_batch_frames_total",
        "counter",
        "Frames handed to sendmmsg (divide by batches: batch size).",
        |s| &s.tx_batch_frames,
    ),
    counter(
        "direct_ring_drops",
        "fulcrum_direct_ring_drops_total",
        "counter",
        "Frames the kernel dropped because a receive ring was full.",
        |s| &s.ring_drops,
    ),
    counter(
        "direct_ring_bad_blocks",
        "fulcrum_direct_ring_bad_blocks_total",
        "counter",
        "Receive-ring blocks whose descriptors did not add up.",
        |s| &s.ring_bad_blocks,
    ),
    counter(
        "direct_nd_adverts",
        "fulcrum_direct_nd_adverts_total",
        "counter",
        "Neighbour advertisements sent for IPv6 VIPs.",
        |s| &s.nd_adverts,
    ),
    counter(
        "direct_nd_solicits",
        "fulcrum_direct_nd_solicits_total",
        "counter",
        "Neighbour solicitations sent to resolve IPv6 nodes.",
        |s| &s.nd_solicits,
    ),
    counter(
        "direct_unsolicited_nas",
        "fulcrum_direct_unsolicited_nas_total",
        "counter",
        "Unsolicited neighbour advertisements sent for IPv6 VIPs.",
        |s| &s.unsolicited_nas,
    ),
    counter(
        "direct_offload_installs",
        "fulcrum_direct_offload_installs_total",
        "counter",
        "Flows installed in the kernel fast path.",
        |s| &s.offload_installs,
    ),
    counter(
        "direct_offload_withdrawals",
        "fulcrum_direct_offload_withdrawals_total",
        "counter",
        "Flows withdrawn from the kernel fast path (closing or idle).",
        |s| &s.offload_withdrawals,
    ),
    counter(
        "direct_offload_failures",
        "fulcrum_direct_offload_failures_total",
        "counter",
        "Flow installs the kernel refused (fast-path map full): the flow stayed on the ring.",
        |s| &s.offload_failures,
    ),
    counter(
        "direct_offload_frames",
        "fulcrum_direct_offload_frames_total",
        "counter",
        "Frames the kernel fast path forwarded, counted when their flow was withdrawn.",
        |s| &s.offload_frames,
    ),
    counter(
        "direct_offload_bytes",
        "fulcrum_direct_offload_bytes_total",
        "counter",
        "IP bytes the kernel fast path forwarded, counted when their flow was withdrawn.",
        |s| &s.offload_bytes,
    ),
];

impl DirectStats {
    /// Counts one drop.
    #[inline]
    pub fn drop(&self, r: DropReason) {
        self.drops[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Drops counted for one reason.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r.index()].load(Ordering::Relaxed)
    }

    /// Every reason with a non-zero count, as `(name, count)`.
    pub fn nonzero_drops(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.drops(*r)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// All drops, whatever the reason.
    #[cfg(test)]
    pub fn total_drops(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.drops(*r)).sum()
    }

    /// Every counter, in [`COUNTERS`] order, with its current value.
    pub fn counters(&self) -> Vec<CounterValue> {
        COUNTERS
            .iter()
            .map(|c| CounterValue {
                key: c.key,
                metric: c.metric,
                kind: c.kind,
                help: c.help,
                value: (c.read)(self).load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Drops by reason, every reason in [`DropReason::ALL`] order (zeros included).
    pub fn drops_by_reason(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.drops(*r)))
            .collect()
    }

    /// One `key=value` line of the main counters, for logs.
    pub fn summary(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = format!(
            "rx_frames={} tx_packets={} tx_bytes={} csum_completed={} csum_offloaded={} super_frames={} rx_batches={} tx_batches={} flows={} flows_created={} arp_replies={} arp_requests={} garps={} nd_adverts={} nd_solicits={} unsolicited_nas={} stateless={} offload_installs={} offload_frames={} offload_bytes={}",
            l(&self.rx_frames),
            l(&self.tx_packets),
            l(&self.tx_bytes),
            l(&self.csum_completed),
            l(&self.csum_offloaded),
            l(&self.super_frames),
            l(&self.rx_batches),
            l(&self.tx_batches),
            l(&self.flows),
            l(&self.flows_created),
            l(&self.arp_replies),
            l(&self.arp_requests),
            l(&self.garps),
            l(&self.nd_adverts),
            l(&self.nd_solicits),
            l(&self.unsolicited_nas),
            l(&self.stateless),
            l(&self.offload_installs),
            l(&self.offload_frames),
            l(&self.offload_bytes),
        );
        for (name, n) in self.nonzero_drops() {
            s.push_str(&format!(" drop_{name}={n}"));
        }
        s
    }
}

/// Switches of the direct-mode data plane that other components may flip: the failover
/// component (answer ARP and neighbour solicitations for the VIPs only while master;
/// announce on takeover).
#[derive(Debug)]
pub struct DirectControl {
    /// Answer ARP requests and neighbour solicitations for the VIPs (false on a standby
    /// distributor).
    pub answer_arp: AtomicBool,
}

impl Default for DirectControl {
    fn default() -> Self {
        DirectControl {
            answer_arp: AtomicBool::new(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order_and_named_uniquely() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn counting_and_summary() {
        let s = DirectStats::default();
        s.drop(DropReason::Fragment);
        s.drop(DropReason::Fragment);
        s.drop(DropReason::NoNode);
        assert_eq!(s.drops(DropReason::Fragment), 2);
        assert_eq!(s.total_drops(), 3);
        assert_eq!(s.nonzero_drops(), vec![("fragment", 2), ("no_node", 1)]);
        assert!(s.summary().ends_with("drop_fragment=2 drop_no_node=1"));
    }
}
