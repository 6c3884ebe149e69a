//! Thin wrappers over system calls that the standard library, mio, socket2 and nix do
//! not cover the way fulcrum needs. The crate's remaining `unsafe` lives here, each
//! block beside the one call it wraps.
//!
//! Nothing here decides anything: callers get `io::Result`s and plain values.

pub mod bpf;
pub mod child;
pub mod limits;
pub mod mmap;
pub mod netdev;
pub mod packet;
pub mod ring;
pub mod scm;
pub mod signal;
pub mod ttl;
pub mod xsk;
