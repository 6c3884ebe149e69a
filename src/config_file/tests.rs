//! Unit tests of the loader: each bad case names its line and key; flags override the
//! file; `[defaults]`, arrays and booleans; several services; `check`'s output.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::ForwardMode;

const PATH: &str = "/etc/fulcrum.toml";

fn load(text: &str) -> Result<FileConfig, FileErrors> {
    FileConfig::from_text(Path::new(PATH), text, &Overrides::default(), 20_000)
}

fn load_with(text: &str, flags: &[&str]) -> Result<FileConfig, FileErrors> {
    let mut argv = vec!["--config", PATH];
    argv.extend_from_slice(flags);
    let m = keys::serve_command().try_get_matches_from(argv).unwrap();
    FileConfig::from_text(Path::new(PATH), text, &Overrides::from_matches(&m), 20_000)
}

/// The error text of a file that must be refused.
fn err(text: &str) -> String {
    load(text).expect_err("must be refused").to_string()
}

fn one(text: &str) -> ServeConfig {
    let mut v = load(text).unwrap().into_services().unwrap();
    assert_eq!(v.len(), 1, "one service");
    v.remove(0)
}

const WEB: &str =
    "[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = [\"127.0.0.1:9001\"]\n";

#[test]
fn minimal_file_builds_todays_config() {
    let c = one(WEB);
    assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.backends.len(), 1);
    assert_eq!(c.mode, ForwardMode::Proxy);
    assert_eq!(c.connect_timeout, Duration::from_secs(2), "clap's default");
    assert!(c.splice);
}

#[test]
fn unknown_key_names_line_and_suggests() {
    let e = err(&format!("{WEB}chek = \"tcp\"\n"));
    assert_eq!(
        e,
        format!("{PATH}:5: chek = \"tcp\": unknown key (did you mean \"check\"?)")
    );
    let e = err(&format!("workerz = 2\n{WEB}"));
    assert!(
        e.starts_with(&format!("{PATH}:1: workerz = 2: unknown key")),
        "{e}"
    );
    assert!(e.contains("\"workers\""), "{e}");
    let e = err(&format!("config = \"/x\"\n{WEB}"));
    assert!(
        e.contains(":1: config = \"/x\": a configuration file cannot name another"),
        "{e}"
    );
}

#[test]
fn keys_in_the_wrong_place_are_refused() {
    // A global key after a table header belongs to that table in TOML.
    let e = err(&format!("{WEB}workers = 2\n"));
    assert!(
        e.contains(":5: workers = 2: workers is a global key"),
        "{e}"
    );
    let e = err(&format!("retries = 1\n{WEB}"));
    assert!(
        e.contains(":1: retries = 1: retries is a per-service key"),
        "{e}"
    );
    let e = err(&format!("[defaults]\nname = \"x\"\n{WEB}"));
    assert!(
        e.contains(":2: name = \"x\": a name belongs in each [[service]]"),
        "{e}"
    );
}

#[test]
fn duplicate_service_names_are_refused() {
    let text = format!("{WEB}\n[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:8081\"]\nbackend = [\"127.0.0.1:9001\"]\n");
    let e = err(&text);
    assert!(
        e.contains(&format!(
            "{PATH}:7: name = \"web\": service name already used at line 2"
        )),
        "{e}"
    );
}

#[test]
fn a_listen_address_of_two_services_is_refused() {
    let text = format!(
        "{WEB}\n[[service]]\nname = \"api\"\nlisten = [\"127.0.0.1:8443\",\n  \"127.0.0.1:8080\"]\nbackend = [\"127.0.0.1:9002\"]\n"
    );
    let e = err(&text);
    assert!(
        e.contains(&format!(
            "{PATH}:9: listen = \"127.0.0.1:8080\": listen address 127.0.0.1:8080 is also used by service \"web\" (line 2)"
        )),
        "{e}"
    );
    // A wildcard on the same port clashes too.
    let text = format!(
        "{WEB}\n[[service]]\nname = \"api\"\nlisten = [\"0.0.0.0:8080\"]\nbackend = [\"127.0.0.1:9002\"]\n"
    );
    assert!(err(&text).contains(":8: listen = \"0.0.0.0:8080\""));
}

#[test]
fn backend_without_port_names_line_key_and_value() {
    let text = "[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:8080\"]\nbackend = [\n  \"127.0.0.1:9001\",\n  \"10.0.0.1\",\n]\n";
    assert_eq!(
        err(text),
        format!("{PATH}:6: backend = \"10.0.0.1\": has no port (expected HOST:PORT)")
    );
}

