//! State sync between the pair: the master's node-set admin state, carried in
//! [`crate::wire::advert::Kind::StateSync`] datagrams (sans-IO: encoding, decoding,
//! reassembly and the diff against the local pool).
//!
//! # Payload (UTF-8, newline-separated lines)
//! - **Delta**: canonical control command lines (the [`Command`] `Display` form that
//!   [`crate::control::command::parse`] reads back), one per admin change applied on
//!   the master: `add node`, `remove node`, `set weight`, `set state`. Nothing else is
//!   synced (scheduler, enable/disable stay per node).
//! - **Full snapshot**, sent every [`FULL_SNAPSHOT_INTERVAL`] and at takeover: first
//!   line `sync full ID PART/TOTAL`, then for every node `add node ADDR weight W
//!   [backup]` followed by `set state ADDR S`. A snapshot larger than one datagram is
//!   split at node boundaries into `TOTAL` parts with the same `ID`; the backup applies
//!   it only once every part has arrived, and then removes nodes absent from it.
//! - **Maintenance**: `sync maint ID PART/TOTAL`, then the lines of
//!   [`crate::rollout::replica`] (the rollout, the task jobs, the maintenance windows),
//!   sent with every full snapshot; the backup shows them and a new master adopts them.
//! - **Request**: the single line `sync request`, sent by a node that becomes backup,
//!   so the master answers with a full snapshot at once instead of within a second
//!   (a restarted primary learns the runtime changes before it preempts).
//!
//! Every payload is at most [`crate::wire::advert::MAX_PAYLOAD_LEN`] bytes; a line is
//! under 100 bytes, so about 10 nodes fit a datagram and the node count is bounded
//! only by [`MAX_PARTS`].
//!
//! What it does not do: send, receive or apply anything; the driver
//! ([`crate::ha::driver`]) does, and the control component applies the commands it
//! queues in [`crate::plane::Plane::remote_admin`].

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::control::command::{self, Command, Scoped, DEFAULT_WEIGHT};
use crate::pool::{AdminState, Pool};
use crate::wire::advert::MAX_PAYLOAD_LEN;

/// How often a master sends its full snapshot.
pub const FULL_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);
/// Most datagrams one full snapshot may span (a bound on reassembly state).
pub const MAX_PARTS: u16 = 1024;

/// The synced part of one node's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Its service (`default` for a configuration given by flags).
    pub service: String,
    /// Identity within the service.
    pub addr: SocketAddr,
    /// Configured weight.
    pub weight: u32,
    /// Backup node (fixed at `add`).
    pub backup: bool,
    /// Admin state.
    pub admin: AdminState,
}

/// The current node set of the pool of `service` (nodes already removed are left out),
/// appended to `out`.
pub fn pool_states(service: &str, pool: &Pool, out: &mut Vec<NodeState>) {
    out.extend(
        pool.snapshot()
            .0
            .iter()
            .filter(|n| !n.is_removed())
            .map(|n| NodeState {
                service: service.to_owned(),
                addr: n.addr(),
                weight: n.weight(),
                backup: n.is_backup(),
                admin: n.admin(),
            }),
    );
}

/// The service a synced line is for (a line without one is for `default`).
fn service_of(cmd: &Scoped) -> &str {
    cmd.service
        .as_deref()
        .unwrap_or(crate::config::DEFAULT_SERVICE)
}

/// Whether a command is one the master syncs to the backup.
pub fn is_synced(cmd: &Scoped) -> bool {
    matches!(
        cmd.cmd,
        Command::AddNode { .. }
            | Command::RemoveNode { .. }
            | Command::SetWeight { .. }
            | Command::SetState { .. }
    )
}

/// A decoded state-sync payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Admin changes, in order.
    Delta(Vec<Scoped>),
    /// One part of a full snapshot.
    Full {
        /// Snapshot id (the same in every part).
        id: u64,
        /// 1-based part number.
        part: u16,
        /// Parts in the snapshot.
        total: u16,
        /// The part's command lines.
        lines: Vec<Scoped>,
    },
    /// One part of a maintenance replica (its lines checked by
    /// [`crate::rollout::replica::decode`] once whole).
    Maint {
        /// Replica id (the same in every part).
        id: u64,
        /// 1-based part number.
        part: u16,
        /// Parts in the replica.
        total: u16,
        /// The part's lines.
        lines: Vec<String>,
    },
    /// "Send me a full snapshot now."
    Request,
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncError {
    /// 1-based line number (0: the payload as a whole).
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "state sync: {}", self.reason)
        } else {
            write!(f, "state sync line {}: {}", self.line, self.reason)
        }
    }
}

