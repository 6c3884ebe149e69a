//! `fulcrum serve`: wires the configuration, the pool, the workers and the control plane
//! together, and owns the process's life cycle (signals, drain, exit).
//!
//! The calling thread becomes the control-plane thread: a mio loop that handles signals
//! (through a signalfd, so no async-signal-safety concerns), worker exits, and the
//! control-plane [`Component`]s (health checks, control socket, HTTP, failover). Workers are
//! the data plane. On SIGTERM/SIGINT every worker stops accepting and the loop waits up
//! to `--drain-timeout` for open connections to finish, then tells the workers to cut
//! the rest; a second signal cuts at once.
//!
//! Under systemd (`Type=notify`, `dist/fulcrum.service`) it reports READY=1 once the
//! listeners are bound, the workers run and the components are registered, and
//! STOPPING=1 when the drain begins; without `$NOTIFY_SOCKET` both are no-ops.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::signalfd::SignalFd;

use crate::config::{ForwardMode, ServeConfig};
use crate::direct::DirectShared;
use crate::plane::{Component, Plane, Service, ServiceChange, ServiceStarter, TOKEN_SPAN};
use crate::pool::{Pool, Stats};
use crate::proxy::{self, LaneSender, LaneSpec, WorkerConfig};
use crate::runtime::{Process, Shared, Workers};
use crate::sys::signal::{self, Request};

const SIGNAL: Token = Token(0);
/// Woken by workers (on exit, and with passive-health observations).
const WAKE: Token = Token(1);

/// A running distributor, before its control loop runs.
pub struct Server {
    plane: Plane,
    components: Vec<Box<dyn Component>>,
    /// Services that have their health checker (the first ones of `plane.services`).
    checked: usize,
    waker: Arc<Waker>,
    poll: Poll,
    sfd: SignalFd,
    workers: Workers,
}

