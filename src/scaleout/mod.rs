//! Scale-out (issue #11): several distributors announce the same service prefixes to
//! their routers over BGP, the routers spread flows over them with ECMP, and a
//! distributor that dies, is disabled or stops is withdrawn from the routers' tables;
//! BFD detects a dead host in a fraction of a second.
//!
//! - [`config`]: the flags and their validation (pure).
//! - [`announce`]: when to announce: health with a hold-down, `disable`, the stages
//!   of a planned stop (pure).
//! - [`status`]: the `show bgp` snapshot and its renderings (pure).
//! - [`bfd_link`]: the RFC 5881 sockets and the demultiplexing of BFD sessions.
//! - [`driver`]: the control-plane component that drives [`crate::bgp::session`]
//!   over TCP (one [`peer`] each) and [`crate::bfd::session`] over UDP.
//!
//! The BGP and BFD protocol cores stay in [`crate::bgp`] and [`crate::bfd`].

pub mod announce;
pub mod bfd_link;
pub mod config;
pub mod driver;
mod peer;
pub mod status;
