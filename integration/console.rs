//! The operator's web console in a real browser: the real binary serves the page and the
//! API on loopback, and `integration/console/check.mjs` drives headless Debian Chromium
//! (through `playwright-core`, no browser download) against it.
//!
//! Needs `node`/`npm` and `/usr/bin/chromium` (`.ci/run` installs them); runs
//! `npm ci --prefix integration/console` itself when `node_modules` is missing.
//! Set `CONSOLE_SCREENSHOT=/path/shot.png` to keep a screenshot of the page.

mod common;

use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// Longer than check.mjs's own 60 s limit, so its message is the one seen.
const CHECK_LIMIT: Duration = Duration::from_secs(150);
const NPM_LIMIT: Duration = Duration::from_secs(300);

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("fulcrum-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` to completion within `limit` (killed by PID past it); returns the exit
/// code (None if killed or signalled) and stdout+stderr.
fn run(mut cmd: Command, limit: Duration) -> (Option<i32>, String) {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut r| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    })
    .collect();
    let end = Instant::now() + limit;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() >= end {
            eprintln!("{what} still running after {limit:?}: killing it");
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let out = readers
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("");
    (code, out)
}

/// Installs playwright-core from the committed lockfile unless already there.
fn ensure_playwright(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir);
    let (code, out) = run(npm, NPM_LIMIT);
    assert_eq!(
        code,
        Some(0),
        "npm ci --prefix {} failed:\n{out}",
        dir.display()
    );
}

#[test]
fn console_drains_a_node_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no browser at {chromium}: apt-get install chromium (.ci/run does)"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/console");
    ensure_playwright(&dir);

    // Echo backends hold each connection open until the client closes it, so the
    // browser can watch the active counts rise.
    let a = Backend::start(echo);
    let b = Backend::start(echo);

    let tmp = TempDir::new("console");
    let token = format!(
        "console-test-{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let token_file = tmp.0.join("token");
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token_file)
            .unwrap();
        // A trailing newline, as `echo TOKEN > file` leaves.
        writeln!(f, "{token}").unwrap();
    }

    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http_arg = http.to_string();
    let token_arg = token_file.to_str().unwrap().to_owned();
    let (p, proxy) = start_fulcrum(
        &[a.addr, b.addr],
        &[
            "--scheduler",
            "rr",
            "--http",
            &http_arg,
            "--http-token-file",
            &token_arg,
        ],
    );
    wait_listening(http, &p);

    let mut node = Command::new("node");
    node.arg(dir.join("check.mjs"))
        .arg(format!("http://{http}/"))
        .arg(&token)
        .arg(proxy.to_string())
        .arg(a.addr.to_string())
        .env("CHROMIUM", &chromium);
    let (code, out) = run(node, CHECK_LIMIT);
    println!("{out}");
    assert_eq!(
        code,
        Some(0),
        "check.mjs failed (exit {code:?}):\n{out}\nfulcrum log:\n{}",
        p.log()
    );
    assert!(
        a.count() + b.count() >= 4,
        "the browser saw connections the backends did not: a {} b {}",
        a.count(),
        b.count()
    );
}
