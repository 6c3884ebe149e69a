//! Wall-clock time for what crosses hosts (heartbeat timestamps). Monotonic time
//! (`Instant`) is used everywhere else; sans-IO cores take either as an argument.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the UNIX epoch (0 if the clock is before it).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