impl Server {
    /// Binds listeners and starts the workers for `services` (at least one; the first
    /// one's global keys are the process's). Signals must already be blocked (call
    /// [`signal::signal_fd`] first, before any other thread starts) — `sfd` is its result.
    pub fn start(services: Vec<ServeConfig>, sfd: SignalFd) -> io::Result<Server> {
        let Some(cfg) = services.first().cloned() else {
            return Err(io::Error::other("no service to serve"));
        };
        let shared: Vec<Arc<Shared>> = services.iter().map(service_state).collect();
        let process = Arc::new(Process::default());
        let mut direct = match cfg.mode {
            ForwardMode::Direct(_) => Some(Arc::new(DirectShared::default())),
            ForwardMode::Proxy => None,
        };
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&sfd.as_raw_fd()), SIGNAL, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        // A reload takes the running process's listeners before anything binds.
        let (handover, inherited) = match &cfg.listeners_from {
            Some(path) => {
                let mut h = crate::reload::take_listeners(path)?;
                let ls = std::mem::take(&mut h.listeners);
                info!(target: "fulcrum::serve", "reload: took {} from the running process", crate::words::plural(ls.len() as u64, "listening socket"));
                if let (Some(old), None) = (h.old_http, cfg.http) {
                    warn!(target: "fulcrum::serve", "reload: the running process serves HTTP on {old}; this one was given no --http, so /metrics, the API and the console stop there when it exits");
                }
                (Some(h), ls)
            }
            None => (None, Vec::new()),
        };
        let components = crate::components::build(&services, &shared, direct.as_ref(), &waker)?;
        let mut lanes = Vec::new();
        let mut workers = match &cfg.mode {
            ForwardMode::Proxy => {
                let list = services
                    .iter()
                    .zip(&shared)
                    .map(|(c, sh)| proxy::ServiceListen {
                        shared: Arc::clone(sh),
                        cfg: worker_config(c),
                        addrs: &c.listen,
                        backlog: c.backlog,
                    })
                    .collect();
                let started = proxy::start(
                    list,
                    cfg.freebind,
                    inherited,
                    cfg.workers,
                    &process,
                    cfg.max_conns,
                    Arc::clone(&waker),
                )?;
                lanes = started.lanes;
                started.workers
            }
            ForwardMode::Direct(d) => {
                let counters = direct.get_or_insert_with(Default::default);
                crate::direct::start(
                    d,
                    &cfg.backends,
                    &shared[0],
                    counters,
                    cfg.workers,
                    Arc::clone(&waker),
                )?
            }
        };
        for c in &services {
            info!(target: "fulcrum::serve", "{}", c.summary());
        }
        let listeners = std::mem::take(&mut workers.listener_fds);
        let list = shared
            .into_iter()
            .zip(services.iter().cloned())
            .map(|(sh, c)| Service::new(sh, c))
            .collect();
        let mut plane = Plane::new(cfg.clone(), list, process, direct, listeners);
        if !lanes.is_empty() {
            plane.starter = Some(service_starter(&cfg, lanes, workers.wakers.clone()));
        }
        let checked = plane.services.len();
        let mut server = Server {
            plane,
            components,
            checked,
            waker,
            poll,
            sfd,
            workers,
        };
        for (i, c) in server.components.iter_mut().enumerate() {
            c.register(server.poll.registry(), (i + 1) * TOKEN_SPAN)?;
        }
        for c in server.components.iter_mut() {
            if let Err(e) = c.on_started() {
                warn!(target: "fulcrum::serve", "{e}");
            }
        }
        // Serving now: the predecessor may stop. If it cannot be told, both serve the
        // same sockets until the operator stops it (SIGTERM); nothing is lost either way.
        if let Some(h) = handover {
            match h.stop_old() {
                Ok(reply) => {
                    info!(target: "fulcrum::serve", "reload: the previous process answered: {reply}")
                }
                Err(e) => {
                    warn!(target: "fulcrum::serve", "reload: could not tell the previous process to stop ({e}); stop it with SIGTERM")
                }
            }
        }
        tell_service_manager(sd_notify::NotifyState::Ready);
        Ok(server)
    }

    /// The state of service `i` (in configuration order).
    pub fn service(&self, i: usize) -> Option<&Arc<Shared>> {
        self.plane.services.get(i).map(|s| &s.shared)
    }

    /// Gives the services a reload started their health checker.
    fn check_new_services(&mut self) {
        while self.checked < self.plane.services.len() {
            let i = self.checked;
            self.checked += 1;
            let svc = &self.plane.services[i];
            // One process has one agent socket: the first service's checker owns it.
            let health = svc.cfg.health.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            svc.shared.set_observer(tx, Arc::clone(&self.waker));
            let mut c: Box<dyn Component> = match crate::health::checker::Checker::new(
                health, i, false, rx,
            ) {
                Ok(c) => Box::new(c),
                Err(e) => {
                    warn!(target: "fulcrum::serve", "service {}: no health checks: {e}", svc.name());
                    continue;
                }
            };
            let base = (self.components.len() + 1) * TOKEN_SPAN;
            if let Err(e) = c.register(self.poll.registry(), base) {
                warn!(target: "fulcrum::serve", "service {}: no health checks: {e}", svc.name());
                continue;
            }
            self.components.push(c);
        }
    }

    /// Lets SIGHUP re-read the configuration with `reloader` (see [`crate::reconfig`]).
    pub fn with_reloader(mut self, reloader: crate::config::Reloader) -> Self {
        self.plane.reloader = Some(reloader);
        self
    }

    /// Runs the control loop until the process should exit; returns after every worker
    /// has stopped.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut drain_deadline: Option<Instant> = None;
        // A stop that waits for BGP withdrawals before draining: (when, why).
        let mut pending_stop: Option<(Instant, String)> = None;
        loop {
            let now = Instant::now();
            let mut next = self.components.iter().filter_map(|c| c.deadline()).min();
            next = next.into_iter().chain(self.plane.notifier.deadline()).min();
            // While draining, look again every 50 ms: a worker wakes us just before its
            // thread actually ends, so one wake-up may come too early to see it finished.
            if let Some(d) = drain_deadline {
                next = Some(
                    next.map_or(d, |n| n.min(d))
                        .min(now + Duration::from_millis(50)),
                );
            }
            if let Some((at, _)) = &pending_stop {
                next = Some(next.map_or(*at, |n| n.min(*at)));
            }
            let timeout = next.map(|n| n.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    SIGNAL => self.on_signal(&mut drain_deadline, &mut pending_stop),
                    WAKE => {}
                    Token(t) => {
                        let i = t / TOKEN_SPAN;
                        if let Some(c) = i.checked_sub(1).and_then(|i| self.components.get_mut(i)) {
                            c.on_event(
                                &mut self.plane,
                                self.poll.registry(),
                                t - i * TOKEN_SPAN,
                                ev,
                            );
                        }
                    }
                }
            }
            let now = Instant::now();
            for c in self.components.iter_mut() {
                c.on_tick(&mut self.plane, self.poll.registry(), now);
            }
            if !self.plane.admin_log.is_empty() {
                let cmds = std::mem::take(&mut self.plane.admin_log);
                for c in self.components.iter_mut() {
                    c.on_admin(&mut self.plane, &cmds);
                }
            }
            self.plane.notifier.reap(now);
            self.check_new_services();
            if self.plane.stop_requested && drain_deadline.is_none() && pending_stop.is_none() {
                self.request_stop("shutdown command", &mut drain_deadline, &mut pending_stop);
            }
            if let Some((at, why)) = &pending_stop {
                if now >= *at && drain_deadline.is_none() {
                    let why = why.clone();
                    self.begin_drain(&why, &mut drain_deadline);
                }
            }
            if drain_deadline.is_some_and(|d| now >= d)
                && !self.plane.process.cut_now.load(Ordering::Acquire)
            {
                self.plane.cut_all();
                self.workers.wake_all();
            }
            if self.workers.threads.iter().all(|t| t.is_finished()) {
                break;
            }
        }
        for c in self.components.iter_mut() {
            c.on_shutdown(&mut self.plane);
        }
        let mut cut = 0;
        for t in self.workers.threads.drain(..) {
            match t.join() {
                Ok(Ok(n)) => cut += n,
                Ok(Err(e)) => warn!(target: "fulcrum::serve", "worker failed: {e}"),
                Err(_) => warn!(target: "fulcrum::serve", "worker panicked"),
            }
        }
        self.plane
            .first()
            .stats
            .cut_at_shutdown
            .fetch_add(cut, Ordering::Relaxed);
        self.plane.notifier.finish(Duration::from_secs(2));
        info!(target: "fulcrum::serve", "stopped; {} cut at shutdown", crate::words::plural(cut, "connection"));
        Ok(())
    }

    fn on_signal(
        &mut self,
        drain_deadline: &mut Option<Instant>,
        pending_stop: &mut Option<(Instant, String)>,
    ) {
        while let Some(sig) = signal::next(&mut self.sfd) {
            let name = sig.name;
            match sig.request {
                Request::Stop if pending_stop.is_none() && drain_deadline.is_none() => {
                    self.request_stop(name, drain_deadline, pending_stop)
                }
                // A second signal while routes are being withdrawn: drain now.
                Request::Stop if drain_deadline.is_none() => self.begin_drain(name, drain_deadline),
                Request::Stop => {
                    info!(target: "fulcrum::serve", "{name} again: closing remaining connections now");
                    self.plane.cut_all();
                    self.workers.wake_all();
                }
                Request::Reload => match crate::reconfig::reload_plane(&mut self.plane) {
                    Ok(summary) => info!(target: "fulcrum::serve", "{name}: {summary}"),
                    Err(e) => warn!(target: "fulcrum::serve",
                            "{name}: {e}; still serving with the configuration it had"),
                },
                Request::Ignore => info!(target: "fulcrum::serve", "{name}: ignored (no meaning)"),
            }
        }
    }

    /// A stop: components that announce routes withdraw them first and say how long
    /// to keep accepting meanwhile; without such a component the drain starts now.
    fn request_stop(
        &mut self,
        why: &str,
        drain_deadline: &mut Option<Instant>,
        pending_stop: &mut Option<(Instant, String)>,
    ) {
        let now = Instant::now();
        let until = self
            .components
            .iter_mut()
            .filter_map(|c| c.on_stop(&mut self.plane, now))
            .max();
        match until {
            Some(at) if at > now => {
                info!(target: "fulcrum::serve",
                    "{why}: withdrawing routes; still accepting for {} ms, then draining",
                    at.saturating_duration_since(now).as_millis());
                *pending_stop = Some((at, why.to_string()));
            }
            _ => self.begin_drain(why, drain_deadline),
        }
    }

    /// Stops accepting (workers close their listeners; so do the hand-over duplicates)
    /// and starts the `--drain-timeout` clock.
    fn begin_drain(&mut self, why: &str, drain_deadline: &mut Option<Instant>) {
        let active = self.plane.process.active.load(Ordering::Relaxed);
        info!(target: "fulcrum::serve",
            "{why}: stopped accepting; draining {} for up to {}",
            crate::words::plural(active, "connection"),
            crate::duration::format_duration(self.plane.cfg.drain_timeout));
        tell_service_manager(sd_notify::NotifyState::Stopping);
        self.plane.listeners.clear();
        self.plane.begin_shutdown();
        *drain_deadline = Some(Instant::now() + self.plane.cfg.drain_timeout);
        self.workers.wake_all();
    }
}

