//! Fuzz target for the failover state-sync payload decoder
//! (`fulcrum::ha::sync::decode`, `snapshot_states`, and the maintenance replica's
//! `fulcrum::rollout::replica::decode`).
//!
//! Owns nothing: the payload arrives authenticated, but a peer with a bug (or the key)
//! must still not be able to make the backup panic. Run with
//! `cargo +nightly fuzz run ha_sync`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match fulcrum::ha::sync::decode(data) {
        Ok(fulcrum::ha::sync::Message::Full { lines, .. }) => {
            let _ = fulcrum::ha::sync::snapshot_states(&lines);
        }
        Ok(fulcrum::ha::sync::Message::Maint { lines, .. }) => {
            let _ = fulcrum::rollout::replica::decode(lines.iter().map(String::as_str));
        }
        _ => {}
    }
});
