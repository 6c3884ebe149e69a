//! Command-line flags and their validation into one immutable [`ServeConfig`].
//!
//! Every value is parsed by a clap value parser, so a bad flag exits with code 2 and a
//! one-line error naming the flag and the value (clap's conventions). Backend addresses
//! are resolved here, once: a name that does not resolve is an error at start; a node
//! that is down is not (health checks deal with it).

// The flags' doc comments are their --help text, written for a terminal
// (`ADDR[,weight=N]`, `[::]:80`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

pub use crate::addr::{parse_listen, resolve};
use crate::direct::DirectConfig;
use crate::duration::{format_duration, parse_duration};
use crate::ha::config::{HaArgs, HaConfig};
use crate::health::config::{parse_check, AgentConfig, CheckKind, HealthConfig};
use crate::health::http::StatusSet;
use crate::health::interval::IntervalPolicy;
use crate::health::state::Thresholds;
use crate::pool::NodeSpec;
use crate::rollout::config::{HookArgs, HookConfig};
use crate::scaleout::config::{ScaleoutArgs, ScaleoutConfig};
use crate::scheduler::SchedulerKind;

/// `fulcrum demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo distributor listens.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Scheduler of the demo distributor.
    #[arg(long, default_value = "rr", value_parser = parse_scheduler)]
    pub scheduler: SchedulerKind,
    /// Control socket for `fulcrum ctl` [default: fulcrum-demo-PID.sock in the temp dir].
    #[arg(long)]
    pub control: Option<std::path::PathBuf>,
    /// Web console, /metrics and the HTTP API [default: 127.0.0.1:9090, or a free
    /// loopback port if that one is taken]. A token allowing changes is generated and
    /// printed.
    #[arg(long, value_parser = parse_listen)]
    pub http: Option<SocketAddr>,
}

