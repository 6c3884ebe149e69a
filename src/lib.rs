//! fulcrum: a userspace Layer-4 TCP connection distributor.
//!
//! The binary (`src/main.rs`) is a thin shell over this library; see
//! `docs/architecture.md` for how the modules fit together.
#![warn(missing_docs)]
// Every `unsafe` block lives in `sys`, beside the one system call it wraps.
#![deny(unsafe_code)]
// Most modules are crate-private (so the compiler reports dead code); their docs are
// for developers, built with `--document-private-items`, and may link to each other.
#![allow(rustdoc::private_intra_doc_links)]

pub mod addr;
pub mod agent;
pub mod bfd;
pub mod bgp;
pub mod cli;
pub(crate) mod components;
pub mod config;
pub mod config_file;
pub mod control;
pub mod demo;
pub mod direct;
pub(crate) mod duration;
pub mod generate;
pub mod ha;
pub mod health;
pub(crate) mod notify;
pub(crate) mod plane;
pub mod pool;
pub(crate) mod proxy;
pub mod reconfig;
pub(crate) mod reload;
pub mod rollout;
pub(crate) mod runtime;
pub mod scaleout;
pub mod scheduler;
pub(crate) mod secret;
pub mod serve;
pub(crate) mod state;
#[allow(unsafe_code)]
pub mod sys;
pub(crate) mod time;
pub mod wire;
pub(crate) mod words;
