//! Fuzz target: the control command grammar (`fulcrum::control::command::parse`, and
//! `parse_scoped` with its `SERVICE/ADDR` and service words) and its line framing
//! (`LineBuffer`), as fed by the Unix socket, the HTTP API, the state file and failover
//! sync.
//!
//! Bytes are pushed through the framer in two chunks (split where the first byte
//! says), every framed line is parsed, and any command that parses must render
//! (`Display`) to a line that parses back to the same command — the property failover
//! state sync and the state file rely on (a scoped line may leave out the service
//! `default`, and only that one). Must never panic.
#![no_main]

use fulcrum::control::command::{parse, parse_scoped, LineBuffer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(rest.len());
    let mut lines = LineBuffer::new();
    lines.push(&rest[..split]);
    lines.push(&rest[split..]);
    lines.finish();
    let mut n = 0;
    while let Some(line) = lines.next_line() {
        n += 1;
        assert!(n <= rest.len() + 1, "more lines than bytes");
        let Ok(line) = line else { continue };
        if let Ok(cmd) = parse(&line) {
            let canonical = cmd.to_string();
            assert_eq!(parse(&canonical).as_ref(), Ok(&cmd), "{line:?} -> {canonical:?}");
        }
        if let Ok(s) = parse_scoped(&line) {
            let canonical = s.to_string();
            let back = parse_scoped(&canonical);
            let back = back.as_ref().unwrap_or_else(|e| panic!("{line:?} -> {canonical:?}: {e}"));
            assert_eq!(back.cmd, s.cmd, "{line:?} -> {canonical:?}");
            let same_service = back.service == s.service
                || (back.service.is_none() && s.service.as_deref() == Some("default"));
            assert!(same_service, "{line:?} -> {canonical:?}");
        }
    }
    // Straight from a string too (the HTTP body path skips the framer).
    if let Ok(s) = std::str::from_utf8(rest) {
        let _ = parse(s);
        let _ = parse_scoped(s);
    }
});
