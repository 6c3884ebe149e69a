//! Rolling maintenance and node tasks (issue #13): declared hooks, agent tasks, the
//! sans-IO planners, and the component that drives them.
//!
//! - [`config`]: `--hook NAME=COMMAND` and `--hook-timeout`, the only commands a
//!   rollout may run on the distributor.
//! - [`plan`]: the validated [`Plan`] (nodes in order, batch size, `min_ready`, drain
//!   and healthy timeouts, the hook or task to run).
//! - [`machine`]: the [`Rollout`] state machine that takes each batch through
//!   drain → action → healthy → ready, never leaving fewer than `min_ready` usable
//!   nodes, and stops in maint at the first failure; restored as interrupted after a
//!   failover. Time comes in as `now`; node reports and action results come in as
//!   calls; what the driver must do comes out as [`Command`]s.
//! - [`job`]: a task job (`task NAME … [when-idle]`), sans-IO.
//! - [`agent_task`]: one agent task run seen from the distributor (resend, no answer,
//!   deadline), sans-IO.
//! - [`board`]: what the control interface and the driver exchange through the plane
//!   (requests in, the published status out), and its text and JSON rendering.
//! - [`replica`] and [`takeover`]: what a failover master replicates to its backup,
//!   and who runs what in a pair.
//! - [`hook`]: one run of a hook (the process is a [`crate::sys::child::ChildRun`]).
//! - [`agents`]: the request socket toward the agents, the report intake, the jobs' IO.
//! - [`driver`]: the control-plane component that feeds the planners from the pool and
//!   the health checks under a real clock and carries their commands out; it also opens
//!   and closes the scheduled maintenance windows of [`window`] (sans-IO).
//!
//! What it is not: persistent across a restart (the node states it sets are, through
//! the state file); see `docs/maintenance.md`.

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
