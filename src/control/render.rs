//! Renderers from snapshots to the control interface's output formats.
//!
//! Pure functions from `crate::control::snapshot` values to text: an aligned
//! node table (in the manner of `ipvsadm -L -n --stats`), `key: value` stats,
//! compact JSON, and the Prometheus text exposition format 0.0.4. JSON and
//! label escaping are hand-written so the crate needs no dependency.
//!
//! Output conventions: text renderers end every line with `\n`; JSON
//! renderers return a single line with no trailing newline (convenient for
//! a line protocol); Prometheus output ends with `\n` as the format requires.
//! Nothing here reads clocks or counters: ages arrive precomputed in the
//! snapshot, and rows keep the order the caller gives.

use std::fmt::Write as _;

use crate::control::snapshot::{
    AdminState, CheckSnapshot, HealthState, NodeSnapshot, ServiceSnapshot, StatsSnapshot,
};

/// `Content-Type` for [`prometheus`] output served over HTTP.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Longest check detail shown in the table, in characters; JSON has it all.
const MAX_DETAIL: usize = 60;

/// Escapes `s` for use inside a JSON string literal (RFC 8259 §7), without
/// the surrounding quotes: `"` and `\` are backslash-escaped, control
/// characters use the short forms or `\u00XX`; everything else is kept.
/// (The renderers write into their buffer with `push_json_escaped`; this
/// allocating form is for the tests.)
#[cfg(test)]
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_json_escaped(&mut out, s);
    out
}

pub(crate) fn push_json_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Escapes a Prometheus label value (text format 0.0.4): `\` → `\\`,
/// `"` → `\"`, newline → `\n`; everything else is kept.
pub fn prom_label_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Aligned table of nodes, one row each, in the given order:
///
/// ```text
/// NODE         WEIGHT  ADMIN  HEALTH  AGENT  ACTIVE  TOTAL     IN   OUT  FAIL  NOTE            CHECK
/// 10.0.0.1:80      10  ready  up      -           3    120  12.5K  1.2M     0  -               ok 1.2s ago rtt 412us: connected
/// 10.0.0.2:80      10  ready  up      drain       0     12     42     0     0  agent: drain    ok 0.8s ago rtt 390us: connected
/// ```
///
/// AGENT is the node agent's last verdict (`-` when no agent is expected); NOTE says
/// why a node takes no new flows (see [`not_eligible`]), `-` when it does.
/// WEIGHT shows `effective/configured` when they differ; backup nodes carry
/// ` (backup)` after the address; IN/OUT use binary units above 9999 bytes
/// (`K` = 1024); CHECK is `-` before the first check. Columns are separated
/// by two spaces and lines carry no trailing blanks. Scripts should use
/// [`nodes_json`] instead of parsing this.
pub fn nodes_table(nodes: &[NodeSnapshot]) -> String {
    const HEADER: [&str; COLUMNS] = [
        "NODE", "WEIGHT", "ADMIN", "HEALTH", "AGENT", "ACTIVE", "TOTAL", "IN", "OUT", "FAIL",
        "NOTE", "CHECK",
    ];
    // Left-aligned columns; the others are numbers, right-aligned.
    const LEFT: [bool; COLUMNS] = [
        true, false, true, true, true, false, false, false, false, false, true, true,
    ];

    let rows: Vec<[String; COLUMNS]> = nodes.iter().map(table_row).collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count());
            if LEFT.get(i).copied().unwrap_or(true) {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

const COLUMNS: usize = 12;

/// Why `n` takes no new flows, in a few words, or `None` when it is eligible. Mirrors
/// `Node::eligible` in the pool, in the order an operator would fix things.
pub fn not_eligible(n: &NodeSnapshot) -> Option<String> {
    Some(if n.removing {
        "removing".to_owned()
    } else if n.admin != AdminState::Ready {
        format!("admin {}", n.admin)
    } else if n.health != HealthState::Up {
        format!("health {}", n.health)
    } else if !n.agent_ok {
        format!("agent: {}", n.agent.as_deref().unwrap_or("not ready"))
    } else if n.weight == 0 {
        "weight 0".to_owned()
    } else if n.effective_weight == 0 {
        "effective weight 0".to_owned()
    } else if n.maxconn > 0 && n.active >= u64::from(n.maxconn) {
        "at maxconn".to_owned()
    } else {
        return None;
    })
}

fn table_row(n: &NodeSnapshot) -> [String; COLUMNS] {
    // As the commands name it: SERVICE/ADDR, or ADDR in the one service of flags.
    let addr = if &*n.service == crate::config::DEFAULT_SERVICE {
        n.addr.to_string()
    } else {
        format!("{}/{}", n.service, n.addr)
    };
    let node = if n.backup {
        format!("{addr} (backup)")
    } else {
        addr
    };
    let weight = if n.effective_weight == n.weight {
        n.weight.to_string()
    } else {
        format!("{}/{}", n.effective_weight, n.weight)
    };
    [
        node,
        weight,
        if n.removing {
            "removing".to_owned() // admin is drain until the node leaves the pool
        } else {
            n.admin.to_string()
        },
        n.health.to_string(),
        n.agent.as_deref().map_or_else(
            || "-".to_owned(),
            |a| {
                let mut s = String::new();
                push_printable(&mut s, a, 16);
                s
            },
        ),
        n.active.to_string(),
        n.total.to_string(),
        human_bytes(n.bytes_in),
        human_bytes(n.bytes_out),
        n.connect_failures.to_string(),
        match (not_eligible(n), &n.window) {
            (None, None) => "-".to_owned(),
            (Some(why), None) => why,
            (None, Some(w)) => w.clone(),
            (Some(why), Some(w)) => format!("{why}; {w}"),
        },
        n.last_check
            .as_ref()
            .map_or_else(|| "-".to_owned(), check_cell),
    ]
}

fn check_cell(c: &CheckSnapshot) -> String {
    let mut s = format!(
        "{} {} ago",
        if c.ok { "ok" } else { "fail" },
        human_ms(c.age_ms)
    );
    if let Some(rtt) = c.rtt_us {
        let _ = write!(s, " rtt {}", human_us(rtt));
    }
    if !c.detail.is_empty() {
        s.push_str(": ");
        push_printable(&mut s, &c.detail, MAX_DETAIL);
    }
    s
}

/// Appends `s` with control characters escaped (the detail may come from
/// the network and must not break the table), cut to `max` characters.
fn push_printable(out: &mut String, s: &str, max: usize) {
    let mut chars = s.chars();
    for c in chars.by_ref().take(max) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push_str("...");
    }
}

