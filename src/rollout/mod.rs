//! Rolling maintenance (issue #13): declared hooks, the sans-IO planner, and the
//! component that drives it.
//!
//! - [`config`]: `--hook NAME=COMMAND` and `--hook-timeout`, the only commands a
//!   rollout may run.
//! - [`plan`]: the validated [`Plan`] (nodes in order, batch size, `min_ready`, drain
//!   and healthy timeouts, the hook or task to run).
//! - [`machine`]: the [`Rollout`] state machine that takes each batch through
//!   drain → action → healthy → ready, never leaving fewer than `min_ready` usable
//!   nodes, and stops in maint at the first failure. Time comes in as `now`; node
//!   reports and action results come in as calls; what the driver must do comes out
//!   as [`Command`]s.
//! - [`board`]: what the control interface and the driver exchange through the plane
//!   (requests in, the published status out), and its text and JSON rendering.
//! - [`hook`]: one run of a hook (IO: a child process in its own process group,
//!   output captured, polled without blocking).
//! - [`driver`]: the control-plane component that feeds the planner from the pool and
//!   the health checks under a real clock and carries its commands out; it also opens
//!   and closes the scheduled maintenance windows of [`window`] (sans-IO).
//!
//! What it is not: agent tasks (`Action::Task`) are planned but not run (the driver
//! refuses them), and a rollout's progress is not replicated to a failover peer; see
//! `docs/maintenance.md`.

pub mod agent_task;
pub mod agents;
pub mod board;
pub mod config;
pub mod driver;
pub mod hook;
pub mod job;
pub mod machine;
pub mod plan;
pub mod replica;
pub mod takeover;
#[cfg(test)]
mod tests;
pub mod window;

pub use machine::{
    Command, NodeState, NodeStatus, NodeView, Overall, Rollout, RunId, Status, Target,
};
pub use plan::{Action, Plan, PlanError};
