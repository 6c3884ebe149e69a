//! Rolling maintenance (issue #13): the sans-IO planner only.
//!
//! What exists: [`plan`], the validated [`Plan`] (nodes in order, batch size,
//! `min_ready`, drain and healthy timeouts, the hook or task to run), and
//! [`machine`], the [`Rollout`] state machine that takes each batch through
//! drain → action → healthy → ready, never leaving fewer than `min_ready`
//! usable nodes, and stops in maint at the first failure. Time comes in as
//! `now`; node reports and action results come in as calls; what the driver
//! must do comes out as [`Command`]s.
//!
//! What it is not: there are no sockets, no clock, no processes here, and
//! nothing calls it yet. The driver (in the event loop), running hooks,
//! agent tasks and the `fulcrum ctl rollout` commands come later; see
//! `docs/maintenance.md`.

pub mod machine;
pub mod plan;
#[cfg(test)]
mod tests;

pub use machine::{
    Command, NodeState, NodeStatus, NodeView, Overall, Rollout, RunId, Status, Target,
};
pub use plan::{Action, Plan, PlanError};
