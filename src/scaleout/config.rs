//! Scale-out flags of `fulcrum serve` (BGP announcements, BFD) and their validation
//! into one [`ScaleoutConfig`].
//!
//! What it owns: the clap definitions of `--bgp-as`, `--bgp-peer`, `--bgp-router-id`,
//! `--announce`, `--announce-min-healthy`, `--announce-hold-down`,
//! `--bgp-shutdown-delay`, `--bfd-interval` and `--bfd-multiplier`, the value parsers
//! (each error names the value; clap adds the flag and exits with code 2), and the rules
//! between them.
//!
//! What it does not do: touch the network. The local address of each session (its
//! NEXT_HOP, and the router ID when none is given) is found when the component starts
//! ([`super::driver`]). Refusing BGP together with `--vip` failover is
//! [`crate::config`]'s rule, because it spans two subsystems.

// The fields' doc comments are their --help text, not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Args;

use crate::bgp::Prefix;
use crate::duration::parse_duration;

/// TCP port of BGP (RFC 4271 §8.2.1).
pub const BGP_PORT: u16 = 179;
/// Hold time offered when a peer has no `hold=` (RFC 4271 §10 suggests 90 s).
pub const DEFAULT_HOLD: u16 = 90;

/// The longest hold-down and shutdown delay accepted.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// One `--bgp-peer` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSpec {
    /// The router's address and port.
    pub addr: SocketAddr,
    /// The router's AS.
    pub asn: u32,
    /// Hold time we offer, in seconds: 0 or at least 3.
    pub hold: u16,
    /// Run a BFD session with this peer (RFC 5881 single hop).
    pub bfd: bool,
}

/// The scale-out flags as clap parses them (flattened into `fulcrum serve`).
#[derive(Debug, Clone, Args, Default)]
pub struct ScaleoutArgs {
    /// Local AS number for BGP (1..=4294967295; eBGP: must differ from every peer's).
    #[arg(long, value_name = "N", value_parser = parse_asn)]
    pub bgp_as: Option<u32>,
    /// BGP peer (a router): ADDR[:PORT],as=N[,hold=DUR][,bfd] (repeatable). fulcrum
    /// connects to it (port 179 by default) and announces the --announce prefixes;
    /// hold: offered hold time in whole seconds (0 or >= 3s) [90s]; bfd: run BFD with it.
    #[arg(long = "bgp-peer", value_name = "PEER", value_parser = parse_peer)]
    pub bgp_peer: Vec<PeerSpec>,
    /// BGP router ID [default: the local IPv4 address of the first peer's session].
    #[arg(long, value_name = "IPV4")]
    pub bgp_router_id: Option<Ipv4Addr>,
    /// Prefix announced to every BGP peer while the pool is healthy, e.g. 10.0.0.100/32
    /// (repeatable; IPv4). In proxy mode each /32 is added to `lo` at start.
    #[arg(long = "announce", value_name = "PREFIX", value_parser = parse_prefix)]
    pub announce: Vec<Prefix>,
    /// Announce while at least N nodes are usable; withdraw below.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub announce_min_healthy: u32,
    /// After a health withdrawal, announce again only once the pool has stayed
    /// healthy this long (keeps a flapping pool from flapping the route).
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg)]
    pub announce_hold_down: Duration,
    /// On SIGTERM/shutdown: re-announce with the GRACEFUL_SHUTDOWN community, withdraw
    /// after half of this, keep accepting until all of it has passed, then drain.
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    pub bgp_shutdown_delay: Duration,
    /// BFD desired min TX and required min RX interval (at least 10ms).
    #[arg(long, default_value = "100ms", value_parser = parse_bfd_interval)]
    pub bfd_interval: Duration,
    /// BFD detect multiplier: the peer is down after this many intervals of silence.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
    pub bfd_multiplier: u8,
}

