//! Primary/backup failover (VRRP-like, RFC 5798 timing).
//!
//! [`machine`] is the sans-IO election state machine, [`wire`] the authenticated
//! advert format; both are tested under a virtual clock in the `sim` harness.

pub mod machine;
#[cfg(test)]
mod sim;
pub mod wire;
