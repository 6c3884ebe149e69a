//! `fulcrum serve`: wires the configuration, the pool, the workers and the control plane
//! together, and owns the process's life cycle (signals, drain, exit).
//!
//! The calling thread becomes the control-plane thread: a mio loop that handles signals
//! (through a signalfd, so no async-signal-safety concerns) and worker exits. Workers are
//! the data plane. On SIGTERM/SIGINT every worker stops accepting and the loop waits up
//! to `--drain-timeout` for open connections to finish, then tells the workers to cut
//! the rest; a second signal cuts at once.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::config::ServeConfig;
use crate::pool::{Pool, Stats};
use crate::proxy::{self, Shared, WorkerConfig};

const SIGNAL: Token = Token(0);
const WORKER_EXIT: Token = Token(1);

/// Raises the soft descriptor limit to the hard limit; returns the soft limit in force.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// Blocks SIGINT/SIGTERM in this thread (and the threads it spawns later) and returns a
/// signalfd that reports them.
pub fn signal_fd() -> io::Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().map_err(io::Error::from)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(io::Error::from)
}

/// A running distributor, before its control loop runs.
pub struct Server {
    /// What workers share (pool, counters, flags).
    pub shared: Arc<Shared>,
    cfg: ServeConfig,
    poll: Poll,
    sfd: SignalFd,
    workers: proxy::Workers,
}

impl Server {
    /// Binds listeners and starts the workers. Signals must already be blocked (call
    /// [`signal_fd`] first, before any other thread starts) — `sfd` is its result.
    pub fn start(cfg: ServeConfig, sfd: SignalFd) -> io::Result<Server> {
        let pool = Arc::new(Pool::new(&cfg.backends));
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared::new(pool, stats, cfg.scheduler));
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&sfd.as_raw_fd()), SIGNAL, Interest::READABLE)?;
        let exit_waker = Arc::new(Waker::new(poll.registry(), WORKER_EXIT)?);
        let wcfg = WorkerConfig {
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.idle_timeout,
            retries: cfg.retries,
            max_conns: cfg.max_conns,
            splice: cfg.splice,
        };
        let workers = proxy::start(
            &cfg.listen,
            cfg.backlog,
            false,
            cfg.workers,
            &shared,
            &wcfg,
            exit_waker,
        )?;
        info!(target: "fulcrum::serve", "{}", cfg.summary());
        Ok(Server {
            shared,
            cfg,
            poll,
            sfd,
            workers,
        })
    }

    /// Runs the control loop until the process should exit; returns after every worker
    /// has stopped.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        let mut drain_deadline: Option<Instant> = None;
        loop {
            // While draining, look again every 50 ms: a worker wakes us just before its
            // thread actually ends, so one wake-up may come too early to see it finished.
            let timeout = drain_deadline.map(|d| {
                d.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50))
            });
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                if ev.token() == SIGNAL {
                    while let Ok(Some(si)) = self.sfd.read_signal() {
                        let name =
                            Signal::try_from(si.ssi_signo as i32).map_or("signal", |s| s.as_str());
                        if drain_deadline.is_none() {
                            let active = self.shared.stats.active.load(Ordering::Relaxed);
                            info!(target: "fulcrum::serve",
                                "{name}: stopped accepting; draining {active} connections for up to {:?}",
                                self.cfg.drain_timeout);
                            self.shared.shutdown.store(true, Ordering::Release);
                            drain_deadline = Some(Instant::now() + self.cfg.drain_timeout);
                        } else {
                            info!(target: "fulcrum::serve", "{name} again: closing remaining connections now");
                            self.shared.cut_now.store(true, Ordering::Release);
                        }
                        self.workers.wake_all();
                    }
                }
            }
            if drain_deadline.is_some_and(|d| Instant::now() >= d)
                && !self.shared.cut_now.load(Ordering::Acquire)
            {
                self.shared.cut_now.store(true, Ordering::Release);
                self.workers.wake_all();
            }
            if self.workers.threads.iter().all(|t| t.is_finished()) {
                break;
            }
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
        info!(target: "fulcrum::serve", "stopped; {cut} connections cut at shutdown");
        Ok(())
    }
}
