//! Failure detection: active probes, passive failures, the node agent's reports.
//!
//! The deciding parts are sans-IO ([`state`]: rise/warn/fall hysteresis, [`interval`]:
//! adaptive probe interval and jitter, [`http`]: check request and status parsing,
//! [`config`]: what the checks are told to do);
//! the driver that runs probes inside the control plane's event loop lives in
//! [`checker`].

pub(crate) mod checker;
pub mod config;
pub mod http;
pub(crate) mod interval;
pub(crate) mod state;