/// The validated scale-out configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleoutConfig {
    /// Our AS.
    pub local_as: u32,
    /// The peers, in flag order.
    pub peers: Vec<PeerSpec>,
    /// Router ID; `None`: the first session's local IPv4 address.
    pub router_id: Option<Ipv4Addr>,
    /// Announced prefixes, in flag order.
    pub announce: Vec<Prefix>,
    /// Fewest usable nodes for announcing.
    pub min_healthy: usize,
    /// Healthy time before re-announcing after a health withdrawal.
    pub hold_down: Duration,
    /// Graceful shutdown: withdraw at half, drain at the end.
    pub shutdown_delay: Duration,
    /// BFD interval (both directions).
    pub bfd_interval: Duration,
    /// BFD detect multiplier.
    pub bfd_multiplier: u8,
}

impl ScaleoutConfig {
    /// The scale-out configuration, or `None` when no BGP flag was given.
    pub fn from_args(a: ScaleoutArgs) -> Result<Option<ScaleoutConfig>, String> {
        if a.bgp_peer.is_empty() && a.announce.is_empty() && a.bgp_as.is_none() {
            return Ok(None);
        }
        let local_as = a
            .bgp_as
            .ok_or("--bgp-peer/--announce need --bgp-as N (the local AS)")?;
        if a.bgp_peer.is_empty() {
            return Err("--bgp-as/--announce need at least one --bgp-peer".into());
        }
        if a.announce.is_empty() {
            return Err("--bgp-peer needs at least one --announce PREFIX".into());
        }
        for (i, p) in a.bgp_peer.iter().enumerate() {
            if p.asn == local_as {
                return Err(format!(
                    "--bgp-peer {},as={}: same AS as --bgp-as (iBGP is not supported)",
                    p.addr, p.asn
                ));
            }
            if a.bgp_peer[..i].iter().any(|o| o.addr.ip() == p.addr.ip()) {
                return Err(format!("--bgp-peer {}: peer given twice", p.addr.ip()));
            }
        }
        if let Some(id) = a.bgp_router_id {
            if id.is_unspecified() {
                return Err("--bgp-router-id 0.0.0.0: must not be 0.0.0.0".into());
            }
        }
        let mut announce: Vec<Prefix> = Vec::new();
        for p in a.announce {
            if announce.contains(&p) {
                return Err(format!("--announce {p}: prefix given twice"));
            }
            announce.push(p);
        }
        for (flag, d) in [
            ("--announce-hold-down", a.announce_hold_down),
            ("--bgp-shutdown-delay", a.bgp_shutdown_delay),
        ] {
            if d > MAX_DELAY {
                return Err(format!(
                    "{flag} {}: at most 1h",
                    crate::duration::format_duration(d)
                ));
            }
        }
        if a.announce_min_healthy == 0 {
            return Err(
                "--announce-min-healthy 0: would announce with no usable node (at least 1)".into(),
            );
        }
        Ok(Some(ScaleoutConfig {
            local_as,
            peers: a.bgp_peer,
            router_id: a.bgp_router_id,
            announce,
            min_healthy: a.announce_min_healthy as usize,
            hold_down: a.announce_hold_down,
            shutdown_delay: a.bgp_shutdown_delay,
            bfd_interval: a.bfd_interval,
            bfd_multiplier: a.bfd_multiplier,
        }))
    }

    /// One line for the start-up log.
    pub fn summary(&self) -> String {
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|p| {
                format!(
                    "{}(as={},hold={}s{})",
                    p.addr,
                    p.asn,
                    p.hold,
                    if p.bfd { ",bfd" } else { "" }
                )
            })
            .collect();
        let announce: Vec<String> = self.announce.iter().map(|p| p.to_string()).collect();
        format!(
            "bgp: as={} peers={} announce={} min_healthy={}",
            self.local_as,
            peers.join(" "),
            announce.join(","),
            self.min_healthy
        )
    }
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn parse_bfd_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration_arg(s)?;
    if d < Duration::from_millis(10) || d > crate::bfd::session::MAX_INTERVAL {
        return Err(format!("\"{s}\": must be within 10ms..=4294s"));
    }
    Ok(d)
}

