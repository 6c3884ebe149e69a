//! The control plane: what runs beside the data-plane workers on the main thread.
//!
//! Health checks, the node agent receiver, the control socket, the HTTP console, failover
//! and alerts are [`Component`]s driven by one mio loop in [`crate::serve`]. Each gets a
//! token range and a [`Plane`]: the shared state they may read and change. Components
//! talk to each other only through the plane (node info for display, admin changes for
//! failover sync), never directly.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::event::Event;
use mio::Registry;

use crate::config::ServeConfig;
use crate::control::command::Scoped;
use crate::direct::DirectShared;
use crate::notify::Notifier;
use crate::runtime::{Process, Shared};

/// How many tokens each component may use (token = base + offset).
pub const TOKEN_SPAN: usize = 1 << 24;

/// Per-node information kept by the control plane for display (not needed by workers).
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The last active check: ok, detail, when, round-trip time.
    pub last_check: Option<(bool, String, Instant, Option<std::time::Duration>)>,
    /// The node agent's last reported state, if an agent is expected.
    pub agent: Option<String>,
    /// `remove node` was run: draining, leaves the pool once idle or at its deadline.
    pub removing: bool,
}

/// A node agent's heartbeat, authenticated and checked against replay by the health
/// checker that owns the agent socket, for the checker of every service that lists the
/// node (with `,agent`) to apply.
#[derive(Debug, Clone)]
pub struct AgentReport {
    /// Increasing per report: each checker applies those above the last it saw.
    pub seq: u64,
    /// The node.
    pub addr: SocketAddr,
    /// The state the agent reports.
    pub state: crate::wire::heartbeat::AgentState,
    /// Requested weight in percent, if any.
    pub weight_pct: Option<u8>,
    /// Load average per CPU × 1000.
    pub load_per_cpu_milli: u32,
    /// The task report the heartbeat carried, if any (for the rollout component).
    pub task: Option<crate::wire::task::Report>,
}

/// The agent reports of the last few turns (the owner trims it).
#[derive(Debug, Default)]
pub struct AgentInbox {
    /// Reports, oldest first.
    pub reports: std::collections::VecDeque<AgentReport>,
    /// The last sequence number given.
    pub last_seq: u64,
    /// Where each node's agent sends from (the address task requests go to), by node.
    pub agents: HashMap<SocketAddr, SocketAddr>,
}

/// Failover status for display (filled by the HA component when configured).
#[derive(Debug, Clone, Default)]
pub struct HaInfo {
    /// Current role (init/backup/master/fault).
    pub role: String,
    /// Current epoch.
    pub epoch: u64,
    /// Takeovers by this node.
    pub takeovers: u64,
    /// When the peer's last valid advert arrived.
    pub peer_last: Option<Instant>,
    /// Adverts rejected (bad MAC, replay, malformed).
    pub rejected: u64,
}

/// One service as the control plane holds it.
pub struct Service {
    /// What its workers share: pool, counters, flags.
    pub shared: Arc<Shared>,
    /// Its configuration (the global keys are the process's).
    pub cfg: ServeConfig,
    /// Display information per node.
    pub info: HashMap<SocketAddr, NodeInfo>,
    /// A reload removed it: its listeners are closed and its flows drain. It stays in
    /// the list (indexes are stable) but takes no commands.
    pub removed: bool,
}

