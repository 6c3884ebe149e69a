//! One agent task asked of one node, seen from the distributor, without IO: when to
//! (re)send the request, what the agent's reports mean, when to give up.
//!
//! The request is sent at once and again every [`RESEND`] until a report for its id
//! arrives (datagrams get lost; the agent runs an id at most once, so asking again is
//! safe). No report within [`ANSWER_TIMEOUT`] fails the run ("no answer"): no agent, an
//! agent without the task's channel, or a key that does not match. Once it runs, the
//! agent's heartbeats report it; an end reported, or the deadline passed by
//! [`DEADLINE_GRACE`] without one, ends the run here.
//!
//! Time comes in as a `Duration` since the caller's origin (a virtual clock in tests).

use std::net::SocketAddr;
use std::time::Duration;

use super::hook::with_last_line;
use crate::wire::task::{Report, TaskStatus};

/// How often an unanswered request is sent again.
pub const RESEND: Duration = Duration::from_secs(1);
/// How long to wait for the agent's first report.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past its deadline a run may still report its end.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(5);

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Asked, no report yet.
    Asking,
    /// The agent reports it running (since this time, ours).
    Running(Duration),
    /// Over: `Ok` when it exited 0, else why not.
    Over(Result<(), String>),
}

/// One task run on one node.
#[derive(Debug, Clone)]
pub struct AgentTask {
    /// The request's id.
    pub id: u64,
    /// The node.
    pub node: SocketAddr,
    /// The declared task's name.
    pub name: String,
    asked: Duration,
    deadline: Duration,
    next_send: Option<Duration>,
    phase: Phase,
    output: String,
    sends: u32,
}

impl AgentTask {
    /// A run asked at `now`, to be over within `timeout`.
    pub fn new(
        id: u64,
        node: SocketAddr,
        name: &str,
        now: Duration,
        timeout: Duration,
    ) -> AgentTask {
        AgentTask {
            id,
            node,
            name: name.to_owned(),
            asked: now,
            deadline: now.saturating_add(timeout),
            next_send: Some(now),
            phase: Phase::Asking,
            output: String::new(),
            sends: 0,
        }
    }

    /// The deadline, as a duration after `now` (what the request carries).
    pub fn time_left(&self, now: Duration) -> Duration {
        self.deadline.saturating_sub(now)
    }

    /// Whether to send the request at `now`; `true` also schedules the next send.
    pub fn poll_send(&mut self, now: Duration) -> bool {
        match self.next_send {
            Some(at) if at <= now && self.phase == Phase::Asking => {
                self.next_send = Some(now.saturating_add(RESEND));
                self.sends += 1;
                true
            }
            _ => false,
        }
    }

    /// How many times the request was sent.
    pub fn sends(&self) -> u32 {
        self.sends
    }

    /// A report for this run's id arrived at `now`.
    pub fn on_report(&mut self, r: &Report, now: Duration) {
        if r.id != self.id || matches!(self.phase, Phase::Over(_)) {
            return;
        }
        self.output.clone_from(&r.output);
        self.next_send = None;
        self.phase = match r.status {
            TaskStatus::Running => match self.phase {
                Phase::Running(since) => Phase::Running(since),
                _ => Phase::Running(now),
            },
            TaskStatus::Exited(0) => Phase::Over(Ok(())),
            other => Phase::Over(Err(with_last_line(&self.output, &other.to_string()))),
        };
    }

    /// Gives up when the time is over; call on every tick.
    pub fn on_time(&mut self, now: Duration) {
        let why = match self.phase {
            Phase::Asking if now >= self.asked.saturating_add(ANSWER_TIMEOUT).min(self.deadline) => format!(
                "no answer from the agent of {} after {} requests (is `fulcrum agent` running there with --task {} and the same key?)",
                self.node, self.sends, self.name
            ),
            Phase::Running(_) if now >= self.deadline.saturating_add(DEADLINE_GRACE) => {
                "the agent reported no end by the deadline (--hook-timeout)".to_owned()
            }
            _ => return,
        };
        self.next_send = None;
        self.phase = Phase::Over(Err(with_last_line(&self.output, &why)));
    }

