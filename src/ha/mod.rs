//! Primary/backup failover (VRRP-like, RFC 5798 timing).
//!
//! Sans-IO cores: [`machine`] is the election state machine, [`crate::wire::advert`] the
//! authenticated advert format, [`sync`] the node-set state sync; both of the first
//! are tested under a virtual clock in the `sim` harness. The IO shell:
//! [`driver`] (the control-plane component), [`vip`] (netlink), [`garp`]
//! (gratuitous ARP). [`config`] holds the flags.

pub mod config;
pub(crate) mod driver;
pub(crate) mod garp;
pub(crate) mod machine;
#[cfg(test)]
mod sim;
pub mod sync;
pub(crate) mod vip;
