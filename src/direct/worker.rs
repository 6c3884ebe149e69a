//! The direct-mode data plane thread: a mio loop around the AF_PACKET socket.
//!
//! Each readiness event drains the socket in batches of [`BATCH`] frames (then yields to
//! timers and flags, and comes back with a zero poll timeout while frames remain: mio is
//! edge-triggered), runs the pure [`frame::process`] on each frame in the one receive
//! buffer, and sends what it returns. Every [`TICK`] it expires flows, sends the ARP
//! requests and neighbour solicitations the neighbour tables ask for and any pending
//! gratuitous ARPs / unsolicited neighbour advertisements (one per VIP address), and
//! looks at the shared flags. Like a proxy worker, it refreshes its pool snapshot when the pool's
//! generation changes and its scheduler when the operator switches algorithms.
//!
//! Shutdown: on the shared `shutdown` flag new flows are refused and established ones
//! keep flowing until the table is empty; `cut_now` ends the loop at once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::arp::{self, ARP_FRAME_LEN};
use super::director::{Admission, Director};
use super::frame::{self, Local, Verdict};
use super::ndp::{self, ND_FRAME_LEN};
use super::stats::DropReason;
use super::DirectShared;
use crate::runtime::Shared;
use crate::scheduler::{Scheduler, SchedulerKind};
use crate::sys::packet::PacketSocket;

/// Woken by the control plane (flag changes).
pub const WAKER: Token = Token(0);
const SOCK: Token = Token(1);
/// Frames handled per batch before looking at timers and flags.
pub const BATCH: usize = 256;
/// Housekeeping period.
pub const TICK: Duration = Duration::from_millis(100);
/// Flows expired per tick at most (the rest wait for the next tick).
const EXPIRE_BUDGET: usize = 20_000;
/// Gratuitous ARPs per announcement, and their spacing.
const GARP_COUNT: u32 = 3;
const GARP_SPACING: Duration = Duration::from_millis(200);
/// Receive buffer: the largest frame the socket filter lets through, so a super-frame's
/// real length is seen (and it is dropped as oversize, not misparsed).
const RX_BUF: usize = 64 * 1024 + 64;
/// At most one warning of each kind per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The direct-mode worker (see the module documentation).
pub struct Worker {
    poll: Poll,
    sock: PacketSocket,
    shared: Arc<Shared>,
    direct: Arc<DirectShared>,
    director: Director,
    local: Local,
    our_ip: Ipv4Addr,
    our_ip6: Ipv6Addr,
    generation: u64,
    kind: SchedulerKind,
    buf: Vec<u8>,
    due: Vec<Ipv4Addr>,
    due6: Vec<Ipv6Addr>,
    more_rx: bool,
    next_tick: Instant,
    garps_left: u32,
    next_garp: Instant,
    draining: bool,
    last_send_warn: Option<Instant>,
    last_malformed_log: Option<Instant>,
}

impl Worker {
    /// A worker over `poll` (whose waker the control plane holds) and an open socket.
    /// `own` = the interface's addresses our ARP requests and neighbour solicitations
    /// come from (IPv4, IPv6), when it has them.
    pub fn new(
        poll: Poll,
        sock: PacketSocket,
        shared: Arc<Shared>,
        direct: Arc<DirectShared>,
        director: Director,
        local: Local,
        own: (Option<Ipv4Addr>, Option<Ipv6Addr>),
    ) -> io::Result<Worker> {
        let (our_ip, our_ip6) = own;
        poll.registry()
            .register(&mut SourceFd(&sock.as_raw_fd()), SOCK, Interest::READABLE)?;
        let now = Instant::now();
        let generation = shared.pool.generation();
        let kind = director.scheduler().kind();
        Ok(Worker {
            poll,
            sock,
            direct,
            shared,
            director,
            local,
            our_ip: our_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            // Without an IPv6 address the solicitation comes from :: (RFC 4861 §7.2.2
            // allows it only for DAD; nodes then answer to all-nodes, which we also see).
            our_ip6: our_ip6.unwrap_or(Ipv6Addr::UNSPECIFIED),
            generation,
            kind,
            buf: vec![0; RX_BUF],
            due: Vec::with_capacity(16),
            due6: Vec::with_capacity(16),
            more_rx: true,
            next_tick: now,
            garps_left: GARP_COUNT,
            next_garp: now,
            draining: false,
            last_send_warn: None,
            last_malformed_log: None,
        })
    }

