//! fulcrum: a userspace Layer-4 TCP connection distributor.
//!
//! The binary (`src/main.rs`) is a thin shell over this library; see
//! `docs/architecture.md` for how the modules fit together.
#![warn(missing_docs)]

pub mod addr;
pub mod agent;
pub mod cli;
pub mod components;
pub mod config;
pub mod control;
pub mod demo;
pub mod direct;
pub mod duration;
pub mod ha;
pub mod health;
pub mod notify;
pub mod plane;
pub mod pool;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod sys;
pub mod time;
