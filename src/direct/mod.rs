//! Direct-routing mode (`fulcrum serve --mode direct`): LVS-DR from userspace.
//!
//! The data path, for a client connecting to `VIP:PORT`:
//!
//! ```text
//!  client ──ARP "who has VIP?"──▶ distributor   (arp: worker 0 answers with our MAC)
//!  client ──SYN to VIP, dst MAC = ours──▶ distributor
//!        packet ring (crate::sys::ring, one per worker, one PACKET_FANOUT_HASH group)
//!        → frame::process, in place in the ring → director: flow table + scheduler
//!        (Maglev hashes the 5-tuple) + neighbour table (node MACs learned by ARP)
//!        → rewrite dst MAC = node, src MAC = ours → sendmmsg out of the ring, with the
//!          frame's virtio-net header (super-frames whole, partial checksums partial)
//!  distributor ──same IP packet──▶ node        (node holds the VIP on lo, arp_ignore=1)
//!  node ──SYN-ACK from VIP, straight──▶ client (the distributor never sees replies)
//! ```
//!
//! The distributor only touches client → server frames, and only their Ethernet header
//! (plus the TCP checksum when the kernel left it partial and no virtio-net header can
//! carry it on): no TCP state, no copy of the payload, replies bypass it. Hence the
//! topology limits: nodes on the same L2 segment, the same port on the nodes as on the
//! VIP.
//!
//! IPv4 and IPv6 alike, and several `VIP:PORT`s per process (repeated `--listen`), all
//! forwarded to the one pool: IPv6 VIPs are answered by neighbour discovery instead of
//! ARP (RFC 4861), IPv6 nodes' MACs learned by it. A node is one MAC whatever the family
//! of the address it is configured by, so it serves every VIP it holds on its loopback.
//!
//! Threads: `--workers N` data-plane workers ([`worker`]), each with its own ring,
//! neighbour socket (ARP, NS/NA), director and flow table; the kernel's fanout hash
//! keeps a flow on one worker, so nothing on the packet path is shared but relaxed
//! counters (added once per batch). Every worker sees every ARP and neighbour-discovery
//! frame on its own neighbour socket and learns node MACs itself. Health, control and
//! failover stay on the control thread, acting on the shared pool and [`DirectShared`].
//!
//! Modules: [`frame`] (pure per-frame verdict), [`arp`] (responder, neighbour table,
//! frame builders), [`ndp`] (the same for IPv6), [`flow`] (flow table), [`director`]
//! (the stateful decider), [`stats`] (counters, per worker and in total, and switches
//! shared with the control plane), [`filter`] (what the kernel lets through to the ring
//! and to the neighbour socket, and the XDP program of `--ring xdp`), [`startup`] (checks
//! that refuse a setup that cannot work), [`rx`] (a worker's receive path: packet ring or
//! AF_XDP socket), [`worker`] (the mio threads).
//!
//! What this mode deliberately does not do: 802.1Q tags on the interface it reads (give
//! it the VLAN device, `--interface eth0.100`: the kernel strips the tag and delivers
//! only that VLAN's frames; tagged frames seen on the parent are dropped), IP options,
//! IPv6 extension headers, fragments, or segmenting super-frames itself (the kernel does
//! it on send; a super-frame that is not TCP of its frame's family is dropped and
//! counted).

pub(crate) mod arp;
pub(crate) mod director;
mod filter;
pub mod flow;
pub mod frame;
pub mod ndp;
mod offload;
mod rx;
/// The AF_XDP path's packet type and checksum status, read from the frame (public for
/// the `direct_frame` fuzz target).
pub use rx::xsk_aux;
pub(crate) mod startup;
pub mod stats;
pub(crate) mod worker;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Poll, Waker};

pub use stats::{DirectControl, DirectShared, DirectStats, DropReason};