/// Reports `state` to systemd when it started us with `Type=notify` (one datagram to
/// `$NOTIFY_SOCKET`; nothing when unset). A failure changes nothing here — systemd would
/// time the start out and say so — so it is only logged.
fn tell_service_manager(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        warn!(target: "fulcrum::serve", "could not notify systemd ($NOTIFY_SOCKET): {e}");
    }
}

/// The workers' shared state of one service.
fn service_state(c: &ServeConfig) -> Arc<Shared> {
    let pool = Arc::new(Pool::new(&c.backends));
    let shared = Shared::named(&c.name, pool, Arc::new(Stats::default()), c.scheduler);
    shared.sched_shared.set_seed(c.hash_seed);
    Arc::new(shared)
}

/// A service's settings as the proxy workers read them.
fn worker_config(c: &ServeConfig) -> WorkerConfig {
    WorkerConfig {
        connect_timeout: c.connect_timeout,
        // `--idle-timeout 0s` means no idle timeout: a deadline never reached.
        idle_timeout: match c.idle_timeout {
            Duration::ZERO => Duration::MAX,
            d => d,
        },
        retries: c.retries,
        splice: c.splice,
        send_proxy: c.send_proxy,
        source_limit: c
            .max_conns_per_source
            .map(|n| Arc::new(proxy::source_limit::SourceLimit::new(n))),
        access_log: c.access_log,
    }
}

