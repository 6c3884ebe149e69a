//! The runtime control interface: command grammar and application ([`command`]),
//! copied-out views of the distributor ([`snapshot`]), text/JSON/Prometheus renderers
//! ([`render`]), the `rollout …` commands ([`rollout`]) and the `task …` ones ([`task`]), the HTTP
//! parser, routes and admission policy ([`http`]), and the IO shell serving the Unix socket
//! and HTTP ([`server`]).

pub mod command;
pub mod ctl;
pub(crate) mod exec;
pub mod http;
pub(crate) mod render;
pub(crate) mod reply;
pub(crate) mod rollout;
pub(crate) mod server;
pub(crate) mod snapshot;
pub(crate) mod task;