/// Bytes as a plain number up to 9999, then rounded to one decimal with a
/// binary unit.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if n < 10_000 {
        return n.to_string();
    }
    let mut div: u64 = 1024;
    let mut unit = 0;
    while unit + 1 < UNITS.len() && n / div >= 1024 {
        div *= 1024;
        unit += 1;
    }
    let div = u128::from(div);
    let tenths = (u128::from(n) * 10 + div / 2) / div;
    format!(
        "{}.{}{}",
        tenths / 10,
        tenths % 10,
        UNITS.get(unit).copied().unwrap_or("")
    )
}

/// Milliseconds as `850ms`, `1.2s`, `3m4s` or `2h5m`.
fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        60_000..=3_599_999 => format!("{}m{}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// Microseconds as `412us`, `1.5ms` or `2.0s`.
fn human_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=999_999 => format!("{}.{}ms", us / 1000, us % 1000 / 100),
        _ => format!("{}.{}s", us / 1_000_000, us % 1_000_000 / 100_000),
    }
}

/// Writes one JSON object, tracking commas: every JSON reply (`show nodes`, `show
/// stats`, `show config`, and the HTTP API's) is written through it. Keys are string
/// literals of this crate and need no escaping.
pub(crate) struct JsonObject<'a> {
    pub(crate) out: &'a mut String,
    first: bool,
}

impl<'a> JsonObject<'a> {
    pub(crate) fn open(out: &'a mut String) -> Self {
        out.push('{');
        JsonObject { out, first: true }
    }

    pub(crate) fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push('"');
        push_json_escaped(self.out, value);
        self.out.push('"');
    }

    pub(crate) fn num(&mut self, key: &str, value: u64) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    pub(crate) fn opt_num(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(v) => self.num(key, v),
            None => self.null(key),
        }
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    pub(crate) fn null(&mut self, key: &str) {
        self.key(key);
        self.out.push_str("null");
    }

    pub(crate) fn value(&mut self, key: &str, v: &ConfigValue) {
        self.key(key);
        push_json_value(self.out, v);
    }

    pub(crate) fn close(self) {
        self.out.push('}');
    }

    /// `key` with a string or `null`.
    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    /// `key` with a nested object written by `f`.
    pub(crate) fn object(&mut self, key: &str, f: impl FnOnce(&mut JsonObject<'_>)) {
        self.key(key);
        let mut inner = JsonObject::open(self.out);
        f(&mut inner);
        inner.close();
    }

    /// `key` with an array of objects, one written by `f` per item.
    pub(crate) fn objects<T>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut JsonObject<'_>, T),
    ) {
        self.key(key);
        self.out.push('[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let mut inner = JsonObject::open(self.out);
            f(&mut inner, item);
            inner.close();
        }
        self.out.push(']');
    }
}

/// `show services`: one aligned line per service.
pub fn services_table(list: &[ServiceSnapshot]) -> String {
    let header = [
        "SERVICE",
        "MODE",
        "LISTEN",
        "SCHEDULER",
        "NODES",
        "ACTIVE",
        "TOTAL",
        "ENABLED",
    ];
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|s| {
            [
                s.name.to_string(),
                s.mode.to_owned(),
                s.listen
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                s.scheduler.clone(),
                format!("{}/{}", s.nodes_up, s.nodes_total),
                s.active.to_string(),
                s.total.to_string(),
                if s.enabled { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header.map(str::to_owned)).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `show services --json` and `/api/v1/services`: a JSON array, one object per service.
pub fn services_json(list: &[ServiceSnapshot]) -> String {
    let mut out = String::from("[");
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut o = JsonObject::open(&mut out);
        o.str("name", &s.name);
        o.str("mode", s.mode);
        o.value(
            "listen",
            &ConfigValue::List(
                s.listen
                    .iter()
                    .map(|a| ConfigValue::Str(a.to_string()))
                    .collect(),
            ),
        );
        o.str("scheduler", &s.scheduler);
        o.num("nodes_up", s.nodes_up);
        o.num("nodes_total", s.nodes_total);
        o.num("active", s.active);
        o.num("total", s.total);
        o.num("bytes_in", s.bytes_in);
        o.num("bytes_out", s.bytes_out);
        o.num("no_node", s.no_node);
        o.bool("enabled", s.enabled);
        o.close();
    }
    out.push(']');
    out
}

/// Per-service families of [`prometheus`], labelled `service`.
const SERVICE_FAMILIES: [Family<ServiceSnapshot>; 7] = [
    (
        "fulcrum_service_up",
        "gauge",
        "1 if the service distributes new connections, 0 if disabled.",
        |s| u64::from(s.enabled),
    ),
    (
        "fulcrum_service_nodes_usable",
        "gauge",
        "Nodes of the service that take new connections now.",
        |s| s.nodes_up,
    ),
    (
        "fulcrum_service_nodes",
        "gauge",
        "Nodes in the service's pool.",
        |s| s.nodes_total,
    ),
    (
        "fulcrum_service_connections_active",
        "gauge",
        "Client connections of the service open now.",
        |s| s.active,
    ),
    (
        "fulcrum_service_connections_total",
        "counter",
        "Client connections the service accepted.",
        |s| s.total,
    ),
    (
        "fulcrum_service_bytes_in_total",
        "counter",
        "Bytes the service received from clients.",
        |s| s.bytes_in,
    ),
    (
        "fulcrum_service_bytes_out_total",
        "counter",
        "Bytes the service sent to clients.",
        |s| s.bytes_out,
    ),
];

/// JSON array of nodes, one object each, in the given order, compact and
/// on one line. Keys, always present, in this order:
///
/// `service` (its name), `addr` (string, `"[::1]:80"` for IPv6), `weight`, `effective_weight`,
/// `backup` (bool), `maxconn` (0 = no limit), `admin` (`"ready"`, `"drain"`,
/// `"maint"`), `removing` (bool: `remove node` ran; `admin` is `"drain"` until the node
/// leaves the pool), `health` (`"up"`, `"warning"`, `"down"`), `active`, `total`,
/// `bytes_in`, `bytes_out`, `connect_failures`, `agent` (`null` without an agent, else
/// its last verdict: `"ready"`, `"drain"`, `"overloaded"`, `"down"`, `"missing"`),
/// `not_eligible` (`null` when the node takes new flows, else why not, as in the
/// table's NOTE), `last_check` (`null` or an
/// object with `ok` (bool), `detail` (string), `age_ms`, `rtt_us` (number or
/// `null`)). Counters are unsigned integers and may exceed 2^53.
pub fn nodes_json(nodes: &[NodeSnapshot]) -> String {
    let mut out = String::from("[");
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut o = JsonObject::open(&mut out);
        o.str("service", &n.service);
        o.str("addr", &n.addr.to_string());
        o.num("weight", n.weight.into());
        o.num("effective_weight", n.effective_weight.into());
        o.bool("backup", n.backup);
        o.num("maxconn", n.maxconn.into());
        o.str("admin", n.admin.as_str());
        o.bool("removing", n.removing);
        o.str("health", n.health.as_str());
        o.num("active", n.active);
        o.num("total", n.total);
        o.num("bytes_in", n.bytes_in);
        o.num("bytes_out", n.bytes_out);
        o.num("connect_failures", n.connect_failures);
        match &n.agent {
            None => o.null("agent"),
            Some(a) => o.str("agent", a),
        }
        match not_eligible(n) {
            None => o.null("not_eligible"),
            Some(why) => o.str("not_eligible", &why),
        }
        match &n.last_check {
            None => o.null("last_check"),
            Some(c) => {
                o.key("last_check");
                let mut check = JsonObject::open(o.out);
                check.bool("ok", c.ok);
                check.str("detail", &c.detail);
                check.num("age_ms", c.age_ms);
                check.opt_num("rtt_us", c.rtt_us);
                check.close();
            }
        }
        // Present only while the node has a window.
        if let Some(w) = &n.window {
            o.str("maint_window", w);
        }
        o.close();
    }
    out.push(']');
    out
}

/// Distributor stats as `key: value` lines, keys as in [`stats_json`];
/// `ha_*` lines appear only when HA is configured (the field is `Some`).
pub fn stats_text(s: &StatsSnapshot) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{key}: {value}");
    };
    line("uptime_s", &s.uptime_s);
    line("workers", &s.workers);
    let mut scheduler = String::new();
    push_printable(&mut scheduler, &s.scheduler, 64);
    line("scheduler", &scheduler);
    line("enabled", &s.enabled);
    line("state", &s.state);
    line("version", &s.version);
    line("active", &s.active);
    line("total", &s.total);
    line("bytes_in", &s.bytes_in);
    line("bytes_out", &s.bytes_out);
    line("refused_disabled", &s.refused_disabled);
    line("refused_maxconn", &s.refused_maxconn);
    line("refused_per_source", &s.refused_per_source);
    line("no_node", &s.no_node);
    line("connect_failures", &s.connect_failures);
    line("accept_errors", &s.accept_errors);
    line("agent_accepted", &s.agent_accepted);
    line("agent_rejected", &s.agent_rejected);
    if let Some(role) = &s.ha_role {
        let mut clean = String::new();
        push_printable(&mut clean, role, 64);
        line("ha_role", &clean);
    }
    let optional = [
        ("ha_epoch", s.ha_epoch),
        ("ha_takeovers", s.ha_takeovers),
        ("ha_peer_last_ms", s.ha_peer_last_ms),
        ("ha_rejected", s.ha_rejected),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            line(key, &v);
        }
    }
    if let Some(d) = &s.direct {
        for c in &d.counters {
            line(c.key, &c.value);
        }
        line("direct_drops", &d.drops.iter().map(|(_, n)| n).sum::<u64>());
    }
    out
}

