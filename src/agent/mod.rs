//! The node agent (`fulcrum agent`) and its heartbeat protocol with the distributor.
//!
//! The agent speaks the heartbeat format of [`crate::wire::heartbeat`] (authenticated,
//! with replay/staleness checks); [`config`] holds its flags; [`run`] is the process.

pub mod config;
pub mod run;