/// `fulcrum serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Read the configuration from this TOML file (docs/configuration.md); flags given
    /// beside it replace the file's keys of the same name.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Address to accept client connections on (repeatable; IPv4 or IPv6, e.g. 0.0.0.0:80, [::]:80).
    #[arg(long = "listen", required_unless_present = "config", value_parser = parse_listen)]
    pub listen: Vec<SocketAddr>,
    /// A server node: ADDR[,weight=N][,backup][,maxconn=N][,agent] (repeatable). ADDR is HOST:PORT;
    /// `agent`: expect heartbeats from `fulcrum agent` on that node.
    #[arg(long = "backend", required_unless_present = "config", value_parser = parse_backend)]
    pub backend: Vec<NodeSpec>,
    /// Scheduling algorithm: rr, wrr (smooth weighted), lc (least connections), wlc, maglev
    /// (consistent hash) [default: rr in proxy mode, maglev in direct mode].
    #[arg(long, value_parser = parse_scheduler)]
    pub scheduler: Option<SchedulerKind>,
    /// Forwarding mode: proxy (terminate TCP and relay) or direct (rewrite Ethernet frames
    /// toward the node, which answers the client itself; see docs/direct-routing.md).
    #[arg(long, default_value = "proxy", value_parser = parse_mode)]
    pub mode: ModeArg,
    /// Network interface: in direct mode, where frames for the VIP arrive and leave; with
    /// --vip (failover), where the VIP is added and gratuitous ARPs are sent.
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// Seed of the maglev hash; distributors that share a VIP must use the same seed.
    #[arg(long, default_value_t = 0)]
    pub hash_seed: u64,
    /// Worker threads, each with its own event loop and SO_REUSEPORT listener [default: CPUs].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Give up connecting to a node after this long (then retry another node).
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    pub connect_timeout: Duration,
    /// Close a connection after this long without traffic in either direction; 0s = never
    /// (proxy mode; as HAProxy reads a zero timeout).
    #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
    pub idle_timeout: Duration,
    /// Maximum concurrent client connections; 0 = derived from the descriptor limit.
    #[arg(long, default_value_t = 0)]
    pub max_conns: u64,
    /// Direct mode's receive ring: `slots` (TPACKET_V2, one wake-up per frame: lowest
    /// latency), `blocks` (TPACKET_V3, frames packed in blocks handed over when full or
    /// after one timer tick: less memory, more latency when lightly loaded) or `xdp`
    /// (experimental: AF_XDP, one socket per receive queue fed by an XDP program; on veth
    /// it costs the super-frames).
    #[arg(long, default_value = "slots", value_parser = parse_ring)]
    pub ring: crate::direct::RingLayout,
    /// Direct mode: drop the frames the rings take before this host's own IP stack, with
    /// a tcx eBPF program (Linux >= 6.6, CAP_BPF; skipped with a log line otherwise). Off
    /// leaves them to the kernel, which routes and drops each one (more CPU).
    #[arg(long, default_value = "on", value_parser = parse_onoff, action = clap::ArgAction::Set)]
    pub host_sink: bool,
    /// Direct mode: forward the frames of established flows (IPv4 and IPv6) in the kernel (a tcx
    /// eBPF program and a flow map; Linux >= 6.6, CAP_BPF; skipped with a log line
    /// otherwise). The node is still chosen here, on each flow's first packets.
    #[arg(long, default_value = "on", value_parser = parse_onoff, action = clap::ArgAction::Set)]
    pub offload: bool,
    /// At most N open connections from one client address (0 = no limit); more are
    /// reset at once and counted (refused_per_source). Proxy mode.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_conns_per_source: u32,
    /// On a failed connect, try this many other nodes (never the one that just failed).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub retries: u32,
    /// On SIGTERM/SIGINT, wait this long for active connections to finish, then cut them.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub drain_timeout: Duration,
    /// listen(2) backlog of each listener.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub backlog: u32,
    /// Relay bulk data with splice(2) through a per-connection pipe once a read fills the buffer.
    #[arg(long, default_value = "on", value_parser = parse_onoff, action = clap::ArgAction::Set)]
    pub splice: bool,
    /// Send each node a PROXY protocol header (v1 text or v2 binary) before the client's
    /// data, so it sees the client's address; HTTP checks then send a LOCAL header.
    #[arg(long, value_name = "v1|v2", value_parser = crate::wire::proxy_protocol::parse_version)]
    pub send_proxy: Option<crate::wire::proxy_protocol::Version>,
    /// Active health check: none, tcp (connect) or http[:PATH] (GET, default path /).
    #[arg(long, default_value = "tcp", value_parser = parse_check)]
    pub check: CheckKind,
    /// Probe interval of a healthy node (the lower bound of the adaptive interval).
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    pub check_interval: Duration,
    /// Upper bound of the adaptive interval (max(rtt_now, rtt_last) × --check-multiplier).
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub check_max_interval: Duration,
    /// Adaptive interval factor applied to the probe round-trip time.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub check_multiplier: u32,
    /// Interval while a node is in transition (failing, or rising) — HAProxy's fastinter.
    #[arg(long, default_value = "500ms", value_parser = parse_duration_arg)]
    pub check_fast_interval: Duration,
    /// Interval while a node is down — HAProxy's downinter.
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    pub check_down_interval: Duration,
    /// A probe that has not finished after this long fails.
    #[arg(long, default_value = "1s", value_parser = parse_duration_arg)]
    pub check_timeout: Duration,
    /// HTTP statuses that pass an http check, e.g. 2xx,3xx or 200,204,301-308.
    #[arg(long, default_value = "2xx,3xx", value_parser = parse_statuses)]
    pub check_status: StatusSet,
    /// Host header of http checks [default: the node's IP].
    #[arg(long)]
    pub check_host: Option<String>,
    /// Seed of the probe jitter (spreads probes of different nodes).
    #[arg(long, default_value_t = 0)]
    pub check_seed: u64,
    /// Consecutive successes that bring a down node back up.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rise: u32,
    /// Consecutive failures that make a node "warning" (skipped for new flows); = --fall for no warning level.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub warn: u32,
    /// Consecutive failures that make a node "down" (alert).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub fall: u32,
    /// A node coming back up ramps its weight from 0 to full over this long; 0s = off.
    #[arg(long, default_value = "0s", value_parser = parse_duration_arg)]
    pub slow_start: Duration,
    /// UDP address to receive node-agent heartbeats on (needed by `--backend …,agent`).
    #[arg(long, value_parser = parse_listen)]
    pub agent_listen: Option<SocketAddr>,
    /// File holding the shared HMAC key of node agents.
    #[arg(long)]
    pub agent_key_file: Option<std::path::PathBuf>,
    /// Heartbeat interval the agents use.
    #[arg(long, default_value = "1s", value_parser = parse_duration_arg)]
    pub agent_interval: Duration,
    /// Missed heartbeats after which a node's agent counts as missing.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub agent_misses: u32,
    /// Control socket (Unix domain, created 0600) for `fulcrum ctl` [default with
    /// --listeners-from: the same path, so a reloaded process stays reachable].
    #[arg(long)]
    pub control: Option<std::path::PathBuf>,
    /// Zero-downtime reload: take the listening sockets of the fulcrum serving this
    /// control socket, start, then tell it to drain and exit (proxy mode, no --vip).
    #[arg(long, value_name = "CONTROL_SOCKET")]
    pub listeners_from: Option<std::path::PathBuf>,
    /// HTTP on this address (loopback!): /metrics, /api/v1/*, and the web console at /.
    #[arg(long, value_parser = parse_listen)]
    pub http: Option<SocketAddr>,
    /// File holding the bearer token that allows changes through HTTP; without it the
    /// console is read-only.
    #[arg(long)]
    pub http_token_file: Option<std::path::PathBuf>,
    /// Keep runtime changes (nodes, weights, admin states, scheduler, enable/disable)
    /// in this file, rewritten atomically on each change and applied on top of the
    /// configuration at start.
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<std::path::PathBuf>,
    /// `remove node`: drain, then force-close the node's remaining flows after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub deadline: Duration,
    /// Command run (through /bin/sh -c) on every state change, with FULCRUM_* variables.
    #[arg(long)]
    pub notify: Option<String>,
    /// Kill a notify command still running after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub notify_timeout: Duration,
    /// Log one line per closed client connection at info (target fulcrum::access): client,
    /// node, bytes each way, duration, how it ended. Off: no cost per connection.
    #[arg(long)]
    pub access_log: bool,
    /// Failover (primary/backup pair): on when `--vip` is given.
    #[command(flatten)]
    pub ha: HaArgs,
    /// Scale-out (BGP announcements, BFD): on when `--bgp-peer` is given.
    #[command(flatten)]
    pub scaleout: ScaleoutArgs,
    /// Declared hooks, the only commands a rollout may run.
    #[command(flatten)]
    pub hooks: HookArgs,
}