/// Distributor stats as one compact JSON object. Keys, always present, in
/// this order: `uptime_s`, `workers`, `scheduler` (string), `enabled`
/// (bool), `state` (`"serving"`, `"draining"`, `"stopping"`), `version` (string), `active`, `total`, `bytes_in`, `bytes_out`, `refused_disabled`,
/// `refused_maxconn`, `refused_per_source`, `no_node`, `connect_failures`, `accept_errors`,
/// `ha_role` (string or `null`), `ha_epoch`, `ha_takeovers`,
/// `ha_peer_last_ms`, `ha_rejected` (numbers or `null` without HA).
pub fn stats_json(s: &StatsSnapshot) -> String {
    let mut out = String::new();
    let mut o = JsonObject::open(&mut out);
    o.num("uptime_s", s.uptime_s);
    o.num("workers", s.workers.into());
    o.str("scheduler", &s.scheduler);
    o.bool("enabled", s.enabled);
    o.str("state", &s.state);
    o.str("version", &s.version);
    o.num("active", s.active);
    o.num("total", s.total);
    o.num("bytes_in", s.bytes_in);
    o.num("bytes_out", s.bytes_out);
    o.num("refused_disabled", s.refused_disabled);
    o.num("refused_maxconn", s.refused_maxconn);
    o.num("refused_per_source", s.refused_per_source);
    o.num("no_node", s.no_node);
    o.num("connect_failures", s.connect_failures);
    o.num("accept_errors", s.accept_errors);
    o.num("agent_accepted", s.agent_accepted);
    o.num("agent_rejected", s.agent_rejected);
    match &s.ha_role {
        Some(role) => o.str("ha_role", role),
        None => o.null("ha_role"),
    }
    o.opt_num("ha_epoch", s.ha_epoch);
    o.opt_num("ha_takeovers", s.ha_takeovers);
    o.opt_num("ha_peer_last_ms", s.ha_peer_last_ms);
    o.opt_num("ha_rejected", s.ha_rejected);
    if let Some(d) = &s.direct {
        for c in &d.counters {
            o.num(c.key, c.value);
        }
        o.num("direct_drops", d.drops.iter().map(|(_, n)| n).sum());
    }
    o.close();
    out
}

/// One value of `show config`, typed so that JSON carries numbers, booleans, lists and
/// `null` as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    /// Text: a keyword, an address, a duration in flag syntax (`2s`), a path.
    Str(String),
    /// An unsigned number.
    Num(u64),
    /// On or off.
    Bool(bool),
    /// Not set.
    Null,
    /// Several values (`--listen`, `--backend`, `--vip`).
    List(Vec<ConfigValue>),
    /// Named fields (one backend).
    Object(Vec<(&'static str, ConfigValue)>),
}

fn push_config_text(out: &mut String, v: &ConfigValue) {
    match v {
        ConfigValue::Str(s) => push_printable(out, s, 4096),
        ConfigValue::Num(n) => {
            let _ = write!(out, "{n}");
        }
        ConfigValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ConfigValue::Null => out.push_str("none"),
        ConfigValue::List(items) if items.is_empty() => out.push_str("none"),
        ConfigValue::List(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                push_config_text(out, item);
            }
        }
        ConfigValue::Object(fields) => {
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=");
                push_config_text(out, v);
            }
        }
    }
}

/// Writes one typed value as JSON (objects through [`JsonObject`]).
fn push_json_value(out: &mut String, v: &ConfigValue) {
    match v {
        ConfigValue::Str(s) => {
            out.push('"');
            push_json_escaped(out, s);
            out.push('"');
        }
        ConfigValue::Num(n) => {
            let _ = write!(out, "{n}");
        }
        ConfigValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ConfigValue::Null => out.push_str("null"),
        ConfigValue::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_value(out, item);
            }
            out.push(']');
        }
        ConfigValue::Object(fields) => {
            let mut o = JsonObject::open(out);
            for (k, v) in fields {
                o.value(k, v);
            }
            o.close();
        }
    }
}