    /// Runs until shut down and drained (or cut). Returns how many open flows were cut.
    pub fn run(mut self) -> io::Result<u64> {
        let mut events = Events::with_capacity(64);
        // One announcer per setup: alone, this worker announces the VIP once at start;
        // in a failover pair the failover component announces at each takeover, and a
        // standby (not answering ARP) must not announce at all, now or later.
        if !self.direct.control.answer_arp.load(Ordering::Acquire) {
            self.garps_left = 0;
        }
        loop {
            let timeout = if self.more_rx {
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
                if ev.token() == SOCK {
                    self.more_rx = true;
                }
            }
            let now = Instant::now();
            self.director.set_now(now);
            self.refresh();
            if self.shared.cut_now.load(Ordering::Acquire) {
                let cut = self.director.flows_mut().clear();
                self.finish();
                return Ok(cut);
            }
            if self.draining && self.director.flows().is_empty() {
                self.finish();
                return Ok(0);
            }
            if self.more_rx {
                self.rx_batch();
            }
            if now >= self.next_tick {
                self.tick(now);
                self.next_tick = now + TICK;
            }
        }
    }

    fn finish(&self) {
        info!(target: "fulcrum::direct", "stopped: {}", self.direct.stats.summary());
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
            debug!(target: "fulcrum::direct", "draining {} flows", self.director.flows().len());
        }
        let admission = if self.draining {
            Admission::Draining
        } else if self.shared.enabled.load(Ordering::Relaxed) {
            Admission::Open
        } else {
            Admission::Disabled
        };
        self.director.set_admission(admission);
        self.local.answer_arp = self.direct.control.answer_arp.load(Ordering::Relaxed);
    }

    fn rx_batch(&mut self) {
        for _ in 0..BATCH {
            match self.sock.recv(&mut self.buf) {
                Ok((n, aux)) => self.on_frame(n, aux),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.more_rx = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(target: "fulcrum::direct", "receive: {e}");
                    self.more_rx = false;
                    return;
                }
            }
        }
        self.direct
            .stats
            .batch_cap_hits
            .fetch_add(1, Ordering::Relaxed);
    }

    fn on_frame(&mut self, n: usize, aux: frame::Aux) {
        let stats = &self.direct.stats;
        stats.rx_frames.fetch_add(1, Ordering::Relaxed);
        stats
            .rx_bytes
            .fetch_add(aux.wire_len as u64, Ordering::Relaxed);
        let frame = &mut self.buf[..n];
        match frame::process(frame, &aux, &self.local, &mut self.director) {
            Verdict::Forward {
                len,
                csum_completed,
                ..
            } => {
                if self.send(len) {
                    let stats = &self.direct.stats;
                    stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                    stats
                        .tx_bytes
                        .fetch_add((len - 14) as u64, Ordering::Relaxed);
                    if csum_completed {
                        stats.csum_completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Verdict::ArpReply { len } => {
                if self.send(len) {
                    self.direct
                        .stats
                        .arp_replies
                        .fetch_add(1, Ordering::Relaxed);
                }
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
            Verdict::Drop(r) => {
                self.direct.stats.drop(r);
                trace!(target: "fulcrum::direct", "drop reason={r} len={n}");
                if r.is_malformed() {
                    let now = Instant::now();
                    if self
                        .last_malformed_log
                        .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
                    {
                        self.last_malformed_log = Some(now);
                        debug!(target: "fulcrum::direct", "malformed frame dropped: reason={r} len={n} (further ones within {WARN_EVERY:?} are only counted)");
                    }
                }
            }
        }
    }

    /// Sends `buf[..len]`; counts and (rate-limited) logs a failure.
    fn send(&mut self, len: usize) -> bool {
        match self.sock.send(&self.buf[..len]) {
            Ok(_) => true,
            Err(e) => {
                let r = if e.raw_os_error() == Some(libc::EMSGSIZE) {
                    DropReason::Oversize
                } else {
                    DropReason::SendFailed
                };
                self.direct.stats.drop(r);
                self.warn_send(&e);
                false
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
        match self.sock.send(frame) {
            Ok(_) => true,
            Err(e) => {
                self.direct.stats.drop(DropReason::SendFailed);
                self.warn_send(&e);
                false
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let removed = self.director.flows_mut().expire(now, EXPIRE_BUDGET);
        let stats = Arc::clone(&self.direct);
        if removed > 0 {
            stats
                .stats
                .flows_removed
                .fetch_add(removed as u64, Ordering::Relaxed);
        }
        stats
            .stats
            .flows
            .store(self.director.flows().len() as u64, Ordering::Relaxed);
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
