//! The node agent (`fulcrum agent`) and its heartbeat protocol with the distributor.
//!
//! [`wire`] is the authenticated heartbeat format and its replay/staleness checks
//! (sans-IO); [`config`] its flags; [`run`] is the agent process itself.

pub mod config;
pub mod run;
pub mod wire;