fn parse_statuses(s: &str) -> Result<StatusSet, String> {
    s.parse::<StatusSet>().map_err(|e| e.to_string())
}

fn parse_onoff(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected on or off, got \"{s}\"")),
    }
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeArg {
    /// Proxy mode.
    Proxy,
    /// Direct-routing mode.
    Direct,
}

fn parse_ring(s: &str) -> Result<crate::direct::RingLayout, String> {
    match s {
        "slots" => Ok(crate::direct::RingLayout::Slots),
        "blocks" => Ok(crate::direct::RingLayout::Blocks),
        "xdp" => Ok(crate::direct::RingLayout::Xdp),
        _ => Err(format!(
            "unknown ring \"{s}\" (expected slots or blocks, or xdp: experimental)"
        )),
    }
}

fn parse_mode(s: &str) -> Result<ModeArg, String> {
    match s {
        "proxy" => Ok(ModeArg::Proxy),
        "direct" => Ok(ModeArg::Direct),
        _ => Err(format!("unknown mode \"{s}\" (expected proxy or direct)")),
    }
}

/// How the distributor forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardMode {
    /// Terminate client connections and relay to nodes.
    Proxy,
    /// Rewrite frames at layer 2 toward the nodes (direct routing).
    Direct(DirectConfig),
}

/// Validates the direct-mode part of the flags: one or more VIP:PORT (IPv4 and IPv6), an
/// interface, nodes on one of the VIPs' ports.
fn direct_config(a: &ServeArgs) -> Result<DirectConfig, String> {
    let interface = a
        .interface
        .clone()
        .ok_or("--mode direct needs --interface IFACE (where frames for the VIP arrive)")?;
    nonzero(
        "--idle-timeout",
        a.idle_timeout,
        "in direct mode the flow table needs an expiry (flows end unseen when a client vanishes)",
    )?;
    if a.max_conns_per_source > 0 {
        return Err(
            "--max-conns-per-source is for proxy mode (direct mode has no per-source table yet)"
                .into(),
        );
    }
    if a.send_proxy.is_some() {
        return Err(
            "--send-proxy is for proxy mode: in direct mode the node receives the \
                    client's own packets and sees its address"
                .into(),
        );
    }
    crate::direct::startup::check_listen(&a.listen).map_err(|e| e.to_string())?;
    crate::direct::startup::check_nodes(&interface, &[], &a.listen, &a.backend)
        .map_err(|e| e.to_string())?;
    let max_flows = match a.max_conns {
        0 => crate::direct::DEFAULT_MAX_FLOWS,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    Ok(DirectConfig {
        interface,
        listen: a.listen.clone(),
        max_flows,
        timeouts: crate::direct::timeouts(a.idle_timeout),
        ring: a.ring,
        host_sink: a.host_sink,
        offload: a.offload,
    })
}

fn parse_scheduler(s: &str) -> Result<SchedulerKind, String> {
    s.parse()
}

/// Parses `ADDR[,weight=N][,backup][,maxconn=N][,agent]`.
pub fn parse_backend(s: &str) -> Result<NodeSpec, String> {
    let mut parts = s.split(',');
    let addr = resolve(parts.next().unwrap_or_default())?;
    let mut spec = NodeSpec {
        addr,
        weight: 1,
        backup: false,
        maxconn: 0,
        agent: false,
    };
    for opt in parts {
        let (k, v) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let num = |max: u64| -> Result<u64, String> {
            let v = v.ok_or_else(|| format!("option \"{k}\" needs a value ({k}=N)"))?;
            v.parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("bad {k} \"{v}\" (expected 0..={max})"))
        };
        match k {
            "weight" => spec.weight = num(256)? as u32,
            "maxconn" => spec.maxconn = num(u64::from(u32::MAX))? as u32,
            "agent" if v.is_none() => spec.agent = true,
            "backup" if v.is_none() => spec.backup = true,
            _ => {
                return Err(format!(
                    "unknown backend option \"{opt}\" (expected weight=N, backup, maxconn=N, agent)"
                ))
            }
        }
    }
    Ok(spec)
}

