//! Fuzz target: the control command grammar (`fulcrum::control::command::parse`) and
//! its line framing (`LineBuffer`), as fed by the Unix socket and the HTTP API.
//!
//! Bytes are pushed through the framer in two chunks (split where the first byte
//! says), every framed line is parsed, and any command that parses must render
//! (`Display`) to a line that parses back to the same command — the property failover
//! state sync relies on. Must never panic.
#![no_main]

use fulcrum::control::command::{parse, LineBuffer};
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
    }
    // Straight from a string too (the HTTP body path skips the framer).
    if let Ok(s) = std::str::from_utf8(rest) {
        let _ = parse(s);
    }
});
