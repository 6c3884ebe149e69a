//! Pure application of control commands to the control plane's node table.
//!
//! Owns [`NodeTable`], [`NodeEntry`], [`Effect`] and [`ApplyError`]. [`apply`]
//! validates a [`Command`] against the table and returns the [`Effect`] it
//! would have without mutating anything; [`NodeTable::commit`] applies it.
//! The shell acts on the effect (publishes a node-set snapshot, notifies the
//! scheduler, logs once); nothing here touches live counters or sockets.

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;

use crate::control::command::{Command, SchedulerKind, DEFAULT_WEIGHT, MAX_WEIGHT};
use crate::control::snapshot::AdminState;

/// One node as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's address; unique in a [`NodeTable`].
    pub addr: SocketAddr,
    /// Weight, `0..=256`.
    pub weight: u32,
    /// Used only when no non-backup node is eligible.
    pub backup: bool,
    /// Operator intent.
    pub admin: AdminState,
    /// `remove node` was accepted: no new flows; the shell drops the entry
    /// with [`NodeTable::finish_removal`] once its connections have closed.
    pub removing: bool,
}

/// The control plane's view of the node set and distributor switches, kept
/// by the shell and changed only through [`apply`] then [`NodeTable::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTable {
    nodes: Vec<NodeEntry>,
    enabled: bool,
    scheduler: SchedulerKind,
}

impl NodeTable {
    /// An empty table with the given switches.
    pub fn new(scheduler: SchedulerKind, enabled: bool) -> Self {
        NodeTable {
            nodes: Vec::new(),
            enabled,
            scheduler,
        }
    }

    /// All nodes, in the order they were added.
    pub fn nodes(&self) -> &[NodeEntry] {
        &self.nodes
    }

    /// The node with this address, including one being removed.
    pub fn get(&self, addr: SocketAddr) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.addr == addr)
    }

    /// Whether new connections are distributed.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The selected scheduler.
    pub fn scheduler(&self) -> SchedulerKind {
        self.scheduler
    }

    /// Applies an effect returned by [`apply`] on this table. An effect that
    /// no longer fits (its node is gone) is ignored rather than panicking.
    pub fn commit(&mut self, effect: &Effect) {
        match effect {
            Effect::None => {}
            Effect::Added(entry) => match self.get_mut(entry.addr) {
                Some(existing) => *existing = entry.clone(),
                None => self.nodes.push(entry.clone()),
            },
            Effect::Removing(addr) => {
                if let Some(n) = self.get_mut(*addr) {
                    n.removing = true;
                }
            }
            Effect::RemovalCancelled(addr) => {
                if let Some(n) = self.get_mut(*addr) {
                    n.removing = false;
                    n.admin = AdminState::Ready;
                }
            }
            Effect::WeightSet { addr, new, .. } => {
                if let Some(n) = self.get_mut(*addr) {
                    n.weight = *new;
                }
            }
            Effect::StateSet { addr, new, .. } => {
                if let Some(n) = self.get_mut(*addr) {
                    n.admin = *new;
                }
            }
            Effect::Enabled(on) => self.enabled = *on,
            Effect::SchedulerSet(kind) => self.scheduler = *kind,
        }
    }

    /// Drops a node whose removal was accepted, once the shell has seen its
    /// last connection close. Returns `None` (and changes nothing) if the
    /// node is absent or not being removed.
    pub fn finish_removal(&mut self, addr: SocketAddr) -> Option<NodeEntry> {
        let index = self
            .nodes
            .iter()
            .position(|n| n.addr == addr && n.removing)?;
        Some(self.nodes.remove(index))
    }

    fn get_mut(&mut self, addr: SocketAddr) -> Option<&mut NodeEntry> {
        self.nodes.iter_mut().find(|n| n.addr == addr)
    }
}

/// What an accepted command changes; returned by [`apply`], applied by
/// [`NodeTable::commit`] and acted on by the shell (publish a new node-set
/// snapshot, rebuild or notify the scheduler, log the change).
///
/// `Display` gives a one-line confirmation for the control reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing changes (show, help, wait).
    None,
    /// A new node, admin state `ready`.
    Added(NodeEntry),
    /// The node takes no new flows and goes once idle.
    Removing(SocketAddr),
    /// `set state ADDR ready` on a node being removed: the removal is called off and
    /// the node is ready again.
    RemovalCancelled(SocketAddr),
    /// The node's weight changes (possibly to the same value).
    WeightSet {
        /// The node.
        addr: SocketAddr,
        /// Weight before.
        old: u32,
        /// Weight after.
        new: u32,
    },
    /// The node's admin state changes (possibly to the same value).
    StateSet {
        /// The node.
        addr: SocketAddr,
        /// State before.
        old: AdminState,
        /// State after.
        new: AdminState,
    },
    /// Distribution switched on (`true`) or off.
    Enabled(bool),
    /// A different scheduling algorithm (possibly the same one).
    SchedulerSet(SchedulerKind),
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::None => f.write_str("no change"),
            Effect::Added(e) => write!(
                f,
                "added node {} weight {}{}",
                e.addr,
                e.weight,
                if e.backup { " backup" } else { "" }
            ),
            Effect::Removing(addr) => write!(f, "removing node {addr} once its connections close"),
            Effect::RemovalCancelled(addr) => write!(f, "node {addr} removal cancelled, ready"),
            Effect::WeightSet { addr, old, new } => {
                write!(f, "node {addr} weight {old} -> {new}")
            }
            Effect::StateSet { addr, old, new } => write!(f, "node {addr} state {old} -> {new}"),
            Effect::Enabled(true) => f.write_str("distribution enabled"),
            Effect::Enabled(false) => f.write_str("distribution disabled"),
            Effect::SchedulerSet(kind) => write!(f, "scheduler set to {kind}"),
        }
    }
}