impl std::error::Error for SyncError {}

fn err(line: usize, reason: impl Into<String>) -> SyncError {
    SyncError {
        line,
        reason: reason.into(),
    }
}

/// The payload asking the master for a full snapshot.
pub fn encode_request() -> Vec<u8> {
    b"sync request".to_vec()
}

/// Packs the synced commands among `cmds` into payloads of at most
/// [`MAX_PAYLOAD_LEN`] bytes (none if nothing is synced).
pub fn encode_delta(cmds: &[Scoped]) -> Vec<Vec<u8>> {
    let lines = cmds
        .iter()
        .filter(|c| is_synced(c))
        .map(|c| format!("{c}\n"));
    pack(lines, MAX_PAYLOAD_LEN)
}

/// Room kept in every full-snapshot part for its header line.
const HEADER_ROOM: usize = 48;

/// Encodes a full snapshot as `sync full ID PART/TOTAL` parts. Nodes beyond what
/// [`MAX_PARTS`] datagrams hold are left out (and the result has exactly
/// `MAX_PARTS` parts): far more nodes than a distributor is meant for.
pub fn encode_full(id: u64, nodes: &[NodeState]) -> Vec<Vec<u8>> {
    let blocks = nodes.iter().map(|n| {
        let add = Command::AddNode {
            addr: n.addr,
            weight: Some(n.weight),
            backup: n.backup,
        };
        let state = Command::SetState {
            addr: n.addr,
            state: n.admin,
        };
        let svc = Some(n.service.as_str());
        format!("{}\n{}\n", Scoped::new(svc, add), Scoped::new(svc, state))
    });
    let mut bodies = pack(blocks, MAX_PAYLOAD_LEN - HEADER_ROOM);
    if bodies.is_empty() {
        bodies.push(Vec::new());
    }
    bodies.truncate(usize::from(MAX_PARTS));
    let total = bodies.len();
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let mut p = format!("sync full {id} {}/{total}\n", i + 1).into_bytes();
            p.extend_from_slice(&body);
            p
        })
        .collect()
}

/// Greedy packing of whole strings into buffers of at most `limit` bytes.
fn pack(items: impl Iterator<Item = String>, limit: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for item in items {
        if item.len() > limit {
            continue; // cannot happen for command lines (< 100 bytes); never split one
        }
        if cur.len() + item.len() > limit {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend_from_slice(item.as_bytes());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Decodes a payload. Never panics; any line that is not a synced command is an error.
pub fn decode(payload: &[u8]) -> Result<Message, SyncError> {
    let text = std::str::from_utf8(payload).map_err(|_| err(0, "not UTF-8"))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, first)) = lines.next() else {
        return Err(err(0, "empty"));
    };
    let words: Vec<&str> = first.split_whitespace().collect();
    match words.as_slice() {
        ["sync", "request"] => {
            if let Some((i, _)) = lines.next() {
                return Err(err(i + 1, "nothing may follow `sync request`"));
            }
            Ok(Message::Request)
        }
        ["sync", "full", id, parts] => {
            let (id, part, total) = header("snapshot", id, parts, MAX_PARTS)?;
            let lines = commands(lines)?;
            Ok(Message::Full {
                id,
                part,
                total,
                lines,
            })
        }
        ["sync", "maint", id, parts] => {
            let (id, part, total) =
                header("replica", id, parts, crate::rollout::replica::MAX_PARTS)?;
            Ok(Message::Maint {
                id,
                part,
                total,
                lines: lines.map(|(_, l)| l.to_owned()).collect(),
            })
        }
        ["sync", ..] => Err(err(1, format!("unknown sync header {first:?}"))),
        _ => {
            let all = std::iter::once((0, first)).chain(lines);
            Ok(Message::Delta(commands(all)?))
        }
    }
}

/// The `ID PART/TOTAL` of a multi-part header (`what`: for the error).
fn header(what: &str, id: &str, parts: &str, max: u16) -> Result<(u64, u16, u16), SyncError> {
    let id: u64 = id
        .parse()
        .map_err(|_| err(1, format!("bad {what} id {id:?}")))?;
    let (part, total) = parts
        .split_once('/')
        .and_then(|(p, t)| Some((p.parse::<u16>().ok()?, t.parse::<u16>().ok()?)))
        .filter(|(p, t)| *p >= 1 && p <= t && *t <= max)
        .ok_or_else(|| err(1, format!("bad part {parts:?} (expected N/TOTAL)")))?;
    Ok((id, part, total))
}

fn commands<'a>(lines: impl Iterator<Item = (usize, &'a str)>) -> Result<Vec<Scoped>, SyncError> {
    lines
        .map(|(i, l)| {
            let cmd = command::parse_scoped(l).map_err(|e| err(i + 1, e.to_string()))?;
            if is_synced(&cmd) {
                Ok(cmd)
            } else {
                Err(err(i + 1, format!("command not synced: {cmd}")))
            }
        })
        .collect()
}