#[test]
fn bad_duration_names_line_and_key() {
    let e = err(&format!(
        "drain-timeout = \"30 s\"\n{WEB}connect-timeout = \"2x\"\n"
    ));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 2, "{e}");
    assert!(
        lines[0].starts_with(&format!("{PATH}:1: drain-timeout = \"30 s\": ")),
        "{e}"
    );
    assert!(
        lines[1].starts_with(&format!("{PATH}:6: connect-timeout = \"2x\": ")),
        "{e}"
    );
}

#[test]
fn wrong_toml_types_are_named() {
    for (line, want) in [
        (
            "retries = true",
            "retries = true: expected a string, got a boolean",
        ),
        (
            "retries = 1.5",
            "retries = 1.5: expected a string, got a float",
        ),
        (
            "listen = 8080",
            "listen = 8080: expected an array of strings, got an integer",
        ),
        (
            "backend = [\"127.0.0.1:1\", 2]",
            "expected an array of strings, got an integer in it (2)",
        ),
        (
            "splice = 1",
            "splice = 1: expected true or false, got an integer",
        ),
        (
            "check = { kind = \"tcp\" }",
            "expected a string, got a table",
        ),
    ] {
        let mut text = format!("[[service]]\nname = \"web\"\n{line}\n");
        for base in [
            "listen = [\"127.0.0.1:8080\"]\n",
            "backend = [\"127.0.0.1:9001\"]\n",
        ] {
            if !base.starts_with(&line[..4]) {
                text.push_str(base);
            }
        }
        let e = load(&text).expect_err(line).to_string();
        assert!(
            e.contains(&format!(":3: {want}")) || e.contains(":3: ") && e.contains(want),
            "{line}: {e}"
        );
    }
    let e = err("preempt = \"yes\"\n[[service]]\nname = \"x\"\n");
    assert!(
        e.contains(":1: preempt = \"yes\": expected true or false, got a string"),
        "{e}"
    );
    let e = err("[service]\nname = \"web\"\n");
    assert!(e.contains("write each service as [[service]]"), "{e}");
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let e = err("workers = 2\nlisten = [\n\"a\" \"b\"]\n");
    assert!(
        e.starts_with(&format!("{PATH}:3: TOML syntax, column")),
        "{e}"
    );
    let e = err("a = 1\na = 2\n");
    assert!(e.starts_with(&format!("{PATH}:2: TOML syntax")), "{e}");
}

#[test]
fn missing_service_keys_name_the_service() {
    let e = err("[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:8080\"]\n");
    assert_eq!(
        e,
        format!("{PATH}:2: service \"web\": missing required key(s): backend")
    );
    let e = err("workers = 1\n");
    assert!(e.contains("no [[service]] table"), "{e}");
    let e = err("[[service]]\nlisten = [\"127.0.0.1:8080\"]\nbackend = [\"127.0.0.1:1\"]\n");
    assert!(e.contains(":2: a [[service]] has no name"), "{e}");
    let e = err("[[service]]\nname = \"a b\"\n");
    assert!(e.contains(":2: name = \"a b\": character ' '"), "{e}");
}

#[test]
fn validation_errors_point_at_the_key() {
    let e = err(&format!("{WEB}check-timeout = \"0s\"\n"));
    assert_eq!(
        e,
        format!("{PATH}:5: check-timeout = \"0s\": every probe would fail at once (e.g. 1s; --check none turns checks off)")
    );
    let e = err(
        &format!("{WEB}backend = [\"127.0.0.1:1\", \"127.0.0.1:1,weight=2\"]\n")
            .replace("backend = [\"127.0.0.1:9001\"]\n", ""),
    );
    assert!(
        e.contains(":4: backend = \"127.0.0.1:1\": --backend 127.0.0.1:1 is given twice"),
        "{e}"
    );
    let e = err(&format!("http-token-file = \"/nonexistent/token\"\n{WEB}"));
    assert!(
        e.contains(":1: http-token-file = \"/nonexistent/token\": "),
        "{e}"
    );
}

#[test]
fn defaults_apply_where_a_service_does_not_set_the_key() {
    let text = "[defaults]\nretries = 4\ncheck = \"none\"\n\n[[service]]\nname = \"a\"\nlisten = [\"127.0.0.1:1\"]\nbackend = [\"127.0.0.1:2\"]\n\n[[service]]\nname = \"b\"\nlisten = [\"127.0.0.1:3\"]\nbackend = [\"127.0.0.1:4\"]\nretries = 1\n";
    let f = load(text).unwrap();
    let s = f.services();
    assert_eq!((s[0].name.as_str(), s[0].config.retries), ("a", 4));
    assert_eq!((s[1].name.as_str(), s[1].config.retries), ("b", 1));
    assert_eq!(
        s[1].config.health.kind,
        crate::health::config::CheckKind::None
    );
    assert_eq!((s[0].line, s[1].line), (6, 11));
}

