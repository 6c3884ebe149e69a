//! Direct-routing mode (`fulcrum serve --mode direct`): LVS-DR from userspace.
//!
//! The data path, for a client connecting to `VIP:PORT`:
//!
//! ```text
//!  client ──ARP "who has VIP?"──▶ distributor   (arp: we answer with our MAC)
//!  client ──SYN to VIP, dst MAC = ours──▶ distributor
//!        AF_PACKET socket (socket) → frame::process → director: flow table + scheduler
//!        (Maglev hashes the 5-tuple) + neighbour table (node MACs learned by ARP)
//!        → rewrite dst MAC = node, src MAC = ours; complete a partial TCP checksum
//!  distributor ──same IP packet──▶ node        (node holds the VIP on lo, arp_ignore=1)
//!  node ──SYN-ACK from VIP, straight──▶ client (the distributor never sees replies)
//! ```
//!
//! The distributor only touches client → server frames, and only their Ethernet header
//! (plus the TCP checksum when the kernel left it partial): no TCP state, no copy of the
//! payload, replies bypass it. Hence the topology limits: nodes on the same L2 segment,
//! the same port on the nodes as on the VIP.
//!
//! IPv4 and IPv6 alike, and several `VIP:PORT`s per process (repeated `--listen`), all
//! forwarded to the one pool: IPv6 VIPs are answered by neighbour discovery instead of
//! ARP (RFC 4861), IPv6 nodes' MACs learned by it. A node is one MAC whatever the family
//! of the address it is configured by, so it serves every VIP it holds on its loopback.
//!
//! Modules: [`frame`] (pure per-frame verdict), [`arp`] (responder, neighbour table,
//! frame builders), [`ndp`] (the same for IPv6), [`flow`] (flow table), [`director`] (the stateful decider), [`stats`]
//! (counters and switches shared with the control plane), [`filter`] (what the kernel
//! lets through to the AF_PACKET socket, [`crate::sys::packet`]), [`startup`] (checks that refuse a setup that cannot work), [`worker`] (the
//! mio thread). Health checks, the control interface and stats are the control plane's
//! components acting on the shared pool, exactly as in proxy mode.
//!
//! What this mode deliberately does not do: 802.1Q tags on the interface it reads (give
//! it the VLAN device, `--interface eth0.100`: the kernel strips the tag and delivers
//! only that VLAN's frames; tagged frames seen on the parent are dropped), IP options,
//! IPv6 extension headers, fragments, or re-segmenting GRO/TSO super-frames (they are
//! dropped and counted: turn GRO/LRO off on the interface; a real wire never carries
//! them).

pub(crate) mod arp;
pub(crate) mod director;
mod filter;
pub mod flow;
pub mod frame;
pub mod ndp;
pub(crate) mod startup;
pub mod stats;
pub(crate) mod worker;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Poll, Waker};

pub use stats::{DirectControl, DirectShared, DirectStats, DropReason};

use crate::runtime::{Shared, Workers};
use crate::scheduler::Scheduler;
use crate::sys::packet::PacketSocket;

/// Direct-mode settings, validated from the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectConfig {
    /// Interface the VIPs' frames arrive on and leave by.
    pub interface: String,
    /// The virtual IPs and their service ports (IPv4 and IPv6, at least one).
    pub listen: Vec<SocketAddr>,
    /// Flow table capacity.
    pub max_flows: usize,
    /// Flow timeouts.
    pub timeouts: flow::Timeouts,
}

/// Default flow-table capacity (about 55 MiB with its index and keys; IPv6-sized keys
/// doubled the index).
pub const DEFAULT_MAX_FLOWS: usize = 262_144;
/// Socket receive buffer: bursts of a few thousand full-size frames.
const RCVBUF: usize = 8 << 20;

