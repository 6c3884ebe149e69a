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
fn several_services_are_validated_then_refused() {
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
    for cmd in ["check", "serve"] {
        let (code, _, err) = run(&[cmd, "--config", ok.path()]);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains("several services in one process are not supported yet"),
            "{cmd}: {err}"
        );
    }
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
