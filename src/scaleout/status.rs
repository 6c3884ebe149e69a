//! What `fulcrum ctl show bgp` shows: a plain snapshot the driver refreshes on the
//! plane ([`crate::plane::Plane::bgp`]), and its text and JSON forms.
//!
//! What it owns: the snapshot types and their two renderings. What it does not do:
//! read sessions or sockets (the driver fills the snapshot).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::control::render::{prom_label_escape, ConfigValue, JsonObject};

/// One BGP peer as `show bgp` presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// `ADDR:PORT`.
    pub addr: String,
    /// The peer's AS.
    pub asn: u32,
    /// Session state (idle, connect, opensent, openconfirm, established).
    pub state: &'static str,
    /// When the session reached Established (None while not established).
    pub established_at: Option<Instant>,
    /// Negotiated hold time while established, else the one we offer.
    pub hold_s: u16,
    /// Prefixes the peer currently has from us.
    pub prefixes: usize,
    /// Why the session last went down.
    pub last_error: Option<String>,
    /// Sessions established so far.
    pub established: u64,
    /// NOTIFICATIONs sent (each for a malformed or refused message, or hold expiry).
    pub notifications_sent: u64,
    /// NOTIFICATIONs received.
    pub notifications_received: u64,
    /// Messages refused as malformed or unexpected.
    pub malformed: u64,
    /// UPDATEs received and ignored.
    pub updates_received: u64,
    /// BFD, when the peer has `bfd`.
    pub bfd: Option<BfdStatus>,
}

/// One BFD session as `show bgp` presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdStatus {
    /// admindown, down, init, up.
    pub state: String,
    /// The detection time now in force (0 until the peer is heard).
    pub detection: Duration,
    /// Packets accepted.
    pub received: u64,
    /// Packets sent.
    pub sent: u64,
    /// Packets the session dropped (wrong discriminator, demand, ...).
    pub dropped: u64,
    /// Times it went Down from Up.
    pub downs: u64,
}

/// The whole view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpStatus {
    /// Local AS.
    pub local_as: u32,
    /// Router ID in use.
    pub router_id: String,
    /// The configured prefixes.
    pub prefixes: Vec<String>,
    /// Announcing now (else withdrawn).
    pub announcing: bool,
    /// Why (healthy, unhealthy, hold-down, disabled, stopping).
    pub reason: &'static str,
    /// Usable nodes now.
    pub usable: usize,
    /// Required for announcing.
    pub min_healthy: usize,
    /// The peers.
    pub peers: Vec<PeerStatus>,
    /// BFD datagrams dropped before any session: malformed, unknown session.
    pub bfd_malformed: u64,
    /// BFD datagrams with no matching session.
    pub bfd_unknown: u64,
    /// BFD datagrams received with a TTL other than 255.
    pub bfd_ttl: u64,
}

impl BgpStatus {
    /// Text for `show bgp`.
    pub fn text(&self, now: Instant) -> String {
        let mut out = format!(
            "local as {} router-id {}\nroutes {} ({}, {} usable of {} required): {}\n",
            self.local_as,
            self.router_id,
            if self.announcing {
                "announced"
            } else {
                "withdrawn"
            },
            self.reason,
            self.usable,
            self.min_healthy,
            self.prefixes.join(" "),
        );
        for p in &self.peers {
            let _ = write!(out, "peer {} as {}: {}", p.addr, p.asn, p.state);
            if let Some(at) = p.established_at {
                let _ = write!(out, " for {}s", now.saturating_duration_since(at).as_secs());
            }
            let _ = writeln!(
                out,
                ", hold {}s, {} prefixes announced, established {}x, notifications sent {} received {}, malformed {}, updates ignored {}",
                p.hold_s,
                p.prefixes,
                p.established,
                p.notifications_sent,
                p.notifications_received,
                p.malformed,
                p.updates_received
            );
            if let Some(e) = &p.last_error {
                let _ = writeln!(out, "  last error: {e}");
            }
            if let Some(b) = &p.bfd {
                let _ = writeln!(
                    out,
                    "  bfd {} detection {}ms, received {} sent {} dropped {} downs {}",
                    b.state,
                    b.detection.as_millis(),
                    b.received,
                    b.sent,
                    b.dropped,
                    b.downs
                );
            }
        }
        let _ = write!(
            out,
            "bfd datagrams dropped: {} malformed, {} without session, {} with TTL != 255",
            self.bfd_malformed, self.bfd_unknown, self.bfd_ttl
        );
        out
    }