use crate::runtime::{Shared, Workers};
use crate::scheduler::Scheduler;
use crate::sys::packet::PacketSocket;
use crate::sys::ring::{Fanout, PacketRing, RingConfig, RingVersion};

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
    /// The receive ring's layout.
    pub ring: RingLayout,
    /// Attach the host sink ([`filter::sink`]).
    pub host_sink: bool,
    /// Forward established flows in the kernel ([`offload`]).
    pub offload: bool,
}

/// The receive ring's layout (`--ring`), see [`crate::sys::ring::RingVersion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingLayout {
    /// TPACKET_V2: a slot per frame, woken per frame (the default: lowest latency).
    #[default]
    Slots,
    /// TPACKET_V3: blocks handed over when full or after a timer tick.
    Blocks,
    /// AF_XDP (experimental): an XDP program redirects the VIPs' frames to one AF_XDP
    /// socket per worker (one receive queue each), forwarded in place from its UMEM.
    Xdp,
}

/// Default flow-table capacity (about 40 MiB with its index), shared out among workers.
pub const DEFAULT_MAX_FLOWS: usize = 262_144;
/// ARP socket receive buffer: ARP is rare and small.
const ARP_RCVBUF: usize = 256 << 10;
/// `--ring blocks`, per worker: 64 blocks of 256 KiB (16 MiB). A block holds a few
/// hundred full-size frames or at least three 64 KiB super-frames; a partly filled block
/// is handed over after [`RING_BLOCK_TIMEOUT_MS`].
const RING_BLOCK_SIZE: u32 = 256 << 10;
const RING_BLOCKS: u32 = 64;
/// The kernel's shortest block timeout (rounded up to one timer tick: 4 ms at HZ=250).
const RING_BLOCK_TIMEOUT_MS: u32 = 1;
/// `--ring slots` (the default), per worker: 448 slots of about 66 KiB, so a 64 KiB
/// super-frame fits in one (32 MiB mapped; bursts beyond 448 frames are dropped by the kernel
/// and counted as ring drops).
const RING_FRAMES: u32 = 448;