    /// The next time [`AgentTask::poll_send`] or [`AgentTask::on_time`] has work.
    pub fn next_deadline(&self) -> Option<Duration> {
        match self.phase {
            Phase::Asking => {
                let give_up = self.asked.saturating_add(ANSWER_TIMEOUT).min(self.deadline);
                Some(self.next_send.map_or(give_up, |s| s.min(give_up)))
            }
            Phase::Running(_) => Some(self.deadline.saturating_add(DEADLINE_GRACE)),
            Phase::Over(_) => None,
        }
    }

    /// Where it stands.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The outcome, once over.
    pub fn result(&self) -> Option<&Result<(), String>> {
        match &self.phase {
            Phase::Over(r) => Some(r),
            _ => None,
        }
    }

    /// The output tail the agent last reported.
    pub fn output(&self) -> &str {
        &self.output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::task::Refusal;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn report(id: u64, status: TaskStatus, out: &str) -> Report {
        Report {
            id,
            name: "deploy".into(),
            status,
            started_ms: 1,
            ended_ms: 0,
            output: out.into(),
        }
    }

    fn task() -> AgentTask {
        AgentTask::new(7, "10.0.0.1:80".parse().unwrap(), "deploy", s(0.0), s(60.0))
    }

    #[test]
    fn resends_until_a_report_then_follows_it() {
        let mut t = task();
        assert!(t.poll_send(s(0.0)));
        assert!(!t.poll_send(s(0.5)));
        assert!(t.poll_send(s(1.0)));
        assert_eq!(t.next_deadline(), Some(s(2.0)));
        // Another id's report changes nothing.
        t.on_report(&report(8, TaskStatus::Exited(0), ""), s(1.2));
        assert_eq!(t.phase(), &Phase::Asking);
        t.on_report(&report(7, TaskStatus::Running, "step 1\n"), s(1.5));
        assert_eq!(t.phase(), &Phase::Running(s(1.5)));
        assert!(!t.poll_send(s(3.0)), "no resend once it runs");
        t.on_report(&report(7, TaskStatus::Running, "step 2\n"), s(2.5));
        assert_eq!(t.phase(), &Phase::Running(s(1.5)));
        t.on_report(&report(7, TaskStatus::Exited(0), "done\n"), s(4.0));
        assert_eq!(t.result(), Some(&Ok(())));
        assert_eq!(t.output(), "done\n");
        assert_eq!(t.sends(), 2);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn failures_say_why() {
        let mut t = task();
        t.on_report(&report(7, TaskStatus::Exited(3), "no disk\n"), s(1.0));
        assert_eq!(
            t.result(),
            Some(&Err("no disk\nfailed: exit status 3".to_owned()))
        );
        let mut r = task();
        r.on_report(
            &report(7, TaskStatus::Refused(Refusal::Undeclared), ""),
            s(1.0),
        );
        assert_eq!(
            r.result(),
            Some(&Err("refused: the agent declares no such task".to_owned()))
        );
    }

    #[test]
    fn no_answer_and_no_end_time_out() {
        let mut t = task();
        for i in 0..10 {
            t.poll_send(s(f64::from(i)));
        }
        t.on_time(s(9.9));
        assert_eq!(t.phase(), &Phase::Asking);
        t.on_time(s(10.0));
        assert!(t
            .result()
            .unwrap()
            .as_ref()
            .unwrap_err()
            .contains("no answer from the agent of 10.0.0.1:80 after 10 requests"));
        let mut r = task();
        r.on_report(&report(7, TaskStatus::Running, "half\n"), s(1.0));
        r.on_time(s(64.9));
        assert!(r.result().is_none());
        assert_eq!(r.next_deadline(), Some(s(65.0)));
        r.on_time(s(65.0));
        assert_eq!(
            r.result(),
            Some(&Err(
                "half\nthe agent reported no end by the deadline (--hook-timeout)".to_owned()
            ))
        );
        // A late report changes nothing once over.
        r.on_report(&report(7, TaskStatus::Exited(0), ""), s(66.0));
        assert!(r.result().unwrap().is_err());
        // A short deadline bounds the wait for an answer too.
        let mut short = AgentTask::new(1, "10.0.0.1:80".parse().unwrap(), "x", s(0.0), s(2.0));
        short.on_time(s(2.0));
        assert!(short.result().is_some());
    }
}
