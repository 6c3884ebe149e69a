//! A direct-mode data-plane thread: a mio loop around one packet ring and one ARP socket.
//!
//! (With `--ring xdp` the "ring" is an AF_XDP socket instead, behind the same
//! `next_batch` interface: see [`super::rx`]; what follows holds for both, minus the
//! virtio-net header, which AF_XDP does not have.)
//!
//! Frames to the VIP arrive through a packet ring
//! ([`PacketRing`](crate::sys::ring::PacketRing): TPACKET_V2 slots or V3 blocks,
//! `--ring`); each readiness event takes up to [`BATCHES_PER_TURN`] batches (a
//! block, or a run of up to 64 slots; then it yields to timers and flags, and comes back
//! with a zero poll timeout while frames remain: mio is edge-triggered), runs the pure
//! [`frame::process`] on each frame in place in the ring, and the ring sends the
//! rewritten frames in batches (`sendmmsg`) before handing them back.
//!
//! With `--workers N` there are N of these threads, whose rings form one
//! `PACKET_FANOUT_HASH` group: the kernel sends every packet of a flow to the same
//! worker, so each worker's flow table is its own and the packet path takes no lock.
//! ARP and neighbour discovery do not hash usefully (no ports; all of it would reach one
//! worker), so each worker also has a small neighbour socket outside the group (ARP,
//! ICMPv6 NS/NA): every worker sees every such frame and learns the nodes' MACs itself,
//! and only worker 0 answers ARP and neighbour solicitations for the VIPs and sends
//! gratuitous ARPs / unsolicited neighbour advertisements (one answer per request).
//!
//! Super-frames and partial checksums: the ring is opened with `PACKET_VNET_HDR` when
//! the kernel allows it, so each frame carries its `virtio_net_hdr`. A TCP/IPv4 GRO/TSO
//! super-frame (GSO type TCPV4, or TCPV6 for an IPv6 VIP) is forwarded whole with its header and the kernel (or the
//! NIC) segments it toward the node; a partial checksum (NEEDS_CSUM) travels on in the
//! header instead of being completed here. A super-frame of another GSO type is dropped
//! (`gso_unsupported`); a frame above MTU + 14 without GSO is dropped (`oversize`).
//!
//! Every [`TICK`] a worker expires flows, sends the ARP requests and neighbour
//! solicitations its neighbour tables ask for and (worker 0) pending gratuitous ARPs /
//! unsolicited neighbour advertisements (one per VIP address), and looks at the shared
//! flags. Like a
//! proxy worker, it refreshes its pool snapshot when the pool's generation changes and
//! its scheduler when the operator switches algorithms.
//!
//! Shutdown: on the shared `shutdown` flag new flows are refused and established ones
//! keep flowing until the table is empty; `cut_now` ends the loop at once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::arp::{self, ARP_FRAME_LEN};
use super::director::{Admission, Director, OffloadOp};
use super::frame::{self, Local, Verdict, TP_STATUS_CSUMNOTREADY};
use super::ndp::{self, ND_FRAME_LEN};
use super::offload::{Fastpath, Forwarded};
use super::rx::Rx;
use super::stats::{DropReason, WorkerStats};
use super::DirectShared;
use crate::runtime::Shared;
use crate::scheduler::{Scheduler, SchedulerKind};
use crate::sys::packet::PacketSocket;
use crate::sys::ring::{RxFrame, VnetHdr};

/// Woken by the control plane (flag changes).
pub const WAKER: Token = Token(0);
const RING: Token = Token(1);
const ARP: Token = Token(2);
/// Ring batches (blocks or runs of slots) handled per turn before looking at timers
/// and flags.
pub const BATCHES_PER_TURN: usize = 16;
/// ARP frames handled per turn.
const ARP_PER_TURN: usize = 64;
/// Housekeeping period.
pub const TICK: Duration = Duration::from_millis(100);
/// Flows expired per tick at most (the rest wait for the next tick).
const EXPIRE_BUDGET: usize = 20_000;
/// Gratuitous ARPs per announcement, and their spacing.
const GARP_COUNT: u32 = 3;
const GARP_SPACING: Duration = Duration::from_millis(200);
/// ARP receive buffer (ARP frames are 42–60 bytes; anything longer is cut and dropped).
const ARP_BUF: usize = 2048;
/// Largest super-frame forwarded: an IPv4 packet is at most 64 KiB.
const MAX_SUPER_FRAME: usize = 14 + 65_535;
/// TCP flags byte of an option-less IPv4/TCP frame (offset 14 + 20 + 13).
const TCP_FLAGS_AT: usize = 47;
/// At most one warning of each kind per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Frame counters of one block, added to the shared atomics once per block (so the
/// packet path does not write shared cache lines per frame).
#[derive(Default)]
struct Tally {
    rx_frames: u64,
    rx_bytes: u64,
    csum_completed: u64,
    csum_offloaded: u64,
    super_frames: u64,
    syns: u64,
}