/// The node set a full snapshot describes: `add node` defines a node, `set weight` /
/// `set state` amend one defined earlier.
pub fn snapshot_states(lines: &[Scoped]) -> Result<Vec<NodeState>, SyncError> {
    let mut out: Vec<NodeState> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let svc = service_of(line);
        let find = |out: &mut Vec<NodeState>, addr: SocketAddr| {
            out.iter()
                .position(|n| n.service == svc && n.addr == addr)
                .ok_or_else(|| err(i + 1, format!("{svc}/{addr} set before it is added")))
        };
        match line.cmd {
            Command::AddNode {
                addr,
                weight,
                backup,
            } => {
                if out.iter().any(|n| n.service == svc && n.addr == addr) {
                    return Err(err(i + 1, format!("{svc}/{addr} added twice")));
                }
                out.push(NodeState {
                    service: svc.to_owned(),
                    addr,
                    weight: weight.unwrap_or(DEFAULT_WEIGHT),
                    backup,
                    admin: AdminState::Ready,
                });
            }
            Command::SetWeight { addr, weight } => {
                let at = find(&mut out, addr)?;
                out[at].weight = weight;
            }
            Command::SetState { addr, state } => {
                let at = find(&mut out, addr)?;
                out[at].admin = state;
            }
            _ => return Err(err(i + 1, format!("not part of a snapshot: {line}"))),
        }
    }
    Ok(out)
}

/// The commands that turn `current` into `desired`. A node whose `backup` flag
/// differs keeps its flag (it cannot change in place); the rest of it is synced.
pub fn diff(desired: &[NodeState], current: &[NodeState]) -> Vec<Scoped> {
    let mut out = Vec::new();
    let same = |a: &NodeState, b: &NodeState| a.service == b.service && a.addr == b.addr;
    for d in desired {
        let mut push = |cmd: Command| out.push(Scoped::new(Some(&d.service), cmd));
        match current.iter().find(|c| same(c, d)) {
            None => {
                push(Command::AddNode {
                    addr: d.addr,
                    weight: Some(d.weight),
                    backup: d.backup,
                });
                if d.admin != AdminState::Ready {
                    push(Command::SetState {
                        addr: d.addr,
                        state: d.admin,
                    });
                }
            }
            Some(c) => {
                if c.weight != d.weight {
                    push(Command::SetWeight {
                        addr: d.addr,
                        weight: d.weight,
                    });
                }
                if c.admin != d.admin {
                    push(Command::SetState {
                        addr: d.addr,
                        state: d.admin,
                    });
                }
            }
        }
    }
    for c in current {
        if !desired.iter().any(|d| same(c, d)) {
            out.push(Scoped::new(
                Some(&c.service),
                Command::RemoveNode { addr: c.addr },
            ));
        }
    }
    out
}

/// Whether applying `cmd` to `current` would change anything (a delta command for a
/// node that is not there is left for the next full snapshot).
pub fn changes(cmd: &Scoped, current: &[NodeState]) -> bool {
    let svc = service_of(cmd);
    let find = |addr: &SocketAddr| current.iter().find(|n| n.service == svc && n.addr == *addr);
    match &cmd.cmd {
        Command::AddNode { addr, .. } => find(addr).is_none(),
        Command::RemoveNode { addr } => find(addr).is_some(),
        Command::SetWeight { addr, weight } => find(addr).is_some_and(|n| n.weight != *weight),
        Command::SetState { addr, state } => find(addr).is_some_and(|n| n.admin != *state),
        _ => false,
    }
}