/// The validated configuration of `fulcrum serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The service's name: `default` from flags, the `name` key in a file.
    pub name: String,
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Nodes, in flag order.
    pub backends: Vec<NodeSpec>,
    /// Initial scheduler.
    pub scheduler: SchedulerKind,
    /// Proxy or direct routing.
    pub mode: ForwardMode,
    /// Seed of the maglev hash.
    pub hash_seed: u64,
    /// Worker threads.
    pub workers: usize,
    /// Connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Idle timeout; zero = none (proxy mode only: direct mode refuses zero).
    pub idle_timeout: Duration,
    /// Global connection limit (resolved; never 0).
    pub max_conns: u64,
    /// Connect retries on other nodes.
    pub retries: u32,
    /// Shutdown drain timeout.
    pub drain_timeout: Duration,
    /// listen(2) backlog.
    pub backlog: u32,
    /// Use splice(2) for bulk transfers.
    pub splice: bool,
    /// Open connections allowed per client address; `None` = no limit.
    pub max_conns_per_source: Option<u32>,
    /// PROXY protocol header sent to nodes (proxy mode).
    pub send_proxy: Option<crate::wire::proxy_protocol::Version>,
    /// Bind listeners with IP_FREEBIND (the address may not be local yet: a backup's VIP).
    pub freebind: bool,
    /// Health checks and node agents.
    pub health: HealthConfig,
    /// Control socket path.
    pub control: Option<std::path::PathBuf>,
    /// Reload: the running process's control socket to take the listeners from.
    pub listeners_from: Option<std::path::PathBuf>,
    /// HTTP listen address.
    pub http: Option<SocketAddr>,
    /// HTTP bearer token (mutations allowed when set); UTF-8.
    pub http_token: Option<crate::secret::Secret>,
    /// The state file, when runtime changes are kept across restarts.
    pub state_file: Option<std::path::PathBuf>,
    /// How long `remove node` waits before cutting flows.
    pub remove_deadline: Duration,
    /// Notify command.
    pub notify: Option<String>,
    /// Notify command timeout.
    pub notify_timeout: Duration,
    /// Failover, when `--vip` is given.
    pub ha: Option<HaConfig>,
    /// Scale-out (BGP, BFD), when `--bgp-peer` is given.
    pub scaleout: Option<ScaleoutConfig>,
    /// `--access-log`: one info line per closed connection (proxy mode).
    pub access_log: bool,
    /// `--hook`, `--hook-timeout`: what a rollout may run.
    pub hooks: HookConfig,
}

/// A configuration the operator must fix: a flag's value, or flags that do not go
/// together. The message names the flags and the values; `fulcrum` exits with code 2,
/// as clap does for a flag it cannot parse, so every bad flag has one exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The name of the one service a configuration given by flags describes.
pub const DEFAULT_SERVICE: &str = "default";

/// Re-reads the configuration (the closure `main` built from `--config` and the flags
/// beside it): its services, in file order. Errors are the file's errors, one per line.
pub type Reloader = Box<dyn FnMut() -> Result<Vec<ServeConfig>, String>>;

/// Exit code of a configuration error (clap's, for a bad flag).
pub const EXIT_CONFIG: u8 = 2;

/// Rejects a zero duration for a flag that has no meaning at zero.
fn nonzero(flag: &str, d: Duration, why: &str) -> Result<(), String> {
    if d.is_zero() {
        return Err(format!("{flag} 0s: {why}"));
    }
    Ok(())
}

/// Refuses a node given twice: `set state` would change only the first copy, and the
/// other would keep receiving traffic the operator believes is drained.
fn no_duplicate_backends(nodes: &[NodeSpec]) -> Result<(), String> {
    for (i, n) in nodes.iter().enumerate() {
        if nodes[..i].iter().any(|m| m.addr == n.addr) {
            return Err(format!(
                "--backend {} is given twice (each node once; use weight=N for a larger share)",
                n.addr
            ));
        }
    }
    Ok(())
}

impl ServeConfig {
    /// Validates the flags. `nofile` is the (raised) descriptor limit, used to derive
    /// `--max-conns 0`.
    pub fn from_args(a: ServeArgs, nofile: u64) -> Result<Self, ConfigError> {
        Self::validate(a, nofile).map_err(ConfigError)
    }