/// One direct-mode data-plane worker (see the module documentation).
pub struct Worker {
    /// Position among the workers (0 answers ARP for the VIP).
    index: usize,
    poll: Poll,
    ring: Rx,
    arp: PacketSocket,
    shared: Arc<Shared>,
    direct: Arc<DirectShared>,
    director: Director,
    local: Local,
    /// `local` with room for a super-frame (what a GSO frame is checked against).
    local_super: Local,
    our_ip: Ipv4Addr,
    our_ip6: Ipv6Addr,
    generation: u64,
    kind: SchedulerKind,
    buf: Vec<u8>,
    due: Vec<Ipv4Addr>,
    due6: Vec<Ipv6Addr>,
    more_rx: bool,
    more_arp: bool,
    next_tick: Instant,
    garps_left: u32,
    next_garp: Instant,
    draining: bool,
    flows_reported: u64,
    last_send_warn: Option<Instant>,
    last_malformed_log: Option<Instant>,
    /// The kernel fast path (`--offload on`), shared by the workers.
    fast: Option<Arc<Fastpath>>,
}

impl Worker {
    /// Worker `index` over `poll` (whose waker the control plane holds), its ring and
    /// its neighbour socket. `own` = the interface's addresses our ARP requests and
    /// neighbour solicitations come from (IPv4, IPv6), when it has them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        poll: Poll,
        ring: Rx,
        arp: PacketSocket,
        shared: Arc<Shared>,
        direct: Arc<DirectShared>,
        director: Director,
        local: Local,
        own: (Option<Ipv4Addr>, Option<Ipv6Addr>),
        fast: Option<Arc<Fastpath>>,
    ) -> io::Result<Worker> {
        let (our_ip, our_ip6) = own;
        poll.registry()
            .register(&mut SourceFd(&ring.as_raw_fd()), RING, Interest::READABLE)?;
        poll.registry()
            .register(&mut SourceFd(&arp.as_raw_fd()), ARP, Interest::READABLE)?;
        let now = Instant::now();
        let generation = shared.pool.generation();
        let kind = director.scheduler().kind();
        Ok(Worker {
            index,
            poll,
            ring,
            arp,
            direct,
            shared,
            director,
            local_super: Local {
                max_frame: MAX_SUPER_FRAME,
                ..local.clone()
            },
            local,
            our_ip: our_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            // Without an IPv6 address the solicitation comes from :: (RFC 4861 §7.2.2
            // allows it only for DAD; nodes then answer to all-nodes, which we also see).
            our_ip6: our_ip6.unwrap_or(Ipv6Addr::UNSPECIFIED),
            generation,
            kind,
            buf: vec![0; ARP_BUF],
            due: Vec::with_capacity(16),
            due6: Vec::with_capacity(16),
            more_rx: true,
            more_arp: true,
            next_tick: now,
            garps_left: GARP_COUNT,
            next_garp: now,
            draining: false,
            flows_reported: 0,
            last_send_warn: None,
            last_malformed_log: None,
            fast,
        })
    }

    fn mine(&self) -> Option<&WorkerStats> {
        self.direct.per_worker.0.get(self.index)
    }

    /// Runs until shut down and drained (or cut). Returns how many open flows were cut.
    pub fn run(mut self) -> io::Result<u64> {
        let mut events = Events::with_capacity(64);
        // One announcer per setup: alone, worker 0 announces the VIP once at start;
        // in a failover pair the failover component announces at each takeover, and a
        // standby (not answering ARP) must not announce at all, now or later.
        if self.index != 0 || !self.direct.control.answer_arp.load(Ordering::Acquire) {
            self.garps_left = 0;
        }
        loop {
            let timeout = if self.more_rx || self.more_arp {
                Duration::ZERO
            } else {
                self.next_tick.saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    RING => self.more_rx = true,
                    ARP => self.more_arp = true,
                    _ => {}
                }
            }
            let now = Instant::now();
            self.director.set_now(now);
            self.refresh();
            if self.shared.cut_now.load(Ordering::Acquire) {
                self.withdraw_all();
                let cut = self.director.flows_mut().clear();
                self.finish();
                return Ok(cut);
            }
            if self.draining && self.director.flows().is_empty() {
                self.finish();
                return Ok(0);
            }
            if self.more_arp {
                self.arp_batch();
            }
            if self.more_rx {
                self.rx_batches();
            }
            if now >= self.next_tick {
                self.tick(now);
                self.next_tick = now + TICK;
            }
        }
    }

    /// Logs this worker's share; the last worker to stop logs the totals.
    fn finish(&mut self) {
        self.report_flows();
        if let Some(w) = self.mine() {
            let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
            info!(target: "fulcrum::direct", "worker {} stopped: worker_rx_frames={} worker_tx_packets={} worker_syns={}",
                self.index, l(&w.rx_frames), l(&w.tx_packets), l(&w.syns));
        }
        let done = self.direct.finished.fetch_add(1, Ordering::AcqRel) + 1;
        if done >= self.direct.workers.load(Ordering::Acquire) {
            info!(target: "fulcrum::direct", "stopped: {}", self.direct.stats.summary());
        }
    }

    /// Picks up pool, scheduler and flag changes.
    fn refresh(&mut self) {
        let g = self.shared.pool.generation();
        if g != self.generation {
            let (nodes, g) = self.shared.pool.snapshot();
            self.director.set_nodes(nodes);
            self.generation = g;
        }
        let kind = self.shared.scheduler_kind();
        if kind != self.kind {
            self.director
                .set_scheduler(Scheduler::new(kind, Arc::clone(&self.shared.sched_shared)));
            self.kind = kind;
        }
        if !self.draining && self.shared.shutdown.load(Ordering::Acquire) {
            self.draining = true;
            debug!(target: "fulcrum::direct", "worker={} draining {} flows", self.index, self.director.flows().len());
        }
        let admission = if self.draining {
            Admission::Draining
        } else if self.shared.enabled.load(Ordering::Relaxed) {
            Admission::Open
        } else {
            Admission::Disabled
        };
        self.director.set_admission(admission);
        self.local.answer_arp =
            self.index == 0 && self.direct.control.answer_arp.load(Ordering::Relaxed);
        self.local_super.answer_arp = self.local.answer_arp;
    }

    /// Takes up to [`BATCHES_PER_TURN`] ring batches.
    fn rx_batches(&mut self) {
        for _ in 0..BATCHES_PER_TURN {
            if !self.rx_batch() {
                self.more_rx = false;
                return;
            }
        }
        self.direct
            .stats
            .batch_cap_hits
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Handles one ring batch; false when the kernel had none for us.
    fn rx_batch(&mut self) -> bool {
        let mut t = Tally::default();
        let Worker {
            ring,
            director,
            local,
            local_super,
            direct,
            last_malformed_log,
            ..
        } = self;
        let stats = &direct.stats;
        let locals = (&*local, &*local_super);
        let rep =
            ring.next_batch(|f| on_frame(f, locals, director, &mut t, stats, last_malformed_log));
        let Some(rep) = rep else {
            return false;
        };
        let s = &self.direct.stats;
        s.rx_frames.fetch_add(t.rx_frames, Ordering::Relaxed);
        s.rx_bytes.fetch_add(t.rx_bytes, Ordering::Relaxed);
        s.csum_completed
            .fetch_add(t.csum_completed, Ordering::Relaxed);
        s.csum_offloaded
            .fetch_add(t.csum_offloaded, Ordering::Relaxed);
        s.super_frames.fetch_add(t.super_frames, Ordering::Relaxed);
        s.rx_batches.fetch_add(1, Ordering::Relaxed);
        s.rx_batch_frames
            .fetch_add(u64::from(rep.frames), Ordering::Relaxed);
        s.tx_batches
            .fetch_add(u64::from(rep.send_calls), Ordering::Relaxed);
        s.tx_batch_frames.fetch_add(
            u64::from(rep.sent + rep.too_big + rep.failed),
            Ordering::Relaxed,
        );
        s.tx_packets
            .fetch_add(u64::from(rep.sent), Ordering::Relaxed);
        // Counted as IPv4 bytes, as before the ring: the Ethernet headers come off.
        s.tx_bytes.fetch_add(
            rep.sent_bytes.saturating_sub(14 * u64::from(rep.sent)),
            Ordering::Relaxed,
        );
        if rep.malformed {
            s.ring_bad_blocks.fetch_add(1, Ordering::Relaxed);
        }
        for _ in 0..rep.too_big {
            s.drop(DropReason::Oversize);
        }
        for _ in 0..rep.failed {
            s.drop(DropReason::SendFailed);
        }
        if rep.too_big + rep.failed > 0 {
            let e = io::Error::from_raw_os_error(rep.last_errno);
            self.warn_send(&e);
        }
        if let Some(w) = self.mine() {
            w.rx_frames.fetch_add(t.rx_frames, Ordering::Relaxed);
            w.tx_packets
                .fetch_add(u64::from(rep.sent), Ordering::Relaxed);
            w.syns.fetch_add(t.syns, Ordering::Relaxed);
        }
        // Installed at once, not after the turn's last batch: every frame of a busy
        // flow that a later batch would copy is one the fast path could have taken.
        self.offload();
        true
    }

    /// Drains (up to [`ARP_PER_TURN`]) the ARP socket: learn node MACs, and on worker 0
    /// answer requests for the VIP.
    fn arp_batch(&mut self) {
        for _ in 0..ARP_PER_TURN {
            match self.arp.recv(&mut self.buf) {
                Ok((n, aux)) => self.on_arp(n, aux),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.more_arp = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(target: "fulcrum::direct", "receive: {e}");
                    self.more_arp = false;
                    return;
                }
            }
        }
    }

    fn on_arp(&mut self, n: usize, aux: frame::Aux) {
        let stats = &self.direct.stats;
        stats.rx_frames.fetch_add(1, Ordering::Relaxed);
        stats
            .rx_bytes
            .fetch_add(aux.wire_len as u64, Ordering::Relaxed);
        let frame = &mut self.buf[..n];
        match frame::process(frame, &aux, &self.local, &mut self.director) {
            Verdict::ArpReply { len } => {
                let buf = std::mem::take(&mut self.buf);
                if self.send_small(&buf[..len]) {
                    self.direct
                        .stats
                        .arp_replies
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.buf = buf;
            }
            Verdict::NeighbourAdvert(a) => {
                let mut na = [0u8; ND_FRAME_LEN];
                if let Some(len) = ndp::emit_answer(&mut na, self.local.mac, &a) {
                    if self.send_small(&na[..len]) {
                        self.direct.stats.nd_adverts.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Verdict::Learned => {}
            // The ARP socket's filter lets only ARP through; anything else is not ours.
            Verdict::Forward { .. } => self.direct.stats.drop(DropReason::NotIpv4),
            Verdict::Drop(r) => {
                self.direct.stats.drop(r);
                trace!(target: "fulcrum::direct", "drop reason={r} len={n}");
            }
        }
    }

    fn warn_send(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self
            .last_send_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            self.last_send_warn = Some(now);
            warn!(target: "fulcrum::direct", "send: {e}");
        }
    }

    fn send_small(&mut self, frame: &[u8]) -> bool {
        match self.arp.send(frame) {
            Ok(_) => true,
            Err(e) => {
                self.direct.stats.drop(DropReason::SendFailed);
                self.warn_send(&e);
                false
            }
        }
    }

    /// Brings the shared flow gauge (all workers) and this worker's own up to date.
    fn report_flows(&mut self) {
        let now = self.director.flows().len() as u64;
        let stats = &self.direct.stats;
        if now >= self.flows_reported {
            stats
                .flows
                .fetch_add(now - self.flows_reported, Ordering::Relaxed);
        } else {
            stats
                .flows
                .fetch_sub(self.flows_reported - now, Ordering::Relaxed);
        }
        self.flows_reported = now;
        if let Some(w) = self.mine() {
            w.flows.store(now, Ordering::Relaxed);
            w.ring_ready
                .store(self.ring.ready() as u64, Ordering::Relaxed);
        }
    }

    /// Withdraws every flow this worker installed (cut at shutdown), so the counters
    /// hold what the fast path forwarded.
    fn withdraw_all(&mut self) {
        let Some(fast) = self.fast.as_deref() else {
            return;
        };
        for (flow, node) in self.director.flows().offloaded() {
            if let Ok(Some(f)) = fast.withdraw(&flow) {
                fold(&self.direct.stats, &self.shared, node, f);
            }
        }
    }

    /// Carries out the fast-path changes the last batch called for (none: nothing to do,
    /// no system call).
    fn offload(&mut self) {
        let Some(fast) = self.fast.as_deref() else {
            return;
        };
        let stats = &self.direct.stats;
        for op in self.director.offload_ops() {
            match op {
                OffloadOp::Install { flow, mac } => match fast.install(&flow, mac) {
                    Ok(()) => {
                        stats.offload_installs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.offload_failures.fetch_add(1, Ordering::Relaxed);
                        debug!(target: "fulcrum::direct", "offload install refused: {e}");
                    }
                },
                OffloadOp::Withdraw { flow, node } => {
                    if let Ok(Some(f)) = fast.withdraw(&flow) {
                        fold(stats, &self.shared, &node, f);
                    }
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let removed = match self.fast.as_deref() {
            None => self.director.flows_mut().expire(now, EXPIRE_BUDGET),
            Some(fast) => {
                let (stats, shared) = (&self.direct.stats, &self.shared);
                let idle = self.director.flows().timeouts().idle.as_nanos();
                let mono = crate::sys::bpf::ktime_ns();
                self.director
                    .flows_mut()
                    .expire_offloaded(now, EXPIRE_BUDGET, &mut |flow, node| {
                        if let Ok(Some(f)) = fast.peek(flow) {
                            if f.last_ns > 0 && u128::from(mono.saturating_sub(f.last_ns)) < idle {
                                return true;
                            }
                        }
                        if let Ok(Some(f)) = fast.withdraw(flow) {
                            fold(stats, shared, node, f);
                        }
                        false
                    })
            }
        };
        let stats = Arc::clone(&self.direct);
        if removed > 0 {
            stats
                .stats
                .flows_removed
                .fetch_add(removed as u64, Ordering::Relaxed);
        }
        self.report_flows();
        if let Some(d) = self.ring.kernel_drops() {
            stats
                .stats
                .ring_drops
                .fetch_add(d.dropped, Ordering::Relaxed);
            stats
                .stats
                .ring_bad_blocks
                .fetch_add(d.invalid, Ordering::Relaxed);
        }
        self.due.clear();
        let mut due = std::mem::take(&mut self.due);
        self.director.neighbours_mut().due(now, &mut due);
        let mut frame = [0u8; ARP_FRAME_LEN];
        for ip in &due {
            let len = arp::build_request(&mut frame, self.local.mac, self.our_ip, *ip);
            if self.send_small(&frame[..len]) {
                stats.stats.arp_requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.due = due;
        let mut due6 = std::mem::take(&mut self.due6);
        due6.clear();
        self.director.neighbours6_mut().due(now, &mut due6);
        let mut nd = [0u8; ND_FRAME_LEN];
        for ip in &due6 {
            if let Some(len) = ndp::emit_ns(&mut nd, self.local.mac, self.our_ip6, *ip) {
                if self.send_small(&nd[..len]) {
                    stats.stats.nd_solicits.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.due6 = due6;
        if self.garps_left > 0 && now >= self.next_garp && self.local.answer_arp {
            let vips = self.local.vips.clone();
            for vip in vips.v4_addrs() {
                let len = arp::build_garp(&mut frame, self.local.mac, vip);
                if self.send_small(&frame[..len]) {
                    stats.stats.garps.fetch_add(1, Ordering::Relaxed);
                }
            }
            for vip in vips.v6_addrs() {
                if let Some(len) = ndp::emit_unsolicited_na(&mut nd, self.local.mac, vip) {
                    if self.send_small(&nd[..len]) {
                        stats.stats.unsolicited_nas.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            self.garps_left -= 1;
            self.next_garp = now + GARP_SPACING;
        }
    }
}

/// Adds what the fast path forwarded of a withdrawn flow to its node's counters, the
/// pool's and direct mode's.
fn fold(stats: &super::DirectStats, shared: &Shared, node: &crate::pool::Node, f: Forwarded) {
    stats.offload_withdrawals.fetch_add(1, Ordering::Relaxed);
    stats.offload_frames.fetch_add(f.packets, Ordering::Relaxed);
    stats.offload_bytes.fetch_add(f.bytes, Ordering::Relaxed);
    node.counters
        .packets_in
        .fetch_add(f.packets, Ordering::Relaxed);
    node.counters.bytes_in.fetch_add(f.bytes, Ordering::Relaxed);
    shared.stats.bytes_in.fetch_add(f.bytes, Ordering::Relaxed);
}

/// The verdict for one ring frame: what [`frame::process`] says, given what the
/// virtio-net header tells about super-frames and partial checksums. Returns the length
/// to send, if any. `locals`: the worker's [`Local`], and the same with room for a
/// super-frame.
fn on_frame<D: frame::Decide>(
    f: RxFrame<'_>,
    locals: (&Local, &Local),
    director: &mut D,
    t: &mut Tally,
    stats: &super::DirectStats,
    last_malformed_log: &mut Option<Instant>,
) -> Option<usize> {
    let RxFrame { data, aux, vnet } = f;
    t.rx_frames += 1;
    t.rx_bytes += aux.wire_len as u64;
    let mut aux = aux;
    let mut local = locals.0;
    let mut offloaded = false;
    let mut gso = false;
    if let Some(h) = vnet {
        // The partial checksum travels on in the header we send with the frame: the
        // kernel or NIC toward the node completes it, so it is not computed here.
        if h.flags & VnetHdr::NEEDS_CSUM != 0 && aux.status & TP_STATUS_CSUMNOTREADY != 0 {
            aux.status &= !TP_STATUS_CSUMNOTREADY;
            offloaded = true;
        }
        if h.gso_type != VnetHdr::GSO_NONE {
            // TCP over the frame's own family only: the kernel segments it on send.
            let ethertype = data
                .get(12..14)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            let tcp_of_family = match h.gso_type & !VnetHdr::GSO_ECN {
                VnetHdr::GSO_TCPV4 => ethertype == 0x0800,
                VnetHdr::GSO_TCPV6 => ethertype == 0x86dd,
                _ => false,
            };
            if !tcp_of_family || h.gso_size == 0 {
                stats.drop(DropReason::GsoUnsupported);
                return None;
            }
            // A TCP super-frame leaves whole; the kernel segments it.
            local = locals.1;
            gso = true;
        }
    }
    let n = data.len();
    match frame::process(data, &aux, local, director) {
        Verdict::Forward {
            len,
            csum_completed,
            ..
        } => {
            if csum_completed {
                t.csum_completed += 1;
            }
            if offloaded {
                t.csum_offloaded += 1;
            }
            if gso {
                t.super_frames += 1;
            }
            // SYN without ACK: a new flow on this worker (process checked the headers).
            if data.get(TCP_FLAGS_AT).is_some_and(|f| f & 0x12 == 0x02) {
                t.syns += 1;
            }
            Some(len)
        }
        // Neighbour frames arrive on the neighbour socket; the ring's filter keeps them
        // out, so one here is not answered (worker 0 answers on its own socket).
        Verdict::ArpReply { .. } | Verdict::NeighbourAdvert(_) | Verdict::Learned => None,
        Verdict::Drop(r) => {
            stats.drop(r);
            trace!(target: "fulcrum::direct", "drop reason={r} len={n}");
            if r.is_malformed() {
                let now = Instant::now();
                if last_malformed_log.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                    *last_malformed_log = Some(now);
                    debug!(target: "fulcrum::direct", "malformed frame dropped: reason={r} len={n} (further ones within {WARN_EVERY:?} are only counted)");
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::frame::{Decide, Target, TcpMeta};
    use crate::direct::DirectStats;
    use pnet::util::MacAddr;

    const OUR: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x11);
    const NODE: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x21);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

    struct ToNode;

    impl Decide for ToNode {
        fn decide(&mut self, _: &TcpMeta) -> Result<Target, DropReason> {
            Ok(Target { node: 0, mac: NODE })
        }
        fn learn(&mut self, _: std::net::IpAddr, _: MacAddr) -> bool {
            false
        }
    }

    fn local() -> Local {
        Local {
            mac: OUR,
            vips: frame::Vips::new(&[std::net::SocketAddr::from((VIP, 80))]),
            max_frame: 1514,
            answer_arp: true,
        }
    }

    /// An IPv4/TCP frame to VIP:80 with `payload` bytes, TCP checksum field 0x1234.
    fn tcp_frame(payload: usize, flags: u8) -> Vec<u8> {
        let total = 40 + payload;
        let mut f = vec![0u8; 14 + total];
        f[..6].copy_from_slice(&OUR.octets());
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x10]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 0, 0, 10]);
        ip[16..20].copy_from_slice(&VIP.octets());
        let c = pnet::packet::ipv4::checksum(&pnet::packet::ipv4::Ipv4Packet::new(ip).unwrap());
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip[20..22].copy_from_slice(&40000u16.to_be_bytes());
        ip[22..24].copy_from_slice(&80u16.to_be_bytes());
        ip[32] = 5 << 4;
        ip[33] = flags;
        ip[36..38].copy_from_slice(&[0x12, 0x34]);
        f
    }

    fn run(
        frame: &mut [u8],
        status: u32,
        vnet: Option<VnetHdr>,
    ) -> (Option<usize>, Tally, DirectStats) {
        let mut t = Tally::default();
        let stats = DirectStats::default();
        let aux = frame::Aux {
            pkttype: frame::pkttype::HOST,
            status,
            wire_len: frame.len(),
        };
        let f = RxFrame {
            data: frame,
            aux,
            vnet,
        };
        let normal = local();
        let sup = Local {
            max_frame: MAX_SUPER_FRAME,
            ..local()
        };
        let out = on_frame(f, (&normal, &sup), &mut ToNode, &mut t, &stats, &mut None);
        (out, t, stats)
    }

    fn gso(gso_type: u8) -> VnetHdr {
        VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        }
    }

    #[test]
    fn tcpv4_super_frame_is_forwarded_whole_with_its_partial_checksum() {
        let mut f = tcp_frame(20_000, 0x10);
        let (out, t, stats) = run(
            &mut f,
            TP_STATUS_CSUMNOTREADY,
            Some(gso(VnetHdr::GSO_TCPV4)),
        );
        assert_eq!(out, Some(14 + 40 + 20_000));
        assert_eq!(
            (t.super_frames, t.csum_offloaded, t.csum_completed),
            (1, 1, 0)
        );
        assert_eq!(&f[..6], &NODE.octets(), "re-addressed");
        assert_eq!(&f[14 + 36..14 + 38], &[0x12, 0x34], "checksum left partial");
        assert_eq!(stats.total_drops(), 0);
    }

    #[test]
    fn other_gso_types_are_dropped_and_counted() {
        for ty in [
            VnetHdr::GSO_TCPV6,
            3,
            5,
            VnetHdr::GSO_TCPV6 | VnetHdr::GSO_ECN,
        ] {
            let mut f = tcp_frame(20_000, 0x10);
            let (out, _, stats) = run(&mut f, 0, Some(gso(ty)));
            assert_eq!(out, None, "gso type {ty}");
            assert_eq!(stats.drops(DropReason::GsoUnsupported), 1, "gso type {ty}");
        }
        let mut f = tcp_frame(20_000, 0x10);
        let (out, t, _) = run(&mut f, 0, Some(gso(VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN)));
        assert_eq!(
            (out.is_some(), t.super_frames),
            (true, 1),
            "ECN is still TCPV4"
        );
    }

    #[test]
    fn oversize_without_gso_is_dropped_as_before() {
        let mut f = tcp_frame(3_000, 0x10);
        let (out, _, stats) = run(&mut f, 0, Some(VnetHdr::default()));
        assert_eq!(out, None);
        assert_eq!(stats.drops(DropReason::Oversize), 1);
    }

    #[test]
    fn without_vnet_header_a_partial_checksum_is_completed_here() {
        let mut f = tcp_frame(100, 0x02);
        let (out, t, _) = run(&mut f, TP_STATUS_CSUMNOTREADY, None);
        assert_eq!(out, Some(14 + 140));
        assert_eq!((t.csum_completed, t.csum_offloaded, t.syns), (1, 0, 1));
        assert_ne!(&f[14 + 36..14 + 38], &[0x12, 0x34], "checksum completed");
    }
}
