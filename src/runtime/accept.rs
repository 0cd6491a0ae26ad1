//! The accept gate: batching, the connection cap, and running out of descriptors.
//!
//! Every model that accepts owns one [`AcceptGate`] per accepting thread and calls it when its
//! listener is readable. Three policies live here, once:
//!
//! - **Batching.** `accept4(2)` is called in a loop until EAGAIN, but at most [`ACCEPT_BATCH`]
//!   times per wakeup, so a connection storm cannot starve the connections already open. The
//!   listener is level-triggered: whatever is left in the accept queue wakes us again.
//! - **`--max-conns`.** Past the cap a connection is accepted and closed at once and counted as
//!   refused. Leaving it in the accept queue instead would let it time out slowly and keep the
//!   listener readable, which is worse for everyone. Before closing, whatever the client already
//!   sent is read and dropped (within a small bound): closing a socket with unread input makes
//!   Linux answer with RST instead of FIN (tcp(7), RFC 2525 section 2.17), and a client deserves
//!   the clean FIN.
//! - **EMFILE / ENFILE.** When the process runs out of descriptors, `accept4` fails but the
//!   connection stays in the queue, so a level-triggered listener is readable forever and the loop
//!   would spin at 100% CPU. We use libuv's spare-descriptor trick (`uv__emfile_trick` in libuv's
//!   `src/unix/stream.c`): keep one descriptor open on `/dev/null` in reserve; on EMFILE close it,
//!   accept and shed every waiting connection, then take the reserve back. Each gate has a spare of
//!   its own, because a process-wide one is lost when two accepting threads race for the slot one
//!   of them freed. If the reserve cannot be re-taken (another thread used the slot), the gate
//!   pauses the listener until the next tick, which is nginx's answer to the same problem
//!   (`ngx_event_accept` disables accept events for `accept_mutex_delay`), and every tick tries
//!   to take the spare back, so it is never lost for good.

use std::fs::File;
use std::io;
use std::sync::Arc;

use log::{debug, warn};
use pool::counters::Counter;
use reactor::{Epoll, Events, Interest, TcpListener, TcpStream, Token};

use super::mailbox::Mailbox;
use super::{LISTENER, TICK_PERIOD};
use crate::stats::Stats;

/// Most `accept4` calls per readiness event.
pub const ACCEPT_BATCH: usize = 64;

/// Most bytes read and dropped from a connection refused at once.
const REFUSE_DRAIN: usize = 64 * 1024;

/// One accepting thread's listener and policies. See the module docs.
pub struct AcceptGate {
    listener: Arc<TcpListener>,
    max_conns: usize,
    /// This gate's reserve descriptor on `/dev/null`; `None` while it is spent.
    spare: Option<File>,
    /// The listener is out of the epoll set until the next tick.
    paused: bool,
    /// Registered with `EPOLLEXCLUSIVE`: several loops watch this same listener.
    exclusive: bool,
}

impl AcceptGate {
    /// A gate for `listener`, refusing connections past `max_conns` open ones. Takes its spare
    /// descriptor now, before the process can run out.
    pub fn new(listener: Arc<TcpListener>, max_conns: usize) -> AcceptGate {
        AcceptGate {
            listener,
            max_conns,
            spare: open_spare(),
            paused: false,
            exclusive: false,
        }
    }

    /// A gate for one of several loops that share `listener` (`shared-accept`): it registers
    /// with `EPOLLEXCLUSIVE` (epoll_ctl(2)), so that a new connection wakes one waiting loop,
    /// not all of them (the thundering herd).
    pub fn shared(listener: Arc<TcpListener>, max_conns: usize) -> AcceptGate {
        AcceptGate {
            exclusive: true,
            ..AcceptGate::new(listener, max_conns)
        }
    }

    /// The listener.
    pub fn listener(&self) -> &Arc<TcpListener> {
        &self.listener
    }

    /// Adds the listener to `epoll` under [`LISTENER`].
    pub fn register(&self, epoll: &Epoll) -> io::Result<()> {
        let interest = match self.exclusive {
            true => Interest::READABLE.exclusive(),
            false => Interest::READABLE,
        };
        epoll.add(self.listener.as_ref(), LISTENER, interest)
    }

    /// The listener is readable: accepts a batch and hands every admitted connection to
    /// `on_conn`. Out of descriptors with no spare, it takes the listener out of `epoll` until
    /// the next [`on_tick`](AcceptGate::on_tick).
    pub fn on_ready(&mut self, epoll: &Epoll, stats: &Stats, on_conn: impl FnMut(TcpStream)) {
        if !self.accept_batch(stats, on_conn) && !self.paused {
            self.paused = epoll.delete(self.listener.as_ref()).is_ok();
        }
    }

    /// Housekeeping on the loop's tick: takes the spare back if it is spent, and puts a paused
    /// listener back in `epoll`.
    pub fn on_tick(&mut self, epoll: &Epoll) {
        if self.spare.is_none() {
            self.spare = open_spare();
        }
        if self.paused {
            self.paused = self.register(epoll).is_err();
        }
    }