/// Applies a synced command to a local copy of the node set (to judge the next
/// command of the same delta against the state it will meet).
pub fn apply_to(states: &mut Vec<NodeState>, cmd: &Scoped) {
    let svc = service_of(cmd);
    let is = |n: &NodeState, addr: SocketAddr| n.service == svc && n.addr == addr;
    match cmd.cmd {
        Command::AddNode {
            addr,
            weight,
            backup,
        } if !states.iter().any(|n| is(n, addr)) => {
            states.push(NodeState {
                service: svc.to_owned(),
                addr,
                weight: weight.unwrap_or(DEFAULT_WEIGHT),
                backup,
                admin: AdminState::Ready,
            });
        }
        Command::RemoveNode { addr } => states.retain(|n| !is(n, addr)),
        Command::SetWeight { addr, weight } => {
            if let Some(n) = states.iter_mut().find(|n| is(n, addr)) {
                n.weight = weight;
            }
        }
        Command::SetState { addr, state } => {
            if let Some(n) = states.iter_mut().find(|n| is(n, addr)) {
                n.admin = state;
            }
        }
        _ => {}
    }
}

/// Collects the parts of one full snapshot from one sender.
#[derive(Debug, Default)]
pub struct Assembler {
    current: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    from: u32,
    id: u64,
    parts: Vec<Option<Vec<Scoped>>>,
}

