//! Fuzz target: the node agent's heartbeat parser must never panic on any datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fulcrum::wire::heartbeat::parse(data, b"fuzz-key-0123456789");
});