#[test]
fn several_services_each_keep_their_name_and_settings() {
    let two = format!("{WEB}\n[[service]]\nname = \"api\"\nlisten = [\"127.0.0.1:8443\"]\nbackend = [\"127.0.0.1:9002\"]\nscheduler = \"lc\"\n");
    let v = load(&two).unwrap().into_services().unwrap();
    let names: Vec<&str> = v.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web", "api"]);
    assert_eq!(v[1].listen, ["127.0.0.1:8443".parse().unwrap()]);
    assert_eq!(v[1].scheduler, crate::scheduler::SchedulerKind::Lc);
    assert_ne!(v[0].scheduler, v[1].scheduler);
    // Direct mode serves one service per process.
    let direct = two.replace(
        "name = \"api\"",
        "name = \"api\"\nmode = \"direct\"\ninterface = \"lo\"",
    );
    if let Ok(f) = load(&direct) {
        let e = f.into_services().unwrap_err().to_string();
        assert!(
            e.contains("direct mode serves one service per process"),
            "{e}"
        );
    }
    // Every service's errors are reported, not the first one's only.
    let bad = two.replace("9001", "x").replace("9002", "y");
    let e = err(&bad);
    assert_eq!(e.lines().count(), 2, "{e}");
    assert!(
        e.contains(":4: backend") && e.contains(":9: backend"),
        "{e}"
    );
}

#[test]
fn default_is_a_name_for_one_service_only() {
    let one = "[[service]]\nname = \"default\"\nlisten = \"127.0.0.1:8080\"\nbackend = [\"127.0.0.1:1\"]\n";
    assert!(load(one).is_ok());
    let two = format!("{one}[[service]]\nname = \"api\"\nlisten = \"127.0.0.1:8081\"\nbackend = [\"127.0.0.1:2\"]\n");
    let e = err(&two);
    assert!(e.contains(":2: name = \"default\": reserved"), "{e}");
}

#[test]
fn arrays_and_a_single_string_for_repeatable_keys() {
    let c = one("[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\nbackend = [\"127.0.0.1:1\", \"127.0.0.1:2,weight=3\", \"127.0.0.1:3,backup\"]\n");
    assert_eq!(c.listen.len(), 1);
    let w: Vec<(u32, bool)> = c.backends.iter().map(|b| (b.weight, b.backup)).collect();
    assert_eq!(w, [(1, false), (3, false), (1, true)]);
}

#[test]
fn booleans_become_switches_or_on_off() {
    assert!(!one(&format!("{WEB}splice = false\n")).splice);
    assert!(!one(&format!("{WEB}splice = \"off\"\n")).splice);
    assert!(one(&format!("{WEB}splice = true\n")).splice);
    let argv_of = |text: &str| {
        let mut errors = FileErrors::default();
        let doc = parse::parse(Path::new(PATH), text, &mut errors);
        assert!(errors.is_empty(), "{errors}");
        args::argv(&doc, &doc.services[0], &Overrides::default())
    };
    let a = argv_of(&format!(
        "preempt = false\n[defaults]\nhash-seed = 0x10\nsplice = false\n{WEB}"
    ));
    assert!(a.contains(&"--no-preempt".into()), "{a:?}");
    assert!(a.contains(&"--hash-seed=16".into()), "{a:?}");
    assert!(a.contains(&"--splice=off".into()), "{a:?}");
    let a = argv_of(&format!(
        "preempt = true\n[defaults]\naccess-log = true\n{WEB}"
    ));
    assert!(a.contains(&"--access-log".into()), "{a:?}");
    let a = argv_of(&format!("{WEB}access-log = false\n"));
    assert!(
        !a.iter().any(|x| x.to_string_lossy().contains("access-log")),
        "{a:?}"
    );
    assert!(one(&format!("{WEB}access-log = true\n")).access_log);
    assert!(!one(&format!("{WEB}access-log = false\n")).access_log);
    let a = argv_of(&format!("preempt = true\n{WEB}"));
    assert!(a.contains(&"--preempt".into()), "{a:?}");
    // A value that starts with a dash stays a value.
    let a = argv_of(&format!("notify = \"-x\"\n{WEB}"));
    assert!(a.contains(&"--notify=-x".into()), "{a:?}");
}