/// Starts services a reload adds, and changes running ones: binds listeners (one per
/// worker), hands each worker its own with the settings, and wakes it. `global`: the
/// process's configuration (IP_FREEBIND).
fn service_starter(
    global: &ServeConfig,
    lanes: Vec<LaneSender>,
    wakers: Vec<Arc<Waker>>,
) -> ServiceStarter {
    let freebind = global.freebind;
    Box::new(move |change: ServiceChange<'_>| {
        let (shared, c, bind, close) = match change {
            ServiceChange::Start(c) => (service_state(c), c, &c.listen[..], &[][..]),
            ServiceChange::Update {
                shared,
                cfg,
                bind,
                close,
            } => (Arc::clone(shared), cfg, bind, close),
        };
        let per_worker =
            proxy::bind_for_workers(bind, c.backlog, freebind, lanes.len(), &mut Vec::new())?;
        let mut fds = Vec::new();
        for l in per_worker.iter().flatten() {
            fds.push(std::os::fd::OwnedFd::from(l.try_clone()?));
        }
        let cfg = worker_config(c);
        for ((tx, waker), listeners) in lanes.iter().zip(&wakers).zip(per_worker) {
            let spec = LaneSpec {
                shared: Arc::clone(&shared),
                cfg: cfg.clone(),
                listeners,
                close: close.to_vec(),
            };
            if tx.send(spec).is_err() {
                return Err(io::Error::other("a worker has stopped"));
            }
            let _ = waker.wake();
        }
        Ok((shared, fds))
    })
}