/// An AS number: 1..=4294967295 (0 is reserved, RFC 7607).
pub fn parse_asn(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("AS 0 is reserved (RFC 7607)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "\"{s}\" is not an AS number (1..=4294967295, asplain)"
        )),
    }
}

/// An announced prefix: IPv4 only for now (IPv6 needs an IPv6 next hop).
pub fn parse_prefix(s: &str) -> Result<Prefix, String> {
    let p: Prefix = s.parse().map_err(|e| format!("{e}"))?;
    if !p.is_ipv4() {
        return Err(format!(
            "{p}: IPv6 prefixes are not announced yet (IPv4 only)"
        ));
    }
    Ok(p)
}

/// Parses `ADDR[:PORT],as=N[,hold=DUR][,bfd]`.
pub fn parse_peer(s: &str) -> Result<PeerSpec, String> {
    let mut parts = s.split(',');
    let addr_s = parts.next().unwrap_or_default();
    let addr = match addr_s.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match addr_s.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, BGP_PORT),
            Err(_) => {
                return Err(format!(
                    "\"{addr_s}\" is not ADDR or ADDR:PORT (e.g. 10.0.0.1 or 10.0.0.1:179)"
                ))
            }
        },
    };
    if !addr.is_ipv4() {
        return Err(format!(
            "\"{addr_s}\": IPv6 peers are not supported yet (IPv4 only)"
        ));
    }
    if addr.port() == 0 {
        return Err(format!("\"{addr_s}\": port 0"));
    }
    let mut asn = None;
    let mut hold = DEFAULT_HOLD;
    let mut bfd = false;
    for opt in parts {
        match opt.split_once('=') {
            Some(("as", v)) => asn = Some(parse_asn(v)?),
            Some(("hold", v)) => hold = parse_hold(v)?,
            None if opt == "bfd" => bfd = true,
            _ => {
                return Err(format!(
                    "unknown peer option \"{opt}\" (expected as=N, hold=DUR, bfd)"
                ))
            }
        }
    }
    let asn = asn.ok_or_else(|| format!("\"{s}\": missing as=N (the peer's AS)"))?;
    Ok(PeerSpec {
        addr,
        asn,
        hold,
        bfd,
    })
}

