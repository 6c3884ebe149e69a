//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that tells a node who
//! the client really is.
//!
//! What it is: sans-IO builders. [`header`] writes the header of a proxied connection
//! (client address → the address the client connected to); [`local`] writes the header
//! of a connection the distributor makes on its own behalf (health checks: v1
//! `PROXY UNKNOWN`, v2 command `LOCAL`), which a receiver accepts and treats as
//! coming from the connection's real endpoints. The worker queues the header in front
//! of the client's first byte; the HTTP health check sends [`local`] before its request.
//!
//! Layout, version 1 (text, one line, at most 107 bytes):
//! `PROXY TCP4 192.0.2.10 198.51.100.1 51000 80\r\n` (`TCP6` for IPv6).
//!
//! Layout, version 2 (binary, big-endian):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 12 | signature `\r\n\r\n\0\r\nQUIT\n` |
//! | 12 | 1 | `0x21` (version 2, command PROXY) or `0x20` (LOCAL) |
//! | 13 | 1 | `0x11` TCP over IPv4, `0x21` TCP over IPv6, `0x00` unspecified |
//! | 14 | 2 | length of what follows: 12 (IPv4), 36 (IPv6), 0 |
//! | 16 | 4 or 16 | source address, then destination address |
//! | .. | 2 + 2 | source port, destination port |
//!
//! An IPv4-mapped IPv6 address counts as IPv4. Source and destination of different
//! families (not produced by fulcrum's v6-only listeners) give v1 `UNKNOWN` and a v2
//! header with the unspecified family, as the spec asks.

use std::net::{IpAddr, SocketAddr};

/// Which header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

impl Version {
    /// `v1` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The twelve bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Appends the header of a connection from `client` to `dst` (the address it reached).
pub fn header(version: Version, client: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    let (src_ip, dst_ip) = (client.ip().to_canonical(), dst.ip().to_canonical());
    match version {
        Version::V1 => {
            use std::io::Write;
            let family = match (src_ip, dst_ip) {
                (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
                (IpAddr::V6(_), IpAddr::V6(_)) => "TCP6",
                _ => {
                    out.extend_from_slice(b"PROXY UNKNOWN\r\n");
                    return;
                }
            };
            // Writing into a Vec cannot fail.
            let _ = write!(
                out,
                "PROXY {family} {src_ip} {dst_ip} {} {}\r\n",
                client.port(),
                dst.port()
            );
        }
        Version::V2 => {
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21);
            match (src_ip, dst_ip) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.extend_from_slice(&[0x11, 0, 12]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    out.extend_from_slice(&[0x21, 0, 36]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                _ => {
                    out.extend_from_slice(&[0x00, 0, 0]);
                    return;
                }
            }
            out.extend_from_slice(&client.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
    }
}

/// Appends the header of a connection fulcrum makes for itself (a health check).
pub fn local(version: Version, out: &mut Vec<u8>) {
    match version {
        Version::V1 => out.extend_from_slice(b"PROXY UNKNOWN\r\n"),
        Version::V2 => {
            out.extend_from_slice(&V2_SIGNATURE);
            out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        }
    }
}

/// Parses a `--send-proxy` value.
pub fn parse_version(s: &str) -> Result<Version, String> {
    match s {
        "v1" | "1" => Ok(Version::V1),
        "v2" | "2" => Ok(Version::V2),
        _ => Err(format!("\"{s}\": expected v1 or v2")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: Version, c: &str, d: &str) -> Vec<u8> {
        let mut out = Vec::new();
        header(v, c.parse().unwrap(), d.parse().unwrap(), &mut out);
        out
    }

    #[test]
    fn v1_ipv4_and_ipv6() {
        assert_eq!(
            h(Version::V1, "192.0.2.10:51000", "198.51.100.1:80"),
            b"PROXY TCP4 192.0.2.10 198.51.100.1 51000 80\r\n"
        );
        assert_eq!(
            h(Version::V1, "[2001:db8::1]:65535", "[2001:db8::ff]:443"),
            b"PROXY TCP6 2001:db8::1 2001:db8::ff 65535 443\r\n"
        );
        // The longest v1 line fits the spec's 107 bytes.
        let long = h(
            Version::V1,
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
        );
        assert!(long.len() <= 107, "{}", long.len());
    }

    #[test]
    fn v2_ipv4_bytes() {
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
        want.extend_from_slice(&[192, 0, 2, 10, 198, 51, 100, 1]);
        want.extend_from_slice(&[0xc7, 0x38, 0x00, 0x50]); // 51000, 80
        assert_eq!(h(Version::V2, "192.0.2.10:51000", "198.51.100.1:80"), want);
    }

    #[test]
    fn v2_ipv6_bytes() {
        let out = h(Version::V2, "[2001:db8::1]:1", "[2001:db8::2]:2");
        assert_eq!(
            out.len(),
            16 + 36,
            "the longest header: v2 with IPv6 addresses"
        );
        assert_eq!(&out[12..16], &[0x21, 0x21, 0x00, 36]);
        assert_eq!(
            out[16..32],
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(
            out[32..48],
            "2001:db8::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&out[48..], &[0, 1, 0, 2]);
    }

    #[test]
    fn mapped_ipv4_is_ipv4_and_mixed_families_are_unknown() {
        assert_eq!(
            h(Version::V1, "[::ffff:192.0.2.10]:5", "192.0.2.1:80"),
            b"PROXY TCP4 192.0.2.10 192.0.2.1 5 80\r\n"
        );
        assert_eq!(
            h(Version::V1, "192.0.2.10:5", "[2001:db8::2]:80"),
            b"PROXY UNKNOWN\r\n"
        );
        let v2 = h(Version::V2, "192.0.2.10:5", "[2001:db8::2]:80");
        assert_eq!(&v2[12..], &[0x21, 0x00, 0, 0]);
    }

    #[test]
    fn local_headers() {
        let mut v1 = Vec::new();
        local(Version::V1, &mut v1);
        assert_eq!(v1, b"PROXY UNKNOWN\r\n");
        let mut v2 = Vec::new();
        local(Version::V2, &mut v2);
        assert_eq!(&v2[..12], &V2_SIGNATURE);
        assert_eq!(&v2[12..], &[0x20, 0x00, 0, 0]);
    }

    #[test]
    fn version_values() {
        assert_eq!(parse_version("v1"), Ok(Version::V1));
        assert_eq!(parse_version("2"), Ok(Version::V2));
        assert!(parse_version("v3").unwrap_err().contains("v1 or v2"));
        assert_eq!(Version::V2.to_string(), "v2");
    }
}
