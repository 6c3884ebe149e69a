//! Regression tests named after the operator papercuts they pin (issue #14): each starts
//! the real binary on loopback and checks what an operator would see.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn ctl(socket: &Path, cmd: &str) -> (i32, String) {
    let (code, out, err) = Ctl::new(socket).run(cmd);
    (code, out + &err)
}

fn temp_sock(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("fulcrum-reg-{}-{name}.sock", std::process::id()))
}

/// A transfer that is in flight while signals arrive: 64 KiB echoed in two halves.
fn echo_half_then_rest(addr: std::net::SocketAddr, mid: impl FnOnce()) -> Vec<u8> {
    let data = pattern(7, 64 * 1024);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (a, b) = data.split_at(data.len() / 2);
    s.write_all(a).unwrap();
    let mut got = vec![0u8; a.len()];
    s.read_exact(&mut got).unwrap();
    mid();
    s.write_all(b).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    got.extend_from_slice(&rest);
    assert_eq!(sha256(&got), sha256(&data), "transfer not byte-exact");
    got
}

#[test]
fn sighup_and_sigusr_do_not_kill_the_process() {
    let b = Backend::start(echo);
    let sock = temp_sock("signals");
    let sock_s = sock.to_str().unwrap().to_string();
    let (p, addr) = start_fulcrum(&[b.addr], &["--control", &sock_s, "--check", "none"]);
    echo_half_then_rest(addr, || {
        for sig in [
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGPIPE,
        ] {
            p.signal(sig);
        }
        std::thread::sleep(Duration::from_millis(300));
    });
    let mut p = p;
    assert_eq!(
        p.wait_exit(Duration::from_millis(200)),
        None,
        "a signal killed it:\n{}",
        p.log()
    );
    let (code, out) = ctl(&sock, "show stats");
    assert_eq!(code, 0, "{out}");
    assert!(fetch_echo_ok(addr), "not serving after the signals");
    let logged = |what: &str| eventually(Duration::from_secs(3), || p.log().contains(what));
    for line in [
        "SIGHUP: configuration from flags only",
        "SIGUSR1: ignored",
        "SIGUSR2: ignored",
    ] {
        assert!(logged(line), "{line}: {}", p.log());
    }
    // SIGTERM still drains and exits 0.
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0), "{}", p.log());
}

fn fetch_echo_ok(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    s.write_all(b"ping").is_ok() && {
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = String::new();
        s.read_to_string(&mut out).is_ok() && out == "ping"
    }
}

fn serve_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut argv = vec!["serve"];
    argv.extend_from_slice(args);
    let mut p = spawn(&argv, "info");
    let code = p.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(50)); // let the log readers catch up
    (code, p.log())
}

#[test]
fn duplicate_backend_is_refused_with_exit_2() {
    let (code, log) = serve_exit(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:9",
        "--backend",
        "127.0.0.1:9,weight=2",
    ]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("--backend 127.0.0.1:9 is given twice"),
        "{log}"
    );
}

#[test]
fn zero_durations_are_refused_with_exit_2_naming_the_flag() {
    for flag in ["--connect-timeout", "--check-timeout"] {
        let (code, log) = serve_exit(&[
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:9",
            flag,
            "0s",
        ]);
        assert_eq!(code, Some(2), "{flag}: {log}");
        assert!(log.contains(&format!("{flag} 0s")), "{flag}: {log}");
    }
}

#[test]
fn cross_flag_errors_exit_2() {
    // Each flag alone is valid; together they are not.
    let (code, log) = serve_exit(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:9",
        "--http-token-file",
        "/nonexistent/token",
    ]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("--http-token-file") && log.contains("needs --http"),
        "{log}"
    );
}

#[test]
fn idle_timeout_zero_means_no_idle_timeout() {
    let b = Backend::start(echo);
    let (p, addr) = start_fulcrum(&[b.addr], &["--idle-timeout", "0s", "--check", "none"]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Idle for longer than several 100 ms sweeps, then still relayed.
    std::thread::sleep(Duration::from_millis(700));
    s.write_all(b"still here").unwrap();
    let mut got = [0u8; 10];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still here", "{}", p.log());
}

#[test]
fn secret_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("fulcrum-reg-{}-token", std::process::id()));
    std::fs::write(&path, "a-token-of-enough-length-0123\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port().to_string();
    let http = format!("127.0.0.1:{port}");
    let (code, log) = serve_exit(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:9",
        "--http",
        &http,
        "--http-token-file",
        path.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("mode 0644") && log.contains("chmod 600"),
        "{log}"
    );
    assert!(
        !log.contains("a-token-of-enough-length"),
        "the secret leaked: {log}"
    );
}

#[test]
fn reload_without_control_keeps_the_control_socket() {
    let b = Backend::start(echo);
    let sock = temp_sock("reload");
    let sock_s = sock.to_str().unwrap().to_string();
    let http = format!("127.0.0.1:{}", free_port());
    let (mut old, addr) = start_fulcrum(
        &[b.addr],
        &["--control", &sock_s, "--http", &http, "--check", "none"],
    );
    let listen = addr.to_string();
    let backend = b.addr.to_string();
    // The successor names neither --control nor --http.
    let new = spawn(
        &[
            "serve",
            "--listen",
            &listen,
            "--backend",
            &backend,
            "--check",
            "none",
            "--listeners-from",
            &sock_s,
        ],
        "info",
    );
    assert_eq!(
        old.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        old.log()
    );
    assert!(
        eventually(Duration::from_secs(5), || ctl(&sock, "show stats").0 == 0),
        "no control socket after the reload:\n{}",
        new.log()
    );
    assert!(fetch_echo_ok(addr));
    let log = new.log();
    assert!(log.contains(&format!("serves HTTP on {http}")), "{log}");
}

/// The start-up probe hit EACCES first and its message lacked the capability hint that
/// the bind path had: seen when the tour was run as a normal user.
#[test]
fn low_port_as_a_normal_user_names_cap_net_bind_service() {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1024);
    assert!(
        start > 80,
        "this host lets anyone bind port 80: nothing to check"
    );
    let root = nix::unistd::Uid::effective().is_root();
    // As root, run a copy of the binary as `nobody` (runuser, from util-linux): the
    // copy sits in the temp directory, which `nobody` can reach wherever the checkout is.
    let copy = std::env::temp_dir().join(format!("fulcrum-reg-{}-bin", std::process::id()));
    let mut cmd = if root {
        std::fs::copy(bin(), &copy).expect("copy the binary");
        std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod the copy");
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(&copy);
        c
    } else {
        Command::new(bin())
    };
    let out = cmd
        .args([
            "serve",
            "--listen",
            "127.0.0.1:80",
            "--backend",
            "127.0.0.1:9",
            "--check",
            "none",
        ])
        .output()
        .expect("run fulcrum as an unprivileged user");
    let _ = std::fs::remove_file(&copy);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on 127.0.0.1:80"), "{err}");
    assert!(err.contains("needs CAP_NET_BIND_SERVICE"), "{err}");
    assert!(err.contains("setcap cap_net_bind_service=+ep"), "{err}");
}
