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
use crate::plane::{Component, Plane, TOKEN_SPAN};
use crate::pool::{Pool, Stats};
use crate::proxy::{self, WorkerConfig};
use crate::runtime::{Shared, Workers};
use crate::sys::signal::{self, Request};

const SIGNAL: Token = Token(0);
/// Woken by workers (on exit, and with passive-health observations).
const WAKE: Token = Token(1);

/// A running distributor, before its control loop runs.
pub struct Server {
    /// What workers share (pool, counters, flags).
    pub shared: Arc<Shared>,
    plane: Plane,
    components: Vec<Box<dyn Component>>,
    poll: Poll,
    sfd: SignalFd,
    workers: Workers,
}

impl Server {
    /// Binds listeners and starts the workers. Signals must already be blocked (call
    /// [`signal::signal_fd`] first, before any other thread starts) — `sfd` is its result.
    pub fn start(cfg: ServeConfig, sfd: SignalFd) -> io::Result<Server> {
        let pool = Arc::new(Pool::new(&cfg.backends));
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared::new(pool, stats, cfg.scheduler));
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
        let components = crate::components::build(&cfg, &shared, direct.as_ref(), &waker)?;
        let wcfg = WorkerConfig {
            connect_timeout: cfg.connect_timeout,
            // `--idle-timeout 0s` means no idle timeout: a deadline never reached.
            idle_timeout: match cfg.idle_timeout {
                Duration::ZERO => Duration::MAX,
                d => d,
            },
            retries: cfg.retries,
            max_conns: cfg.max_conns,
            splice: cfg.splice,
            send_proxy: cfg.send_proxy,
            source_limit: cfg
                .max_conns_per_source
                .map(|n| Arc::new(proxy::source_limit::SourceLimit::new(n))),
            access_log: cfg.access_log,
        };
        shared.sched_shared.set_seed(cfg.hash_seed);
        let mut workers = match &cfg.mode {
            ForwardMode::Proxy => proxy::start(
                proxy::ListenSpec {
                    addrs: &cfg.listen,
                    backlog: cfg.backlog,
                    freebind: cfg.freebind,
                    inherited,
                },
                cfg.workers,
                &shared,
                &wcfg,
                waker,
            )?,
            ForwardMode::Direct(d) => {
                let counters = direct.get_or_insert_with(Default::default);
                crate::direct::start(d, &cfg.backends, &shared, counters, waker)?
            }
        };
        info!(target: "fulcrum::serve", "{}", cfg.summary());
        let listeners = std::mem::take(&mut workers.listener_fds);
        let plane = Plane::new(Arc::clone(&shared), direct, cfg, listeners);
        let mut server = Server {
            shared,
            plane,
            components,
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
                && !self.shared.cut_now.load(Ordering::Acquire)
            {
                self.shared.cut_now.store(true, Ordering::Release);
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
        self.shared
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
                    self.shared.cut_now.store(true, Ordering::Release);
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
        let active = self.shared.stats.active.load(Ordering::Relaxed);
        info!(target: "fulcrum::serve",
            "{why}: stopped accepting; draining {} for up to {}",
            crate::words::plural(active, "connection"),
            crate::duration::format_duration(self.plane.cfg.drain_timeout));
        tell_service_manager(sd_notify::NotifyState::Stopping);
        self.plane.listeners.clear();
        self.shared.shutdown.store(true, Ordering::Release);
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