impl Service {
    /// A running service.
    pub fn new(shared: Arc<Shared>, cfg: ServeConfig) -> Service {
        Service {
            shared,
            cfg,
            info: HashMap::new(),
            removed: false,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

/// What a configuration reload asks of the data plane for one service.
pub enum ServiceChange<'a> {
    /// Start serving a service the file added.
    Start(&'a ServeConfig),
    /// A running service's worker settings changed (timeouts, retries, splice, PROXY
    /// protocol, access log), or listen addresses were added or removed.
    Update {
        /// The service.
        shared: &'a Arc<Shared>,
        /// Its new configuration.
        cfg: &'a ServeConfig,
        /// Listen addresses to bind.
        bind: &'a [SocketAddr],
        /// Listen addresses to close.
        close: &'a [SocketAddr],
    },
}

/// Carries out a [`ServiceChange`] on the running workers (proxy mode); returns the
/// service's state and duplicates of the listeners it bound (for a reload's hand-over).
pub type ServiceStarter =
    Box<dyn FnMut(ServiceChange<'_>) -> io::Result<(Arc<Shared>, Vec<std::os::fd::OwnedFd>)>>;

/// What components share.
pub struct Plane {
    /// The services, in configuration order; a removed service keeps its index.
    pub services: Vec<Service>,
    /// What the whole process shares with its workers (drain, cut, open connections).
    pub process: Arc<Process>,
    /// Direct mode's counters and switches (direct mode only).
    pub direct: Option<Arc<DirectShared>>,
    /// The process's configuration: the global keys (those of the first service, which
    /// every service shares).
    pub cfg: ServeConfig,
    /// Starts a service a reload adds (proxy mode).
    pub starter: Option<ServiceStarter>,
    /// Alerts (log + notify command).
    pub notifier: Notifier,
    /// When the process started.
    pub started: Instant,
    /// Failover status, when configured.
    pub ha: Option<HaInfo>,
    /// Node-agent heartbeats, from the agent socket's owner to every service's checker.
    pub agent_inbox: AgentInbox,
    /// Admin changes applied locally this turn (for failover state sync).
    pub admin_log: Vec<Scoped>,
    /// Admin changes received from the failover peer, to apply locally (the control
    /// component applies them without echoing them into `admin_log`).
    pub remote_admin: Vec<Scoped>,
    /// Admin changes a configuration reload or the state file asks for (see
    /// [`crate::reconfig`], [`crate::state`]), with who asked (`reload`, `state file`):
    /// the control component runs them as local changes, so failover forwards them.
    pub queued_admin: Vec<(&'static str, Scoped)>,
    /// Re-reads the configuration file (SIGHUP, `fulcrum ctl reload`); `None` when the
    /// configuration comes from flags only.
    pub reloader: Option<crate::config::Reloader>,
    /// Duplicates of the proxy listeners, handed to a new process on `expose listeners`
    /// (zero-downtime reload). Dropped when draining starts, so a listener no process
    /// accepts on does not linger with SYNs queueing on it.
    pub listeners: Vec<(usize, std::os::fd::OwnedFd)>,
    /// `shutdown` ran on the control socket: drain and exit, as on SIGTERM.
    pub stop_requested: bool,
    /// BGP/BFD status for `show bgp`, when scale-out is configured.
    pub bgp: Option<crate::scaleout::status::BgpStatus>,
    /// `bgp withdraw` ran on the control socket: routes stay withdrawn (while the
    /// distributor keeps serving) until `bgp announce`.
    pub bgp_withdrawn: bool,
    /// Rolling maintenance: the operator's requests (from the control component) and the
    /// status the rollout component publishes.
    pub rollout: crate::rollout::board::Board,
}

impl Plane {
    /// The plane of a process that starts now with the global configuration `cfg` and
    /// `services` (at least one), the process's shared flags, direct
    /// mode's counters (direct mode only) and the listeners kept for a reload's
    /// hand-over. Every queue starts empty.
    pub fn new(
        cfg: ServeConfig,
        services: Vec<Service>,
        process: Arc<Process>,
        direct: Option<Arc<DirectShared>>,
        listeners: Vec<(usize, std::os::fd::OwnedFd)>,
    ) -> Plane {
        Plane {
            services,
            process,
            direct,
            notifier: Notifier::new(cfg.notify.clone(), cfg.notify_timeout),
            cfg,
            starter: None,
            started: Instant::now(),
            ha: None,
            agent_inbox: AgentInbox::default(),
            admin_log: Vec::new(),
            remote_admin: Vec::new(),
            queued_admin: Vec::new(),
            reloader: None,
            listeners,
            stop_requested: false,
            bgp: None,
            bgp_withdrawn: false,
            rollout: crate::rollout::board::Board::default(),
        }
    }

    /// The services still running (not removed by a reload), with their indexes.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Service)> {
        self.services.iter().enumerate().filter(|(_, s)| !s.removed)
    }

    /// The running service named `name`.
    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.live().find(|(_, s)| s.name() == name).map(|(i, _)| i)
    }

    /// The first service's state: the only one in direct mode, and the one whose
    /// switches failover drives in that mode.
    pub fn first(&self) -> &Arc<Shared> {
        &self.services[0].shared
    }

    /// Sets the process-wide drain flag and every service's.
    pub fn begin_shutdown(&self) {
        self.process
            .shutdown
            .store(true, std::sync::atomic::Ordering::Release);
        for s in &self.services {
            s.shared
                .shutdown
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Sets the process-wide cut flag and every service's.
    pub fn cut_all(&self) {
        self.process
            .cut_now
            .store(true, std::sync::atomic::Ordering::Release);
        for s in &self.services {
            s.shared
                .cut_now
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

#[cfg(test)]
impl Plane {
    /// The plane of the one service `fulcrum serve ARGS…` describes, nothing running
    /// (unit tests of the control commands and the HTTP routes).
    pub(crate) fn for_tests(args: &[&str]) -> Plane {
        use clap::Parser;
        let argv = ["fulcrum", "serve"].iter().chain(args);
        let cli = crate::config::TestCli::try_parse_from(argv).expect("flags");
        let crate::config::TestCommand::Serve(a) = cli.command;
        let cfg = ServeConfig::from_args(*a, 20_000).expect("config");
        let pool = Arc::new(crate::pool::Pool::new(&cfg.backends));
        let stats = Arc::new(crate::pool::Stats::default());
        let shared = Arc::new(Shared::new(pool, stats, cfg.scheduler));
        let svc = Service::new(shared, cfg.clone());
        Plane::new(cfg, vec![svc], Arc::default(), None, Vec::new())
    }
}

/// A control-plane component driven by the main loop.
pub trait Component {
    /// Registers its sources with tokens in `[base, base + TOKEN_SPAN)`.
    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()>;
    /// A readiness event for one of its tokens (`offset` = token − base).
    fn on_event(&mut self, plane: &mut Plane, registry: &Registry, offset: usize, ev: &Event);
    /// Called on every loop turn after events (and at its deadline).
    fn on_tick(&mut self, plane: &mut Plane, registry: &Registry, now: Instant);
    /// When it next needs [`Component::on_tick`] at the latest.
    fn deadline(&self) -> Option<Instant>;
    /// Admin changes made this turn by another component (control → failover sync).
    fn on_admin(&mut self, _plane: &mut Plane, _cmds: &[Scoped]) {}
    /// A stop was requested (SIGTERM, `shutdown`): returns until when the process
    /// should keep accepting before the drain starts (BGP withdraws first, so routers
    /// move new flows away while they are still served). `None`: drain at once.
    fn on_stop(&mut self, _plane: &mut Plane, _now: Instant) -> Option<Instant> {
        None
    }
    /// The process is shutting down (release resources such as the VIP).
    fn on_shutdown(&mut self, _plane: &mut Plane) {}
    /// Every component and worker started: publish what waited for that (a reload's
    /// control socket path).
    fn on_started(&mut self) -> io::Result<()> {
        Ok(())
    }
}
