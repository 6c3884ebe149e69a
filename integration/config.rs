//! End-to-end tests of the configuration file (issue #10): `fulcrum check` on good and
//! bad files, and `fulcrum serve --config` serving on loopback.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("fulcrum-conf-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        TempFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `fulcrum ARGS…`; exit code, stdout, stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run fulcrum");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_passes_the_shipped_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/fulcrum.toml");
    let (code, out, err) = run(&["check", "--config", example.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("[[service]]\nname = \"web\"\n"), "{out}");
    assert!(out.contains("\nscheduler = \"wrr\"\n"), "{out}");
    assert!(out.contains("\nretries = 2  # default\n"), "{out}");
}

#[test]
fn check_output_is_accepted_by_check() {
    let f = TempFile::new(
        "round.toml",
        "workers = 1\n[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nbackend = [\"127.0.0.1:2\"]\nsplice = false\n",
    );
    let (code, out, err) = run(&["check", "--config", f.path()]);
    assert_eq!(code, 0, "{err}");
    let g = TempFile::new("round2.toml", &out);
    let (code, again, err) = run(&["check", "--config", g.path()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        again
            .lines()
            .skip(3)
            .map(|l| l.trim_end_matches("  # default"))
            .collect::<Vec<_>>(),
        out.lines()
            .skip(3)
            .map(|l| l.trim_end_matches("  # default"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn check_reports_every_error_with_file_line_and_key() {
    let f = TempFile::new(
        "bad.toml",
        "workers = 2\ndrain-timeout = \"30 seconds\"\n\n[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = [\"10.0.0.1\"]\nchek = \"tcp\"\n",
    );
    let (code, out, err) = run(&["check", "--config", f.path()]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "nothing normalised from a bad file: {out}");
    let p = f.path();
    for want in [
        format!("fulcrum: {p}:2: drain-timeout = \"30 seconds\": "),
        format!("fulcrum: {p}:7: backend = \"10.0.0.1\": has no port (expected HOST:PORT)"),
        format!("fulcrum: {p}:8: chek = \"tcp\": unknown key (did you mean \"check\"?)"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    let syntax = TempFile::new("syntax.toml", "workers = 2\nlisten = [\n");
    let (code, _, err) = run(&["check", "--config", syntax.path()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}:2: TOML syntax, column 11: ", syntax.path())),
        "{err}"
    );
    let (code, _, err) = run(&["check", "--config", "/nonexistent/fulcrum.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/fulcrum.toml: cannot open"),
        "{err}"
    );
}

#[test]
fn two_services_with_one_name_or_one_port_are_refused() {
    let f = TempFile::new(
        "two.toml",
        "[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = [\"127.0.0.1:1\"]\n\n[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = [\"127.0.0.1:2\"]\n",
    );
    let (code, _, err) = run(&["check", "--config", f.path()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(":7: name = \"web\": service name already used at line 2"),
        "{err}"
    );
    assert!(
        err.contains(":8: listen = \"127.0.0.1:8080\": listen address 127.0.0.1:8080 is also used"),
        "{err}"
    );
    let ok = TempFile::new(
        "two-ok.toml",
        "[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = [\"127.0.0.1:1\"]\n\n[[service]]\nname = \"api\"\nlisten = [\"127.0.0.1:8081\"]\nbackend = [\"127.0.0.1:2\"]\n",
    );
    let (code, out, err) = run(&["check", "--config", ok.path()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("name = \"web\"") && out.contains("name = \"api\""),
        "{out}"
    );
}

#[test]
fn serve_with_a_config_file_serves() {
    let a = Backend::start(says("alpha"));
    let b = Backend::start(says("beta"));
    let port = free_port();
    let f = TempFile::new(
        "serve.toml",
        &format!(
            "workers = 1\ndrain-timeout = \"1s\"\n\n[defaults]\ncheck = \"none\"\n\n[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:{port}\"]\nbackend = [\"{}\", \"{}\"]\nscheduler = \"rr\"\n",
            a.addr, b.addr
        ),
    );
    let mut p = spawn(&["serve", "--config", f.path()], "info");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr, &p);
    let mut seen: Vec<String> = (0..4).map(|_| fetch(addr).unwrap()).collect();
    seen.sort();
    assert_eq!(
        seen,
        ["alpha\n", "alpha\n", "beta\n", "beta\n"],
        "log:\n{}",
        p.log()
    );
    assert!(p.log().contains("workers=1"), "{}", p.log());
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0), "{}", p.log());
}

#[test]
fn flags_beside_the_file_replace_its_keys() {
    let a = Backend::start(says("alpha"));
    let b = Backend::start(says("beta"));
    let port = free_port();
    // The file names a backend that refuses; the command line replaces the list.
    let f = TempFile::new(
        "override.toml",
        &format!(
            "workers = 3\n[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:{port}\"]\nbackend = [\"{}\"]\ncheck = \"none\"\n",
            a.addr
        ),
    );
    let backend = b.addr.to_string();
    let p = spawn(
        &[
            "serve",
            "--config",
            f.path(),
            "--backend",
            &backend,
            "--workers",
            "1",
        ],
        "info",
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr, &p);
    for _ in 0..3 {
        assert_eq!(fetch(addr).unwrap(), "beta\n");
    }
    assert_eq!(a.count(), 0);
    assert!(p.log().contains("workers=1"), "{}", p.log());
}

#[test]
fn serve_refuses_a_bad_file_with_exit_2() {
    let f = TempFile::new(
        "serve-bad.toml",
        "[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:1\"]\nbackend = [\"127.0.0.1:2\"]\nconnect-timeout = \"0s\"\n",
    );
    let (code, _, err) = run(&["serve", "--config", f.path()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}:5: connect-timeout = \"0s\": every connect would fail",
            f.path()
        )),
        "{err}"
    );
}

fn ctl(socket: &str, cmd: &str) -> String {
    Ctl::new(socket).run(cmd).1
}

#[test]
fn sighup_applies_the_file_in_place_and_a_bad_file_changes_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let a = Backend::start(says("alpha"));
    let b = Backend::start(says("beta"));
    let c = Backend::start(says("gamma"));
    let port = free_port();
    let sock = std::env::temp_dir().join(format!("fulcrum-conf-{}-hup.sock", std::process::id()));
    let sock_s = sock.to_str().unwrap().to_string();
    let file = |backends: &str| {
        format!(
            "workers = 1\ndrain-timeout = \"1s\"\ncontrol = \"{sock_s}\"\n\n[[service]]\nname = \"web\"\ncheck = \"none\"\nlisten = [\"127.0.0.1:{port}\"]\nbackend = [{backends}]\n"
        )
    };
    let f = TempFile::new(
        "hup.toml",
        &file(&format!("\"{}\", \"{}\"", a.addr, b.addr)),
    );
    let mut p = spawn(&["serve", "--config", f.path()], "info");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr, &p);

    // A client loop, one request every 10 ms, for as long as the test runs (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let client = {
        let (stop, ok, failed, seen) = (stop.clone(), ok.clone(), failed.clone(), seen.clone());
        std::thread::spawn(move || {
            for _ in 0..3000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match fetch(addr) {
                    Ok(s) if !s.is_empty() => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        seen.lock().unwrap().push(s);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));

    // The file drops beta, adds gamma and weighs alpha 3.
    std::fs::write(
        &f.0,
        file(&format!("\"{},weight=3\", \"{}\"", a.addr, c.addr)),
    )
    .unwrap();
    p.signal(nix::sys::signal::Signal::SIGHUP);
    let applied = eventually(Duration::from_secs(5), || {
        let nodes = ctl(&sock_s, "show nodes --json");
        nodes.contains(&format!("\"addr\":\"{}\",\"weight\":3", a.addr))
            && nodes.contains(&c.addr.to_string())
            && !nodes.contains(&b.addr.to_string())
    });
    assert!(applied, "{}\n{}", ctl(&sock_s, "show nodes"), p.log());
    seen.lock().unwrap().clear();
    std::thread::sleep(Duration::from_millis(400));
    {
        let s = seen.lock().unwrap();
        assert!(
            s.iter().any(|x| x == "gamma\n"),
            "gamma never served: {s:?}"
        );
        assert!(!s.iter().any(|x| x == "beta\n"), "beta still served: {s:?}");
    }
    assert!(
        p.log().contains("SIGHUP: reloaded: 3 changes applied"),
        "{}",
        p.log()
    );

    // A bad file: nothing changes, the error is logged, traffic goes on.
    std::fs::write(&f.0, file("\"127.0.0.1\"")).unwrap();
    p.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || p
            .log()
            .contains("still serving with the configuration it had")),
        "{}",
        p.log()
    );
    assert!(p.log().contains("backend = \"127.0.0.1\""), "{}", p.log());
    std::thread::sleep(Duration::from_millis(300));
    assert!(ctl(&sock_s, "show nodes").contains(&c.addr.to_string()));
    // `ctl reload` does the same and tells the caller.
    let (code, _, err) = run(&["ctl", "--socket", &sock_s, "reload"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not reloaded") && err.contains("127.0.0.1"),
        "{err}"
    );
    std::fs::write(&f.0, file(&format!("\"{},weight=3\"", a.addr))).unwrap();
    let (code, out, err) = run(&["ctl", "--socket", &sock_s, "reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("reloaded: 1 change applied"), "{out}");

    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert!(
        ok.load(Ordering::Relaxed) > 50,
        "too few requests: {}",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests across the reloads:\n{}",
        p.log()
    );
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0), "{}", p.log());
}

#[test]
fn state_file_keeps_runtime_changes_across_a_restart_and_survives_corruption() {
    let a = Backend::start(says("alpha"));
    let b = Backend::start(says("beta"));
    let c = Backend::start(says("gamma"));
    let dir = std::env::temp_dir().join(format!("fulcrum-conf-{}-state", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state");
    let sock = dir.join("ctl.sock");
    let (state_s, sock_s) = (state.to_str().unwrap(), sock.to_str().unwrap());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (a_s, b_s, c_s) = (a.addr.to_string(), b.addr.to_string(), c.addr.to_string());
    let start = || {
        let p = spawn(
            &[
                "serve",
                "--listen",
                &listen,
                "--backend",
                &a_s,
                "--backend",
                &b_s,
                "--check",
                "none",
                "--control",
                sock_s,
                "--state-file",
                state_s,
                "--drain-timeout",
                "1s",
            ],
            "info",
        );
        wait_listening(listen.parse().unwrap(), &p);
        p
    };
    let stop = |mut p: Proc| {
        p.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0), "{}", p.log());
    };

    let p = start();
    for cmd in [
        format!("set weight {a_s} 7"),
        format!("set state {b_s} drain"),
        format!("add node {c_s} weight 2"),
    ] {
        let reply = ctl(sock_s, &cmd);
        assert!(reply.starts_with("node "), "{cmd}: {reply}");
    }
    assert!(
        eventually(Duration::from_secs(3), || std::fs::read_to_string(&state)
            .is_ok_and(|s| s.contains(&format!("add node {c_s} weight 2")))),
        "state file not written:\n{}",
        p.log()
    );
    stop(p);

    // Restarted with the same flags: the three changes are back.
    let p = start();
    let shown = |p: &Proc| {
        let out = ctl(sock_s, "show nodes --json");
        assert!(!out.is_empty(), "{}", p.log());
        out
    };
    assert!(
        eventually(Duration::from_secs(3), || {
            let n = shown(&p);
            n.contains(&format!("\"addr\":\"{a_s}\",\"weight\":7"))
                && n.contains(&format!("\"addr\":\"{c_s}\",\"weight\":2"))
                && n.contains("\"admin\":\"drain\"")
        }),
        "{}\n{}",
        shown(&p),
        p.log()
    );
    assert!(
        p.log().contains("applying 3 runtime changes"),
        "{}",
        p.log()
    );
    stop(p);

    // A corrupt state file: a warning, the file moved aside, the configuration alone.
    std::fs::write(&state, "set weight nonsense\n").unwrap();
    let p = start();
    // The log is read by a thread: give it a moment to catch up.
    assert!(
        eventually(Duration::from_secs(3), || p
            .log()
            .contains("cannot be used")),
        "{}",
        p.log()
    );
    assert!(dir.join("state.bad").exists());
    let n = shown(&p);
    assert!(
        n.contains(&format!("\"addr\":\"{a_s}\",\"weight\":1")),
        "{n}"
    );
    assert!(!n.contains(&c_s), "{n}");
    assert!(fetch(listen.parse().unwrap()).is_ok());
    stop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