/// Why a well-formed command cannot be applied. Each variant names the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// `add node` for an address already in the table.
    NodeExists(SocketAddr),
    /// The address is not in the table.
    NoSuchNode(SocketAddr),
    /// The node's removal is in progress; it accepts no further changes.
    NodeRemoving(SocketAddr),
    /// Unspecified or multicast IP, or port 0: nothing to connect to.
    UnusableAddress(SocketAddr),
    /// A weight above [`MAX_WEIGHT`] (only reachable by building a
    /// [`Command`] by hand; [`parse`](crate::control::command::parse) rejects
    /// it first).
    WeightOutOfRange {
        /// The node.
        addr: SocketAddr,
        /// The rejected weight.
        weight: u32,
    },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::NodeExists(a) => write!(f, "node {a} already exists"),
            ApplyError::NoSuchNode(a) => write!(f, "no such node {a}"),
            ApplyError::NodeRemoving(a) => write!(f, "node {a} is being removed"),
            ApplyError::UnusableAddress(a) => write!(
                f,
                "node {a}: not a usable address (unspecified or multicast IP, or port 0)"
            ),
            ApplyError::WeightOutOfRange { addr, weight } => {
                write!(
                    f,
                    "node {addr}: weight {weight} out of range 0..={MAX_WEIGHT}"
                )
            }
        }
    }
}

impl Error for ApplyError {}

/// Validates `cmd` against `table` and returns its [`Effect`] without
/// changing anything; call [`NodeTable::commit`] to apply it.
pub fn apply(table: &NodeTable, cmd: &Command) -> Result<Effect, ApplyError> {
    match *cmd {
        Command::ShowServices { .. }
        | Command::ShowNodes { .. }
        | Command::ShowStats { .. }
        | Command::ShowConfig { .. }
        | Command::ShowBgp { .. }
        | Command::Rollout(_)
        | Command::ScheduleMaint { .. }
        | Command::CancelMaint { .. }
        | Command::Help => Ok(Effect::None),
        Command::AddNode {
            addr,
            weight,
            backup,
        } => {
            let ip = addr.ip();
            if ip.is_unspecified() || ip.is_multicast() || addr.port() == 0 {
                return Err(ApplyError::UnusableAddress(addr));
            }
            match table.get(addr) {
                Some(n) if n.removing => return Err(ApplyError::NodeRemoving(addr)),
                Some(_) => return Err(ApplyError::NodeExists(addr)),
                None => {}
            }
            let weight = check_weight(addr, weight.unwrap_or(DEFAULT_WEIGHT))?;
            Ok(Effect::Added(NodeEntry {
                addr,
                weight,
                backup,
                admin: AdminState::Ready,
                removing: false,
            }))
        }
        Command::RemoveNode { addr } => live(table, addr).map(|_| Effect::Removing(addr)),
        Command::SetWeight { addr, weight } => {
            let node = live(table, addr)?;
            Ok(Effect::WeightSet {
                addr,
                old: node.weight,
                new: check_weight(addr, weight)?,
            })
        }
        // `ready` is how a removal is called off (the node never left the pool);
        // other states on a node being removed would be overridden by the removal.
        Command::SetState {
            addr,
            state: AdminState::Ready,
        } if table.get(addr).is_some_and(|n| n.removing) => Ok(Effect::RemovalCancelled(addr)),
        Command::SetState { addr, state } => Ok(Effect::StateSet {
            addr,
            old: live(table, addr)?.admin,
            new: state,
        }),
        Command::Disable => Ok(Effect::Enabled(false)),
        Command::Enable => Ok(Effect::Enabled(true)),
        Command::SetScheduler(kind) => Ok(Effect::SchedulerSet(kind)),
        // Waiting on a node being removed is the usual way to wait for the
        // removal, so only absence is an error.
        Command::WaitDrained { addr, .. } => table
            .get(addr)
            .map(|_| Effect::None)
            .ok_or(ApplyError::NoSuchNode(addr)),
    }
}

/// The node, if present and not being removed.
fn live(table: &NodeTable, addr: SocketAddr) -> Result<&NodeEntry, ApplyError> {
    match table.get(addr) {
        None => Err(ApplyError::NoSuchNode(addr)),
        Some(n) if n.removing => Err(ApplyError::NodeRemoving(addr)),
        Some(n) => Ok(n),
    }
}

