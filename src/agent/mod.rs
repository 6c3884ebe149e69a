//! The node agent (`fulcrum agent`) and its heartbeat protocol with the distributor.
//!
//! The agent speaks the heartbeat format of [`crate::wire::heartbeat`] (authenticated,
//! with replay/staleness checks); [`config`] holds its flags; [`run`] is the process;
//! [`tasks`] decides about the distributor's task requests ([`crate::wire::task`]).

pub mod config;
pub mod run;
pub mod tasks;
