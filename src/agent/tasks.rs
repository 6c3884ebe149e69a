//! The agent's side of node tasks, without IO: which requests to run, which to
//! refuse, and which report the next heartbeat carries.
//!
//! What it owns:
//! - the declared tasks (`--task NAME=COMMAND`): the only commands a distributor can
//!   have run; a request names a task, never a command;
//! - the checks of a request, in order: readable, authentic (the agent key), for this
//!   node, fresh and not replayed ([`Senders`]), declared, not over the concurrency
//!   limit; each failure is a [`Refusal`], counted and reported;
//! - the once-per-id rule: the ids of authentic requests are remembered (the last
//!   [`MAX_IDS`]), and a repeated id runs nothing: it only brings its report back into
//!   the heartbeats;
//! - the records the heartbeats report, one per heartbeat in turn: a running task
//!   each turn, an ended or refused one for [`REPORT_FOR_MS`] after it ended.
//!
//! What it does not do: start or poll processes (`super::run` does, with
//! [`crate::sys::child`]), read clocks (wall-clock ms come in), or send anything.

use std::collections::VecDeque;

use crate::rollout::config::Hook;
use crate::wire::task::{
    tail, Refusal, Report, Request, Senders, TaskRequest, TaskStatus, MAX_REPORT_OUTPUT,
};

/// Tasks that may run at once on one agent.
pub const MAX_RUNNING: usize = 4;
/// Authentic request ids remembered (a repeated id within them never runs twice).
pub const MAX_IDS: usize = 4096;
/// Records kept for reports.
pub const MAX_RECORDS: usize = 64;
/// How long an ended (or refused) task is still reported.
pub const REPORT_FOR_MS: u64 = 30_000;

/// What to do with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not a task request at all (wrong length, magic or version): ignored.
    Ignored,
    /// Run `command` for request `id`, to be over by `deadline_ms`.
    Run {
        /// The request's id.
        id: u64,
        /// The declared task's name.
        name: String,
        /// Its command.
        command: String,
        /// Wall clock by which the run must be over.
        deadline_ms: u64,
    },
    /// This id was seen before: nothing runs again.
    Known(u64),
    /// Refused (and recorded, so the next heartbeats say so).
    Refused {
        /// The (claimed) id.
        id: u64,
        /// Why.
        why: Refusal,
    },
}

#[derive(Debug, Clone)]
struct Record {
    report: Report,
    /// Until when it is reported (wall ms); `u64::MAX` while it runs.
    until_ms: u64,
}

/// The agent's task state.
#[derive(Debug)]
pub struct Tasks {
    declared: Vec<Hook>,
    node_id: String,
    senders: Senders,
    ids: VecDeque<u64>,
    records: VecDeque<Record>,
    turn: usize,
    refused: [u64; Refusal::ALL.len()],
}

impl Tasks {
    /// The state of an agent for `node_id`, started at `started_ms`, that may run
    /// `declared`.
    pub fn new(declared: Vec<Hook>, node_id: &str, started_ms: u64) -> Tasks {
        Tasks {
            declared,
            node_id: node_id.to_owned(),
            senders: Senders::new(started_ms),
            ids: VecDeque::new(),
            records: VecDeque::new(),
            turn: 0,
            refused: [0; Refusal::ALL.len()],
        }
    }

    /// The declared names (for the start-up log).
    pub fn names(&self) -> Vec<&str> {
        self.declared.iter().map(|h| h.name.as_str()).collect()
    }