    /// JSON for `show bgp --json`.
    pub fn json(&self, now: Instant) -> String {
        let mut out = String::new();
        let mut o = JsonObject::open(&mut out);
        o.num("local_as", self.local_as.into());
        o.str("router_id", &self.router_id);
        o.value(
            "prefixes",
            &ConfigValue::List(
                self.prefixes
                    .iter()
                    .map(|p| ConfigValue::Str(p.clone()))
                    .collect(),
            ),
        );
        o.bool("announcing", self.announcing);
        o.str("reason", self.reason);
        o.num("usable", self.usable as u64);
        o.num("min_healthy", self.min_healthy as u64);
        o.objects("peers", &self.peers, |j, p| {
            j.str("addr", &p.addr);
            j.num("as", p.asn.into());
            j.str("state", p.state);
            j.opt_num(
                "uptime_s",
                p.established_at
                    .map(|at| now.saturating_duration_since(at).as_secs()),
            );
            j.num("hold_s", p.hold_s.into());
            j.num("prefixes_announced", p.prefixes as u64);
            j.opt_str("last_error", p.last_error.as_deref());
            j.num("established", p.established);
            j.num("notifications_sent", p.notifications_sent);
            j.num("notifications_received", p.notifications_received);
            j.num("malformed", p.malformed);
            j.num("updates_received", p.updates_received);
            match &p.bfd {
                Some(b) => j.object("bfd", |k| {
                    k.str("state", &b.state);
                    k.num("detection_ms", b.detection.as_millis() as u64);
                    k.num("received", b.received);
                    k.num("sent", b.sent);
                    k.num("dropped", b.dropped);
                    k.num("downs", b.downs);
                }),
                None => j.null("bfd"),
            }
        });
        o.num("bfd_malformed", self.bfd_malformed);
        o.num("bfd_unknown", self.bfd_unknown);
        o.num("bfd_ttl", self.bfd_ttl);
        o.close();
        out
    }
}