/// Checks the host, opens the sockets and starts `workers` direct-mode data-plane
/// threads (one `PACKET_FANOUT_HASH` group when more than one), which report into
/// `direct` (shared with the control plane's stats and failover). Errors are one line
/// for the operator (see [`startup`]).
pub fn start(
    cfg: &DirectConfig,
    nodes: &[crate::pool::NodeSpec],
    shared: &Arc<Shared>,
    direct: &Arc<DirectShared>,
    workers: usize,
    on_exit: Arc<Waker>,
) -> io::Result<Workers> {
    let (iface, all) = startup::interface(&cfg.interface).map_err(io::Error::other)?;
    startup::check(&iface, &all, &cfg.listen, nodes).map_err(io::Error::other)?;
    let vips = frame::Vips::new(&cfg.listen);
    let v4: Vec<Ipv4Addr> = vips.v4_addrs().collect();
    let v6: Vec<Ipv6Addr> = vips.v6_addrs().collect();
    let workers = workers.max(1);
    let filter = filter::data(&v4, &v6);
    let mut vnet_hdr = true;
    let rings = if cfg.ring == RingLayout::Xdp {
        vnet_hdr = false;
        open_xsks(&iface, &v4, &v6, workers)?
    } else {
        open_rings(&iface, &filter, cfg.ring, workers, &mut vnet_hdr)?
    };
    if !vnet_hdr && cfg.ring != RingLayout::Xdp {
        if let Some((gro, lro)) = startup::offloads_merging(&iface.name) {
            if gro || lro {
                warn!(target: "fulcrum::direct",
                    "interface={} gro={} lro={}: merged super-frames cannot be forwarded without PACKET_VNET_HDR and will be dropped (counted as oversize); run: ethtool -K {} gro off lro off",
                    iface.name, gro, lro, iface.name);
            }
        }
    }
    direct.workers.store(workers, Ordering::Release);
    // Attached once the rings exist (they see every frame before it); held by the
    // workers, so it goes when the data plane does.
    // (With `--ring xdp` the XDP program already takes the frames from the stack.)
    // The sink goes at the tail of the tcx chain and the fast path's classifier at its
    // head ([`offload`]): sink first, so a head attach that did not work would show.
    let sink = if cfg.host_sink && cfg.ring != RingLayout::Xdp {
        attach_sink(iface.index, &v4, &v6).map(Arc::new)
    } else {
        None
    };
    let fast = if cfg.offload && cfg.ring != RingLayout::Xdp {
        attach_fastpath(cfg, &iface, &rings, &v4, &v6)
    } else {
        None
    };
    let sink_word = match (cfg.ring, sink.is_some()) {
        (RingLayout::Xdp, _) => "xdp",
        (_, true) => "tcx",
        (_, false) => "off",
    };
    let offload_word = if fast.is_some() { "tcx" } else { "off" };
    let local = frame::Local {
        mac: iface.mac,
        vips,
        max_frame: iface.mtu + 14,
        answer_arp: true,
    };
    let listen: Vec<String> = cfg.listen.iter().map(|l| l.to_string()).collect();
    info!(target: "fulcrum::direct",
        "interface={} index={} mac={} mtu={} vip={} max_flows={} idle_timeout={:?} workers={} vnet_hdr={} ring={:?} host_sink={} offload={}",
        iface.name, iface.index, iface.mac, iface.mtu, listen.join(","), cfg.max_flows, cfg.timeouts.idle,
        workers, vnet_hdr, cfg.ring, sink_word, offload_word);
    let per_worker_flows = (cfg.max_flows / workers).max(1);
    let mut out = Workers {
        wakers: Vec::with_capacity(workers),
        threads: Vec::with_capacity(workers),
        listener_fds: Vec::new(),
    };
    for (index, ring) in rings.into_iter().enumerate() {
        let arp = PacketSocket::open(iface.index, &filter::neighbour(), ARP_RCVBUF)
            .map_err(|e| io::Error::other(startup::StartupError::Socket(e)))?;
        // Solicitations for an IPv6 VIP go to its solicited-node group: a NIC filtering
        // multicast would drop them unless the group's MAC is on its list (RFC 4861
        // §7.2.1). Every worker's neighbour socket joins (each learns from what it sees).
        for ip in &v6 {
            let mac = ndp::multicast_mac(ndp::solicited_node(*ip));
            if let Err(e) = crate::sys::packet::add_multicast(
                &arp,
                iface.index,
                [mac.0, mac.1, mac.2, mac.3, mac.4, mac.5],
            ) {
                warn!(target: "fulcrum::direct", "vip={ip}: cannot join its solicited-node group ({e}); neighbour solicitations may not arrive");
            }
        }
        let (nodes, _) = shared.pool.snapshot();
        let director = director::Director::new(
            nodes,
            Scheduler::new(shared.scheduler_kind(), Arc::clone(&shared.sched_shared)),
            {
                let t =
                    flow::FlowTable::new(per_worker_flows, cfg.timeouts, Arc::clone(&shared.stats));
                match fast {
                    Some(_) => t.with_offload(offload::OFFLOAD_AFTER),
                    None => t,
                }
            },
            arp::NeighbourTiming::default(),
            Arc::clone(direct),
            Arc::clone(&shared.stats),
            Instant::now(),
        );
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), worker::WAKER)?);
        let w = worker::Worker::new(
            index,
            poll,
            ring,
            arp,
            Arc::clone(shared),
            Arc::clone(direct),
            director,
            local.clone(),
            (iface.ipv4, iface.ipv6),
            fast.clone(),
        )?;
        let on_exit = Arc::clone(&on_exit);
        let sink = sink.clone();
        let t = std::thread::Builder::new()
            .name(format!("fulcrum-direct-{index}"))
            .spawn(move || {
                let _sink = sink;
                let r = w.run();
                let _ = on_exit.wake();
                r
            })?;
        out.wakers.push(waker);
        out.threads.push(t);
    }
    Ok(out)
}

