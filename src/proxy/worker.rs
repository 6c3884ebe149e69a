//! One proxy worker: a mio reactor that owns its listeners and its connections.
//!
//! Accepts clients on its own SO_REUSEPORT listeners, picks a node with the scheduler of
//! the listener's service, connects without blocking (retrying another node on
//! failure), relays both ways, and enforces connect and idle timeouts. Shares with other
//! workers only the pool snapshots, atomic counters and a few flags in [`Shared`] (one
//! per service) and [`Process`].
//!
//! Each service is a [`Lane`]: its shared state, its settings, the worker's copy of its
//! node list and its scheduler. A connection remembers its lane's index, so the hot path
//! indexes a short vector; nothing on it grows with the number of services. A reload
//! adds lanes through [`LaneSender`]; a removed service's lane stops accepting and stays
//! until the process exits (its slot is a few hundred bytes).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{Conn, End, Phase};
use super::relay::Pumped;
use crate::pool::Node;
use crate::runtime::{Observation, Process, Shared};
use crate::scheduler::Scheduler;
use crate::wire::proxy_protocol;

const WAKER: Token = Token(0);
const FIRST_CONN: usize = 1024;
/// Worker's scratch read buffer (64 KiB reads: fewer syscalls per MiB than 16 KiB).
const SCRATCH: usize = 64 * 1024;
/// How long accepting pauses after descriptor exhaustion.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Housekeeping period: idle sweep, counter publication, accept resumption.
const TICK: Duration = Duration::from_millis(100);
/// Accepts per readiness event before yielding to other work.
const ACCEPT_BATCH: usize = 64;

fn client_token(key: usize) -> Token {
    Token(FIRST_CONN + 2 * key)
}
fn server_token(key: usize) -> Token {
    Token(FIRST_CONN + 2 * key + 1)
}

/// A service's settings as a worker needs them, copied out of its configuration.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Per-attempt connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Connect retries on other nodes.
    pub retries: u32,
    /// splice(2) for bulk transfers.
    pub splice: bool,
    /// PROXY protocol header to send each node before the client's data.
    pub send_proxy: Option<proxy_protocol::Version>,
    /// `--max-conns-per-source`: open connections per client address, shared by every
    /// worker; `None` when the flag is off (no lock is ever taken then).
    pub source_limit: Option<Arc<super::source_limit::SourceLimit>>,
    /// `--access-log`: one info line per closed connection.
    pub access_log: bool,
}

/// A service a worker serves: its state, settings and this worker's listeners for it.
pub struct LaneSpec {
    /// The service.
    pub shared: Arc<Shared>,
    /// Its settings.
    pub cfg: WorkerConfig,
    /// This worker's listening sockets for it (for a service it serves already: more).
    pub listeners: Vec<std::net::TcpListener>,
    /// For a service it serves already: the listen addresses to close.
    pub close: Vec<SocketAddr>,
}

/// Where a reload sends a running worker the services it should start serving.
pub type LaneSender = Sender<LaneSpec>;

/// One service inside a worker.
struct Lane {
    shared: Arc<Shared>,
    cfg: WorkerConfig,
    nodes: Arc<[Arc<Node>]>,
    generation: u64,
    sched: Scheduler,
    /// Its listeners were closed (the service stopped).
    closed: bool,
}

impl Lane {
    fn new(shared: Arc<Shared>, cfg: WorkerConfig) -> Lane {
        let (nodes, generation) = shared.pool.snapshot();
        let sched = Scheduler::new(shared.scheduler_kind(), Arc::clone(&shared.sched_shared));
        Lane {
            shared,
            cfg,
            nodes,
            generation,
            sched,
            closed: false,
        }
    }

    /// Takes a new node snapshot or scheduler when the control plane changed them.
    fn refresh(&mut self) {
        let g = self.shared.pool.generation();
        if g != self.generation {
            let (nodes, g) = self.shared.pool.snapshot();
            self.nodes = nodes;
            self.generation = g;
            self.sched.reset();
        }
        let kind = self.shared.scheduler_kind();
        if kind != self.sched.kind() {
            self.sched = Scheduler::new(kind, Arc::clone(&self.shared.sched_shared));
        }
    }
}