/// A hold time: whole seconds, 0 (no keepalives) or 3..=65535 (RFC 4271 §4.2).
fn parse_hold(v: &str) -> Result<u16, String> {
    // A bare number is seconds, as routers write it.
    let d = match v.parse::<u64>() {
        Ok(n) => Duration::from_secs(n),
        Err(_) => parse_duration(v).map_err(|e| format!("hold: {e}"))?,
    };
    if d.subsec_nanos() != 0 {
        return Err(format!("hold={v}: must be whole seconds"));
    }
    match u16::try_from(d.as_secs()) {
        Ok(h) if h == 0 || h >= 3 => Ok(h),
        _ => Err(format!("hold={v}: must be 0 or 3s..=65535s (RFC 4271)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ScaleoutArgs {
        ScaleoutArgs {
            bgp_as: Some(65001),
            bgp_peer: vec![parse_peer("10.0.0.1,as=65000").unwrap()],
            announce: vec![parse_prefix("10.0.0.100/32").unwrap()],
            announce_min_healthy: 1,
            announce_hold_down: Duration::from_secs(5),
            bgp_shutdown_delay: Duration::from_secs(2),
            bfd_interval: Duration::from_millis(100),
            bfd_multiplier: 3,
            ..ScaleoutArgs::default()
        }
    }

    #[test]
    fn bgp_peer_values_parse() {
        let p = parse_peer("10.0.0.1,as=65000").unwrap();
        assert_eq!(p.addr, "10.0.0.1:179".parse().unwrap());
        assert_eq!((p.asn, p.hold, p.bfd), (65000, DEFAULT_HOLD, false));
        let p = parse_peer("10.0.0.1:1179,as=4200000000,hold=9s,bfd").unwrap();
        assert_eq!(p.addr, "10.0.0.1:1179".parse().unwrap());
        assert_eq!((p.asn, p.hold, p.bfd), (4_200_000_000, 9, true));
        assert_eq!(parse_peer("10.0.0.1,as=1,hold=0").unwrap().hold, 0);
        assert_eq!(parse_peer("10.0.0.1,as=1,hold=3").unwrap().hold, 3);
    }

    #[test]
    fn bgp_bad_peer_values_name_the_problem() {
        for (input, want) in [
            ("10.0.0.1", "missing as=N"),
            ("10.0.0.1,as=0", "AS 0 is reserved"),
            ("10.0.0.1,as=x", "not an AS number"),
            ("host,as=1", "not ADDR or ADDR:PORT"),
            ("[::1]:179,as=1", "IPv6 peers"),
            ("10.0.0.1,as=1,hold=2s", "0 or 3s"),
            ("10.0.0.1,as=1,hold=1500ms", "whole seconds"),
            ("10.0.0.1,as=1,hold=70000", "0 or 3s"),
            ("10.0.0.1,as=1,md5", "unknown peer option \"md5\""),
            ("10.0.0.1:0,as=1", "port 0"),
        ] {
            let e = parse_peer(input).unwrap_err();
            assert!(e.contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn bgp_prefixes_are_ipv4_without_host_bits() {
        assert!(parse_prefix("10.0.0.100/32").is_ok());
        assert!(parse_prefix("10.0.0.0/24").is_ok());
        assert!(parse_prefix("10.0.0.1/24")
            .unwrap_err()
            .contains("host bits"));
        assert!(parse_prefix("2001:db8::1/128")
            .unwrap_err()
            .contains("IPv6"));
        assert!(parse_prefix("nonsense").is_err());
    }

    #[test]
    fn bgp_config_rules() {
        assert_eq!(ScaleoutConfig::from_args(ScaleoutArgs::default()), Ok(None));
        let c = ScaleoutConfig::from_args(args()).unwrap().unwrap();
        assert_eq!(c.local_as, 65001);
        assert_eq!(c.min_healthy, 1);
        let bad = |f: &dyn Fn(&mut ScaleoutArgs), want: &str| {
            let mut a = args();
            f(&mut a);
            let e = ScaleoutConfig::from_args(a).unwrap_err();
            assert!(e.contains(want), "{e}");
        };
        bad(&|a| a.bgp_as = None, "need --bgp-as");
        bad(&|a| a.bgp_peer.clear(), "at least one --bgp-peer");
        bad(&|a| a.announce.clear(), "at least one --announce");
        bad(&|a| a.bgp_as = Some(65000), "iBGP");
        bad(
            &|a| {
                a.bgp_peer
                    .push(parse_peer("10.0.0.1:1179,as=65002").unwrap())
            },
            "given twice",
        );
        bad(
            &|a| a.announce.push(parse_prefix("10.0.0.100/32").unwrap()),
            "given twice",
        );
        bad(&|a| a.announce_min_healthy = 0, "at least 1");
        bad(
            &|a| a.bgp_shutdown_delay = Duration::from_secs(3601),
            "--bgp-shutdown-delay 3601s: at most 1h",
        );
        bad(
            &|a| a.bgp_router_id = Some(Ipv4Addr::UNSPECIFIED),
            "0.0.0.0",
        );
    }

    #[test]
    fn bfd_interval_bounds() {
        assert!(parse_bfd_interval("100ms").is_ok());
        assert!(parse_bfd_interval("9ms").is_err());
        assert!(parse_bfd_interval("2h").is_err());
    }
}
