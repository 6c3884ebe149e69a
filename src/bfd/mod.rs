//! BFD, Bidirectional Forwarding Detection (RFC 5880, single hop over UDP per
//! RFC 5881), for detecting within a fraction of a second that the path to a
//! BGP peer is gone (issue #11): the sans-IO core only.
//!
//! What exists: [`wire`], the control packet codec (RFC 5880 §4.1) with the
//! packet-only reception checks of §6.8.6, and [`session`], one session's
//! state machine in asynchronous mode (§6.2, §6.8) with its detection and
//! transmit timers, driven by the caller's clock and a seed.
//!
//! What it is not: there are no sockets, no clock and no threads here. The UDP
//! shell (ports 3784/49152–65535, TTL 255, RFC 5881) and the tie to a BGP peer are
//! in [`crate::scaleout`]. No demand mode, echo function or authentication.

pub mod session;
pub mod wire;

pub use session::{Config, ConfigError, Counters, Dropped, Event, Session};
pub use wire::{ControlPacket, Diag, State, WireError};
