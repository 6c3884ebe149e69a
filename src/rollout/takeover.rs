//! Maintenance across a failover pair: what a backup shows of its master's rollout,
//! task jobs and windows, and what it takes over when it becomes master.
//!
//! The rule: only the master runs rollouts, task jobs and windows. A backup shows the
//! master's replica ([`super::replica`]) as its own `rollout status`, `task status` and
//! `show nodes` windows, and refuses to start anything. A distributor that stops being
//! master while it runs a rollout stops it at once (its hooks are killed): the new
//! master has it, as interrupted, from the replica. A new master adopts the replica:
//! - the rollout becomes [`super::Overall::Interrupted`]: the nodes the old master had
//!   out go to maint (their hook or task may have half run) and nothing starts until an
//!   operator resumes or aborts it here;
//! - a task job not over is ended, its unfinished nodes failed with the reason (a node
//!   it had drained stays drained: the operator decides);
//! - the windows carry on where they stood (they only depend on the wall clock).

use std::time::{Duration, Instant};

use super::board::Report;
use super::replica::{self, Replica};
use crate::plane::Plane;

/// Why a taken-over rollout or job stopped.
pub const REASON: &str = "the distributor running it lost the master role; this one took over";

/// Whether this distributor may act: no failover pair, or the pair's master.
pub fn is_master(plane: &Plane) -> bool {
    plane.ha.as_ref().is_none_or(|h| h.role == "master")
}

/// Why a command that starts or changes maintenance is refused here, if it is.
pub fn refuse_on_backup(plane: &Plane) -> Option<String> {
    let role = plane.ha.as_ref().map(|h| h.role.as_str())?;
    (role != "master").then(|| {
        format!(
            "this distributor is not the failover master (role {role}): rollouts and tasks run on the master; status here shows the master's"
        )
    })
}

/// Shows `r` on this backup's board: the rollout report, the jobs and the windows,
/// with times on the clock `t` since `origin`.
pub fn show(plane: &mut Plane, r: &Replica, t: Duration, origin: Instant) {
    let board = &mut plane.rollout;
    board.report = r.rollout.as_ref().map(|c| Report {
        id: c.id,
        service: c.service.clone(),
        plan: c.plan.clone(),
        status: replica::status(c, t),
        origin,
        outputs: Default::default(),
    });
    board.jobs = r.jobs.iter().map(|j| replica::job(j, t)).collect();
    board.jobs_origin = Some(origin);
    board.last_id = board.last_id.max(r.last_ids.0);
    board.last_job_id = board.last_job_id.max(r.last_ids.1);
    let windows = r
        .windows
        .iter()
        .filter_map(|w| {
            let service = plane.service_index(&w.service)?;
            Some(super::window::Window {
                service,
                ..w.window.clone()
            })
        })
        .collect();
    plane.rollout.windows = windows;
}
