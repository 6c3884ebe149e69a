//! Builds the control-plane components that the configuration asks for.
//!
//! The one place that knows which [`Component`] exists; `serve` only drives the list.

use std::io;
use std::sync::{mpsc, Arc};

use mio::Waker;

use crate::config::ServeConfig;
use crate::control::server::ControlServer;
use crate::direct::DirectShared;
use crate::ha::driver::HaDriver;
use crate::health::checker::Checker;
use crate::plane::Component;
use crate::rollout::driver::RolloutDriver;
use crate::runtime::Shared;
use crate::scaleout::driver::ScaleoutDriver;
use crate::state::StateKeeper;

/// The components for these services (the first one's global keys are the process's),
/// in token order. `shared`: each service's state, in the same order. `direct`: direct
/// mode's counters and switches, which failover drives in that mode.
pub fn build(
    services: &[ServeConfig],
    shared: &[Arc<Shared>],
    direct: Option<&Arc<DirectShared>>,
    waker: &Arc<Waker>,
) -> io::Result<Vec<Box<dyn Component>>> {
    let mut list: Vec<Box<dyn Component>> = Vec::new();
    let Some(cfg) = services.first() else {
        return Ok(list);
    };
    // One health checker per service (a node in two services is checked for each).
    // Passive health: workers report failed connects through the service's channel.
    // The node agents' one UDP socket belongs to the first service's checker, which
    // hands each authenticated heartbeat to every service's checker.
    for (i, (c, sh)) in services.iter().zip(shared).enumerate() {
        let (tx, rx) = mpsc::channel();
        sh.set_observer(tx, Arc::clone(waker));
        list.push(Box::new(Checker::new(c.health.clone(), i, i == 0, rx)?));
    }
    // Before the control component: its first tick queues the state file's commands
    // for the control component to run in the same turn.
    if let Some(path) = &cfg.state_file {
        list.push(Box::new(StateKeeper::new(path.clone())));
    }
    // Always present, even with neither --control nor --http: it runs the admin changes
    // of a failover peer and of a configuration reload.
    {
        // The token stays in memory as text only inside the server, which never logs it.
        let token = cfg
            .http_token
            .as_ref()
            .map(|t| String::from_utf8_lossy(t.bytes()).into_owned());
        list.push(Box::new(ControlServer::new(
            cfg.control.clone(),
            cfg.http,
            token,
            cfg.listeners_from.as_deref(),
        )?));
    }
    // After the control component: a rollout started by a command starts in the same
    // turn; the admin changes it queues run on the next turn, which it asks for at once.
    list.push(Box::new(RolloutDriver::new(cfg.hooks.clone())));
    if let Some(ha) = &cfg.ha {
        list.push(Box::new(HaDriver::new(ha, direct.cloned())?));
    }
    if let Some(so) = &cfg.scaleout {
        // Proxy mode owns the announced addresses on lo; direct mode must not (the
        // kernel would answer the SYNs the data plane forwards).
        let own = matches!(cfg.mode, crate::config::ForwardMode::Proxy);
        list.push(Box::new(ScaleoutDriver::new(so, own)?));
    }
    Ok(list)
}
