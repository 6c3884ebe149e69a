//! An IP prefix as BGP carries it (RFC 4271 §4.3, RFC 4760 §5): an address and a
//! length, validated so that the length fits the family and the host bits are zero.
//!
//! What it owns: the validity rule and the textual form (`10.0.0.100/32`,
//! `2001:db8::/32`). What it does not do: the wire encoding (length octet plus
//! the minimum number of address octets), which lives in [`super::wire`].

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A validated prefix: `len` ≤ 32 (IPv4) or ≤ 128 (IPv6) and no bit set past `len`.
///
/// The fields are private so that only valid prefixes exist; build one with
/// [`Prefix::new`] or parse one with [`str::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// The text is not `ADDRESS/LENGTH`.
    Syntax(String),
    /// The length is longer than the address family allows.
    Length {
        /// The length given.
        len: u8,
        /// 32 or 128.
        max: u8,
    },
    /// A bit past the length is set (`10.0.0.1/24`).
    HostBits(IpAddr, u8),
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixError::Syntax(s) => write!(f, "prefix {s:?} is not ADDRESS/LENGTH"),
            PrefixError::Length { len, max } => {
                write!(f, "prefix length {len} is longer than {max}")
            }
            PrefixError::HostBits(addr, len) => {
                write!(f, "prefix {addr}/{len} has host bits set")
            }
        }
    }
}

impl std::error::Error for PrefixError {}

impl Prefix {
    /// A prefix, if `len` fits the family and no bit past `len` is set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        let max = max_len(addr);
        if len > max {
            return Err(PrefixError::Length { len, max });
        }
        if mask(addr, len) != addr {
            return Err(PrefixError::HostBits(addr, len));
        }
        Ok(Prefix { addr, len })
    }

    /// The prefix that `addr/len` belongs to, host bits cleared; `None` if `len`
    /// is too long for the family. RFC 4271 §4.3 lets trailing bits be anything
    /// ("the value of trailing bits is irrelevant"), so decoding uses this.
    pub fn truncating(addr: IpAddr, len: u8) -> Option<Prefix> {
        if len > max_len(addr) {
            return None;
        }
        Some(Prefix {
            addr: mask(addr, len),
            len,
        })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether this is an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit past `len` cleared; `len` must be ≤ the family's maximum.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let syntax = || PrefixError::Syntax(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Prefix::new(addr, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgp_prefix_parses_and_displays() {
        let p: Prefix = "10.0.0.100/32".parse().unwrap();
        assert_eq!(p.addr(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)));
        assert_eq!(p.prefix_len(), 32);
        assert_eq!(p.to_string(), "10.0.0.100/32");
        let p: Prefix = "2001:db8::/32".parse().unwrap();
        assert_eq!(p.to_string(), "2001:db8::/32");
        assert!("0.0.0.0/0".parse::<Prefix>().is_ok());
        assert!("::/0".parse::<Prefix>().is_ok());
    }

    #[test]
    fn bgp_prefix_rejects_bad_input() {
        assert!(matches!(
            "10.0.0.1/24".parse::<Prefix>(),
            Err(PrefixError::HostBits(..))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::Length { len: 33, max: 32 })
        ));
        assert!(matches!(
            "2001:db8::/129".parse::<Prefix>(),
            Err(PrefixError::Length { len: 129, max: 128 })
        ));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "/8",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/300",
        ] {
            assert!(
                matches!(bad.parse::<Prefix>(), Err(PrefixError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bgp_prefix_truncating_clears_host_bits() {
        let p = Prefix::truncating(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 8).unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/8");
        assert!(Prefix::truncating(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 33).is_none());
    }
}
