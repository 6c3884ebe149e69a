//! Failover flags of `fulcrum serve` and their validation into one [`HaConfig`].
//!
//! What it owns: the clap definitions of `--vip`, `--peer`, `--ha-port`,
//! `--priority`, `--advert-interval`, `--preempt`/`--no-preempt`, `--ha-key-file` and
//! `--ha-group` (`--interface` is `serve`'s own, shared with direct mode), the value parsers (each error names the value; clap adds the flag and
//! exits with code 2), and the cross-flag rules (`--vip` needs `--interface`, `--peer`
//! and `--ha-key-file`, enforced by clap's `requires`).
//!
//! What it does not do: touch the network. The interface is looked up, and the node id
//! derived from its address, when the failover component starts
//! ([`crate::ha::driver`]). The key file is read while parsing, so a missing or short
//! key is a flag error (exit 2), not a failure after start.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use clap::Args;

use crate::duration::{format_duration, parse_duration};
use crate::ha::machine;

/// UDP port of the adverts when `--ha-port` is not given. No IANA assignment is
/// involved (VRRP itself is IP protocol 112, not UDP); pick another with `--ha-port`
/// if 5800 is taken on your hosts.
pub const DEFAULT_HA_PORT: u16 = 5800;

use crate::secret::Secret;

/// One virtual address with its prefix length (`10.0.0.100/24`, `fd99::100/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    /// The address clients connect to (IPv4 or IPv6).
    pub addr: IpAddr,
    /// Prefix length it is added with, 0..=32 (IPv4) or 0..=128 (IPv6).
    pub prefix: u8,
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A `--peer` value: an IPv4 address with an optional port (default `--ha-port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerArg {
    /// The peer's address.
    pub addr: Ipv4Addr,
    /// The port given with the address, if any.
    pub port: Option<u16>,
}

/// The failover flags as clap parses them (flattened into `fulcrum serve`).
// The fields' doc comments are their --help text (`[default]`), not rustdoc links.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Args)]
pub struct HaArgs {
    /// Virtual IP address with prefix owned by the master, e.g. 10.0.0.100/24 or
    /// fd99::100/64 (repeatable). Turns failover on; needs --interface, --peer and
    /// --ha-key-file.
    #[arg(long = "vip", value_parser = parse_vip, requires_all = ["interface", "peer", "ha_key_file"])]
    pub vip: Vec<Vip>,
    /// Failover peer: adverts go to it and are accepted only from its address. IP or
    /// IP:PORT (repeatable; unicast).
    #[arg(long = "peer", value_parser = parse_peer, requires = "vip")]
    pub peer: Vec<PeerArg>,
    /// UDP port adverts are sent to and received on.
    #[arg(long, default_value_t = DEFAULT_HA_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub ha_port: u16,
    /// Election priority, 1..=254 (higher wins; RFC 5798 semantics).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub priority: u8,
    /// Interval between the master's adverts: a multiple of 10ms within 10ms..=655.35s.
    /// The backup takes over after about 3.5 intervals of silence.
    #[arg(long, default_value = "100ms", value_parser = parse_advert_interval)]
    pub advert_interval: Duration,
    /// A backup with a higher priority takes over from a live master [default].
    #[arg(long, overrides_with = "no_preempt")]
    pub preempt: bool,
    /// Keep any live master, even one with a lower priority.
    #[arg(long, overrides_with = "preempt")]
    pub no_preempt: bool,
    /// File holding the shared HMAC-SHA256 key (at least 16 bytes; one trailing
    /// newline is ignored). Same file on both nodes.
    #[arg(long, value_parser = read_key_file)]
    pub ha_key_file: Option<Secret>,
    /// Failover group id (VRRP's VRID): adverts of other groups are ignored.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub ha_group: u16,
}

impl Default for HaArgs {
    /// Failover off, every other flag at its documented default.
    fn default() -> Self {
        HaArgs {
            vip: Vec::new(),
            peer: Vec::new(),
            ha_port: DEFAULT_HA_PORT,
            priority: 100,
            advert_interval: Duration::from_millis(100),
            preempt: false,
            no_preempt: false,
            ha_key_file: None,
            ha_group: 1,
        }
    }
}

/// The validated failover configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// Virtual addresses, in flag order.
    pub vips: Vec<Vip>,
    /// Interface name.
    pub interface: String,
    /// Where adverts and state sync go.
    pub peers: Vec<SocketAddr>,
    /// Local UDP port.
    pub port: u16,
    /// Election priority.
    pub priority: u8,
    /// Master advert interval.
    pub advert_interval: Duration,
    /// Preempt a lower-priority master.
    pub preempt: bool,
    /// HMAC key.
    pub key: Secret,
    /// Group id.
    pub group: u16,
}

impl HaConfig {
    /// The failover configuration, or `None` when no `--vip` was given. `interface` is
    /// `serve`'s `--interface` (shared with direct mode). Clap has already enforced the
    /// flags `--vip` requires; a missing one here is reported naming the flag anyway.
    pub fn from_args(a: HaArgs, interface: Option<String>) -> Result<Option<HaConfig>, String> {
        if a.vip.is_empty() {
            return Ok(None);
        }
        let interface =
            interface.ok_or("--vip requires --interface IFACE (where the VIP is added)")?;
        let interface = parse_interface(&interface).map_err(|e| format!("--interface {e}"))?;
        let key = a
            .ha_key_file
            .ok_or("--vip requires --ha-key-file PATH (the shared HMAC key)")?;
        if a.peer.is_empty() {
            return Err("--vip requires at least one --peer ADDR".into());
        }
        let port = a.ha_port;
        let peers = a
            .peer
            .iter()
            .map(|p| SocketAddr::V4(SocketAddrV4::new(p.addr, p.port.unwrap_or(port))))
            .collect();
        let mut vips: Vec<Vip> = Vec::new();
        for v in a.vip {
            if vips.iter().any(|o| o.addr == v.addr) {
                return Err(format!("--vip {v}: address given twice"));
            }
            vips.push(v);
        }
        Ok(Some(HaConfig {
            vips,
            interface,
            peers,
            port,
            priority: a.priority,
            advert_interval: a.advert_interval,
            preempt: !a.no_preempt,
            key,
            group: a.ha_group,
        }))
    }

    /// One line for the start-up log (never the key).
    pub fn summary(&self) -> String {
        let vips: Vec<String> = self.vips.iter().map(|v| v.to_string()).collect();
        let peers: Vec<String> = self.peers.iter().map(|p| p.to_string()).collect();
        format!(
            "failover: vip={} interface={} peers={} port={} priority={} advert_interval={} preempt={} group={}",
            vips.join(","),
            self.interface,
            peers.join(","),
            self.port,
            self.priority,
            format_duration(self.advert_interval),
            self.preempt,
            self.group
        )
    }
}

/// Parses `A.B.C.D/PREFIX` or `IPV6/PREFIX`. An IPv6 VIP is announced on takeover with
/// unsolicited neighbour advertisements (RFC 4861 §7.2.6) instead of gratuitous ARP; a
/// link-local one is refused (it would need a zone and no client reaches it routed).
pub fn parse_vip(s: &str) -> Result<Vip, String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("\"{s}\" is not ADDR/PREFIX (e.g. 10.0.0.100/24)"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("\"{s}\": \"{addr}\" is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("\"{s}\": prefix \"{prefix}\" is not 0..={max}"))?;
    let unusable = match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => {
            a.is_unspecified()
                || a.is_multicast()
                || a.is_loopback()
                || a.is_unicast_link_local()
                || a.to_ipv4_mapped().is_some()
        }
    };
    if unusable {
        return Err(format!(
            "\"{s}\": not a unicast address usable as a VIP (IPv6: not link-local)"
        ));
    }
    Ok(Vip { addr, prefix })
}

/// Parses `IP` or `IP:PORT` (IPv4 only: the advert socket is IPv4).
pub fn parse_peer(s: &str) -> Result<PeerArg, String> {
    if let Ok(addr) = s.parse::<Ipv4Addr>() {
        return Ok(PeerArg { addr, port: None });
    }
    match s.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) if a.port() != 0 => Ok(PeerArg {
            addr: *a.ip(),
            port: Some(a.port()),
        }),
        Ok(SocketAddr::V4(_)) => Err(format!("\"{s}\": port 0 is not a port")),
        Ok(SocketAddr::V6(_)) => Err(format!("\"{s}\": IPv6 peers are not supported yet")),
        Err(_) if s.parse::<IpAddr>().is_ok() => {
            Err(format!("\"{s}\": IPv6 peers are not supported yet"))
        }
        Err(_) => Err(format!("\"{s}\" is not IP or IP:PORT")),
    }
}

/// Checks an interface name as the kernel would (1..=15 bytes, no '/', no whitespace).
pub fn parse_interface(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() < libc::IFNAMSIZ
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("\"{s}\" is not a valid interface name"))
    }
}

/// Parses a duration and checks it against the election machine's limits.
pub fn parse_advert_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    let cfg = machine::Config {
        advert_interval: d,
        ..machine::Config::new(0)
    };
    cfg.validate().map_err(|_| {
        format!("\"{s}\" must be a multiple of 10ms within 10ms..=655.35s (e.g. 100ms)")
    })?;
    Ok(d)
}

/// Reads and checks the failover key file (rules in [`crate::secret`]).
pub fn read_key_file(path: &str) -> Result<Secret, String> {
    crate::secret::read_file(std::path::Path::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_parses_and_names_bad_values() {
        assert_eq!(
            parse_vip("10.0.0.100/24"),
            Ok(Vip {
                addr: Ipv4Addr::new(10, 0, 0, 100).into(),
                prefix: 24
            })
        );
        assert_eq!(
            parse_vip("10.0.0.1/32").map(|v| v.to_string()),
            Ok("10.0.0.1/32".into())
        );
        assert_eq!(
            parse_vip("fd00::1/64"),
            Ok(Vip {
                addr: "fd00::1".parse().unwrap(),
                prefix: 64
            })
        );
        assert_eq!(
            parse_vip("2001:db8::7/128").map(|v| v.to_string()),
            Ok("2001:db8::7/128".into())
        );
        for (bad, needle) in [
            ("10.0.0.100", "ADDR/PREFIX"),
            ("10.0.0.300/24", "10.0.0.300"),
            ("10.0.0.1/33", "33"),
            ("10.0.0.1/x", "\"x\""),
            ("fd00::1/129", "129"),
            ("fe80::1/64", "link-local"),
            ("ff02::1/128", "unicast"),
            ("::/0", "unicast"),
            ("224.0.0.18/32", "unicast"),
            ("0.0.0.0/0", "unicast"),
        ] {
            let e = parse_vip(bad).unwrap_err();
            assert!(e.contains(needle) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn peer_parses_ip_and_ip_port() {
        assert_eq!(
            parse_peer("10.0.0.2"),
            Ok(PeerArg {
                addr: Ipv4Addr::new(10, 0, 0, 2),
                port: None
            })
        );
        assert_eq!(parse_peer("10.0.0.2:6000").unwrap().port, Some(6000));
        for (bad, needle) in [
            ("10.0.0.2:0", "port 0"),
            ("fd00::2", "IPv6"),
            ("[fd00::2]:5800", "IPv6"),
            ("peer.example:5800", "IP or IP:PORT"),
            ("10.0.0.2:99999", "IP or IP:PORT"),
        ] {
            let e = parse_peer(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn interface_names() {
        assert_eq!(parse_interface("eth0"), Ok("eth0".into()));
        for bad in ["", "a/b", "0123456789abcdef", "a b", ".."] {
            assert!(parse_interface(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn advert_interval_limits() {
        assert_eq!(
            parse_advert_interval("100ms"),
            Ok(Duration::from_millis(100))
        );
        assert_eq!(parse_advert_interval("1s"), Ok(Duration::from_secs(1)));
        for bad in ["5ms", "105ms", "700s", "100", "fast"] {
            let e = parse_advert_interval(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    fn serve(extra: &[&str]) -> Result<Box<crate::config::ServeArgs>, clap::Error> {
        use clap::Parser;
        let mut argv = vec![
            "fulcrum",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--backend",
            "127.0.0.1:2",
        ];
        argv.extend_from_slice(extra);
        let cli = crate::config::TestCli::try_parse_from(argv)?;
        let crate::config::TestCommand::Serve(a) = cli.command;
        Ok(a)
    }

    /// Written once per test process and never removed: tests run in parallel threads,
    /// and rewriting or removing the file while another test reads it fails that test.
    fn key_file() -> String {
        static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        PATH.get_or_init(|| {
            let path = std::env::temp_dir().join(format!("fulcrum-ha-key-{}", std::process::id()));
            crate::secret::write_private(&path, "0123456789abcdef0123\n");
            path.display().to_string()
        })
        .clone()
    }

    #[test]
    fn cli_defaults_and_full_set() {
        let a = serve(&[]).unwrap();
        assert_eq!(HaConfig::from_args(a.ha, a.interface), Ok(None));
        let key = key_file();
        let a = serve(&[
            "--vip",
            "10.99.0.100/24",
            "--interface",
            "eth0",
            "--peer",
            "10.99.0.12",
            "--peer",
            "10.99.0.13:6000",
            "--ha-key-file",
            &key,
            "--priority",
            "200",
            "--advert-interval",
            "50ms",
            "--no-preempt",
            "--ha-group",
            "7",
        ])
        .unwrap();
        let c = HaConfig::from_args(a.ha, a.interface).unwrap().unwrap();
        assert_eq!(c.interface, "eth0");
        assert_eq!(
            c.peers,
            vec![
                "10.99.0.12:5800".parse::<SocketAddr>().unwrap(),
                "10.99.0.13:6000".parse().unwrap()
            ]
        );
        assert_eq!((c.priority, c.group, c.preempt), (200, 7, false));
        assert_eq!(c.advert_interval, Duration::from_millis(50));
        assert_eq!(c.key.bytes(), b"0123456789abcdef0123");
        assert!(!c.summary().contains("0123456789"));
        // The last of --preempt / --no-preempt wins; preempt is the default.
        let a = serve(&[
            "--vip",
            "10.99.0.100/24",
            "--interface",
            "eth0",
            "--peer",
            "10.99.0.12",
            "--ha-key-file",
            &key,
            "--no-preempt",
            "--preempt",
        ])
        .unwrap();
        assert!(
            HaConfig::from_args(a.ha, a.interface)
                .unwrap()
                .unwrap()
                .preempt
        );
    }

    #[test]
    fn cli_errors_exit_2_and_name_flag_and_value() {
        let key = key_file();
        let base = [
            "--interface",
            "eth0",
            "--peer",
            "10.99.0.12",
            "--ha-key-file",
        ];
        let with = |extra: &[&str]| {
            let mut v: Vec<&str> = vec!["--vip", "10.99.0.100/24"];
            v.extend_from_slice(&base);
            v.push(&key);
            v.extend_from_slice(extra);
            v.iter().map(|s| s.to_string()).collect::<Vec<String>>()
        };
        for (args, needles) in [
            (with(&["--priority", "255"]), vec!["--priority", "255"]),
            (with(&["--priority", "0"]), vec!["--priority", "0"]),
            (
                with(&["--advert-interval", "15ms"]),
                vec!["--advert-interval", "15ms"],
            ),
            (with(&["--ha-port", "0"]), vec!["--ha-port", "0"]),
            (with(&["--peer", "bogus"]), vec!["--peer", "bogus"]),
            (with(&["--vip", "10.1.1.1"]), vec!["--vip", "10.1.1.1"]),
            (with(&["--ha-group", "0"]), vec!["--ha-group", "0"]),
            (
                vec!["--vip".into(), "10.99.0.100/24".into()],
                vec!["--interface", "--peer", "--ha-key-file"],
            ),
            (
                vec![
                    "--vip",
                    "10.99.0.100/24",
                    "--interface",
                    "eth0",
                    "--peer",
                    "10.99.0.12",
                    "--ha-key-file",
                    "/nonexistent/k",
                ]
                .into_iter()
                .map(String::from)
                .collect(),
                vec!["--ha-key-file", "/nonexistent/k"],
            ),
            (vec!["--peer".into(), "10.0.0.1".into()], vec!["--vip"]),
        ] {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let e = serve(&argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{argv:?}");
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "{argv:?}: {msg}");
            }
        }
        let short = std::env::temp_dir().join(format!("fulcrum-ha-short-{}", std::process::id()));
        crate::secret::write_private(&short, "tooshort");
        let e = serve(&[
            "--vip",
            "10.99.0.100/24",
            "--interface",
            "eth0",
            "--peer",
            "10.99.0.12",
            "--ha-key-file",
            &short.display().to_string(),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("at least 16"), "{e}");
        let _ = std::fs::remove_file(&short);
    }

    #[test]
    fn missing_key_file_is_named() {
        let e = read_key_file("/nonexistent/fulcrum-key").unwrap_err();
        assert!(e.contains("/nonexistent/fulcrum-key"), "{e}");
    }
}