    fn validate(a: ServeArgs, nofile: u64) -> Result<Self, String> {
        if let Some(path) = &a.config {
            // `--config` is read by `crate::config_file`, which hands over the flags the
            // file stands for; flags alone never reach here with it.
            return Err(format!("--config {}: not read here", path.display()));
        }
        if a.listen.is_empty() || a.backend.is_empty() {
            return Err("--listen and --backend are required".into());
        }
        no_duplicate_backends(&a.backend)?;
        nonzero(
            "--connect-timeout",
            a.connect_timeout,
            "every connect would fail at once (give the time a node may take to accept, e.g. 2s)",
        )?;
        nonzero(
            "--check-timeout",
            a.check_timeout,
            "every probe would fail at once (e.g. 1s; --check none turns checks off)",
        )?;
        nonzero(
            "--notify-timeout",
            a.notify_timeout,
            "every notify command would be killed at once",
        )?;
        nonzero(
            "--agent-interval",
            a.agent_interval,
            "agents cannot send heartbeats continuously",
        )?;
        if a.check != CheckKind::None && a.check_timeout >= a.check_interval {
            log::warn!(target: "fulcrum::config",
                "--check-timeout {} is not below --check-interval {}: a slow probe delays the next one",
                format_duration(a.check_timeout), format_duration(a.check_interval));
        }
        let workers = match a.workers {
            Some(w) => usize::from(w),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        // Each proxied connection holds two descriptors (four while splicing: a pipe),
        // plus a reserve for listeners, health checks and the control interface.
        let reserve = 64 + 8 * workers as u64;
        let derived = nofile.saturating_sub(reserve) / 2;
        let mode = match a.mode {
            ModeArg::Proxy => ForwardMode::Proxy,
            ModeArg::Direct => ForwardMode::Direct(direct_config(&a)?),
        };
        // Direct mode runs one data-plane thread unless told otherwise: its threads
        // split the flows by hash, and one thread forwards a small site's traffic.
        let workers = match mode {
            ForwardMode::Direct(_) => a.workers.map_or(1, usize::from),
            ForwardMode::Proxy => workers,
        };
        let max_conns = match &mode {
            // Direct mode holds no descriptor per flow: the limit is the flow table's.
            ForwardMode::Direct(d) => d.max_flows as u64,
            ForwardMode::Proxy if a.max_conns == 0 => derived.max(1),
            ForwardMode::Proxy => a.max_conns,
        };
        if mode == ForwardMode::Proxy && a.max_conns > derived {
            log::warn!(
                target: "fulcrum::config",
                "--max-conns {} exceeds what the descriptor limit {} allows (about {}); accept will pause at exhaustion",
                a.max_conns, nofile, derived
            );
        }
        let ha = HaConfig::from_args(a.ha, a.interface.clone())?;
        let hooks = HookConfig::from_args(a.hooks)?;
        if let (Some(h), ForwardMode::Direct(d)) = (&ha, &mode) {
            // In direct mode the VIP is never a local address: failover switches the
            // data plane's ARP/ND answering instead, so the VIPs must be the ones it
            // serves, every one of them.
            let mut want: Vec<std::net::IpAddr> = d.listen.iter().map(|l| l.ip()).collect();
            want.sort_unstable();
            want.dedup();
            let mut got: Vec<std::net::IpAddr> = h.vips.iter().map(|v| v.addr).collect();
            got.sort_unstable();
            if got != want {
                let w: Vec<String> = want.iter().map(|a| a.to_string()).collect();
                return Err(format!(
                    "--vip: in direct mode give exactly the --listen VIPs ({}), each with its prefix",
                    w.join(", ")
                ));
            }
        }
        let scaleout = ScaleoutConfig::from_args(a.scaleout.clone())?;
        if scaleout.is_some() && ha.is_some() {
            return Err(
                "--bgp-peer/--announce and --vip are alternatives: announce the address over BGP \
                 from every distributor (active-active), or fail it over between a pair, not both"
                    .into(),
            );
        }
        let thresholds = Thresholds {
            rise: a.rise,
            warn: a.warn,
            fall: a.fall,
        };
        thresholds
            .validate()
            .map_err(|e| format!("--warn/--fall: {e}"))?;
        let policy = IntervalPolicy {
            base: a.check_interval,
            max: a.check_max_interval,
            fast: a.check_fast_interval,
            down: a.check_down_interval,
            multiplier: a.check_multiplier,
        };
        policy
            .validate()
            .map_err(|e| format!("--check-*interval: {e}"))?;
        if let Some(h) = &a.check_host {
            crate::health::http::validate_host(h)
                .map_err(|e| format!("--check-host \"{h}\": {e}"))?;
        }
        let wants_agent = a.backend.iter().any(|b| b.agent);
        let agent = match (a.agent_listen, &a.agent_key_file) {
            (Some(listen), Some(path)) => Some(AgentConfig {
                listen,
                key: crate::secret::read("--agent-key-file", path)?,
                interval: a.agent_interval,
                misses: a.agent_misses,
            }),
            (None, None) if !wants_agent => None,
            (None, _) => {
                return Err("a backend has the agent option: --agent-listen is required".into())
            }
            (Some(_), None) => return Err("--agent-listen needs --agent-key-file".into()),
        };
        let health = HealthConfig {
            kind: a.check,
            policy,
            thresholds,
            timeout: a.check_timeout,
            statuses: a.check_status,
            host: a.check_host,
            seed: a.check_seed,
            slow_start: a.slow_start,
            agent,
            send_proxy: a.send_proxy,
        };
        let http_token = match &a.http_token_file {
            Some(p) if a.http.is_none() => {
                return Err(format!("--http-token-file {} needs --http", p.display()))
            }
            Some(p) => {
                let t = crate::secret::read("--http-token-file", p)?;
                if std::str::from_utf8(t.bytes()).is_err() {
                    return Err(format!("--http-token-file \"{}\": not UTF-8", p.display()));
                }
                Some(t)
            }
            None => None,
        };
        if let Some(from) = &a.listeners_from {
            if !matches!(a.mode, ModeArg::Proxy) {
                return Err(format!(
                    "--listeners-from {}: reload hands over proxy-mode listeners; direct mode has none",
                    from.display()
                ));
            }
            if scaleout.is_some() {
                return Err(format!(
                    "--listeners-from {}: not with --bgp-peer (two processes cannot hold one BGP \
                     session and the BFD port); restart a distributor instead: it withdraws first",
                    from.display()
                ));
            }
            if ha.is_some() {
                return Err(format!(
                    "--listeners-from {}: not with --vip (the old process would resign the VIP to the \
                     peer); reload a failover pair by failing over to the peer instead",
                    from.display()
                ));
            }
        }
        if let Some(h) = a.http {
            if !h.ip().is_loopback() {
                log::warn!(target: "fulcrum::config", "--http {h} is not a loopback address: protect it (firewall, token)");
            }
        }
        Ok(ServeConfig {
            name: DEFAULT_SERVICE.to_string(),
            health,
            // A reload keeps the control socket it took over unless told otherwise:
            // without one, nothing could reach (or reload) the new process.
            control: a.control.or_else(|| a.listeners_from.clone()),
            listeners_from: a.listeners_from,
            http: a.http,
            http_token,
            remove_deadline: a.deadline,
            state_file: a.state_file,
            listen: a.listen,
            backends: a.backend,
            scheduler: a.scheduler.unwrap_or(match mode {
                ForwardMode::Proxy => SchedulerKind::Rr,
                ForwardMode::Direct(_) => SchedulerKind::Maglev,
            }),
            mode,
            hash_seed: a.hash_seed,
            workers,
            connect_timeout: a.connect_timeout,
            idle_timeout: a.idle_timeout,
            max_conns,
            retries: a.retries,
            drain_timeout: a.drain_timeout,
            backlog: a.backlog,
            splice: a.splice,
            send_proxy: a.send_proxy,
            max_conns_per_source: (a.max_conns_per_source > 0).then_some(a.max_conns_per_source),
            // A backup binds the VIP before it owns it, so takeover needs no re-bind.
            freebind: ha.is_some(),
            notify: a.notify,
            notify_timeout: a.notify_timeout,
            ha,
            scaleout,
            access_log: a.access_log,
            hooks,
        })
    }

    /// One human line summarising the configuration, for the start-up log: what serves,
    /// where it can be controlled, and only the settings that apply to the mode.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let listen: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
        let mut nodes = String::new();
        for (i, b) in self.backends.iter().enumerate() {
            let _ = write!(
                nodes,
                "{}{}(w={}",
                if i > 0 { " " } else { "" },
                b.addr,
                b.weight
            );
            if b.backup {
                nodes.push_str(",backup");
            }
            if b.maxconn > 0 {
                let _ = write!(nodes, ",maxconn={}", b.maxconn);
            }
            nodes.push(')');
        }
        let n = self.backends.len();
        let mut out = format!(
            "mode={} listening on {} -> {n} node{} [{nodes}] scheduler={}",
            match self.mode {
                ForwardMode::Proxy => "proxy",
                ForwardMode::Direct(_) => "direct",
            },
            listen.join(","),
            if n == 1 { "" } else { "s" },
            self.scheduler,
        );
        match &self.mode {
            ForwardMode::Proxy => {
                let _ = write!(
                    out,
                    " workers={} max_conns={} connect_timeout={} idle_timeout={} retries={}",
                    self.workers,
                    self.max_conns,
                    format_duration(self.connect_timeout),
                    format_duration(self.idle_timeout),
                    self.retries
                );
                if let Some(v) = self.send_proxy {
                    let _ = write!(out, " send_proxy={v}");
                }
                if let Some(n) = self.max_conns_per_source {
                    let _ = write!(out, " max_conns_per_source={n}");
                }
                if self.access_log {
                    out.push_str(" access_log=on");
                }
            }
            ForwardMode::Direct(d) => {
                let _ = write!(
                    out,
                    " interface={} max_flows={} idle_timeout={}",
                    d.interface,
                    d.max_flows,
                    format_duration(self.idle_timeout)
                );
            }
        }
        if let Some(c) = &self.control {
            let _ = write!(out, " control={}", c.display());
        }
        if let Some(h) = self.http {
            let _ = write!(
                out,
                " http={h}{}",
                if self.http_token.is_some() {
                    ""
                } else {
                    "(read-only)"
                }
            );
        }
        if let Some(a) = &self.health.agent {
            let _ = write!(out, " agent_listen={}", a.listen);
        }
        out
    }
}