impl Assembler {
    /// Adds one part; returns the whole snapshot's lines once every part is in. A part
    /// of another snapshot (or sender) starts over: only the newest is kept.
    pub fn push(
        &mut self,
        from: u32,
        id: u64,
        part: u16,
        total: u16,
        lines: Vec<Scoped>,
    ) -> Option<Vec<Scoped>> {
        let total = usize::from(total.clamp(1, MAX_PARTS));
        let index = usize::from(part).checked_sub(1).filter(|i| *i < total)?;
        let fresh = match &self.current {
            Some(p) => p.from != from || p.id != id || p.parts.len() != total,
            None => true,
        };
        if fresh {
            self.current = Some(Pending {
                from,
                id,
                parts: vec![None; total],
            });
        }
        let pending = self.current.as_mut()?;
        pending.parts[index] = Some(lines);
        if pending.parts.iter().all(Option::is_some) {
            let done = self.current.take()?;
            return Some(done.parts.into_iter().flatten().flatten().collect());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(last: u8, weight: u32, admin: AdminState) -> NodeState {
        NodeState {
            service: "default".into(),
            addr: SocketAddr::from(([10, 99, 0, last], 80)),
            weight,
            backup: false,
            admin,
        }
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 99, 0, last], 80))
    }

    #[test]
    fn delta_round_trips_and_skips_unsynced() {
        let cmds: Vec<Scoped> = vec![
            Command::SetState {
                addr: addr(21),
                state: AdminState::Drain,
            },
            Command::Disable,
            Command::ShowNodes { json: true },
            Command::SetWeight {
                addr: addr(22),
                weight: 5,
            },
        ]
        .into_iter()
        .map(Scoped::from)
        .collect();
        let p = encode_delta(&cmds);
        assert_eq!(p.len(), 1);
        assert_eq!(
            std::str::from_utf8(&p[0]).unwrap(),
            "set state 10.99.0.21:80 drain\nset weight 10.99.0.22:80 5\n"
        );
        assert_eq!(
            decode(&p[0]),
            Ok(Message::Delta(vec![cmds[0].clone(), cmds[3].clone()]))
        );
        assert!(encode_delta(&[Command::Enable.into()]).is_empty());
    }

    #[test]
    fn full_snapshot_fixture() {
        let nodes = [
            node(21, 1, AdminState::Ready),
            NodeState {
                backup: true,
                ..node(22, 3, AdminState::Maint)
            },
        ];
        let p = encode_full(7, &nodes);
        assert_eq!(p.len(), 1);
        assert_eq!(
            std::str::from_utf8(&p[0]).unwrap(),
            "sync full 7 1/1\n\
             add node 10.99.0.21:80 weight 1\n\
             set state 10.99.0.21:80 ready\n\
             add node 10.99.0.22:80 weight 3 backup\n\
             set state 10.99.0.22:80 maint\n"
        );
        let Ok(Message::Full {
            id: 7,
            part: 1,
            total: 1,
            lines,
        }) = decode(&p[0])
        else {
            panic!("not a full snapshot")
        };
        assert_eq!(snapshot_states(&lines), Ok(nodes.to_vec()));
    }

    #[test]
    fn empty_node_set_is_one_part() {
        let p = encode_full(1, &[]);
        assert_eq!(p, vec![b"sync full 1 1/1\n".to_vec()]);
        let Ok(Message::Full { lines, .. }) = decode(&p[0]) else {
            panic!()
        };
        assert!(lines.is_empty());
    }

    #[test]
    fn large_snapshot_splits_and_reassembles_in_any_order() {
        let nodes: Vec<NodeState> = (0..200u32)
            .map(|i| NodeState {
                service: "default".into(),
                addr: SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8], 8080)),
                weight: i % 257,
                backup: i % 7 == 0,
                admin: AdminState::ALL[(i % 3) as usize],
            })
            .collect();
        let parts = encode_full(42, &nodes);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.len() <= MAX_PAYLOAD_LEN));
        let mut asm = Assembler::default();
        let mut done = None;
        for p in parts.iter().rev() {
            let Ok(Message::Full {
                id,
                part,
                total,
                lines,
            }) = decode(p)
            else {
                panic!("bad part")
            };
            assert!(done.is_none());
            done = asm.push(9, id, part, total, lines);
        }
        assert_eq!(snapshot_states(&done.unwrap()), Ok(nodes));
    }

    #[test]
    fn assembler_restarts_on_a_newer_snapshot_and_ignores_bad_parts() {
        let mut asm = Assembler::default();
        assert_eq!(asm.push(1, 1, 1, 2, vec![]), None);
        // A newer snapshot replaces the incomplete one.
        assert_eq!(asm.push(1, 2, 2, 2, vec![]), None);
        assert_eq!(asm.push(1, 1, 2, 2, vec![]), None);
        assert_eq!(asm.push(1, 1, 1, 2, vec![]), Some(vec![]));
        assert_eq!(asm.push(1, 3, 0, 2, vec![]), None);
        assert_eq!(asm.push(1, 3, 3, 2, vec![]), None);
    }

    #[test]
    fn maintenance_parts_decode_as_raw_lines() {
        assert_eq!(
            decode(b"sync maint 7 2/3\nids 1 0\nrnode 10.0.0.1:80 done 5\n"),
            Ok(Message::Maint {
                id: 7,
                part: 2,
                total: 3,
                lines: vec!["ids 1 0".into(), "rnode 10.0.0.1:80 done 5".into()],
            })
        );
        for bad in [
            "sync maint x 1/1",
            "sync maint 1 0/1",
            "sync maint 1 2/1",
            "sync maint 1 1/65",
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn decode_rejects_garbage() {
        for bad in [
            &b""[..],
            b"\n\n",
            b"\xff\xfe",
            b"sync nonsense",
            b"sync full x 1/1",
            b"sync full 1 0/1",
            b"sync full 1 2/1",
            b"sync full 1 1/65535",
            b"sync full 1 1",
            b"sync request\nadd node 10.0.0.1:80",
            b"show nodes",
            b"disable",
            b"set state 10.0.0.1:80 sleeping",
            b"add node nowhere weight 1",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode(&encode_request()), Ok(Message::Request));
        let e = decode(b"set weight 10.0.0.1:80 1\nremove everything").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn snapshot_lines_must_be_consistent() {
        let set = Command::SetState {
            addr: addr(1),
            state: AdminState::Drain,
        };
        assert!(snapshot_states(&[set.into()]).is_err());
        let add = Command::AddNode {
            addr: addr(1),
            weight: None,
            backup: false,
        };
        assert!(snapshot_states(&[add.clone().into(), add.clone().into()]).is_err());
        assert!(snapshot_states(&[Command::RemoveNode { addr: addr(1) }.into()]).is_err());
        assert_eq!(
            snapshot_states(&[add.into()]).unwrap()[0].weight,
            DEFAULT_WEIGHT
        );
    }

    #[test]
    fn diff_adds_changes_and_removes() {
        let current = [
            node(1, 1, AdminState::Ready),
            node(2, 1, AdminState::Ready),
            node(3, 1, AdminState::Ready),
        ];
        let desired = [
            node(1, 1, AdminState::Ready),
            node(2, 4, AdminState::Drain),
            node(4, 2, AdminState::Maint),
        ];
        assert_eq!(
            diff(&desired, &current),
            vec![
                Command::SetWeight {
                    addr: addr(2),
                    weight: 4
                },
                Command::SetState {
                    addr: addr(2),
                    state: AdminState::Drain
                },
                Command::AddNode {
                    addr: addr(4),
                    weight: Some(2),
                    backup: false
                },
                Command::SetState {
                    addr: addr(4),
                    state: AdminState::Maint
                },
                Command::RemoveNode { addr: addr(3) },
            ]
            .into_iter()
            .map(|c| Scoped::new(Some("default"), c))
            .collect::<Vec<_>>()
        );
        assert!(diff(&current, &current).is_empty());
    }

    #[test]
    fn changes_compares_with_the_pool() {
        let current = [node(1, 1, AdminState::Ready)];
        let drain = |last| Command::SetState {
            addr: addr(last),
            state: AdminState::Drain,
        };
        assert!(changes(&drain(1).into(), &current));
        assert!(!changes(&drain(2).into(), &current));
        assert!(!changes(
            &Command::SetState {
                addr: addr(1),
                state: AdminState::Ready
            }
            .into(),
            &current
        ));
        assert!(changes(
            &Command::RemoveNode { addr: addr(1) }.into(),
            &current
        ));
        assert!(!changes(
            &Command::RemoveNode { addr: addr(2) }.into(),
            &current
        ));
        assert!(!changes(
            &Command::SetWeight {
                addr: addr(1),
                weight: 1
            }
            .into(),
            &current
        ));
    }

    #[test]
    fn apply_to_follows_a_delta() {
        let mut states = vec![node(1, 1, AdminState::Ready)];
        let add: Scoped = Command::AddNode {
            addr: addr(2),
            weight: None,
            backup: false,
        }
        .into();
        assert!(changes(&add, &states));
        apply_to(&mut states, &add);
        assert!(!changes(&add, &states));
        apply_to(&mut states, &drain_cmd(2).into());
        assert_eq!(states[1].admin, AdminState::Drain);
        apply_to(
            &mut states,
            &Command::SetWeight {
                addr: addr(2),
                weight: 9,
            }
            .into(),
        );
        assert_eq!(states[1].weight, 9);
        apply_to(&mut states, &Command::RemoveNode { addr: addr(1) }.into());
        assert_eq!(states.len(), 1);
    }

    #[test]
    fn one_address_in_two_services_is_two_nodes() {
        let web = |w| NodeState {
            service: "web".into(),
            ..node(1, w, AdminState::Ready)
        };
        let api = |w| NodeState {
            service: "api".into(),
            ..node(1, w, AdminState::Ready)
        };
        // A snapshot holds both; the lines name their service.
        let p = encode_full(3, &[web(1), api(2)]);
        let text = std::str::from_utf8(&p[0]).unwrap();
        assert!(
            text.contains("add node web/10.99.0.1:80 weight 1\n"),
            "{text}"
        );
        assert!(
            text.contains("set state api/10.99.0.1:80 ready\n"),
            "{text}"
        );
        let Ok(Message::Full { lines, .. }) = decode(&p[0]) else {
            panic!("not a full snapshot")
        };
        assert_eq!(snapshot_states(&lines), Ok(vec![web(1), api(2)]));
        // A change to one service's node leaves the other's alone.
        let current = [web(1), api(2)];
        let d = diff(&[web(5), api(2)], &current);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_string(), "set weight web/10.99.0.1:80 5");
        let mut states = current.to_vec();
        apply_to(&mut states, &d[0]);
        assert_eq!(states, [web(5), api(2)]);
        let rm = Scoped::new(Some("api"), Command::RemoveNode { addr: addr(1) });
        assert!(changes(&rm, &states));
        apply_to(&mut states, &rm);
        assert_eq!(states, [web(5)]);
        // Removing it from a service that lacks it changes nothing.
        assert!(!changes(&rm, &states));
    }

    fn drain_cmd(last: u8) -> Command {
        Command::SetState {
            addr: addr(last),
            state: AdminState::Drain,
        }
    }
}