/// A worker's reactor and everything it owns.
pub struct Worker {
    id: usize,
    poll: Poll,
    /// Listening sockets with their lane (token = 1 + index); `None` once closed.
    listeners: Vec<Option<(usize, TcpListener)>>,
    conns: Slab<Conn>,
    process: Arc<Process>,
    /// `--max-conns`: open connections over every service.
    max_conns: u64,
    lanes: Vec<Lane>,
    new_lanes: Receiver<LaneSpec>,
    scratch: Vec<u8>,
    spare: Vec<Vec<u8>>,
    /// Connect deadlines: (deadline, slab key, serial, attempt). Stale entries are skipped.
    timers: BinaryHeap<Reverse<(Instant, usize, u64, u32)>>,
    /// Connections that hit the per-event cap and must be driven again.
    redo: Vec<(usize, u64)>,
    /// Listeners whose accept queue may still hold connections.
    accept_more: Vec<bool>,
    accept_paused_until: Option<Instant>,
    last_accept_warn: Option<Instant>,
    /// Clients whose node socket could not be created for want of a descriptor:
    /// (slab key, serial, attempt, give-up time). Retried every tick; the node is not
    /// blamed, since the shortage is ours.
    fd_wait: Vec<(usize, u64, u32, Instant)>,
    next_sweep: Instant,
    serial: u64,
    now: Instant,
    draining: bool,
    exclude: Vec<usize>,
}

impl Worker {
    /// A worker over an already created `poll` (whose waker the main thread holds),
    /// serving `lanes` (services with already bound listeners); `new_lanes` brings the
    /// services a reload adds, each announced by a wake-up of the poll's waker.
    pub fn new(
        id: usize,
        poll: Poll,
        process: Arc<Process>,
        max_conns: u64,
        lanes: Vec<LaneSpec>,
        new_lanes: Receiver<LaneSpec>,
    ) -> io::Result<Worker> {
        let now = Instant::now();
        let mut w = Worker {
            id,
            poll,
            accept_more: Vec::new(),
            listeners: Vec::new(),
            conns: Slab::with_capacity(1024),
            process,
            max_conns,
            lanes: Vec::new(),
            new_lanes,
            scratch: vec![0; SCRATCH],
            spare: Vec::new(),
            timers: BinaryHeap::new(),
            redo: Vec::new(),
            accept_paused_until: None,
            last_accept_warn: None,
            fd_wait: Vec::new(),
            next_sweep: now + TICK,
            serial: 0,
            now,
            draining: false,
            exclude: Vec::new(),
        };
        for l in lanes {
            w.add_lane(l)?;
        }
        Ok(w)
    }

    /// Starts serving a service (registers its listeners), or changes one it serves: its
    /// settings (the per-client limit it started with stays: open connections hold
    /// their places in it), listeners added and closed.
    fn add_lane(&mut self, spec: LaneSpec) -> io::Result<()> {
        if self.listeners.len() + spec.listeners.len() >= FIRST_CONN {
            return Err(io::Error::other(format!(
                "more than {} listening sockets in one worker",
                FIRST_CONN - 1
            )));
        }
        let known = self
            .lanes
            .iter()
            .position(|l| Arc::ptr_eq(&l.shared, &spec.shared));
        let lane = known.unwrap_or(self.lanes.len());
        if let Some(i) = known {
            let old = &mut self.lanes[i];
            let limit = old.cfg.source_limit.take();
            old.cfg = spec.cfg.clone();
            old.cfg.source_limit = limit;
            for (slot, more) in self.listeners.iter_mut().zip(&mut self.accept_more) {
                let closing = slot.as_ref().is_some_and(|(l, sock)| {
                    *l == i && sock.local_addr().is_ok_and(|a| spec.close.contains(&a))
                });
                if closing {
                    if let Some((_, mut sock)) = slot.take() {
                        let _ = self.poll.registry().deregister(&mut sock);
                    }
                    *more = false;
                }
            }
        }
        for l in spec.listeners {
            let mut l = TcpListener::from_std(l);
            let token = Token(1 + self.listeners.len());
            self.poll
                .registry()
                .register(&mut l, token, Interest::READABLE)?;
            self.listeners.push(Some((lane, l)));
            self.accept_more.push(true);
        }
        if known.is_none() {
            self.lanes.push(Lane::new(spec.shared, spec.cfg));
        }
        Ok(())
    }

