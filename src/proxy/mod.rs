//! Proxy-mode forwarding: terminate the client's TCP connection, open one to the chosen
//! node, relay both ways.
//!
//! One [`worker::Worker`] per thread, each with its own mio reactor and its own
//! SO_REUSEPORT listener per listen address (the kernel spreads new connections across
//! them). This module creates the listeners (so bind errors surface at start, before any
//! thread runs) and the workers; what they share with the control plane is
//! [`crate::runtime::Shared`].

pub mod conn;
pub mod pipe;
pub mod relay;
pub mod source_limit;
pub mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::{Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::runtime::{Process, Shared, Workers};
pub use worker::{LaneSender, LaneSpec, WorkerConfig};

/// A listening socket for one worker: SO_REUSEPORT, non-blocking, TCP_NODELAY (accepted
/// sockets inherit it), IPv6 sockets v6-only so `[::]` and `0.0.0.0` can both be listed.
/// `freebind`: bind even if the address is not (yet) local — the VIP of a backup.
pub fn bind_listener(
    addr: SocketAddr,
    backlog: u32,
    freebind: bool,
) -> io::Result<std::net::TcpListener> {
    let s = tcp_socket(addr, Type::STREAM.nonblocking().cloexec(), freebind)?;
    s.set_reuse_port(true)?;
    s.set_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s.into())
}

/// A failed listen on `a`, saying what to do when the cause is a missing capability.
pub fn listen_error(a: SocketAddr, e: &io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EACCES) if a.port() < 1024 => {
            "; a port below 1024 needs CAP_NET_BIND_SERVICE: run as root or \
             setcap cap_net_bind_service=+ep $(command -v fulcrum)"
        }
        Some(libc::EADDRINUSE) => "; another process listens there",
        Some(libc::EADDRNOTAVAIL) => "; no local interface has that address",
        _ => "",
    };
    io::Error::new(e.kind(), format!("cannot listen on {a}: {e}{hint}"))
}

/// A TCP socket for `addr` as both the listeners and the probe want it: SO_REUSEADDR,
/// IPv6 v6-only, and IP_FREEBIND when asked.
fn tcp_socket(addr: SocketAddr, ty: Type, freebind: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
        if freebind {
            s.set_freebind_ipv6(true)?;
        }
    } else if freebind {
        s.set_freebind(true)?;
    }
    Ok(s)
}

/// Fails if something already listens on `addr`. SO_REUSEPORT would otherwise let a
/// second distributor started by the same user share the port silently, each getting
/// part of the traffic. A probe bound without SO_REUSEPORT (SO_REUSEADDR only, which
/// tolerates TIME_WAIT but not a listener) tells; it is closed at once.
pub(crate) fn ensure_no_listener(addr: SocketAddr, freebind: bool) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(()); // an ephemeral port: nothing can hold it yet
    }
    let s = tcp_socket(addr, Type::STREAM.cloexec(), freebind)?;
    s.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(e.kind(), "address in use (another process listens on it)")
        } else {
            e
        }
    })
}

/// One service to serve: its state, its worker settings, and where it listens.
pub struct ServiceListen<'a> {
    /// The service.
    pub shared: Arc<Shared>,
    /// Its worker settings.
    pub cfg: WorkerConfig,
    /// Its `--listen` addresses.
    pub addrs: &'a [SocketAddr],
    /// listen(2) backlog.
    pub backlog: u32,
}

/// Running proxy workers, and where to send them services a reload adds.
pub struct Started {
    /// The threads and their wakers.
    pub workers: Workers,
    /// One per worker, in worker order.
    pub lanes: Vec<LaneSender>,
}

