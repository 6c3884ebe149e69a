//! A proxied connection: the client socket, the node socket, and the two relay directions.
//!
//! Owned by exactly one worker (in its slab). Holds an `Arc<Node>` so that counters stay
//! right even if the node is removed from the pool while the flow is open.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use super::relay::Half;
use crate::pool::{Node, Stats};

/// Where a connection is in its life.
#[derive(Debug)]
pub enum Phase {
    /// Waiting for the node's connect to complete. `attempt` counts from 0.
    Connecting {
        /// Which attempt this is (0 = first).
        attempt: u32,
    },
    /// Relaying both ways.
    Relaying,
}

/// How a connection ended, for the per-connection debug log.
#[derive(Debug, Clone, Copy)]
pub enum End {
    /// Both sides closed cleanly.
    Done,
    /// A socket error on the client side.
    ClientError,
    /// A socket error on the node side.
    NodeError,
    /// No traffic for `--idle-timeout`.
    Idle,
    /// Every connect attempt failed.
    ConnectFailed,
    /// Cut at shutdown after `--drain-timeout`.
    Shutdown,
    /// Its node was removed and the removal deadline passed.
    Cut,
}

impl End {
    /// The end in words, one token for `key=value` logs.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Done => "closed",
            End::ClientError => "client_error",
            End::NodeError => "node_error",
            End::Idle => "idle_timeout",
            End::ConnectFailed => "connect_failed",
            End::Shutdown => "cut_at_shutdown",
            End::Cut => "cut_by_removal",
        }
    }
}

/// A client connection and its node connection.
#[derive(Debug)]
pub struct Conn {
    /// The worker's index of the connection's service.
    pub lane: usize,
    /// Distinguishes this connection from a later one in the same slab slot (timers).
    pub serial: u64,
    /// Client side.
    pub client: TcpStream,
    /// Client's address.
    pub peer: SocketAddr,
    /// Node side (absent between a failed attempt and the next).
    pub server: Option<TcpStream>,
    /// The node this flow is (being) sent to.
    pub node: Arc<Node>,
    /// Nodes that already failed for this connection (allocated only on retry).
    pub tried: Vec<SocketAddr>,
    /// Life-cycle phase.
    pub phase: Phase,
    /// Client → node.
    pub up: Half,
    /// Node → client.
    pub down: Half,
    /// Last time bytes moved (the worker's loop clock).
    pub last_active: Instant,
    /// When the client was accepted.
    pub started: Instant,
}

impl Conn {
    /// Adds bytes not yet published to the node's and the global counters.
    pub fn flush_counters(&mut self, stats: &Stats) {
        let up = self.up.bytes - self.up.flushed;
        let down = self.down.bytes - self.down.flushed;
        if up > 0 {
            self.node.counters.bytes_in.fetch_add(up, Ordering::Relaxed);
            stats.bytes_in.fetch_add(up, Ordering::Relaxed);
            self.up.flushed = self.up.bytes;
        }
        if down > 0 {
            self.node
                .counters
                .bytes_out
                .fetch_add(down, Ordering::Relaxed);
            stats.bytes_out.fetch_add(down, Ordering::Relaxed);
            self.down.flushed = self.down.bytes;
        }
    }

    /// Both directions finished.
    pub fn finished(&self) -> bool {
        self.up.done() && self.down.done()
    }
}