/// A parser of `fulcrum serve …` alone, for unit tests of the flags (the real command
/// line, with every subcommand, is [`crate::cli`]'s, above this module).
#[cfg(test)]
#[derive(Debug, clap::Parser)]
#[command(name = "fulcrum")]
pub(crate) struct TestCli {
    #[command(subcommand)]
    pub(crate) command: TestCommand,
}

/// The one subcommand [`TestCli`] knows.
#[cfg(test)]
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TestCommand {
    Serve(Box<ServeArgs>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn backend_options() {
        let b = parse_backend("127.0.0.1:80,weight=5,backup,maxconn=10").unwrap();
        assert_eq!(b.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!((b.weight, b.backup, b.maxconn), (5, true, 10));
        let b = parse_backend("[::1]:8080").unwrap();
        assert_eq!((b.weight, b.backup, b.maxconn), (1, false, 0));
        assert_eq!(parse_backend("localhost:81").unwrap().addr.port(), 81);
    }

    #[test]
    fn backend_errors_name_the_value() {
        for (bad, needle) in [
            ("127.0.0.1:80,weight=abc", "abc"),
            ("127.0.0.1:80,weight=300", "300"),
            ("127.0.0.1:80,weight", "weight=N"),
            ("127.0.0.1:80,bogus", "bogus"),
            ("127.0.0.1", "no port"),
            ("no-such-host.invalid:80", "no-such-host.invalid"),
        ] {
            let e = parse_backend(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn cli_parses_durations_and_rejects_bad() {
        let cli = TestCli::try_parse_from([
            "fulcrum",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--backend",
            "127.0.0.1:2",
            "--connect-timeout",
            "200ms",
            "--idle-timeout",
            "1m",
        ])
        .unwrap();
        let TestCommand::Serve(a) = cli.command;
        assert_eq!(a.connect_timeout, Duration::from_millis(200));
        assert_eq!(a.idle_timeout, Duration::from_secs(60));
        let e = TestCli::try_parse_from([
            "fulcrum",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--backend",
            "127.0.0.1:2",
            "--idle-timeout",
            "30",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--idle-timeout"), "{e}");
    }

    fn serve(args: &[&str]) -> Result<ServeConfig, String> {
        let mut v = vec!["fulcrum", "serve"];
        v.extend_from_slice(args);
        let TestCommand::Serve(a) = TestCli::try_parse_from(v)
            .map_err(|e| e.to_string())?
            .command;
        ServeConfig::from_args(*a, 20_000).map_err(|e| e.0)
    }

    const MIN: [&str; 4] = ["--listen", "127.0.0.1:1", "--backend", "127.0.0.1:2"];

    fn serve_with(extra: &[&str]) -> Result<ServeConfig, String> {
        let mut v = MIN.to_vec();
        v.extend_from_slice(extra);
        serve(&v)
    }

    #[test]
    fn duplicate_backend_is_refused() {
        let e = serve_with(&["--backend", "127.0.0.1:2,weight=3"]).unwrap_err();
        assert!(e.contains("--backend 127.0.0.1:2 is given twice"), "{e}");
        assert!(serve_with(&["--backend", "127.0.0.1:3"]).is_ok());
    }

    #[test]
    fn zero_durations_are_refused_or_mean_none() {
        for flag in [
            "--connect-timeout",
            "--check-timeout",
            "--notify-timeout",
            "--agent-interval",
        ] {
            let e = serve_with(&[flag, "0s"]).unwrap_err();
            assert!(e.starts_with(&format!("{flag} 0s: ")), "{flag}: {e}");
        }
        for flag in [
            "--check-interval",
            "--check-fast-interval",
            "--check-down-interval",
        ] {
            assert!(serve_with(&[flag, "0s"]).is_err(), "{flag}");
        }
        // Proxy mode: no idle timeout, as HAProxy reads `timeout client 0`.
        let c = serve_with(&["--idle-timeout", "0s"]).unwrap();
        assert_eq!(c.idle_timeout, Duration::ZERO);
        // Zero drain/deadline/slow start have a meaning: cut at once, off.
        for flag in ["--drain-timeout", "--deadline", "--slow-start"] {
            assert!(serve_with(&[flag, "0s"]).is_ok(), "{flag}");
        }
    }

    #[test]
    fn direct_mode_flags() {
        let c = serve(&[
            "--mode",
            "direct",
            "--interface",
            "eth0",
            "--listen",
            "10.0.0.100:80",
            "--backend",
            "10.0.0.21:80",
        ])
        .unwrap();
        assert_eq!(c.scheduler, SchedulerKind::Maglev, "maglev by default");
        assert_eq!(c.workers, 1);
        let ForwardMode::Direct(d) = &c.mode else {
            panic!("{:?}", c.mode)
        };
        assert_eq!(d.interface.as_str(), "eth0");
        assert_eq!(d.listen, vec!["10.0.0.100:80".parse().unwrap()]);
        // Several VIPs, both families, one pool.
        let c = serve(&[
            "--mode",
            "direct",
            "--interface",
            "eth0",
            "--listen",
            "10.0.0.100:80",
            "--listen",
            "[fd99::100]:80",
            "--listen",
            "10.0.0.100:443",
            "--backend",
            "[fd99::21]:80",
        ])
        .unwrap();
        let ForwardMode::Direct(d) = &c.mode else {
            panic!("{:?}", c.mode)
        };
        assert_eq!(d.listen.len(), 3);
        assert_eq!(d.max_flows, crate::direct::DEFAULT_MAX_FLOWS);
        assert_eq!(d.ring, crate::direct::RingLayout::Slots, "slots by default");
        assert_eq!(parse_ring("blocks"), Ok(crate::direct::RingLayout::Blocks));
        assert!(parse_ring("v4")
            .unwrap_err()
            .contains("expected slots or blocks"));
        let p = serve(&["--listen", "127.0.0.1:1", "--backend", "127.0.0.1:2"]).unwrap();
        assert_eq!(
            (p.mode, p.scheduler, p.send_proxy),
            (ForwardMode::Proxy, SchedulerKind::Rr, None)
        );
        let p = serve(&[
            "--listen",
            "127.0.0.1:1",
            "--backend",
            "127.0.0.1:2",
            "--send-proxy",
            "v1",
        ])
        .unwrap();
        assert_eq!(
            (p.send_proxy, p.health.send_proxy),
            (
                Some(crate::wire::proxy_protocol::Version::V1),
                Some(crate::wire::proxy_protocol::Version::V1)
            )
        );
        for (args, needle) in [
            (
                &[
                    "--mode",
                    "direct",
                    "--listen",
                    "10.0.0.100:80",
                    "--backend",
                    "10.0.0.21:80",
                ][..],
                "--interface IFACE",
            ),
            (
                &[
                    "--mode",
                    "direct",
                    "--interface",
                    "eth0",
                    "--listen",
                    "[::1]:80",
                    "--backend",
                    "10.0.0.21:80",
                ],
                "not usable as a direct-mode VIP",
            ),
            (
                &[
                    "--mode",
                    "direct",
                    "--interface",
                    "eth0",
                    "--listen",
                    "10.0.0.100:80",
                    "--backend",
                    "10.0.0.21:8080",
                ],
                "port must be the VIP's port",
            ),
            (
                &[
                    "--mode",
                    "bridge",
                    "--listen",
                    "10.0.0.100:80",
                    "--backend",
                    "10.0.0.21:80",
                ],
                "unknown mode",
            ),
        ] {
            let e = serve(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        // Proxy-mode-only flags, added to a valid direct-mode command line.
        for (extra, needle) in [
            (["--send-proxy", "v2"], "--send-proxy is for proxy mode"),
            (["--listeners-from", "/run/f.sock"], "direct mode has none"),
            (
                ["--max-conns-per-source", "5"],
                "--max-conns-per-source is for proxy mode",
            ),
        ] {
            let mut args = vec![
                "--mode",
                "direct",
                "--interface",
                "eth0",
                "--listen",
                "10.0.0.100:80",
                "--backend",
                "10.0.0.21:80",
            ];
            args.extend(extra);
            let e = serve(&args).unwrap_err();
            assert!(e.contains(needle), "{extra:?}: {e}");
        }
    }

    #[test]
    fn reload_refused_with_failover() {
        let key = std::env::temp_dir().join(format!("fulcrum-cfg-key-{}", std::process::id()));
        crate::secret::write_private(&key, "0123456789abcdef0123\n");
        let e = serve(&[
            "--listen",
            "10.0.0.100:80",
            "--backend",
            "10.0.0.21:80",
            "--vip",
            "10.0.0.100/24",
            "--interface",
            "eth0",
            "--peer",
            "10.0.0.12",
            "--ha-key-file",
            &key.display().to_string(),
            "--listeners-from",
            "/run/fulcrum.sock",
        ])
        .unwrap_err();
        assert!(e.contains("not with --vip"), "{e}");
        let _ = std::fs::remove_file(&key);
    }

    #[test]
    fn bgp_refused_with_failover_and_reload() {
        let key = std::env::temp_dir().join(format!("fulcrum-cfg-bgpkey-{}", std::process::id()));
        crate::secret::write_private(&key, "0123456789abcdef0123\n");
        let bgp = [
            "--bgp-as",
            "65001",
            "--bgp-peer",
            "10.0.0.1,as=65000,bfd",
            "--announce",
            "10.0.0.100/32",
        ];
        let base = ["--listen", "10.0.0.100:80", "--backend", "10.0.0.21:80"];
        let key_s = key.display().to_string();
        let ha = [
            "--vip",
            "10.0.0.100/24",
            "--interface",
            "eth0",
            "--peer",
            "10.0.0.12",
            "--ha-key-file",
            key_s.as_str(),
        ];
        let e = serve(&[&base[..], &bgp[..], &ha[..]].concat()).unwrap_err();
        assert!(
            e.contains("--bgp-peer/--announce and --vip are alternatives"),
            "{e}"
        );
        let reload = ["--listeners-from", "/run/fulcrum.sock"];
        let e = serve(&[&base[..], &bgp[..], &reload[..]].concat()).unwrap_err();
        assert!(e.contains("not with --bgp-peer"), "{e}");
        let c = serve(&[&base[..], &bgp[..]].concat()).unwrap();
        let so = c.scaleout.expect("scale-out configured");
        assert_eq!(so.local_as, 65001);
        assert!(so.peers[0].bfd);
        let e = serve(&[&base[..], &["--announce", "10.0.0.100/32"][..]].concat()).unwrap_err();
        assert!(e.contains("need --bgp-as"), "{e}");
        let _ = std::fs::remove_file(&key);
    }

    #[test]
    fn max_conns_derived_from_nofile() {
        let cli = TestCli::try_parse_from([
            "fulcrum",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--backend",
            "127.0.0.1:2",
            "--workers",
            "2",
        ])
        .unwrap();
        let TestCommand::Serve(a) = cli.command;
        let c = ServeConfig::from_args(*a, 20_000).unwrap();
        assert_eq!(c.max_conns, (20_000 - 64 - 16) / 2);
    }
}