/// Binds every listener of every service for every worker, then starts the workers.
/// `on_exit` is woken when a worker thread ends. `freebind`: IP_FREEBIND (a backup binds
/// its VIP before owning it).
///
/// `inherited`: listening sockets handed over by the process this one replaces (see
/// [`crate::reload`]). They are used for their addresses instead of new ones, spread
/// over the workers (worker `i` takes the `i`-th; extra ones go round-robin, since a
/// socket left unaccepted would strand its queue); a worker without one binds its own.
/// Inherited sockets whose address no service listens on are closed.
pub fn start(
    services: Vec<ServiceListen<'_>>,
    freebind: bool,
    mut inherited: Vec<std::net::TcpListener>,
    n_workers: usize,
    process: &Arc<Process>,
    max_conns: u64,
    on_exit: Arc<Waker>,
) -> io::Result<Started> {
    let mut per_worker: Vec<Vec<LaneSpec>> = (0..n_workers).map(|_| Vec::new()).collect();
    for svc in services {
        let bound = bind_for_workers(svc.addrs, svc.backlog, freebind, n_workers, &mut inherited)?;
        for (lanes, listeners) in per_worker.iter_mut().zip(bound) {
            lanes.push(LaneSpec {
                shared: Arc::clone(&svc.shared),
                cfg: svc.cfg.clone(),
                listeners,
                close: Vec::new(),
            });
        }
    }
    for l in inherited {
        if let Ok(at) = l.local_addr() {
            log::warn!(target: "fulcrum::proxy",
                "inherited listener {at} is not in any service's listen addresses: closed (connections queued on it are reset)");
        }
    }
    let mut listener_fds = Vec::new();
    for lanes in &per_worker {
        for (svc, lane) in lanes.iter().enumerate() {
            for l in &lane.listeners {
                listener_fds.push((svc, std::os::fd::OwnedFd::from(l.try_clone()?)));
            }
        }
    }
    let mut wakers = Vec::with_capacity(n_workers);
    let mut threads = Vec::with_capacity(n_workers);
    let mut senders = Vec::with_capacity(n_workers);
    for (id, lanes) in per_worker.into_iter().enumerate() {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), Token(0))?);
        let (tx, rx) = std::sync::mpsc::channel();
        let w = worker::Worker::new(id, poll, Arc::clone(process), max_conns, lanes, rx)?;
        let exit = Arc::clone(&on_exit);
        let t = std::thread::Builder::new()
            .name(format!("fulcrum-w{id}"))
            .spawn(move || {
                let r = w.run();
                let _ = exit.wake();
                r
            })?;
        wakers.push(waker);
        threads.push(t);
        senders.push(tx);
    }
    Ok(Started {
        workers: Workers {
            wakers,
            threads,
            listener_fds,
        },
        lanes: senders,
    })
}

/// One listener per worker for each of `addrs`: `result[i]` is worker `i`'s. Takes the
/// sockets for these addresses out of `inherited` first.
pub fn bind_for_workers(
    addrs: &[SocketAddr],
    backlog: u32,
    freebind: bool,
    n_workers: usize,
    inherited: &mut Vec<std::net::TcpListener>,
) -> io::Result<Vec<Vec<std::net::TcpListener>>> {
    let mut handed: Vec<(SocketAddr, Vec<std::net::TcpListener>)> =
        addrs.iter().map(|&a| (a, Vec::new())).collect();
    let mut rest = Vec::new();
    for l in inherited.drain(..) {
        let at = l.local_addr()?;
        match handed.iter_mut().find(|(a, _)| *a == at) {
            Some((_, v)) => v.push(l),
            None => rest.push(l),
        }
    }
    *inherited = rest;
    for (a, v) in &handed {
        if v.is_empty() {
            ensure_no_listener(*a, freebind).map_err(|e| listen_error(*a, &e))?;
        }
    }
    let mut per_worker: Vec<Vec<std::net::TcpListener>> = (0..n_workers)
        .map(|_| Vec::with_capacity(addrs.len()))
        .collect();
    for (a, v) in handed {
        let n_inherited = v.len();
        for (j, l) in v.into_iter().enumerate() {
            per_worker[j % n_workers].push(l);
        }
        for ls in per_worker.iter_mut().skip(n_inherited) {
            let l = bind_listener(a, backlog, freebind).map_err(|e| listen_error(a, &e))?;
            ls.push(l);
        }
    }
    Ok(per_worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_port_eacces_names_cap_net_bind_service() {
        let e = io::Error::from_raw_os_error(libc::EACCES);
        let m = listen_error("0.0.0.0:80".parse().unwrap(), &e).to_string();
        assert!(m.starts_with("cannot listen on 0.0.0.0:80: "), "{m}");
        assert!(m.contains("needs CAP_NET_BIND_SERVICE"), "{m}");
        assert!(
            m.contains("setcap cap_net_bind_service=+ep $(command -v fulcrum)"),
            "{m}"
        );
        let m = listen_error("0.0.0.0:8080".parse().unwrap(), &e).to_string();
        assert!(!m.contains("CAP_"), "{m}");
    }
}