/// `show config` as `key: value` lines (no trailing newline): lists space-separated
/// (`none` when empty), objects as `key=value` pairs joined by `,`, unset values `none`.
pub fn config_text(fields: &[(&str, ConfigValue)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{k}: ");
        push_config_text(&mut out, v);
    }
    out
}

/// `/api/v1/console`: what the console may offer (`{"mutations":true}` when a bearer
/// token allows changes).
pub fn console_json(mutations: bool) -> String {
    let mut out = String::new();
    let mut o = JsonObject::open(&mut out);
    o.bool("mutations", mutations);
    o.close();
    out
}

/// `show config --json`: one compact object, values typed (numbers, booleans, arrays,
/// `null` when unset; durations are strings in flag syntax, e.g. `"2s"`).
pub fn config_json(fields: &[(&str, ConfigValue)]) -> String {
    let mut out = String::new();
    let mut o = JsonObject::open(&mut out);
    for (k, v) in fields {
        o.value(k, v);
    }
    o.close();
    out
}

/// Writes Prometheus families; each family's `# HELP`/`# TYPE` pair is
/// written once, immediately followed by all its samples, as 0.0.4 requires.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &dyn std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", prom_label_escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A numeric metric family with one sample per `T` (node, service, BGP peer): name,
/// type, help, and how to read the value.
pub(crate) type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

const NODE_FAMILIES: [Family<NodeSnapshot>; 10] = [
    (
        "fulcrum_node_connections_active",
        "gauge",
        "Connections open to the node now.",
        |n| n.active,
    ),
    (
        "fulcrum_node_connections_total",
        "counter",
        "Connections forwarded to the node.",
        |n| n.total,
    ),
    (
        "fulcrum_node_bytes_in_total",
        "counter",
        "Bytes from clients sent to the node.",
        |n| n.bytes_in,
    ),
    (
        "fulcrum_node_bytes_out_total",
        "counter",
        "Bytes from the node sent to clients.",
        |n| n.bytes_out,
    ),
    (
        "fulcrum_node_connect_failures_total",
        "counter",
        "Failed connection attempts to the node.",
        |n| n.connect_failures,
    ),
    (
        "fulcrum_node_weight",
        "gauge",
        "Configured weight (0 = no new flows).",
        |n| n.weight.into(),
    ),
    (
        "fulcrum_node_effective_weight",
        "gauge",
        "Weight the scheduler uses now.",
        |n| n.effective_weight.into(),
    ),
    (
        "fulcrum_node_backup",
        "gauge",
        "1 if the node is a backup node.",
        |n| n.backup.into(),
    ),
    (
        "fulcrum_node_maxconn",
        "gauge",
        "Connection limit of the node (0 = none).",
        |n| n.maxconn.into(),
    ),
    (
        "fulcrum_node_removing",
        "gauge",
        "1 while `remove node` drains the node (it leaves the pool when idle).",
        |n| n.removing.into(),
    ),
];

/// The life-cycle states, in order.
pub const LIFECYCLE: [&str; 3] = ["serving", "draining", "stopping"];

/// The verdicts a node agent can have (`missing`: heartbeats stopped).
const AGENT_STATES: [&str; 5] = ["ready", "drain", "overloaded", "down", "missing"];

/// Milliseconds as decimal seconds with no trailing zeros (`1500` → `1.5`).
fn ms_as_seconds(ms: u64) -> String {
    let frac = ms % 1000;
    if frac == 0 {
        return (ms / 1000).to_string();
    }
    let digits = format!("{frac:03}");
    format!("{}.{}", ms / 1000, digits.trim_end_matches('0'))
}

/// Microseconds as decimal seconds with no trailing zeros (`412` → `0.000412`).
fn us_as_seconds(us: u64) -> String {
    let frac = us % 1_000_000;
    if frac == 0 {
        return (us / 1_000_000).to_string();
    }
    let digits = format!("{frac:06}");
    format!("{}.{}", us / 1_000_000, digits.trim_end_matches('0'))
}