    /// Requests refused so far, per reason.
    pub fn refused(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL.into_iter().zip(self.refused.iter().copied())
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.report.status == TaskStatus::Running)
            .count()
    }

    /// Decides about one datagram received at `now_ms`, with the agent `key`.
    pub fn on_datagram(&mut self, bytes: &[u8], key: &[u8], now_ms: u64) -> Decision {
        let Ok(view) = Request::new_checked(bytes) else {
            return Decision::Ignored;
        };
        let req = match TaskRequest::parse(bytes, key) {
            Ok(r) => r,
            // Not authentic: the id and name are only claims; reported, never run.
            Err(_) => return self.refuse(view.id(), &view.name_lossy(), Refusal::BadMac, now_ms),
        };
        if req.node_id != self.node_id {
            return self.refuse(req.id, &req.name, Refusal::WrongNode, now_ms);
        }
        if let Err(why) = self.senders.accept(&req, now_ms) {
            return self.refuse(req.id, &req.name, why, now_ms);
        }
        if self.ids.contains(&req.id) {
            // Bring its report back: the sender may have missed it.
            if let Some(r) = self.records.iter_mut().find(|r| r.report.id == req.id) {
                r.until_ms = r.until_ms.max(now_ms.saturating_add(REPORT_FOR_MS));
            }
            return Decision::Known(req.id);
        }
        self.remember(req.id);
        let Some(command) = self
            .declared
            .iter()
            .find(|h| h.name == req.name)
            .map(|h| h.command.clone())
        else {
            return self.refuse(req.id, &req.name, Refusal::Undeclared, now_ms);
        };
        if self.running() >= MAX_RUNNING {
            return self.refuse(req.id, &req.name, Refusal::Busy, now_ms);
        }
        self.record(
            Report {
                id: req.id,
                name: req.name.clone(),
                status: TaskStatus::Running,
                started_ms: now_ms,
                ended_ms: 0,
                output: String::new(),
            },
            u64::MAX,
        );
        Decision::Run {
            id: req.id,
            name: req.name,
            command,
            deadline_ms: req.deadline_ms,
        }
    }

    /// The output so far of running task `id` (its tail is reported).
    pub fn progress(&mut self, id: u64, output: &str) {
        if let Some(r) = self.records.iter_mut().find(|r| r.report.id == id) {
            r.report.output = tail(output, MAX_REPORT_OUTPUT).to_owned();
        }
    }

    /// Task `id` ended at `now_ms` with `status`.
    pub fn ended(&mut self, id: u64, status: TaskStatus, output: &str, now_ms: u64) {
        if let Some(r) = self.records.iter_mut().find(|r| r.report.id == id) {
            r.report.status = status;
            r.report.ended_ms = now_ms;
            r.report.output = tail(output, MAX_REPORT_OUTPUT).to_owned();
            r.until_ms = now_ms.saturating_add(REPORT_FOR_MS);
        }
    }

    /// The report for the next heartbeat at `now_ms`: the records still to report,
    /// one per heartbeat in turn.
    pub fn next_report(&mut self, now_ms: u64) -> Option<Report> {
        let live: Vec<usize> = (0..self.records.len())
            .filter(|&i| self.records[i].until_ms > now_ms)
            .collect();
        if live.is_empty() {
            return None;
        }
        self.turn = self.turn.wrapping_add(1);
        let i = live[self.turn % live.len()];
        Some(self.records[i].report.clone())
    }

    fn remember(&mut self, id: u64) {
        self.ids.push_back(id);
        while self.ids.len() > MAX_IDS {
            self.ids.pop_front();
        }
    }

    fn refuse(&mut self, id: u64, name: &str, why: Refusal, now_ms: u64) -> Decision {
        if let Some(n) = Refusal::ALL
            .iter()
            .position(|r| *r == why)
            .and_then(|i| self.refused.get_mut(i))
        {
            *n += 1;
        }
        // A refusal never hides a run of the same id (a replay of a request that ran
        // must not make its run look refused), and a repeated refusal is one record.
        if self
            .records
            .iter()
            .any(|r| r.report.id == id && !matches!(r.report.status, TaskStatus::Refused(_)))
        {
            return Decision::Refused { id, why };
        }
        self.records.retain(|r| r.report.id != id);
        self.record(
            Report {
                id,
                name: tail(name, crate::wire::task::MAX_STR_LEN).to_owned(),
                status: TaskStatus::Refused(why),
                started_ms: 0,
                ended_ms: now_ms,
                output: String::new(),
            },
            now_ms.saturating_add(REPORT_FOR_MS),
        );
        Decision::Refused { id, why }
    }

    fn record(&mut self, report: Report, until_ms: u64) {
        self.records.push_back(Record { report, until_ms });
        // Forget the oldest ended records first; running ones are never forgotten
        // (at most MAX_RUNNING of them).
        while self.records.len() > MAX_RECORDS {
            match self
                .records
                .iter()
                .position(|r| r.report.status != TaskStatus::Running)
            {
                Some(i) => {
                    self.records.remove(i);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"agent-key";
    const NOW: u64 = 1_000_000;

    /// Run `k`'s id, made at NOW.
    #[allow(non_snake_case)]
    fn ID(k: u64) -> u64 {
        NOW * 1000 + k
    }

    fn tasks() -> Tasks {
        let declared = vec![Hook {
            name: "deploy".into(),
            command: "echo deployed".into(),
        }];
        Tasks::new(declared, "10.0.0.1:80", NOW - 10_000)
    }

    /// A request for run `id` (made at NOW: `ID(id)`).
    fn request(id: u64, seq: u64, name: &str) -> TaskRequest {
        TaskRequest {
            node_id: "10.0.0.1:80".into(),
            name: name.into(),
            sender: "lb1".into(),
            id: ID(id),
            sequence: seq,
            sent_at_ms: NOW,
            deadline_ms: NOW + 60_000,
        }
    }

    fn bytes(r: &TaskRequest, key: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        r.emit(key, &mut b).unwrap();
        b
    }

    #[test]
    fn a_declared_task_runs_once_per_id() {
        let mut t = tasks();
        let d = t.on_datagram(&bytes(&request(7, 1, "deploy"), KEY), KEY, NOW);
        assert_eq!(
            d,
            Decision::Run {
                id: ID(7),
                name: "deploy".into(),
                command: "echo deployed".into(),
                deadline_ms: NOW + 60_000
            }
        );
        assert_eq!(t.running(), 1);
        // The sender asks again (it has not seen a report yet): nothing runs.
        let again = t.on_datagram(&bytes(&request(7, 2, "deploy"), KEY), KEY, NOW + 500);
        assert_eq!(again, Decision::Known(ID(7)));
        // The very same bytes again: a replay.
        let replay = t.on_datagram(&bytes(&request(7, 2, "deploy"), KEY), KEY, NOW + 600);
        assert_eq!(
            replay,
            Decision::Refused {
                id: ID(7),
                why: Refusal::Replay
            }
        );
        // The replay's refusal is counted, but the run keeps its own report.
        for _ in 0..3 {
            assert_eq!(
                t.next_report(NOW + 700).map(|r| r.status),
                Some(TaskStatus::Running)
            );
        }
        assert_eq!(
            t.refused()
                .find(|(r, _)| *r == Refusal::Replay)
                .map(|(_, n)| n),
            Some(1)
        );
        t.ended(ID(7), TaskStatus::Exited(0), "deployed\n", NOW + 1_000);
        assert_eq!(t.running(), 0);
        let reports: Vec<Report> = (0..4).filter_map(|_| t.next_report(NOW + 2_000)).collect();
        assert!(reports.iter().any(|r| r.id == ID(7)
            && r.status == TaskStatus::Exited(0)
            && r.output == "deployed\n"));
        // Reported for REPORT_FOR_MS, then no more.
        assert_eq!(t.next_report(NOW + 1_000 + REPORT_FOR_MS + 1), None);
    }

    #[test]
    fn every_refusal_is_counted_and_reported() {
        let mut t = tasks();
        let cases = [
            (
                bytes(&request(1, 1, "deploy"), b"wrong key"),
                Refusal::BadMac,
            ),
            (bytes(&request(2, 2, "rm-rf"), KEY), Refusal::Undeclared),
            (
                bytes(
                    &TaskRequest {
                        node_id: "10.0.0.2:80".into(),
                        ..request(3, 3, "deploy")
                    },
                    KEY,
                ),
                Refusal::WrongNode,
            ),
            (
                bytes(
                    &TaskRequest {
                        sent_at_ms: NOW - 40_000,
                        ..request(4, 4, "deploy")
                    },
                    KEY,
                ),
                Refusal::Stale,
            ),
        ];
        for (b, why) in cases {
            match t.on_datagram(&b, KEY, NOW) {
                Decision::Refused { why: got, .. } => assert_eq!(got, why),
                d => panic!("{why:?}: {d:?}"),
            }
        }
        assert_eq!(t.on_datagram(b"garbage", KEY, NOW), Decision::Ignored);
        let counted: Vec<(Refusal, u64)> = t.refused().filter(|(_, n)| *n > 0).collect();
        assert_eq!(counted.len(), 4);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..8 {
            if let Some(r) = t.next_report(NOW + 1) {
                seen.insert((r.id, r.status));
            }
        }
        assert!(seen.contains(&(ID(1), TaskStatus::Refused(Refusal::BadMac))));
        assert!(seen.contains(&(ID(2), TaskStatus::Refused(Refusal::Undeclared))));
        assert_eq!(t.running(), 0);
    }

    #[test]
    fn busy_past_the_limit_and_records_are_bounded() {
        let mut t = tasks();
        for id in 0..MAX_RUNNING as u64 {
            assert!(matches!(
                t.on_datagram(&bytes(&request(id, id + 1, "deploy"), KEY), KEY, NOW),
                Decision::Run { .. }
            ));
        }
        let d = t.on_datagram(&bytes(&request(99, 99, "deploy"), KEY), KEY, NOW);
        assert_eq!(
            d,
            Decision::Refused {
                id: ID(99),
                why: Refusal::Busy
            }
        );
        // A flood of unauthenticated requests never evicts a running record.
        for i in 0..500u64 {
            let b = bytes(&request(1000 + i, 1000 + i, "deploy"), b"forged");
            t.on_datagram(&b, KEY, NOW);
        }
        assert!(t.records.len() <= MAX_RECORDS);
        assert_eq!(t.running(), MAX_RUNNING);
        // And forged ids never enter the once-per-id memory.
        assert!(!t.ids.contains(&ID(1000)));
    }
}
