//! BGP-4 for announcing service addresses to the routers (issue #11): the sans-IO
//! core only.
//!
//! What exists: [`wire`], the BGP-4 message codec (RFC 4271 §4 with the 4-octet
//! AS and multiprotocol capabilities), [`prefix`], the validated IP prefix, and
//! [`session`], the session state machine of RFC 4271 §8 for an announce-only
//! speaker (one peer; OPEN, KEEPALIVE, hold timer, reconnect backoff, UPDATEs for
//! the difference between the desired and the announced routes). Time comes in
//! as `now`; bytes come in as slices and go out as `Vec<u8>`; requests to open or
//! close the TCP connection come out as events.
//!
//! What it is not: there are no sockets, no clock and no threads here; the mio
//! driver, the flags and the wiring into `serve` are in [`crate::scaleout`]. It
//! never accepts routes: received UPDATEs are checked for framing, counted and
//! ignored.

pub mod prefix;
pub mod session;
pub mod wire;

pub use prefix::{Prefix, PrefixError};
