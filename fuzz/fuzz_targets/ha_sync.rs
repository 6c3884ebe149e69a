//! Fuzz target for the failover state-sync payload decoder
//! (`fulcrum::ha::sync::decode` and `snapshot_states`).
//!
//! Owns nothing: the payload arrives authenticated, but a peer with a bug (or the key)
//! must still not be able to make the backup panic. Run with
//! `cargo +nightly fuzz run ha_sync`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(fulcrum::ha::sync::Message::Full { lines, .. }) = fulcrum::ha::sync::decode(data) {
        let _ = fulcrum::ha::sync::snapshot_states(&lines);
    }
});