/// Sets up the kernel fast path ([`offload`]) for the rings: its maps (room for the
/// flow table's capacity), its classifier at the head of the interface's tcx chain, and
/// its filter on every ring. Best effort, like the sink:
/// without it every frame takes the ring, as before; said once at start-up.
fn attach_fastpath(
    cfg: &DirectConfig,
    iface: &startup::Interface,
    rings: &[rx::Rx],
    v4: &[Ipv4Addr],
    v6: &[Ipv6Addr],
) -> Option<Arc<offload::Fastpath>> {
    use std::os::fd::AsRawFd;
    let flows = u32::try_from(cfg.max_flows).unwrap_or(u32::MAX);
    let attached =
        offload::Fastpath::attach(iface.index, iface.mac, flows, v4, v6).and_then(|fast| {
            for ring in rings {
                fast.filter_ring(ring.as_raw_fd())?;
            }
            Ok(fast)
        });
    match attached {
        Ok(fast) => Some(Arc::new(fast)),
        Err(e) => {
            // A ring whose filter was already replaced keeps working: with nothing ever
            // installed, its filter takes what the classic one did.
            info!(target: "fulcrum::direct",
                "offload not attached ({e}): every frame takes the ring");
            None
        }
    }
}

/// Loads and attaches [`filter::sink`] on the interface's tcx ingress hook. Best effort:
/// without it (a kernel before 6.6, no CAP_BPF) the host stack routes and drops each
/// forwarded frame itself, as it always did; said once at start-up.
fn attach_sink(ifindex: u32, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Option<crate::sys::bpf::Link> {
    use crate::sys::bpf::{Link, Program};
    let attached = filter::sink(v4, v6)
        .map_err(io::Error::other)
        .and_then(|insns| Program::load_classifier("fulcrum_sink", &insns))
        .and_then(|prog| Link::attach_tcx_ingress(&prog, ifindex));
    match attached {
        Ok(link) => Some(link),
        Err(e) => {
            info!(target: "fulcrum::direct",
                "host sink not attached ({e}): the kernel routes and drops each forwarded frame itself (more CPU per frame, same forwarding)");
            None
        }
    }
}

/// `--ring slots|blocks`: one packet ring per worker (one fanout group when several);
/// clears `vnet_hdr` when the kernel refuses `PACKET_VNET_HDR`.
fn open_rings(
    iface: &startup::Interface,
    filter: &[libc::sock_filter],
    layout: RingLayout,
    workers: usize,
    vnet_hdr: &mut bool,
) -> io::Result<Vec<rx::Rx>> {
    // The first ring of several starts a fanout group whose id the kernel picks unique
    // in the namespace (two distributors, or a reload's new process next to the old
    // one, never share a group); the others join it.
    let mut fanout = (workers > 1).then_some(Fanout::New);
    let mut rings = Vec::with_capacity(workers);
    for _ in 0..workers {
        let version = match layout {
            RingLayout::Blocks => RingVersion::V3 {
                block_size: RING_BLOCK_SIZE,
                blocks: RING_BLOCKS,
                block_timeout_ms: RING_BLOCK_TIMEOUT_MS,
            },
            RingLayout::Slots | RingLayout::Xdp => RingVersion::V2 {
                frames: RING_FRAMES,
            },
        };
        let ring_cfg = |vnet_hdr| RingConfig {
            version,
            vnet_hdr,
            fanout,
        };
        let ring = match PacketRing::open(iface.index, filter, ring_cfg(*vnet_hdr)) {
            Ok(r) => r,
            // Without PACKET_VNET_HDR on a ring (older kernels) the data plane still
            // works; only super-frames are dropped again.
            Err(e) if *vnet_hdr && rings.is_empty() && e.raw_os_error() != Some(libc::EPERM) => {
                warn!(target: "fulcrum::direct", "PACKET_VNET_HDR on the receive ring refused ({e}): super-frames will be dropped");
                *vnet_hdr = false;
                PacketRing::open(iface.index, filter, ring_cfg(false))
                    .map_err(|e| io::Error::other(startup::StartupError::Socket(e)))?
            }
            Err(e) => return Err(io::Error::other(startup::StartupError::Socket(e))),
        };
        if fanout == Some(Fanout::New) {
            let id = ring
                .fanout_id()
                .map_err(|e| io::Error::other(startup::StartupError::Socket(e)))?;
            fanout = Some(Fanout::Join(id));
        }
        if !ring.ignores_outgoing {
            warn!(target: "fulcrum::direct", "PACKET_IGNORE_OUTGOING not supported (Linux < 4.20): outgoing copies are dropped by packet type instead");
        }
        rings.push(rx::Rx::Ring(ring));
    }
    Ok(rings)
}

/// `--ring xdp`: one AF_XDP socket per worker on receive queues `0..workers`, an
/// `XSKMAP` pointing at them and the XDP program that redirects the VIPs' frames there,
/// attached by a link that the last worker to stop closes.
fn open_xsks(
    iface: &startup::Interface,
    v4: &[Ipv4Addr],
    v6: &[Ipv6Addr],
    workers: usize,
) -> io::Result<Vec<rx::Rx>> {
    use crate::sys::bpf::{Link, Program, XskMap, XDP_PASS};
    use crate::sys::xsk::XskSocket;
    use std::os::fd::AsRawFd;
    let err = |m: String| io::Error::other(startup::StartupError::Xdp(m));
    let queues = startup::rx_queues(&iface.name);
    if workers > queues as usize {
        return Err(err(format!(
            "--workers {workers} needs as many receive queues; {} has {queues} (one AF_XDP socket per queue: use --workers {queues}, or give the interface more queues)",
            iface.name
        )));
    }
    let map = XskMap::new(workers as u32).map_err(|e| err(format!("XSKMAP: {e}")))?;
    let mut socks = Vec::with_capacity(workers);
    for q in 0..workers as u32 {
        let s = XskSocket::open(iface.index, q)
            .map_err(|e| err(format!("AF_XDP socket on {} queue {q}: {e}", iface.name)))?;
        map.set(q, s.as_raw_fd())
            .map_err(|e| err(format!("XSKMAP entry {q}: {e}")))?;
        socks.push(s);
    }
    let insns = filter::xdp(v4, v6, map.as_raw_fd(), XDP_PASS).map_err(err)?;
    let prog = Program::load_xdp("fulcrum_vip", &insns).map_err(|e| err(format!("{e}")))?;
    let link = Link::attach_xdp(&prog, iface.index).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EBUSY) | Some(libc::EEXIST) => {
                " (another XDP program is attached: ip link show; ip link set dev IFACE xdp off)"
            }
            Some(libc::EINVAL) | Some(libc::ERANGE) => {
                " (the driver refuses: MTU too large for XDP, or LRO on)"
            }
            _ => "",
        };
        err(format!("attach to {}: {e}{hint}", iface.name))
    })?;
    let attach = Arc::new(rx::XdpAttach {
        _link: link,
        _prog: prog,
        _map: map,
    });
    Ok(socks
        .into_iter()
        .map(|sock| rx::Rx::Xsk {
            sock,
            mac: iface.mac,
            _attach: Arc::clone(&attach),
            last: Default::default(),
        })
        .collect())
}

/// Flow timeouts for an idle timeout chosen by the operator.
pub fn timeouts(idle: Duration) -> flow::Timeouts {
    flow::Timeouts {
        idle,
        ..flow::Timeouts::default()
    }
}