    /// Takes the spare descriptor back if it is spent: the tick of a loop that accepts
    /// without epoll (io_uring's multishot accept), whose pausing is its own business.
    pub fn refill_spare(&mut self) {
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }

    /// Stops accepting (a drain): the listener leaves `epoll`; dropping the gate closes it.
    pub fn close(self, epoll: &Epoll) {
        if !self.paused {
            let _ = epoll.delete(self.listener.as_ref());
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections and hands every admitted one to `on_conn`.
    /// Returns false when out of descriptors with no spare: the caller must stop watching the
    /// listener until its next tick, or it would spin.
    pub fn accept_batch(&mut self, stats: &Stats, mut on_conn: impl FnMut(TcpStream)) -> bool {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, _peer)) => {
                    if let Some(stream) = self.admit(stream, stats) {
                        on_conn(stream);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_fd_exhaustion(&e) => return self.on_fd_exhaustion(stats),
                // The client gave up between the handshake and our accept (ECONNABORTED), or a
                // transient kernel shortage: try the next one.
                Err(e) if is_transient(&e) => debug!("accept4 failed: {e}"),
                Err(e) => {
                    warn!("accept4 failed: {e}");
                    break;
                }
            }
        }
        true
    }

    /// Applies `--max-conns` to a connection just accepted (by `accept4` or by io_uring):
    /// refuses it past the cap, else counts it and returns it ready to serve.
    pub fn admit(&self, stream: TcpStream, stats: &Stats) -> Option<TcpStream> {
        if stats.open() as usize >= self.max_conns {
            debug!(
                "refusing a connection: --max-conns {} reached",
                self.max_conns
            );
            refuse(stream, stats);
            return None;
        }
        stats.accepted.incr();
        // Echo replies are small and latency-bound: never let Nagle hold them back.
        if let Err(e) = stream.set_nodelay(true) {
            debug!("TCP_NODELAY failed: {e}");
        }
        Some(stream)
    }

    /// `accept4` failed with EMFILE or ENFILE: spend the spare to shed the waiting connections.
    /// Returns false when there was no spare (the caller pauses accepting until its tick).
    ///
    /// `fd_exhausted` counts the times a waiting connection met the limit. An io_uring accept
    /// fails at the limit even when nobody is waiting (it takes a descriptor before it looks at
    /// the queue), and its loop retries every tick: those empty sheds are not counted, and
    /// logged only at debug level, or a server at its limit would report one every 250 ms.
    pub fn on_fd_exhaustion(&mut self, stats: &Stats) -> bool {
        let Some(spare) = self.spare.take() else {
            stats.fd_exhausted.incr();
            warn!("out of file descriptors and no spare: pausing accept");
            return false;
        };
        drop(spare);
        let mut shed = 0;
        // Bounded, so a client that keeps connecting cannot keep us here forever.
        for _ in 0..ACCEPT_BATCH * 16 {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    refuse(stream, stats);
                    shed += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.spare = open_spare();
        if shed > 0 {
            stats.fd_exhausted.incr();
            warn!("out of file descriptors: shed {shed} waiting connections");
        } else {
            debug!("out of file descriptors, and no connection waiting");
        }
        self.spare.is_some()
    }
}

/// The loop of a dedicated listener thread (`listener-pool`, `thread-per-conn`): waits on the
/// listener and on `mailbox`, accepts in batches and hands every admitted connection to
/// `on_conn`, until a stop is requested. Its own small epoll set: the thread does nothing else.
pub fn run_listener_thread(
    mut gate: AcceptGate,
    stats: &Stats,
    mailbox: &Mailbox,
    mut on_conn: impl FnMut(TcpStream),
) -> io::Result<()> {
    const STOP: Token = Token(1);
    let epoll = Epoll::new()?;
    gate.register(&epoll)?;
    epoll.add(mailbox.waker(), STOP, Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    while !mailbox.stop_requested() {
        epoll.wait(&mut events, Some(TICK_PERIOD))?;
        if events.iter().any(|e| e.token() == LISTENER) {
            gate.on_ready(&epoll, stats, &mut on_conn);
        }
        gate.on_tick(&epoll);
    }
    Ok(())
}

/// Closes a connection the server will not serve, reading and dropping what the client
/// already sent first (bounded), so that it sees FIN rather than RST.
fn refuse(stream: TcpStream, stats: &Stats) {
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSE_DRAIN {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
    stats.refused.incr();
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Whether an accept failed for lack of descriptors (EMFILE, ENFILE).
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == EMFILE || code == ENFILE)
}

/// Whether an accept failed for a reason that concerns one connection or one moment (the
/// client gave up, a transient shortage), so accepting goes on.
pub fn is_transient(e: &io::Error) -> bool {
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
