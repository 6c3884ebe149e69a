//! `--max-conns-per-source`: at most N open connections per client address, counted
//! across every worker (nginx's `limit_conn` keyed by `$binary_remote_addr`, HAProxy's
//! `src_conn_cur`).
//!
//! What it is: a table of open-connection counts per client IP, split into shards, each
//! behind its own mutex, so workers accepting from different clients rarely meet on one
//! lock; a client's entry disappears when its count drops to zero, so the table holds
//! only clients with open connections. Only built when the flag is set: without it the
//! accept path does not touch it. IPv4-mapped IPv6 clients count as their IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

const SHARDS: usize = 64;

/// Open-connection counts per client address, with a ceiling.
#[derive(Debug)]
pub struct SourceLimit {
    max: u32,
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
}

impl SourceLimit {
    /// At most `max` (≥ 1) open connections per client address.
    pub fn new(max: u32) -> SourceLimit {
        SourceLimit {
            max: max.max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The ceiling.
    pub fn max(&self) -> u32 {
        self.max
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        // Fibonacci hashing of the address's folded bits: neighbours spread out.
        let folded: u64 = match ip {
            IpAddr::V4(v4) => u64::from(u32::from(v4)),
            IpAddr::V6(v6) => {
                let b = u128::from(v6);
                (b as u64) ^ ((b >> 64) as u64)
            }
        };
        let i = (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize;
        &self.shards[i % SHARDS]
    }

    /// Counts a new connection from `ip`; false (nothing counted) when `ip` already has
    /// the maximum open.
    pub fn try_acquire(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let mut m = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` counted by [`Self::try_acquire`] has closed.
    pub fn release(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut m = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
    /// Open connections counted for `ip`.
    #[cfg(test)]
    pub fn open(&self, ip: IpAddr) -> u32 {
        let ip = ip.to_canonical();
        let m = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
        m.get(&ip).copied().unwrap_or(0)
    }
    /// Client addresses with open connections (the table's size).
    #[cfg(test)]
    pub fn sources(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ceiling_per_address_and_release() {
        let l = SourceLimit::new(2);
        assert!(l.try_acquire(ip("192.0.2.1")));
        assert!(l.try_acquire(ip("192.0.2.1")));
        assert!(!l.try_acquire(ip("192.0.2.1")), "third refused");
        assert!(l.try_acquire(ip("192.0.2.2")), "another client unaffected");
        assert_eq!(l.open(ip("192.0.2.1")), 2);
        l.release(ip("192.0.2.1"));
        assert!(l.try_acquire(ip("192.0.2.1")), "room again after a close");
        for _ in 0..2 {
            l.release(ip("192.0.2.1"));
        }
        l.release(ip("192.0.2.2"));
        assert_eq!(l.sources(), 0, "entries go when their count reaches 0");
        l.release(ip("192.0.2.9")); // never counted: no underflow, no entry
        assert_eq!(l.sources(), 0);
    }

    #[test]
    fn mapped_ipv4_is_the_same_client() {
        let l = SourceLimit::new(1);
        assert!(l.try_acquire(ip("192.0.2.1")));
        assert!(!l.try_acquire(ip("::ffff:192.0.2.1")));
        assert!(l.try_acquire(ip("2001:db8::1")));
        assert_eq!(SourceLimit::new(0).max(), 1, "0 is raised to 1");
    }

    #[test]
    fn counts_are_exact_across_threads() {
        let l = Arc::new(SourceLimit::new(1000));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    let mut got = 0;
                    for i in 0..500u32 {
                        let a = IpAddr::from([10, 0, (i % 7) as u8, t]);
                        if l.try_acquire(ip("198.51.100.7")) {
                            got += 1;
                        }
                        assert!(l.try_acquire(a));
                        l.release(a);
                    }
                    got
                })
            })
            .collect();
        let total: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1000, "exactly the ceiling was granted");
        assert_eq!(l.open(ip("198.51.100.7")), 1000);
        assert_eq!(l.sources(), 1);
    }
}