fn check_weight(addr: SocketAddr, weight: u32) -> Result<u32, ApplyError> {
    if weight > MAX_WEIGHT {
        return Err(ApplyError::WeightOutOfRange { addr, weight });
    }
    Ok(weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::command::parse;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn table_with(addrs: &[&str]) -> NodeTable {
        let mut t = NodeTable::new(SchedulerKind::Wrr, true);
        for a in addrs {
            let cmd = parse(&format!("add node {a}")).unwrap();
            let effect = apply(&t, &cmd).unwrap();
            t.commit(&effect);
        }
        t
    }

    #[test]
    fn apply_validates_without_mutating_then_commit_applies() {
        let mut t = table_with(&["10.0.0.1:80"]);
        let before = t.clone();
        let a = sa("10.0.0.1:80");
        let cmd = parse("set weight 10.0.0.1:80 7").unwrap();
        let effect = apply(&t, &cmd).unwrap();
        assert_eq!(t, before);
        assert_eq!(
            effect,
            Effect::WeightSet {
                addr: a,
                old: 1,
                new: 7
            }
        );
        t.commit(&effect);
        assert_eq!(t.get(a).map(|n| n.weight), Some(7));

        let effect = apply(&t, &parse("set state 10.0.0.1:80 maint").unwrap()).unwrap();
        assert_eq!(effect.to_string(), "node 10.0.0.1:80 state ready -> maint");
        t.commit(&effect);
        t.commit(&apply(&t, &Command::Disable).unwrap());
        t.commit(&apply(&t, &Command::SetScheduler(SchedulerKind::Lc)).unwrap());
        assert!(!t.enabled());
        assert_eq!(t.scheduler(), SchedulerKind::Lc);
        assert_eq!(t.get(a).map(|n| n.admin), Some(AdminState::Maint));
    }

    #[test]
    fn apply_errors_name_the_node() {
        let mut t = table_with(&["10.0.0.1:80", "[2001:db8::1]:443"]);
        let run =
            |t: &NodeTable, line: &str| apply(t, &parse(line).unwrap()).map_err(|e| e.to_string());
        assert_eq!(
            run(&t, "add node 10.0.0.1:80"),
            Err("node 10.0.0.1:80 already exists".into())
        );
        assert_eq!(
            run(&t, "set weight 10.0.0.9:80 3"),
            Err("no such node 10.0.0.9:80".into())
        );
        assert_eq!(
            run(&t, "add node 0.0.0.0:80"),
            Err(
                "node 0.0.0.0:80: not a usable address (unspecified or multicast IP, or port 0)"
                    .into()
            )
        );
        assert!(run(&t, "add node 10.0.0.2:0").is_err());
        let effect = apply(&t, &parse("remove node [2001:db8::1]:443").unwrap()).unwrap();
        t.commit(&effect);
        for line in [
            "remove node [2001:db8::1]:443",
            "set state [2001:db8::1]:443 maint",
            "set weight [2001:db8::1]:443 3",
            "add node [2001:db8::1]:443",
        ] {
            assert_eq!(
                run(&t, line),
                Err("node [2001:db8::1]:443 is being removed".into()),
                "{line}"
            );
        }
        // Waiting on a node being removed is allowed: it is how one waits
        // for the removal to complete.
        assert_eq!(
            run(&t, "wait drained [2001:db8::1]:443 1s"),
            Ok(Effect::None)
        );
        assert_eq!(
            apply(
                &t,
                &Command::SetWeight {
                    addr: sa("10.0.0.1:80"),
                    weight: 999
                }
            )
            .unwrap_err()
            .to_string(),
            "node 10.0.0.1:80: weight 999 out of range 0..=256"
        );
        assert_eq!(t.finish_removal(sa("10.0.0.1:80")), None);
        assert!(t.finish_removal(sa("[2001:db8::1]:443")).is_some());
        assert_eq!(t.nodes().len(), 1);
        assert_eq!(
            run(&t, "wait drained [2001:db8::1]:443"),
            Err("no such node [2001:db8::1]:443".into())
        );
    }

    #[test]
    fn set_state_ready_cancels_a_removal() {
        let mut t = table_with(&["10.0.0.1:80"]);
        let a = sa("10.0.0.1:80");
        t.commit(&apply(&t, &parse("remove node 10.0.0.1:80").unwrap()).unwrap());
        let effect = apply(&t, &parse("set state 10.0.0.1:80 ready").unwrap()).unwrap();
        assert_eq!(effect, Effect::RemovalCancelled(a));
        assert_eq!(
            effect.to_string(),
            "node 10.0.0.1:80 removal cancelled, ready"
        );
        t.commit(&effect);
        let n = t.get(a).unwrap();
        assert!(!n.removing);
        assert_eq!(n.admin, AdminState::Ready);
        // No longer being removed: nothing to finish, other commands work again.
        assert_eq!(t.finish_removal(a), None);
        assert!(apply(&t, &parse("set weight 10.0.0.1:80 3").unwrap()).is_ok());
    }
}
