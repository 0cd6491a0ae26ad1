//! Accepting connections: batching, the connection cap, and running out of descriptors.
//!
//! Every model that accepts on a nonblocking listener calls [`accept_batch`] when epoll says the
//! listener is readable. Three policies live here, once:
//!
//! - **Batching.** `accept4(2)` is called in a loop until EAGAIN, but at most [`ACCEPT_BATCH`]
//!   times per wakeup, so a connection storm cannot starve the connections already open. The
//!   listener is level-triggered: whatever is left in the accept queue wakes us again.
//! - **`--max-conns`.** Past the cap a connection is accepted and closed at once (the client sees
//!   a clean FIN) and counted as refused. Leaving it in the accept queue instead would let it
//!   time out slowly and keep the listener readable, which is worse for everyone.
//! - **EMFILE / ENFILE.** When the process runs out of descriptors, `accept4` fails but the
//!   connection stays in the queue, so a level-triggered listener is readable forever and the
//!   loop would spin at 100% CPU. We use libuv's spare-descriptor trick (`uv__emfile_trick` in
//!   libuv's `src/unix/stream.c`): keep one descriptor open on `/dev/null` in reserve; on EMFILE
//!   close it, accept and immediately close every waiting connection (they are shed with a FIN
//!   instead of hanging), then take the reserve back. If the reserve cannot be re-taken (another
//!   thread used the freed slot), the caller pauses accepting until its next timer tick, which is
//!   nginx's answer to the same problem (`ngx_event_accept` disables accept events for
//!   `accept_mutex_delay`).

use std::fs::File;
use std::io;
use std::sync::{Mutex, OnceLock};

use log::{debug, warn};
use pool::counters::Counter;
use reactor::{Epoll, Events, Interest, TcpListener, TcpStream, Token};

use crate::event_loop::{Control, TICK_PERIOD};

use crate::stats::Stats;

/// Most `accept4` calls per readiness event.
pub const ACCEPT_BATCH: usize = 64;

/// What the listener should do after a batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AcceptState {
    /// Keep the listener registered (level-triggered epoll reports leftovers).
    Continue,
    /// Out of descriptors and no reserve to shed with: stop polling the listener until the
    /// next timer tick, or the loop would spin.
    Pause,
}

/// Accepts up to [`ACCEPT_BATCH`] connections and gives each kept one to `on_conn`.
///
/// `open` is the number of connections this process holds now; connections past `max_conns`
/// are refused.
pub fn accept_batch(
    listener: &TcpListener,
    stats: &Stats,
    max_conns: usize,
    mut on_conn: impl FnMut(TcpStream),
) -> AcceptState {
    for _ in 0..ACCEPT_BATCH {
        match listener.accept() {
            Ok((stream, _peer)) => {
                if stats.open() as usize >= max_conns {
                    stats.refused.incr();
                    debug!("refusing a connection: --max-conns {max_conns} reached");
                    drop(stream);
                    continue;
                }
                stats.accepted.incr();
                // Echo replies are small and latency-bound: never let Nagle hold them back.
                if let Err(e) = stream.set_nodelay(true) {
                    debug!("TCP_NODELAY failed: {e}");
                }
                on_conn(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if is_fd_exhaustion(&e) => {
                stats.fd_exhausted.incr();
                return shed_with_reserve(listener, stats);
            }
            // The client gave up between the handshake and our accept (ECONNABORTED), or a
            // transient kernel shortage: try the next one.
            Err(e) => {
                debug!("accept4 failed: {e}");
                if !is_transient(&e) {
                    warn!("accept4 failed: {e}");
                    break;
                }
            }
        }
    }
    AcceptState::Continue
}

/// The loop of a dedicated listener thread (`listener-pool`, `thread-per-conn`): waits on the
/// listener and on `stop`'s eventfd, accepts in batches and hands every kept connection to
/// `on_conn`, until `stop` is requested. While accept is paused (out of descriptors) it polls
/// again after one tick.
pub fn accept_until_stopped(
    listener: &TcpListener,
    stats: &Stats,
    max_conns: usize,
    stop: &Control,
    mut on_conn: impl FnMut(TcpStream),
) -> io::Result<()> {
    const LISTENER: Token = Token(0);
    const STOP: Token = Token(1);
    let epoll = Epoll::new()?;
    epoll.add(listener, LISTENER, Interest::READABLE)?;
    epoll.add(stop.waker(), STOP, Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let mut paused = false;
    while !stop.stop_requested() {
        epoll.wait(&mut events, paused.then_some(TICK_PERIOD))?;
        if paused {
            paused = epoll.add(listener, LISTENER, Interest::READABLE).is_err();
        }
        if events.iter().any(|e| e.token() == LISTENER)
            && accept_batch(listener, stats, max_conns, &mut on_conn) == AcceptState::Pause
        {
            paused = epoll.delete(listener).is_ok();
        }
    }
    Ok(())
}

/// Opens the spare descriptor. Call once at start-up, before the process can run out.
pub fn reserve_spare_fd() {
    let reserve = spare();
    let mut slot = reserve.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = File::open("/dev/null").ok();
    }
}

fn spare() -> &'static Mutex<Option<File>> {
    static SPARE: OnceLock<Mutex<Option<File>>> = OnceLock::new();
    SPARE.get_or_init(|| Mutex::new(None))
}

fn shed_with_reserve(listener: &TcpListener, stats: &Stats) -> AcceptState {
    let mut slot = spare().lock().unwrap_or_else(|e| e.into_inner());
    if slot.take().is_none() {
        warn!("out of file descriptors and no spare: pausing accept");
        return AcceptState::Pause;
    }
    let mut shed = 0u64;
    // Bounded, so a client that keeps connecting cannot keep us here forever.
    for _ in 0..ACCEPT_BATCH * 16 {
        match listener.accept() {
            Ok((stream, _)) => {
                drop(stream);
                shed += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    stats.refused.add(shed);
    *slot = File::open("/dev/null").ok();
    warn!("out of file descriptors: shed {shed} waiting connections");
    if slot.is_none() {
        AcceptState::Pause
    } else {
        AcceptState::Continue
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == EMFILE || code == ENFILE)
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == ECONNABORTED || code == EPROTO || code == ENOBUFS || code == ENOMEM || code == EPERM
    ) || e.kind() == io::ErrorKind::Interrupted
}

// Linux errno values (asm-generic/errno-base.h, errno.h). Spelled out here because the
// application does not depend on libc: only `reactor` talks to the kernel.
const EPERM: i32 = 1;
const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
const EPROTO: i32 = 71;
const ENOBUFS: i32 = 105;
const ECONNABORTED: i32 = 103;