impl BgpStatus {
    /// The `fulcrum_bgp_*` and `fulcrum_bfd_*` families for `/metrics` (Prometheus
    /// text format 0.0.4), appended to `out`.
    pub fn prometheus(&self, out: &mut String) {
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            out,
            "fulcrum_bgp_announcing",
            "gauge",
            "1 while the prefixes are announced, 0 while withdrawn.",
        );
        let _ = writeln!(out, "fulcrum_bgp_announcing {}", u8::from(self.announcing));
        let bgp: [crate::control::render::Family<PeerStatus>; 7] = [
            (
                "fulcrum_bgp_session_up",
                "gauge",
                "1 while the session with the peer is Established.",
                |p| u64::from(p.state == "established"),
            ),
            (
                "fulcrum_bgp_prefixes_announced",
                "gauge",
                "Prefixes the peer has from us.",
                |p| p.prefixes as u64,
            ),
            (
                "fulcrum_bgp_established_total",
                "counter",
                "Times the session reached Established.",
                |p| p.established,
            ),
            (
                "fulcrum_bgp_notifications_sent_total",
                "counter",
                "NOTIFICATIONs sent (malformed or refused input, hold expiry).",
                |p| p.notifications_sent,
            ),
            (
                "fulcrum_bgp_notifications_received_total",
                "counter",
                "NOTIFICATIONs received.",
                |p| p.notifications_received,
            ),
            (
                "fulcrum_bgp_malformed_total",
                "counter",
                "Messages refused as malformed or unexpected.",
                |p| p.malformed,
            ),
            (
                "fulcrum_bgp_updates_received_total",
                "counter",
                "UPDATEs received and ignored (announce-only).",
                |p| p.updates_received,
            ),
        ];
        for (name, kind, help, value) in bgp {
            family(out, name, kind, help);
            for p in &self.peers {
                let _ = writeln!(
                    out,
                    "{name}{{peer=\"{}\"}} {}",
                    prom_label_escape(&p.addr),
                    value(p)
                );
            }
        }
        type BfdFamily = (
            &'static str,
            &'static str,
            &'static str,
            fn(&BfdStatus) -> String,
        );
        let bfd: [BfdFamily; 6] = [
            (
                "fulcrum_bfd_session_up",
                "gauge",
                "1 while the BFD session is Up.",
                |b| u8::from(b.state == "up").to_string(),
            ),
            (
                "fulcrum_bfd_detection_seconds",
                "gauge",
                "Detection time in force (0 until the peer is heard).",
                |b| format!("{:.3}", b.detection.as_secs_f64()),
            ),
            (
                "fulcrum_bfd_received_total",
                "counter",
                "BFD packets accepted by the session.",
                |b| b.received.to_string(),
            ),
            (
                "fulcrum_bfd_sent_total",
                "counter",
                "BFD packets sent.",
                |b| b.sent.to_string(),
            ),
            (
                "fulcrum_bfd_dropped_total",
                "counter",
                "BFD packets the session dropped (discriminator, demand, ...).",
                |b| b.dropped.to_string(),
            ),
            (
                "fulcrum_bfd_down_total",
                "counter",
                "Times the BFD session went Down (each closed the BGP session).",
                |b| b.downs.to_string(),
            ),
        ];
        if self.peers.iter().any(|p| p.bfd.is_some()) {
            for (name, kind, help, value) in bfd {
                family(out, name, kind, help);
                for p in &self.peers {
                    if let Some(b) = &p.bfd {
                        let _ = writeln!(
                            out,
                            "{name}{{peer=\"{}\"}} {}",
                            prom_label_escape(&p.addr),
                            value(b)
                        );
                    }
                }
            }
            family(
                out,
                "fulcrum_bfd_datagrams_dropped_total",
                "counter",
                "BFD datagrams dropped before any session, by reason.",
            );
            let _ = writeln!(
                out,
                "fulcrum_bfd_datagrams_dropped_total{{reason=\"malformed\"}} {}",
                self.bfd_malformed
            );
            let _ = writeln!(
                out,
                "fulcrum_bfd_datagrams_dropped_total{{reason=\"no_session\"}} {}",
                self.bfd_unknown
            );
            let _ = writeln!(
                out,
                "fulcrum_bfd_datagrams_dropped_total{{reason=\"ttl\"}} {}",
                self.bfd_ttl
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgp_status_renders_text_and_json() {
        let now = Instant::now();
        let s = BgpStatus {
            local_as: 65001,
            router_id: "10.0.0.11".into(),
            prefixes: vec!["10.0.0.100/32".into()],
            announcing: true,
            reason: "healthy",
            usable: 2,
            min_healthy: 1,
            peers: vec![PeerStatus {
                addr: "10.0.0.1:179".into(),
                asn: 65000,
                state: "established",
                established_at: Some(now),
                hold_s: 9,
                prefixes: 1,
                last_error: Some("peer sent \"x\"".into()),
                established: 1,
                notifications_sent: 0,
                notifications_received: 0,
                malformed: 0,
                updates_received: 0,
                bfd: Some(BfdStatus {
                    state: "up".into(),
                    detection: Duration::from_millis(300),
                    received: 5,
                    sent: 6,
                    dropped: 0,
                    downs: 0,
                }),
            }],
            bfd_malformed: 1,
            bfd_unknown: 2,
            bfd_ttl: 3,
        };
        let t = s.text(now);
        assert!(t.contains("peer 10.0.0.1:179 as 65000: established for 0s, hold 9s, 1 prefixes"));
        assert!(t.contains("bfd up detection 300ms"));
        let j = s.json(now);
        assert!(j.contains("\"state\":\"established\",\"uptime_s\":0,\"hold_s\":9"));
        assert!(j.contains("\"last_error\":\"peer sent \\\"x\\\"\""));
        assert!(j.contains("\"detection_ms\":300"));
        assert!(j.ends_with("\"bfd_malformed\":1,\"bfd_unknown\":2,\"bfd_ttl\":3}"));
        let mut m = String::new();
        s.prometheus(&mut m);
        assert!(
            m.contains("fulcrum_bgp_session_up{peer=\"10.0.0.1:179\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("fulcrum_bfd_detection_seconds{peer=\"10.0.0.1:179\"} 0.300\n"),
            "{m}"
        );
        assert!(
            m.contains("fulcrum_bfd_datagrams_dropped_total{reason=\"no_session\"} 2\n"),
            "{m}"
        );
        let mut seen = std::collections::HashSet::new();
        for line in m.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(line.to_owned()), "{line}");
        }
    }
}
