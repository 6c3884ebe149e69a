//! Packaging (issue #10): the systemd unit in `dist/` passes `systemd-analyze verify`,
//! its stop timeout outlasts the default drain, `fulcrum serve` speaks the sd_notify
//! protocol the unit's `Type=notify` relies on, and `fulcrum completions` / `fulcrum
//! man` print what shells and `man` accept.
//!
//! Needs `systemd-analyze` (Debian `systemd`) and `man` (Debian `man-db`); both are in
//! `.ci/run`'s package list, and a test fails with that hint when one is missing. Only
//! loopback and a Unix socket in a temporary directory are used; no service manager
//! runs (the notify socket is the test's own).

mod common;

use std::fs;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// The unit as committed.
const UNIT: &str = include_str!("../dist/fulcrum.service");
/// Where the unit expects the binary; the tests point it at the one under test.
const INSTALLED_BIN: &str = "/usr/local/bin/fulcrum";

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("fulcrum-pkg-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `fulcrum ARGS…` to completion.
fn fulcrum(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fulcrum")
}

fn stdout_of(args: &[&str]) -> String {
    let out = fulcrum(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "fulcrum {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs a tool the tests need, failing with the Debian package to install if it is absent.
fn tool(cmd: &str, package: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{cmd}` not found: install the Debian package `{package}` (apt-get install {package}; .ci/run does)"
    );
    Command::new(cmd)
}

/// Writes the unit with ExecStart pointing at the binary under test, and man pages for
/// its `Documentation=man:` links; returns (unit path, MANPATH).
fn unit_fixture(dir: &Path, unit_text: &str) -> (PathBuf, PathBuf) {
    assert!(
        unit_text.contains(&format!("ExecStart={INSTALLED_BIN} serve")),
        "the unit no longer starts {INSTALLED_BIN} serve"
    );
    let unit = dir.join("fulcrum.service");
    fs::write(&unit, unit_text.replace(INSTALLED_BIN, bin())).unwrap();
    let man1 = dir.join("man/man1");
    fs::create_dir_all(&man1).unwrap();
    fs::write(man1.join("fulcrum.1"), stdout_of(&["man"])).unwrap();
    fs::write(man1.join("fulcrum-serve.1"), stdout_of(&["man", "serve"])).unwrap();
    (unit, dir.join("man"))
}

fn verify(unit: &Path, manpath: &Path) -> (bool, String) {
    let out = tool("systemd-analyze", "systemd")
        .arg("verify")
        .arg(unit)
        .env("MANPATH", manpath)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = TempDir::new("verify");
    let (unit, manpath) = unit_fixture(dir.path(), UNIT);
    let (ok, text) = verify(&unit, &manpath);
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    // Warnings about other units on the machine are not ours; none may name this one.
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("fulcrum")).collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify warned:\n{}",
        ours.join("\n")
    );
}

/// The check above has teeth: the same fixture with one bad line fails.
#[test]
fn unit_verify_rejects_a_broken_copy() {
    let dir = TempDir::new("verify-broken");
    let broken = UNIT.replace("Type=notify", "Type=notifyy");
    let (unit, manpath) = unit_fixture(dir.path(), &broken);
    let (ok, text) = verify(&unit, &manpath);
    assert!(
        !ok || text.contains("notifyy"),
        "a bad Type= went unnoticed:\n{text}"
    );
}

/// Parses `30s`, `2m`, `45` (seconds) — the forms used in the unit and the help text.
fn seconds(v: &str) -> u64 {
    let v = v.trim();
    let (num, mul) = match v.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (v.strip_suffix('s').unwrap_or(v), 1),
    };
    num.parse::<u64>()
        .unwrap_or_else(|_| panic!("not a duration: {v:?}"))
        * mul
}

/// systemd SIGKILLs a unit still running at TimeoutStopSec; a drain cut short that way
/// loses the connections the drain exists to keep.
#[test]
fn unit_stop_timeout_outlasts_the_default_drain() {
    let stop = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("the unit sets TimeoutStopSec");
    let help = stdout_of(&["serve", "--help"]);
    let drain_help = help
        .split("--drain-timeout")
        .nth(1)
        .expect("serve --help documents --drain-timeout");
    let default = drain_help
        .split("[default: ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("--drain-timeout shows its default");
    assert!(
        seconds(stop) > seconds(default),
        "TimeoutStopSec={stop} must exceed the default --drain-timeout {default}"
    );
    for line in [
        "KillSignal=SIGTERM",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "LimitNOFILE=1048576",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW CAP_BPF",
        "SystemCallFilter=bpf",
    ] {
        assert!(UNIT.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
}

/// Waits for one datagram on the notify socket.
fn next_notification(sock: &UnixDatagram) -> io::Result<String> {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `Type=notify`: READY=1 only once the listener accepts, STOPPING=1 when the drain
/// begins, then a clean exit.
#[test]
fn serve_notifies_ready_when_listening_and_stopping_at_drain() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let backend = Backend::start(says("b1"));
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(bin())
        .args(["serve", "--listen", &listen.to_string()])
        .args([
            "--backend",
            &backend.addr.to_string(),
            "--drain-timeout",
            "5s",
        ])
        .env("NOTIFY_SOCKET", &path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fulcrum");
    let mut p = Proc {
        child,
        log: Default::default(),
    };
    let ready = next_notification(&sock).expect("READY=1 within 10 s");
    assert_eq!(ready.trim_end(), "READY=1");
    // Ready means bound: a client connects at once, without retrying.
    assert_eq!(fetch(listen).expect("serves when READY=1"), "b1\n");
    p.signal(Signal::SIGTERM);
    let stopping = next_notification(&sock).expect("STOPPING=1 after SIGTERM");
    assert_eq!(stopping.trim_end(), "STOPPING=1");
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn completions_bash_complete_serve_and_its_flags() {
    let out = stdout_of(&["completions", "bash"]);
    assert!(out.contains("serve"), "no `serve` in:\n{out}");
    assert!(out.contains("--backend"), "no `--backend` in:\n{out}");
    // It is a script bash accepts.
    let status = Command::new("bash")
        .args(["-n", "-c", &out])
        .status()
        .expect("run bash");
    assert!(status.success(), "bash -n rejected the completion script");
}

#[test]
fn completions_zsh_and_fish_name_serve() {
    for shell in ["zsh", "fish"] {
        let out = stdout_of(&["completions", shell]);
        assert!(!out.trim().is_empty(), "{shell}: empty");
        assert!(out.contains("serve"), "{shell}: no `serve` in:\n{out}");
        assert!(out.contains("backend"), "{shell}: no `backend` in:\n{out}");
    }
}

#[test]
fn completions_for_an_unknown_shell_exit_2() {
    let out = fulcrum(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}

#[test]
fn man_page_is_roff_and_lists_serve() {
    let out = stdout_of(&["man"]);
    // clap_mangen opens with two string definitions (.ie/.el), then the title.
    let th = out
        .lines()
        .position(|l| l.starts_with(".TH fulcrum 1 "))
        .expect("a .TH fulcrum 1 header");
    assert!(th <= 2, "the .TH header is line {th}:\n{out}");
    assert!(
        out.lines().take(th).all(|l| l.starts_with('.')),
        "text before .TH:\n{out}"
    );
    assert!(out.contains(&format!("\"fulcrum {}\"", env!("CARGO_PKG_VERSION"))));
    assert!(
        out.contains("fulcrum\\-serve(1)"),
        "serve is not listed:\n{out}"
    );
}

#[test]
fn man_serve_page_documents_every_serve_flag() {
    let out = stdout_of(&["man", "serve"]);
    assert!(out.contains(".TH fulcrum-serve 1 "), "{out}");
    for flag in ["backend", "listen", "drain\\-timeout", "control", "vip"] {
        assert!(
            out.contains(&format!("\\-\\-{flag}")),
            "no --{flag} in:\n{out}"
        );
    }
}

#[test]
fn man_for_an_unknown_page_exits_2() {
    let out = fulcrum(&["man", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch") && err.contains("serve"), "{err}");
}

/// `man -l` renders both pages without a groff warning.
#[test]
fn man_pages_render_with_man() {
    let dir = TempDir::new("man");
    for (page, file) in [(None, "fulcrum.1"), (Some("serve"), "fulcrum-serve.1")] {
        let args: Vec<&str> = std::iter::once("man").chain(page).collect();
        let path = dir.path().join(file);
        fs::write(&path, stdout_of(&args)).unwrap();
        let out = tool("man", "man-db")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_STDERR", "1")
            .output()
            .expect("run man");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "man -l {file}: {err}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("fulcrum"),
            "man -l {file} rendered nothing:\n{text}"
        );
    }
}