    /// Takes the services a reload added.
    fn take_new_lanes(&mut self) {
        loop {
            match self.new_lanes.try_recv() {
                Ok(spec) => {
                    let name = Arc::clone(&spec.shared.name);
                    if let Err(e) = self.add_lane(spec) {
                        warn!(target: "fulcrum::proxy", "worker={} cannot serve service {name}: {e}", self.id);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Runs until shut down and drained (or cut). Returns how many connections were cut.
    pub fn run(mut self) -> io::Result<u64> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if !self.redo.is_empty() || self.accept_pending() {
                Some(Duration::ZERO)
            } else {
                let next = self
                    .timers
                    .peek()
                    .map_or(self.next_sweep, |Reverse((t, ..))| {
                        (*t).min(self.next_sweep)
                    });
                Some(next.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {
                        self.take_new_lanes();
                        self.check_shutdown(true);
                    }
                    Token(t) if t < FIRST_CONN => {
                        if let Some(flag) = self.accept_more.get_mut(t - 1) {
                            *flag = true;
                        }
                    }
                    Token(t) => {
                        let key = (t - FIRST_CONN) / 2;
                        let server_side = (t - FIRST_CONN) % 2 == 1;
                        self.on_conn_event(key, server_side, ev);
                    }
                }
            }
            let redo = std::mem::take(&mut self.redo);
            for (key, serial) in redo {
                if self.conns.get(key).is_some_and(|c| c.serial == serial) {
                    self.drive(key);
                }
            }
            self.check_shutdown(false);
            if self.draining && self.conns.is_empty() {
                return Ok(0);
            }
            if self.process.cut_now.load(Ordering::Acquire) {
                return Ok(self.cut_all());
            }
            self.accept_all();
            self.fire_timers();
            if self.now >= self.next_sweep {
                self.sweep();
                self.retry_fd_wait();
            }
        }
    }

    fn accept_pending(&self) -> bool {
        !self.draining
            && self.accept_paused_until.is_none()
            && self.fd_wait.is_empty()
            && self.accept_more.iter().any(|&m| m)
            && self.process.active.load(Ordering::Relaxed) < self.max_conns
    }

    /// Closes the listeners of services told to stop, and all of them when the process
    /// drains. Closing a listener resets whatever waits in its accept queue; the kernel
    /// steers new SYNs to listeners still open (other workers, or none).
    ///
    /// Every loop turn pays one atomic load (the process flag); the services' own flags
    /// (a reload removed one) are read with `lanes = true`, on a wake-up and at each
    /// sweep, so a turn's cost does not grow with the number of services.
    fn check_shutdown(&mut self, lanes: bool) {
        if self.draining {
            return;
        }
        let all = self.process.shutdown.load(Ordering::Acquire);
        if !all && !lanes {
            return;
        }
        let mut closed_any = false;
        for lane in &mut self.lanes {
            if !lane.closed && (all || lane.shared.shutdown.load(Ordering::Acquire)) {
                lane.closed = true;
                closed_any = true;
            }
        }
        if !closed_any && !all {
            return;
        }
        for (slot, more) in self.listeners.iter_mut().zip(&mut self.accept_more) {
            if slot
                .as_ref()
                .is_some_and(|(lane, _)| self.lanes[*lane].closed)
            {
                if let Some((_, mut l)) = slot.take() {
                    let _ = self.poll.registry().deregister(&mut l);
                }
                *more = false;
            }
        }
        if all {
            self.draining = true;
            debug!(target: "fulcrum::proxy", "worker={} stopped accepting, active={}", self.id, self.conns.len());
        }
    }

    fn cut_all(&mut self) -> u64 {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let n = keys.len() as u64;
        for k in keys {
            self.close(k, End::Shutdown);
        }
        n
    }

    fn accept_all(&mut self) {
        if self.draining || !self.fd_wait.is_empty() {
            return; // clients already accepted get the next free descriptors first
        }
        if let Some(until) = self.accept_paused_until {
            if self.now < until {
                return;
            }
            self.accept_paused_until = None;
        }
        for i in 0..self.listeners.len() {
            if !self.accept_more[i] {
                continue;
            }
            let mut n = 0;
            loop {
                if n == ACCEPT_BATCH {
                    break; // come back right after the other events
                }
                let Some((lane, listener)) = &self.listeners[i] else {
                    break;
                };
                let lane = *lane;
                if self.process.active.load(Ordering::Relaxed) >= self.max_conns {
                    // Leave clients in the kernel's accept queue; the tick retries.
                    self.lanes[lane]
                        .shared
                        .stats
                        .refused_maxconn
                        .fetch_add(1, Ordering::Relaxed);
                    self.accept_paused_until = Some(self.now + TICK);
                    return;
                }
                match listener.accept() {
                    Ok((stream, peer)) => {
                        n += 1;
                        self.on_accept(lane, stream, peer);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.accept_more[i] = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.lanes[lane]
                            .shared
                            .stats
                            .accept_errors
                            .fetch_add(1, Ordering::Relaxed);
                        if is_local_shortage(&e) {
                            self.out_of_descriptors("accept", &e);
                            return;
                        }
                        // ECONNABORTED and friends: that client is gone, go on.
                        debug!(target: "fulcrum::proxy", "accept: {e}");
                    }
                }
            }
        }
    }

    fn on_accept(&mut self, lane_idx: usize, client: TcpStream, peer: SocketAddr) {
        let lane = &mut self.lanes[lane_idx];
        lane.shared.stats.total.fetch_add(1, Ordering::Relaxed);
        if !lane.shared.enabled.load(Ordering::Relaxed) {
            lane.shared
                .stats
                .refused_disabled
                .fetch_add(1, Ordering::Relaxed);
            reset(&client);
            return;
        }
        lane.refresh();
        // Hashing schedulers (Maglev) key on the client address: source affinity.
        let mut key = [0u8; 16];
        let key = match peer.ip() {
            std::net::IpAddr::V4(ip) => {
                key[..4].copy_from_slice(&ip.octets());
                &key[..4]
            }
            std::net::IpAddr::V6(ip) => {
                key.copy_from_slice(&ip.octets());
                &key[..]
            }
        };
        let Some(idx) = lane.sched.pick_hashed(&lane.nodes, key) else {
            lane.shared.stats.no_node.fetch_add(1, Ordering::Relaxed);
            debug!(target: "fulcrum::proxy", "client={peer} no usable node");
            reset(&client);
            return;
        };
        if let Some(l) = &lane.cfg.source_limit {
            if !l.try_acquire(peer.ip()) {
                lane.shared
                    .stats
                    .refused_per_source
                    .fetch_add(1, Ordering::Relaxed);
                debug!(target: "fulcrum::proxy", "client={peer} refused: {} open from this address", l.max());
                reset(&client);
                return;
            }
        }
        lane.shared.stats.active.fetch_add(1, Ordering::Relaxed);
        self.process.active.fetch_add(1, Ordering::Relaxed);
        self.serial += 1;
        let node = Arc::clone(&lane.nodes[idx]);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = Conn {
            lane: lane_idx,
            serial: self.serial,
            client,
            peer,
            server: None,
            node,
            tried: Vec::new(),
            phase: Phase::Connecting { attempt: 0 },
            up: Default::default(),
            down: Default::default(),
            last_active: self.now,
            started: self.now,
        };
        if let Err(e) = self.poll.registry().register(
            &mut conn.client,
            client_token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(target: "fulcrum::proxy", "register client: {e}");
            let lane = &self.lanes[lane_idx];
            lane.shared.stats.active.fetch_sub(1, Ordering::Relaxed);
            self.process.active.fetch_sub(1, Ordering::Relaxed);
            if let Some(l) = &lane.cfg.source_limit {
                l.release(peer.ip());
            }
            return;
        }
        entry.insert(conn);
        self.connect(key, 0);
    }

    /// Starts connect attempt `attempt` to the connection's current node.
    fn connect(&mut self, key: usize, attempt: u32) {
        let Some(c) = self.conns.get(key) else {
            return;
        };
        let timeout = self.lanes[c.lane].cfg.connect_timeout;
        self.connect_until(key, attempt, self.now + timeout);
    }

    /// [`Self::connect`] with the attempt's deadline given: a retry after a descriptor
    /// shortage keeps the deadline of the first try.
    fn connect_until(&mut self, key: usize, attempt: u32, deadline: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        c.node.counters.active.fetch_add(1, Ordering::Relaxed);
        c.node.counters.total.fetch_add(1, Ordering::Relaxed);
        c.phase = Phase::Connecting { attempt };
        match TcpStream::connect(c.node.addr()) {
            Ok(mut s) => {
                if let Err(e) = self.poll.registry().register(
                    &mut s,
                    server_token(key),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    warn!(target: "fulcrum::proxy", "register node socket: {e}");
                    self.connect_failed(key, "error");
                    return;
                }
                let _ = s.set_nodelay(true);
                c.server = Some(s);
                self.timers
                    .push(Reverse((deadline, key, c.serial, attempt)));
            }
            Err(e) if is_local_shortage(&e) => {
                // Our descriptors (or memory) ran out, not the node: undo the count, keep
                // the client waiting, and stop taking new clients for a moment.
                c.node.counters.active.fetch_sub(1, Ordering::Relaxed);
                c.node.counters.total.fetch_sub(1, Ordering::Relaxed);
                self.fd_wait.push((key, c.serial, attempt, deadline));
                // Counted as a connect failure of the distributor, not of the node.
                self.lanes[c.lane]
                    .shared
                    .stats
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.out_of_descriptors("node socket", &e);
            }
            Err(e) => {
                debug!(target: "fulcrum::proxy", "connect {}: {e}", c.node.addr());
                self.connect_failed(key, connect_error_words(&e));
            }
        }
    }

    /// Descriptor or memory exhaustion: pause accepting for [`ACCEPT_PAUSE`] and say so,
    /// at most once a second.
    fn out_of_descriptors(&mut self, what: &str, e: &io::Error) {
        self.accept_paused_until = Some(self.now + ACCEPT_PAUSE);
        if self
            .last_accept_warn
            .is_none_or(|t| self.now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_accept_warn = Some(self.now);
            warn!(target: "fulcrum::proxy",
                "worker={} {what} failed: {e}; pausing accept for {:?} (open connections={}, waiting for a descriptor={})",
                self.id, ACCEPT_PAUSE, self.conns.len(), self.fd_wait.len());
        }
    }

    /// Retries the node sockets that could not be created; gives up (client reset, node
    /// not blamed) once a client has waited its connect timeout.
    fn retry_fd_wait(&mut self) {
        if self.fd_wait.is_empty() {
            return;
        }
        for (key, serial, attempt, give_up) in std::mem::take(&mut self.fd_wait) {
            let waiting = self.conns.get(key).is_some_and(|c| {
                c.serial == serial
                    && c.server.is_none()
                    && matches!(c.phase, Phase::Connecting { attempt: a } if a == attempt)
            });
            if !waiting {
                continue;
            }
            if self.now >= give_up {
                self.close(key, End::ConnectFailed);
            } else {
                self.connect_until(key, attempt, give_up);
            }
        }
    }

    /// The current attempt failed: count it, tell health, try another node or give up.
    fn connect_failed(&mut self, key: usize, why: &'static str) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let attempt = match c.phase {
            Phase::Connecting { attempt } => attempt,
            Phase::Relaying => return,
        };
        if let Some(mut s) = c.server.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        let node = Arc::clone(&c.node);
        let lane = &mut self.lanes[c.lane];
        node.counters.active.fetch_sub(1, Ordering::Relaxed);
        node.counters
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        lane.shared
            .stats
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        lane.shared.observe(Observation::ConnectFailed {
            node: node.addr(),
            why,
        });
        c.tried.push(node.addr());
        debug!(target: "fulcrum::proxy", "client={} node={} connect failed ({why}), attempt {}", c.peer, node.addr(), attempt + 1);
        if attempt >= lane.cfg.retries {
            self.close(key, End::ConnectFailed);
            return;
        }
        // Retry path only (rare).
        lane.refresh();
        self.exclude.clear();
        for (i, n) in lane.nodes.iter().enumerate() {
            if c.tried.contains(&n.addr()) {
                self.exclude.push(i);
            }
        }
        match lane.sched.pick(&lane.nodes, &self.exclude) {
            Some(i) => {
                let next = Arc::clone(&lane.nodes[i]);
                if let Some(c) = self.conns.get_mut(key) {
                    c.node = next;
                }
                self.connect(key, attempt + 1);
            }
            None => {
                lane.shared.stats.no_node.fetch_add(1, Ordering::Relaxed);
                self.close(key, End::ConnectFailed);
            }
        }
    }

    fn on_conn_event(&mut self, key: usize, server_side: bool, ev: &mio::event::Event) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
        let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
        let hup = ev.is_read_closed() || ev.is_error();
        if server_side {
            c.down.src_ready |= readable;
            c.down.src_hup |= hup;
            c.up.dst_ready |= writable;
        } else {
            c.up.src_ready |= readable;
            c.up.src_hup |= hup;
            c.down.dst_ready |= writable;
        }
        if let Phase::Connecting { .. } = c.phase {
            if !server_side {
                return; // client data waits in its socket until the node is connected
            }
            let Some(s) = c.server.as_ref() else { return };
            match s.take_error() {
                // Writable without a pending error: the handshake completed. (A connecting
                // socket only turns writable once connected or failed, so getpeername
                // is not needed for that; it is only asked on other wake-ups.)
                Ok(None) if ev.is_writable() => c.phase = Phase::Relaying,
                Ok(None) => match s.peer_addr() {
                    Ok(_) => c.phase = Phase::Relaying,
                    // Spurious wake-up before the handshake finished.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(e) => return self.connect_failed(key, connect_error_words(&e)),
                },
                Ok(Some(e)) | Err(e) => return self.connect_failed(key, connect_error_words(&e)),
            }
            if let Some(version) = self.lanes[c.lane].cfg.send_proxy {
                // The address the client reached (the VIP), as the node should see it.
                let Ok(dst) = c.client.local_addr() else {
                    return self.abort(key, End::ClientError);
                };
                let client = c.peer;
                c.up.queue_first(
                    |buf| proxy_protocol::header(version, client, dst, buf),
                    &mut self.spare,
                );
            }
        }
        self.drive(key);
    }

    /// Relays both directions as far as readiness allows; closes when finished or broken.
    fn drive(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let Some(server) = c.server.as_mut() else {
            return;
        };
        let (b_up, b_down) = (c.up.bytes, c.down.bytes);
        let splice = self.lanes[c.lane].cfg.splice;
        let down_eof = c.down.read_eof;
        let up = c.up.pump(
            &mut c.client,
            server,
            &mut self.scratch,
            splice,
            &mut self.spare,
            down_eof,
        );
        let up = match up {
            Ok(p) => p,
            Err(_) => return self.abort(key, End::ClientError),
        };
        let up_eof = c.up.read_eof;
        let down = c.down.pump(
            server,
            &mut c.client,
            &mut self.scratch,
            splice,
            &mut self.spare,
            up_eof,
        );
        let down = match down {
            Ok(p) => p,
            Err(_) => return self.abort(key, End::NodeError),
        };
        if c.up.bytes != b_up || c.down.bytes != b_down {
            c.last_active = self.now;
        }
        if c.finished() {
            self.close(key, End::Done);
        } else if up == Pumped::Capped || down == Pumped::Capped {
            self.redo.push((key, c.serial));
        }
    }

    /// A socket error: reset both sides, so the surviving peer learns it was not a clean end.
    fn abort(&mut self, key: usize, end: End) {
        if let Some(c) = self.conns.get(key) {
            reset(&c.client);
            if let Some(s) = c.server.as_ref() {
                reset(s);
            }
        }
        self.close(key, end);
    }

    fn close(&mut self, key: usize, end: End) {
        if !self.conns.contains(key) {
            return;
        }
        let mut c = self.conns.remove(key);
        let lane = &self.lanes[c.lane];
        c.flush_counters(&lane.shared.stats);
        if let Phase::Relaying = c.phase {
            c.node.counters.active.fetch_sub(1, Ordering::Relaxed);
        } else if c.server.is_some() {
            // Closed while an attempt was in flight (idle sweep or shutdown).
            c.node.counters.active.fetch_sub(1, Ordering::Relaxed);
        }
        if let End::ConnectFailed | End::Shutdown | End::Cut = end {
            reset(&c.client);
        }
        lane.shared.stats.active.fetch_sub(1, Ordering::Relaxed);
        self.process.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(l) = &lane.cfg.source_limit {
            l.release(c.peer.ip());
        }
        if let Some(b) = c.up.take_buffer() {
            self.spare.push(b);
        }
        if let Some(b) = c.down.take_buffer() {
            self.spare.push(b);
        }
        self.spare.truncate(64);
        // The access log is a bool test when off: nothing is formatted or allocated.
        if lane.cfg.access_log {
            info!(target: "fulcrum::access",
                "service={} client={} node={} bytes_in={} bytes_out={} duration_ms={} end={}",
                lane.shared.name, c.peer, c.node.addr(), c.up.bytes, c.down.bytes,
                self.now.saturating_duration_since(c.started).as_millis(), end.as_str());
        } else {
            debug!(target: "fulcrum::proxy",
                "client={} node={} up={} down={} duration_ms={} end={}",
                c.peer, c.node.addr(), c.up.bytes, c.down.bytes,
                self.now.saturating_duration_since(c.started).as_millis(), end.as_str());
        }
        // Dropping the sockets closes them; the kernel removes them from epoll.
    }

    fn fire_timers(&mut self) {
        while let Some(Reverse((t, key, serial, attempt))) = self.timers.peek().copied() {
            if t > self.now {
                break;
            }
            self.timers.pop();
            let stale = !self.conns.get(key).is_some_and(|c| {
                c.serial == serial
                    && matches!(c.phase, Phase::Connecting { attempt: a } if a == attempt)
            });
            if !stale {
                self.connect_failed(key, "timed out");
            }
        }
    }

    fn sweep(&mut self) {
        self.check_shutdown(true);
        self.next_sweep = self.now + TICK;
        let now = self.now;
        let mut expired = Vec::new();
        for (k, c) in self.conns.iter_mut() {
            let lane = &self.lanes[c.lane];
            c.flush_counters(&lane.shared.stats);
            if c.node.is_cut() || lane.shared.cut_now.load(Ordering::Relaxed) {
                expired.push((k, End::Cut));
            } else if matches!(c.phase, Phase::Relaying)
                && now.saturating_duration_since(c.last_active) >= lane.cfg.idle_timeout
            {
                expired.push((k, End::Idle));
            }
        }
        for (k, end) in expired {
            self.close(k, end);
        }
        if self.draining && !self.conns.is_empty() {
            debug!(target: "fulcrum::proxy", "worker={} draining, {} open", self.id, self.conns.len());
        }
    }
}

/// A failed connect to a node in the words of the passive-failure log and alert.
fn connect_error_words(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused",
        Some(libc::ETIMEDOUT) => "timed out",
        Some(libc::ECONNRESET) => "reset",
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => "unreachable",
        _ => "error",
    }
}

/// Errors that mean this process (or host) is out of descriptors or socket memory.
fn is_local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Closes with RST instead of FIN: the client must see a failure, not an empty success.
fn reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.conns.is_empty() {
            info!(target: "fulcrum::proxy", "worker={} exiting with {}", self.id, crate::words::plural(self.conns.len() as u64, "connection"));
        }
    }
}
