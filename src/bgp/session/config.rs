//! What one BGP session needs to know ([`Config`]) and why a configuration or a
//! route set is refused ([`ConfigError`]). Plain data: the flags that fill it
//! come with the driver.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::bgp::prefix::Prefix;

/// What the session needs to know; validated by [`super::Session::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our AS (4 octets; AS_TRANS is sent in OPEN's 2-octet field when > 65535).
    pub local_as: u32,
    /// The peer's AS; an OPEN from another AS is refused with 2/2.
    pub peer_as: u32,
    /// Our BGP identifier; non-zero (RFC 4271 §4.2).
    pub router_id: Ipv4Addr,
    /// Our hold time in seconds: 0 (no keepalives) or ≥ 3 (§4.2).
    pub hold_time: u16,
    /// NEXT_HOP of announced IPv4 prefixes.
    pub next_hop_v4: Ipv4Addr,
    /// Next hop of announced IPv6 prefixes; without it IPv6 unicast is not offered.
    pub next_hop_v6: Option<Ipv6Addr>,
}

/// Why a [`Config`] or a route set was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The router ID is 0.0.0.0.
    RouterIdZero,
    /// AS 0 is reserved (RFC 7607).
    AsZero,
    /// The local AS equals the peer AS: iBGP is not supported.
    Ibgp(u32),
    /// A hold time of 1 or 2 seconds (§4.2).
    HoldTime(u16),
    /// An IPv6 prefix to announce without an IPv6 next hop.
    NoIpv6NextHop(Prefix),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::RouterIdZero => f.write_str("BGP router ID must not be 0.0.0.0"),
            ConfigError::AsZero => f.write_str("AS 0 is reserved"),
            ConfigError::Ibgp(asn) => {
                write!(f, "local and peer AS are both {asn}: iBGP is not supported")
            }
            ConfigError::HoldTime(h) => write!(f, "hold time {h} s: must be 0 or at least 3"),
            ConfigError::NoIpv6NextHop(p) => {
                write!(f, "cannot announce {p}: no IPv6 next hop configured")
            }
        }
    }
}

impl std::error::Error for ConfigError {}
