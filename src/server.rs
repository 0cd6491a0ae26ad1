//! Binding shared by every model: the listener(s) and the `listening on` line.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;

use log::{info, warn};
use reactor::{ListenOptions, TcpListener};

use crate::config::{Settings, Steer};

/// Binds a listener on `--bind` (optionally with SO_REUSEPORT, on `addr` instead).
pub fn bind(settings: &Settings, addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    if addr.ip().is_unspecified() {
        warn!("binding {addr}: the server is reachable from every network interface");
    }
    let backlog = settings.args.backlog;
    if let Some(max) = reactor::somaxconn().filter(|&max| backlog > max) {
        warn!("--backlog {backlog} exceeds net.core.somaxconn; the kernel caps it at {max}");
    }
    let options = ListenOptions {
        backlog,
        reuse_port,
        ..ListenOptions::default()
    };
    TcpListener::bind(addr, &options)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Binds `n` SO_REUSEPORT listeners on `--bind`; the first picks the port when it is 0. With
/// `--reuseport-steer cpu` the group then spreads connections by CPU: listener `i` gets those
/// received on CPU `i % n`.
pub fn bind_group(settings: &Settings, n: usize) -> io::Result<Vec<Arc<TcpListener>>> {
    let first = bind(settings, settings.args.bind, true)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![Arc::new(first)];
    for _ in 1..n {
        listeners.push(Arc::new(bind(settings, addr, true)?));
    }
    if settings.args.reuseport_steer == Steer::Cpu {
        listeners[0]
            .steer_by_cpu(n as u32)
            .map_err(|e| io::Error::new(e.kind(), format!("--reuseport-steer cpu: {e}")))?;
        info!("connections steered to the listener of their CPU (SO_ATTACH_REUSEPORT_CBPF)");
    }
    Ok(listeners)
}

/// Prints the one line scripts wait for: `listening on <addr>`, with the real port.
pub fn announce(listener: &TcpListener) -> io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    Ok(addr)
}
