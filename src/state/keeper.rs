//! The state file's component: loads the file once, hands its commands to the control
//! component, then keeps the file equal to the runtime changes (see [`super`]).
//!
//! It registers no event source. It must come before the control component in the
//! component list: on the first turn it queues the loaded commands, which the control
//! component runs in the same turn, and it writes nothing before they have run, so a
//! restart never overwrites the file with the configuration alone.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::event::Event;
use mio::Registry;

use crate::control::command::Scoped;
use crate::plane::{Component, Plane};
use crate::words::plural;

/// How often the file is compared with the running state when no admin change was seen
/// (a removal finishing, a change synced from the failover peer).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The state-file component.
pub struct StateKeeper {
    path: PathBuf,
    /// Commands read at start, until the first tick queues them.
    loaded: Option<Vec<Scoped>>,
    /// What the file holds now (as written by this process).
    written: Option<String>,
    next: Instant,
    last_error: Option<String>,
}

impl StateKeeper {
    /// Reads the file. One that cannot be used is moved aside (`PATH.bad`) with a
    /// warning, and the process starts from the configuration alone.
    pub fn new(path: PathBuf) -> StateKeeper {
        let shown = path.display().to_string();
        let loaded = match super::load(&path) {
            Ok(None) => {
                info!(target: "fulcrum::state", "state file {shown}: none yet; starting from the configuration");
                None
            }
            Ok(Some(cmds)) => {
                info!(target: "fulcrum::state", "state file {shown}: applying {}",
                    plural(cmds.len() as u64, "runtime change"));
                Some(cmds)
            }
            Err(e) => {
                let mut aside = path.clone().into_os_string();
                aside.push(".bad");
                let moved = std::fs::rename(&path, &aside).is_ok();
                warn!(target: "fulcrum::state",
                    "state file {shown} cannot be used ({e}); starting from the configuration alone{}",
                    if moved { format!("; the file was moved to {}", aside.to_string_lossy()) } else { String::new() });
                None
            }
        };
        StateKeeper {
            path,
            loaded,
            written: None,
            next: Instant::now(),
            last_error: None,
        }
    }

    /// Rewrites the file if the runtime changes differ from what it holds.
    fn persist(&mut self, plane: &Plane) {
        let mut cmds = Vec::new();
        for (_, svc) in plane.live() {
            // A node being removed is recorded as removed: that is where it is going.
            let mut nodes = Vec::new();
            crate::ha::sync::pool_states(svc.name(), &svc.shared.pool, &mut nodes);
            nodes.retain(|n| !svc.info.get(&n.addr).is_some_and(|i| i.removing));
            let running = super::Running {
                nodes: &nodes,
                scheduler: svc.shared.scheduler_kind(),
                enabled: svc.shared.enabled.load(Ordering::Relaxed),
            };
            cmds.extend(super::changes(
                svc.name(),
                &svc.cfg.backends,
                svc.cfg.scheduler,
                &running,
            ));
        }
        let text = super::render(&cmds);
        if self.written.as_deref() == Some(text.as_str()) {
            return;
        }
        match super::write_atomic(&self.path, &text) {
            Ok(()) => {
                self.written = Some(text);
                self.last_error = None;
            }
            Err(e) => {
                let m = e.to_string();
                if self.last_error.as_deref() != Some(m.as_str()) {
                    warn!(target: "fulcrum::state", "state file {}: cannot write ({m}); runtime changes will not survive a restart until it can",
                        self.path.display());
                    self.last_error = Some(m);
                }
            }
        }
    }
}

impl Component for StateKeeper {
    fn register(&mut self, _registry: &Registry, _base: usize) -> io::Result<()> {
        Ok(())
    }

    fn on_event(&mut self, _: &mut Plane, _: &Registry, _: usize, _: &Event) {}

    fn on_tick(&mut self, plane: &mut Plane, _registry: &Registry, now: Instant) {
        if let Some(cmds) = self.loaded.take() {
            // Run by the control component this turn; written from the next.
            plane
                .queued_admin
                .extend(cmds.into_iter().map(|c| ("state file", c)));
            self.next = now;
            return;
        }
        if now >= self.next {
            self.next = now + CHECK_EVERY;
            self.persist(plane);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        Some(self.next)
    }

    fn on_admin(&mut self, _plane: &mut Plane, _cmds: &[Scoped]) {
        // Written on the next turn, at once.
        self.next = Instant::now();
    }

    fn on_shutdown(&mut self, plane: &mut Plane) {
        self.persist(plane);
    }
}