/// Metrics in the Prometheus text exposition format 0.0.4 (serve with
/// [`PROMETHEUS_CONTENT_TYPE`]).
///
/// Distributor families always appear; per-service families (`fulcrum_service_*`,
/// labelled `service="NAME"`) for every running service; per-node families appear
/// when `nodes` is non-empty, labelled `service="NAME",node="IP:PORT"` (`"[::1]:80"`
/// for IPv6),
/// nodes in the given order; `fulcrum_node_health` and `fulcrum_node_admin`
/// are one-hot over every state (`state` label), as are `fulcrum_state` (life cycle)
/// and `fulcrum_node_agent` (only nodes with an agent); `fulcrum_node_check_rtt_seconds`
/// has a sample for each node whose last check measured one. Each `fulcrum_ha_*` family
/// appears only when its snapshot field is `Some`; `fulcrum_ha_role` has a
/// single sample, the current role, valued 1.
pub fn prometheus(
    stats: &StatsSnapshot,
    services: &[ServiceSnapshot],
    nodes: &[NodeSnapshot],
) -> String {
    let mut e = Exposition { out: String::new() };
    e.single(
        "fulcrum_up",
        "gauge",
        "1 if new connections are distributed, 0 if distribution is disabled.",
        &u8::from(stats.enabled),
    );
    e.family(
        "fulcrum_state",
        "gauge",
        "1 for the life-cycle state (serving, draining, stopping), 0 for the others.",
    );
    for state in LIFECYCLE {
        let value = u8::from(stats.state == state);
        e.sample("fulcrum_state", &[("state", state)], &value);
    }
    e.family(
        "fulcrum_build_info",
        "gauge",
        "The running binary's version (always 1).",
    );
    e.sample("fulcrum_build_info", &[("version", &stats.version)], &1);
    e.single(
        "fulcrum_uptime_seconds",
        "gauge",
        "Seconds since the distributor started.",
        &stats.uptime_s,
    );
    e.single(
        "fulcrum_workers",
        "gauge",
        "Forwarding worker threads.",
        &stats.workers,
    );
    e.family(
        "fulcrum_scheduler_info",
        "gauge",
        "Scheduling algorithm in use (always 1).",
    );
    e.sample(
        "fulcrum_scheduler_info",
        &[("scheduler", &stats.scheduler)],
        &1,
    );
    e.single(
        "fulcrum_connections_active",
        "gauge",
        "Client connections open now.",
        &stats.active,
    );
    e.single(
        "fulcrum_connections_total",
        "counter",
        "Client connections accepted and forwarded.",
        &stats.total,
    );
    e.single(
        "fulcrum_bytes_in_total",
        "counter",
        "Bytes received from clients.",
        &stats.bytes_in,
    );
    e.single(
        "fulcrum_bytes_out_total",
        "counter",
        "Bytes sent to clients.",
        &stats.bytes_out,
    );
    e.family(
        "fulcrum_refused_total",
        "counter",
        "Client connections refused, by reason.",
    );
    for (reason, value) in [
        ("disabled", stats.refused_disabled),
        ("maxconn", stats.refused_maxconn),
        ("per_source", stats.refused_per_source),
        ("no_node", stats.no_node),
    ] {
        e.sample("fulcrum_refused_total", &[("reason", reason)], &value);
    }
    e.single(
        "fulcrum_connect_failures_total",
        "counter",
        "Failed connection attempts to nodes.",
        &stats.connect_failures,
    );
    e.single(
        "fulcrum_accept_errors_total",
        "counter",
        "Errors returned by accept().",
        &stats.accept_errors,
    );
    e.single(
        "fulcrum_agent_heartbeats_accepted_total",
        "counter",
        "Valid node-agent heartbeats received.",
        &stats.agent_accepted,
    );
    e.single(
        "fulcrum_agent_heartbeats_rejected_total",
        "counter",
        "Node-agent heartbeats rejected (bad MAC, replay, stale, malformed, unknown node).",
        &stats.agent_rejected,
    );

    if !services.is_empty() {
        for (name, kind, help, read) in SERVICE_FAMILIES {
            e.family(name, kind, help);
            for svc in services {
                e.sample(name, &[("service", &svc.name)], &read(svc));
            }
        }
    }

    if !nodes.is_empty() {
        let labels: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
        for (name, kind, help, read) in NODE_FAMILIES {
            e.family(name, kind, help);
            for (n, label) in nodes.iter().zip(&labels) {
                e.sample(name, &[("service", &n.service), ("node", label)], &read(n));
            }
        }
        let name = "fulcrum_node_health";
        e.family(
            name,
            "gauge",
            "1 for the node's current health state, 0 for the others.",
        );
        for (n, label) in nodes.iter().zip(&labels) {
            for s in HealthState::ALL {
                let value = u8::from(n.health == s);
                e.sample(
                    name,
                    &[
                        ("service", &n.service),
                        ("node", label),
                        ("state", s.as_str()),
                    ],
                    &value,
                );
            }
        }
        let name = "fulcrum_node_admin";
        e.family(
            name,
            "gauge",
            "1 for the node's current admin state, 0 for the others.",
        );
        for (n, label) in nodes.iter().zip(&labels) {
            for s in AdminState::ALL {
                let value = u8::from(n.admin == s);
                e.sample(
                    name,
                    &[
                        ("service", &n.service),
                        ("node", label),
                        ("state", s.as_str()),
                    ],
                    &value,
                );
            }
        }
        let with_agent = || nodes.iter().zip(&labels).filter(|(n, _)| n.agent.is_some());
        if with_agent().next().is_some() {
            let name = "fulcrum_node_agent";
            e.family(
                name,
                "gauge",
                "1 for the node agent's current verdict, 0 for the others (nodes with an agent).",
            );
            for (n, label) in with_agent() {
                for s in AGENT_STATES {
                    let value = u8::from(n.agent.as_deref() == Some(s));
                    e.sample(
                        name,
                        &[("service", &n.service), ("node", label), ("state", s)],
                        &value,
                    );
                }
            }
        }
        let rtts = || {
            nodes
                .iter()
                .zip(&labels)
                .filter_map(|(n, l)| Some((n.last_check.as_ref()?.rtt_us?, &n.service, l)))
        };
        if rtts().next().is_some() {
            let name = "fulcrum_node_check_rtt_seconds";
            e.family(
                name,
                "gauge",
                "Round-trip time of the node's last health check that got an answer.",
            );
            for (us, service, label) in rtts() {
                e.sample(
                    name,
                    &[("service", service), ("node", label)],
                    &us_as_seconds(us),
                );
            }
        }
    }

    if let Some(role) = &stats.ha_role {
        e.family(
            "fulcrum_ha_role",
            "gauge",
            "Current HA role of this distributor (always 1).",
        );
        e.sample("fulcrum_ha_role", &[("role", role)], &1);
    }
    if let Some(v) = stats.ha_epoch {
        e.single("fulcrum_ha_epoch", "gauge", "HA election epoch.", &v);
    }
    if let Some(v) = stats.ha_takeovers {
        e.single(
            "fulcrum_ha_takeovers_total",
            "counter",
            "Times this distributor became master.",
            &v,
        );
    }
    if let Some(ms) = stats.ha_peer_last_ms {
        e.single(
            "fulcrum_ha_peer_heartbeat_age_seconds",
            "gauge",
            "Seconds since the last valid heartbeat from the peer.",
            &ms_as_seconds(ms),
        );
    }
    if let Some(v) = stats.ha_rejected {
        e.single(
            "fulcrum_ha_heartbeats_rejected_total",
            "counter",
            "Peer heartbeats rejected (authentication, replay, malformed).",
            &v,
        );
    }
    if let Some(d) = &stats.direct {
        for c in &d.counters {
            e.single(c.metric, c.kind, c.help, &c.value);
        }
        e.family(
            "fulcrum_direct_drops_total",
            "counter",
            "Frames not forwarded, by reason.",
        );
        for (reason, n) in &d.drops {
            e.sample("fulcrum_direct_drops_total", &[("reason", reason)], n);
        }
        let ids: Vec<String> = (0..d.workers.len()).map(|i| i.to_string()).collect();
        for (k, c) in crate::direct::stats::WORKER_COUNTERS.iter().enumerate() {
            e.family(c.metric, c.kind, c.help);
            for (id, w) in ids.iter().zip(&d.workers) {
                e.sample(c.metric, &[("worker", id)], &w[k]);
            }
        }
    }
    e.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<NodeSnapshot> {
        vec![
            NodeSnapshot {
                service: "default".into(),
                addr: "10.0.0.1:8080".parse().unwrap(),
                weight: 10,
                effective_weight: 10,
                backup: false,
                maxconn: 0,
                admin: AdminState::Ready,
                removing: false,
                health: HealthState::Up,
                active: 3,
                total: 120,
                bytes_in: 12_800,
                bytes_out: 1_258_291,
                connect_failures: 0,
                agent: None,
                agent_ok: true,
                window: None,
                last_check: Some(CheckSnapshot {
                    ok: true,
                    detail: "connected".into(),
                    age_ms: 1_234,
                    rtt_us: Some(412),
                }),
            },
            NodeSnapshot {
                service: "default".into(),
                addr: "[2001:db8::2]:80".parse().unwrap(),
                weight: 5,
                effective_weight: 2,
                backup: true,
                maxconn: 100,
                admin: AdminState::Drain,
                removing: true,
                health: HealthState::Warning,
                active: 0,
                total: 7,
                bytes_in: 42,
                bytes_out: 0,
                connect_failures: 2,
                agent: Some("overloaded".into()),
                agent_ok: false,
                window: None,
                last_check: None,
            },
        ]
    }

    fn stats() -> StatsSnapshot {
        StatsSnapshot {
            uptime_s: 3600,
            workers: 2,
            scheduler: "wrr".into(),
            enabled: true,
            state: "draining".into(),
            version: "0.1.0".into(),
            active: 3,
            total: 127,
            bytes_in: 12_842,
            bytes_out: 1_258_291,
            refused_disabled: 1,
            refused_maxconn: 0,
            refused_per_source: 3,
            no_node: 4,
            connect_failures: 2,
            accept_errors: 0,
            agent_accepted: 9,
            agent_rejected: 1,
            ha_role: Some("master".into()),
            ha_epoch: Some(7),
            ha_takeovers: Some(1),
            ha_peer_last_ms: Some(250),
            ha_rejected: Some(0),
            direct: None,
        }
    }

    #[test]
    fn every_direct_counter_reaches_stats_json_and_metrics() {
        let d = crate::direct::DirectStats::default();
        d.drop(crate::direct::DropReason::Fragment);
        let s = StatsSnapshot {
            direct: Some(crate::control::snapshot::DirectSnapshot {
                counters: d.counters(),
                drops: d.drops_by_reason(),
                workers: vec![[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]],
            }),
            ..stats()
        };
        let (json, text, prom) = (stats_json(&s), stats_text(&s), prometheus(&s, &[], &[]));
        assert!(json.ends_with("\"direct_drops\":1}"), "{json}");
        assert!(text.contains("direct_drops: 1\n"), "{text}");
        for c in &crate::direct::stats::COUNTERS {
            assert!(
                json.contains(&format!("\"{}\":0", c.key)),
                "{}: {json}",
                c.key
            );
            assert!(
                text.contains(&format!("{}: 0\n", c.key)),
                "{}: {text}",
                c.key
            );
            assert!(
                prom.contains(&format!("# TYPE {} {}\n{} 0\n", c.metric, c.kind, c.metric)),
                "{}",
                c.metric
            );
        }
        for r in crate::direct::DropReason::ALL {
            let n = u8::from(r == crate::direct::DropReason::Fragment);
            let line = format!(
                "fulcrum_direct_drops_total{{reason=\"{}\"}} {n}\n",
                r.as_str()
            );
            assert!(prom.contains(&line), "{line}");
        }
        for (k, c) in crate::direct::stats::WORKER_COUNTERS.iter().enumerate() {
            for w in 0..2 {
                let line = format!("{}{{worker=\"{w}\"}} {}\n", c.metric, 5 * w + k + 1);
                assert!(prom.contains(&line), "{line}: {prom}");
            }
        }
        assert!(!stats_json(&stats()).contains("direct_"));
    }

    #[test]
    fn table_is_aligned() {
        let want = "\
NODE                       WEIGHT  ADMIN     HEALTH   AGENT       ACTIVE  TOTAL     IN   OUT  FAIL  NOTE      CHECK
10.0.0.1:8080                  10  ready     up       -                3    120  12.5K  1.2M     0  -         ok 1.2s ago rtt 412us: connected
[2001:db8::2]:80 (backup)     2/5  removing  warning  overloaded       0      7     42     0     2  removing  -
";
        assert_eq!(nodes_table(&nodes()), want);
        assert_eq!(
            nodes_table(&[]),
            "NODE  WEIGHT  ADMIN  HEALTH  AGENT  ACTIVE  TOTAL  IN  OUT  FAIL  NOTE  CHECK\n"
        );
    }

    #[test]
    fn table_escapes_hostile_check_detail() {
        let mut n = nodes();
        if let Some(c) = n[0].last_check.as_mut() {
            c.ok = false;
            c.detail = format!("HTTP 503\r\n{}", "x".repeat(100));
            c.rtt_us = None;
            c.age_ms = 61_000;
        }
        let table = nodes_table(&n[..1]);
        assert_eq!(table.lines().count(), 2);
        let want = format!("fail 1m1s ago: HTTP 503\\r\\n{}...", "x".repeat(50));
        assert!(table.lines().nth(1).unwrap().ends_with(&want), "{table}");
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(9_999), "9999");
        assert_eq!(human_bytes(10_000), "9.8K");
        assert_eq!(human_bytes(5 << 30), "5.0G");
        assert_eq!(human_bytes(u64::MAX), "16.0E");
        assert_eq!(human_ms(999), "999ms");
        assert_eq!(human_ms(7_250_000), "2h0m");
        assert_eq!(human_us(1_500), "1.5ms");
        assert_eq!(human_us(2_000_000), "2.0s");
        assert_eq!(ms_as_seconds(250), "0.25");
        assert_eq!(ms_as_seconds(3_000), "3");
    }

    #[test]
    fn nodes_json_exact() {
        let want = concat!(
            r#"[{"service":"default","addr":"10.0.0.1:8080","weight":10,"effective_weight":10,"backup":false,"#,
            r#""maxconn":0,"admin":"ready","removing":false,"health":"up","active":3,"total":120,"#,
            r#""bytes_in":12800,"bytes_out":1258291,"connect_failures":0,"agent":null,"not_eligible":null,"#,
            r#""last_check":{"ok":true,"detail":"connected","age_ms":1234,"rtt_us":412}},"#,
            r#"{"service":"default","addr":"[2001:db8::2]:80","weight":5,"effective_weight":2,"backup":true,"#,
            r#""maxconn":100,"admin":"drain","removing":true,"health":"warning","active":0,"total":7,"#,
            r#""bytes_in":42,"bytes_out":0,"connect_failures":2,"agent":"overloaded","#,
            r#""not_eligible":"removing","last_check":null}]"#,
        );
        assert_eq!(nodes_json(&nodes()), want);
        assert_eq!(nodes_json(&[]), "[]");
    }

    #[test]
    fn stats_json_and_text_exact() {
        let mut s = stats();
        s.ha_role = None;
        s.ha_epoch = None;
        s.ha_takeovers = None;
        s.ha_peer_last_ms = None;
        s.ha_rejected = None;
        let want = concat!(
            r#"{"uptime_s":3600,"workers":2,"scheduler":"wrr","enabled":true,"#,
            r#""state":"draining","version":"0.1.0","active":3,"#,
            r#""total":127,"bytes_in":12842,"bytes_out":1258291,"refused_disabled":1,"#,
            r#""refused_maxconn":0,"refused_per_source":3,"no_node":4,"connect_failures":2,"accept_errors":0,"#,
            r#""agent_accepted":9,"agent_rejected":1,"#,
            r#""ha_role":null,"ha_epoch":null,"ha_takeovers":null,"ha_peer_last_ms":null,"#,
            r#""ha_rejected":null}"#,
        );
        assert_eq!(stats_json(&s), want);
        let text = "\
uptime_s: 3600
workers: 2
scheduler: wrr
enabled: true
state: draining
version: 0.1.0
active: 3
total: 127
bytes_in: 12842
bytes_out: 1258291
refused_disabled: 1
refused_maxconn: 0
refused_per_source: 3
no_node: 4
connect_failures: 2
accept_errors: 0
agent_accepted: 9
agent_rejected: 1
";
        assert_eq!(stats_text(&s), text);
        let with_ha = stats_text(&stats());
        assert!(with_ha.starts_with(text));
        assert_eq!(
            &with_ha[text.len()..],
            "ha_role: master\nha_epoch: 7\nha_takeovers: 1\nha_peer_last_ms: 250\nha_rejected: 0\n"
        );
        assert!(stats_json(&stats()).ends_with(
            r#""ha_role":"master","ha_epoch":7,"ha_takeovers":1,"ha_peer_last_ms":250,"ha_rejected":0}"#
        ));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            json_escape("a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}é€"),
            "a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001fé€"
        );
        assert_eq!(json_escape("\u{7f}"), "\u{7f}");
        assert_eq!(prom_label_escape("a\\b\"c\nd\te"), "a\\\\b\\\"c\\nd\te");
        let mut s = stats();
        s.scheduler = "w\"r\\r\n".into();
        assert!(stats_json(&s).contains(r#""scheduler":"w\"r\\r\n""#));
        assert!(prometheus(&s, &[], &[])
            .contains("fulcrum_scheduler_info{scheduler=\"w\\\"r\\\\r\\n\"} 1\n"));
        assert!(stats_text(&s).contains("scheduler: w\"r\\r\\n\n"));
    }

    #[test]
    fn prometheus_exact() {
        let want = r#"# HELP fulcrum_up 1 if new connections are distributed, 0 if distribution is disabled.
# TYPE fulcrum_up gauge
fulcrum_up 1
# HELP fulcrum_state 1 for the life-cycle state (serving, draining, stopping), 0 for the others.
# TYPE fulcrum_state gauge
fulcrum_state{state="serving"} 0
fulcrum_state{state="draining"} 1
fulcrum_state{state="stopping"} 0
# HELP fulcrum_build_info The running binary's version (always 1).
# TYPE fulcrum_build_info gauge
fulcrum_build_info{version="0.1.0"} 1
# HELP fulcrum_uptime_seconds Seconds since the distributor started.
# TYPE fulcrum_uptime_seconds gauge
fulcrum_uptime_seconds 3600
# HELP fulcrum_workers Forwarding worker threads.
# TYPE fulcrum_workers gauge
fulcrum_workers 2
# HELP fulcrum_scheduler_info Scheduling algorithm in use (always 1).
# TYPE fulcrum_scheduler_info gauge
fulcrum_scheduler_info{scheduler="wrr"} 1
# HELP fulcrum_connections_active Client connections open now.
# TYPE fulcrum_connections_active gauge
fulcrum_connections_active 3
# HELP fulcrum_connections_total Client connections accepted and forwarded.
# TYPE fulcrum_connections_total counter
fulcrum_connections_total 127
# HELP fulcrum_bytes_in_total Bytes received from clients.
# TYPE fulcrum_bytes_in_total counter
fulcrum_bytes_in_total 12842
# HELP fulcrum_bytes_out_total Bytes sent to clients.
# TYPE fulcrum_bytes_out_total counter
fulcrum_bytes_out_total 1258291
# HELP fulcrum_refused_total Client connections refused, by reason.
# TYPE fulcrum_refused_total counter
fulcrum_refused_total{reason="disabled"} 1
fulcrum_refused_total{reason="maxconn"} 0
fulcrum_refused_total{reason="per_source"} 3
fulcrum_refused_total{reason="no_node"} 4
# HELP fulcrum_connect_failures_total Failed connection attempts to nodes.
# TYPE fulcrum_connect_failures_total counter
fulcrum_connect_failures_total 2
# HELP fulcrum_accept_errors_total Errors returned by accept().
# TYPE fulcrum_accept_errors_total counter
fulcrum_accept_errors_total 0
# HELP fulcrum_agent_heartbeats_accepted_total Valid node-agent heartbeats received.
# TYPE fulcrum_agent_heartbeats_accepted_total counter
fulcrum_agent_heartbeats_accepted_total 9
# HELP fulcrum_agent_heartbeats_rejected_total Node-agent heartbeats rejected (bad MAC, replay, stale, malformed, unknown node).
# TYPE fulcrum_agent_heartbeats_rejected_total counter
fulcrum_agent_heartbeats_rejected_total 1
# HELP fulcrum_node_connections_active Connections open to the node now.
# TYPE fulcrum_node_connections_active gauge
fulcrum_node_connections_active{service="default",node="10.0.0.1:8080"} 3
fulcrum_node_connections_active{service="default",node="[2001:db8::2]:80"} 0
# HELP fulcrum_node_connections_total Connections forwarded to the node.
# TYPE fulcrum_node_connections_total counter
fulcrum_node_connections_total{service="default",node="10.0.0.1:8080"} 120
fulcrum_node_connections_total{service="default",node="[2001:db8::2]:80"} 7
# HELP fulcrum_node_bytes_in_total Bytes from clients sent to the node.
# TYPE fulcrum_node_bytes_in_total counter
fulcrum_node_bytes_in_total{service="default",node="10.0.0.1:8080"} 12800
fulcrum_node_bytes_in_total{service="default",node="[2001:db8::2]:80"} 42
# HELP fulcrum_node_bytes_out_total Bytes from the node sent to clients.
# TYPE fulcrum_node_bytes_out_total counter
fulcrum_node_bytes_out_total{service="default",node="10.0.0.1:8080"} 1258291
fulcrum_node_bytes_out_total{service="default",node="[2001:db8::2]:80"} 0
# HELP fulcrum_node_connect_failures_total Failed connection attempts to the node.
# TYPE fulcrum_node_connect_failures_total counter
fulcrum_node_connect_failures_total{service="default",node="10.0.0.1:8080"} 0
fulcrum_node_connect_failures_total{service="default",node="[2001:db8::2]:80"} 2
# HELP fulcrum_node_weight Configured weight (0 = no new flows).
# TYPE fulcrum_node_weight gauge
fulcrum_node_weight{service="default",node="10.0.0.1:8080"} 10
fulcrum_node_weight{service="default",node="[2001:db8::2]:80"} 5
# HELP fulcrum_node_effective_weight Weight the scheduler uses now.
# TYPE fulcrum_node_effective_weight gauge
fulcrum_node_effective_weight{service="default",node="10.0.0.1:8080"} 10
fulcrum_node_effective_weight{service="default",node="[2001:db8::2]:80"} 2
# HELP fulcrum_node_backup 1 if the node is a backup node.
# TYPE fulcrum_node_backup gauge
fulcrum_node_backup{service="default",node="10.0.0.1:8080"} 0
fulcrum_node_backup{service="default",node="[2001:db8::2]:80"} 1
# HELP fulcrum_node_maxconn Connection limit of the node (0 = none).
# TYPE fulcrum_node_maxconn gauge
fulcrum_node_maxconn{service="default",node="10.0.0.1:8080"} 0
fulcrum_node_maxconn{service="default",node="[2001:db8::2]:80"} 100
# HELP fulcrum_node_removing 1 while `remove node` drains the node (it leaves the pool when idle).
# TYPE fulcrum_node_removing gauge
fulcrum_node_removing{service="default",node="10.0.0.1:8080"} 0
fulcrum_node_removing{service="default",node="[2001:db8::2]:80"} 1
# HELP fulcrum_node_health 1 for the node's current health state, 0 for the others.
# TYPE fulcrum_node_health gauge
fulcrum_node_health{service="default",node="10.0.0.1:8080",state="up"} 1
fulcrum_node_health{service="default",node="10.0.0.1:8080",state="warning"} 0
fulcrum_node_health{service="default",node="10.0.0.1:8080",state="down"} 0
fulcrum_node_health{service="default",node="[2001:db8::2]:80",state="up"} 0
fulcrum_node_health{service="default",node="[2001:db8::2]:80",state="warning"} 1
fulcrum_node_health{service="default",node="[2001:db8::2]:80",state="down"} 0
# HELP fulcrum_node_admin 1 for the node's current admin state, 0 for the others.
# TYPE fulcrum_node_admin gauge
fulcrum_node_admin{service="default",node="10.0.0.1:8080",state="ready"} 1
fulcrum_node_admin{service="default",node="10.0.0.1:8080",state="drain"} 0
fulcrum_node_admin{service="default",node="10.0.0.1:8080",state="maint"} 0
fulcrum_node_admin{service="default",node="[2001:db8::2]:80",state="ready"} 0
fulcrum_node_admin{service="default",node="[2001:db8::2]:80",state="drain"} 1
fulcrum_node_admin{service="default",node="[2001:db8::2]:80",state="maint"} 0
# HELP fulcrum_node_agent 1 for the node agent's current verdict, 0 for the others (nodes with an agent).
# TYPE fulcrum_node_agent gauge
fulcrum_node_agent{service="default",node="[2001:db8::2]:80",state="ready"} 0
fulcrum_node_agent{service="default",node="[2001:db8::2]:80",state="drain"} 0
fulcrum_node_agent{service="default",node="[2001:db8::2]:80",state="overloaded"} 1
fulcrum_node_agent{service="default",node="[2001:db8::2]:80",state="down"} 0
fulcrum_node_agent{service="default",node="[2001:db8::2]:80",state="missing"} 0
# HELP fulcrum_node_check_rtt_seconds Round-trip time of the node's last health check that got an answer.
# TYPE fulcrum_node_check_rtt_seconds gauge
fulcrum_node_check_rtt_seconds{service="default",node="10.0.0.1:8080"} 0.000412
# HELP fulcrum_ha_role Current HA role of this distributor (always 1).
# TYPE fulcrum_ha_role gauge
fulcrum_ha_role{role="master"} 1
# HELP fulcrum_ha_epoch HA election epoch.
# TYPE fulcrum_ha_epoch gauge
fulcrum_ha_epoch 7
# HELP fulcrum_ha_takeovers_total Times this distributor became master.
# TYPE fulcrum_ha_takeovers_total counter
fulcrum_ha_takeovers_total 1
# HELP fulcrum_ha_peer_heartbeat_age_seconds Seconds since the last valid heartbeat from the peer.
# TYPE fulcrum_ha_peer_heartbeat_age_seconds gauge
fulcrum_ha_peer_heartbeat_age_seconds 0.25
# HELP fulcrum_ha_heartbeats_rejected_total Peer heartbeats rejected (authentication, replay, malformed).
# TYPE fulcrum_ha_heartbeats_rejected_total counter
fulcrum_ha_heartbeats_rejected_total 0
"#;
        let got = prometheus(&stats(), &[], &nodes());
        // Line by line first, so a mismatch names the line.
        for (g, w) in got.lines().zip(want.lines()) {
            assert_eq!(g, w);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn prometheus_families_are_declared_once() {
        let text = prometheus(&stats(), &[], &nodes());
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(line.to_owned()), "{line}");
        }
        // Without HA or nodes, those families are absent entirely.
        let bare = prometheus(&StatsSnapshot::default(), &[], &[]);
        assert!(!bare.contains("fulcrum_ha_") && !bare.contains("fulcrum_node_"));
        assert!(bare.contains("\nfulcrum_up 0\n"));
    }

    #[test]
    fn not_eligible_names_the_first_reason() {
        let mut n = nodes().remove(0);
        assert_eq!(not_eligible(&n), None);
        n.agent = Some("drain".into());
        n.agent_ok = false;
        assert_eq!(not_eligible(&n).as_deref(), Some("agent: drain"));
        n.health = HealthState::Down;
        assert_eq!(not_eligible(&n).as_deref(), Some("health down"));
        n.admin = AdminState::Maint;
        assert_eq!(not_eligible(&n).as_deref(), Some("admin maint"));
        let mut m = nodes().remove(0);
        m.maxconn = 3;
        assert_eq!(not_eligible(&m).as_deref(), Some("at maxconn"));
        m.weight = 0;
        assert_eq!(not_eligible(&m).as_deref(), Some("weight 0"));
    }

    #[test]
    fn config_json_is_typed_and_text_is_flat() {
        use ConfigValue as V;
        let fields = vec![
            ("workers", V::Num(2)),
            ("splice", V::Bool(true)),
            (
                "listen",
                V::List(vec![
                    V::Str("127.0.0.1:80".into()),
                    V::Str("[::1]:80".into()),
                ]),
            ),
            ("notify", V::Null),
            ("vip", V::List(Vec::new())),
            (
                "backends",
                V::List(vec![V::Object(vec![
                    ("addr", V::Str("10.0.0.1:80".into())),
                    ("weight", V::Num(3)),
                ])]),
            ),
            ("check_host", V::Str("a\"b".into())),
        ];
        assert_eq!(
            config_json(&fields),
            concat!(
                r#"{"workers":2,"splice":true,"listen":["127.0.0.1:80","[::1]:80"],"notify":null,"#,
                r#""vip":[],"backends":[{"addr":"10.0.0.1:80","weight":3}],"check_host":"a\"b"}"#
            )
        );
        assert_eq!(
            config_text(&fields),
            "workers: 2\nsplice: true\nlisten: 127.0.0.1:80 [::1]:80\nnotify: none\nvip: none\n\
             backends: addr=10.0.0.1:80,weight=3\ncheck_host: a\"b"
        );
    }
}