#[test]
fn flags_override_the_file() {
    let text = format!("workers = 3\ndrain-timeout = \"9s\"\n[defaults]\nretries = 4\n{WEB}connect-timeout = \"3s\"\n");
    let c = load_with(
        &text,
        &[
            "--workers",
            "2",
            "--retries",
            "1",
            "--connect-timeout",
            "500ms",
            "--backend",
            "127.0.0.1:7000",
            "--backend",
            "127.0.0.1:7001",
        ],
    )
    .unwrap()
    .into_services()
    .map(|mut v| v.remove(0))
    .unwrap();
    assert_eq!(c.workers, 2, "a global key");
    assert_eq!(c.retries, 1, "a [defaults] key");
    assert_eq!(
        c.connect_timeout,
        Duration::from_millis(500),
        "a service key"
    );
    let b: Vec<String> = c.backends.iter().map(|b| b.addr.to_string()).collect();
    assert_eq!(
        b,
        ["127.0.0.1:7000", "127.0.0.1:7001"],
        "a list is replaced, not extended"
    );
    assert_eq!(
        c.drain_timeout,
        Duration::from_secs(9),
        "what no flag names stays"
    );
    // An error in a key the command line replaces does not count.
    assert!(load_with(&format!("{WEB}retries = \"many\"\n"), &["--retries", "1"]).is_ok());
}

#[test]
fn check_output_is_a_valid_file_that_normalises_to_itself() {
    let text = format!("workers = 2\npreempt = false\n[defaults]\nsplice = false\n{WEB}backend = [\"127.0.0.1:1\", \"127.0.0.1:2,weight=2\"]\n")
        .replace("backend = [\"127.0.0.1:9001\"]\n", "");
    let out = load(&text).unwrap().render();
    assert!(out.contains("\nworkers = 2\n"), "{out}");
    assert!(out.contains("\npreempt = false\n"), "{out}");
    assert!(out.contains("\nsplice = false\n"), "{out}");
    assert!(
        out.contains("\nconnect-timeout = \"2s\"  # default\n"),
        "{out}"
    );
    assert!(
        out.contains("\nbackend = [\"127.0.0.1:1\", \"127.0.0.1:2,weight=2\"]\n"),
        "{out}"
    );
    assert!(out.contains("\n# check-host: not set\n"), "{out}");
    // Read back, it means the same: the "# default" marks go (now set in the file), but
    // for `access-log = false`, which gives no flag and so stays the default.
    let again = load(&out).unwrap().render();
    let marked: Vec<&str> = again
        .lines()
        .filter(|l| l.ends_with("  # default"))
        .collect();
    assert_eq!(marked, ["access-log = false  # default"], "{again}");
    assert_eq!(
        out.replace("  # default", ""),
        again.replace("  # default", "")
    );
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "[[service]]",
        "service = 1",
        "service = [1, \"x\"]",
        "defaults = 3",
        "[[defaults]]\nretries = 1",
        "[[service]]\nname = 7",
        "[[service]]\nname = \"\"",
        "[[service]]\n[service.x]\ny = 1",
        "listen = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "\u{feff}workers = 1",
        "hash-seed = 99999999999999999999999999999999999999999",
        "[[service]]\nname = \"w\"\nlisten = [\"\u{0}\"]\nbackend = \"\\u0000:1\"",
    ] {
        let _ = load(text).map(|f| f.render());
        fuzz_structure(text.as_bytes());
    }
    fuzz_structure(&[0xff, 0xfe, b'[']);
}

#[test]
fn scaleout_keys_build_the_bgp_config() {
    let c = one(&format!(
        "bgp-as = 65001\nbgp-peer = [\"10.0.0.1,as=65000,hold=9s,bfd\", \"10.0.0.2,as=65000\"]\n\
         announce = \"10.0.0.100/32\"\nannounce-min-healthy = 2\nbfd-interval = \"50ms\"\n{WEB}"
    ));
    let so = c.scaleout.expect("scale-out configured");
    assert_eq!(so.local_as, 65001);
    assert_eq!(so.peers.len(), 2);
    assert!(so.peers[0].bfd && !so.peers[1].bfd);
    assert_eq!(so.announce.len(), 1);
    assert_eq!(so.min_healthy, 2);
    assert_eq!(so.bfd_interval, Duration::from_millis(50));
    let e = err(&format!("bgp-as = 65001\nbgp-peer = \"10.0.0.1\"\n{WEB}"));
    assert!(e.contains("bgp-peer") && e.contains("missing as=N"), "{e}");
}

#[test]
fn direct_service_takes_several_listen_addresses_of_both_families() {
    let text = "interface = \"eth0\"\n[[service]]\nname = \"dr\"\nmode = \"direct\"\n\
                listen = [\"10.0.0.100:80\", \"[fd99::100]:80\", \"10.0.0.100:443\"]\n\
                backend = [\"10.0.0.21:80\", \"[fd99::22]:443\"]\n";
    let c = one(text);
    let ForwardMode::Direct(d) = &c.mode else {
        panic!("{:?}", c.mode)
    };
    assert_eq!(
        d.listen,
        vec![
            "10.0.0.100:80".parse().unwrap(),
            "[fd99::100]:80".parse().unwrap(),
            "10.0.0.100:443".parse().unwrap()
        ]
    );
}