/// Checks the host, opens the socket and starts the direct-mode worker thread, which
/// reports into `direct` (shared with the control plane's stats and failover).
/// Errors are one line for the operator (see [`startup`]).
pub fn start(
    cfg: &DirectConfig,
    nodes: &[crate::pool::NodeSpec],
    shared: &Arc<Shared>,
    direct: &Arc<DirectShared>,
    on_exit: Arc<Waker>,
) -> io::Result<Workers> {
    let (iface, all) = startup::interface(&cfg.interface).map_err(io::Error::other)?;
    startup::check(&iface, &all, &cfg.listen, nodes).map_err(io::Error::other)?;
    match startup::offloads_merging(&iface.name) {
        Some((gro, lro)) if gro || lro => warn!(target: "fulcrum::direct",
            "interface={} gro={} lro={}: merged super-frames cannot be forwarded and will be dropped (counted as oversize); run: ethtool -K {} gro off lro off",
            iface.name, gro, lro, iface.name),
        _ => {}
    }
    let vips = frame::Vips::new(&cfg.listen);
    let v4: Vec<Ipv4Addr> = vips.v4_addrs().collect();
    let v6: Vec<Ipv6Addr> = vips.v6_addrs().collect();
    let sock = PacketSocket::open(iface.index, &filter::program(&v4, &v6), RCVBUF)
        .map_err(|e| io::Error::other(startup::StartupError::Socket(e)))?;
    // Solicitations for an IPv6 VIP go to its solicited-node group: a NIC filtering
    // multicast would drop them unless the group's MAC is on its list (RFC 4861 §7.2.1).
    for ip in &v6 {
        let mac = ndp::multicast_mac(ndp::solicited_node(*ip));
        if let Err(e) = crate::sys::packet::add_multicast(
            &sock,
            iface.index,
            [mac.0, mac.1, mac.2, mac.3, mac.4, mac.5],
        ) {
            warn!(target: "fulcrum::direct", "vip={ip}: cannot join its solicited-node group ({e}); neighbour solicitations may not arrive");
        }
    }
    if !sock.ignores_outgoing {
        warn!(target: "fulcrum::direct", "PACKET_IGNORE_OUTGOING not supported (Linux < 4.20): outgoing copies are dropped by packet type instead");
    }
    let (nodes, _) = shared.pool.snapshot();
    let now = Instant::now();
    let director = director::Director::new(
        nodes,
        Scheduler::new(shared.scheduler_kind(), Arc::clone(&shared.sched_shared)),
        flow::FlowTable::new(cfg.max_flows, cfg.timeouts, Arc::clone(&shared.stats)),
        arp::NeighbourTiming::default(),
        Arc::clone(direct),
        Arc::clone(&shared.stats),
        now,
    );
    let local = frame::Local {
        mac: iface.mac,
        vips,
        max_frame: iface.mtu + 14,
        answer_arp: true,
    };
    let listen: Vec<String> = cfg.listen.iter().map(|l| l.to_string()).collect();
    info!(target: "fulcrum::direct",
        "interface={} index={} mac={} mtu={} vip={} max_flows={} idle_timeout={:?}",
        iface.name, iface.index, iface.mac, iface.mtu, listen.join(","), cfg.max_flows, cfg.timeouts.idle);
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), worker::WAKER)?);
    let w = worker::Worker::new(
        poll,
        sock,
        Arc::clone(shared),
        Arc::clone(direct),
        director,
        local,
        (iface.ipv4, iface.ipv6),
    )?;
    let t = std::thread::Builder::new()
        .name("fulcrum-direct".into())
        .spawn(move || {
            let r = w.run();
            let _ = on_exit.wake();
            r
        })?;
    Ok(Workers {
        wakers: vec![waker],
        threads: vec![t],
        listener_fds: Vec::new(),
    })
}

/// Flow timeouts for an idle timeout chosen by the operator.
pub fn timeouts(idle: Duration) -> flow::Timeouts {
    flow::Timeouts {
        idle,
        ..flow::Timeouts::default()
    }
}
