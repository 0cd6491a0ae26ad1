//! The readiness driver: a [`Core`] fed by `recv(2)` and `send(2)` on a socket that epoll (or a
//! blocking wait) said was ready.
//!
//! One call to [`Conn::serve`] is one *turn*: flush what is queued, process input the core set
//! aside, then read while the core wants input (at most `read_budget` reads), handing each read
//! to the core and each reply to the kernel, and finally translate the core's [`Next`] into the
//! epoll interest the model should register. The turn never blocks on a nonblocking socket; on
//! a blocking one it blocks in at most one read (`read_budget` 1).
//!
//! Replies take the shortest path: when nothing is queued, [`Core::receive`] hands the bytes
//! straight from the read buffer to `send(2)` (through the driver's `Sender`), so an echo costs no copy;
//! only what the kernel refuses is queued in the core.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use log::{debug, error};
use pool::counters::Counter;
use reactor::{Interest, Shutdown, TcpStream};

use super::core::{CloseReason, Core, Costly, Limits, Next, Received, Stop, Transmit, Turn};
use super::Scratch;
use crate::protocol::Protocol;
use crate::stats::Stats;

/// What the caller of [`Conn::serve`] should do with the connection next.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Keep it and call `serve` again when this readiness arrives.
    Wait(Interest),
    /// Like `Wait`, but the turn's read budget ran out before the socket said EAGAIN: more
    /// input may already be waiting. A level-triggered registration reports it again by itself;
    /// an edge-triggered one will not (no new data, no new edge), so its owner must serve the
    /// connection again without waiting for an event.
    More(Interest),
    /// Its turn's budget ran out with input still set aside: call `serve` again soon, after
    /// serving the others (its bytes are in the process, so no epoll event will come for them).
    Yield,
    /// A costly request is next: hand the connection to a worker (only with `Costly::Defer`).
    Offload,
    /// Done: drop the `Conn`, which closes the socket.
    Close(CloseReason),
}

/// One client connection: its socket and its [`Core`].
pub struct Conn {
    stream: TcpStream,
    core: Core,
    /// epoll said the peer sent its FIN (`EPOLLRDHUP`): read on past a short read, to the
    /// end of the stream, because an edge-triggered registration announces the FIN only once.
    peer_closed: bool,
}

impl Conn {
    /// Wraps an accepted socket.
    pub fn new(stream: TcpStream, protocol: Protocol, limits: &Limits) -> Conn {
        Conn {
            stream,
            core: Core::new(protocol, limits, Instant::now()),
            peer_closed: false,
        }
    }

    /// epoll reported `EPOLLRDHUP`: the client sent FIN. The next turn reads to the end of the
    /// stream even after a short read.
    pub fn peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// The socket, for registering with epoll.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The state machine, for timers and drains.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Starts a graceful end: see [`Core::begin_close`]. The next `serve` does the work.
    pub fn begin_close(&mut self, deadline: Instant) {
        self.core.begin_close(deadline);
    }

    /// Ends the connection abruptly (idle timeout) from a thread that does not serve it:
    /// `shutdown(SHUT_RDWR)` makes the socket ready and every further read or write fail, so
    /// whoever serves it next closes it. Returns false if it was already aborted.
    pub fn abort(&mut self) -> bool {
        if !self.core.abort() {
            return false;
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        true
    }

    /// Makes progress on this connection: one turn (see the module docs).
    pub fn serve(
        &mut self,
        scratch: &mut Scratch,
        limits: &Limits,
        costly: Costly,
        stats: &Stats,
    ) -> Status {
        // A panic here would be a bug in this crate, never the client's doing; still, it must
        // cost one connection, not the thread that serves thousands. AssertUnwindSafe holds
        // because the connection is closed right after, and the scratch buffers (which a panic
        // may leave half-swapped) are replaced.
        let mut moved = false;
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            self.turn(scratch, limits, costly, stats, &mut moved)
        }));
        if moved {
            // One clock read per turn, not one per syscall.
            self.core.touch(Instant::now());
        }
        match result {
            Ok(Ok(status)) => status,
            Ok(Err(err)) => {
                // A reset or broken pipe is the client's business, not the server's: log it
                // quietly and close this connection only.
                debug!("closing connection: {err}");
                stats.errors.incr();
                Status::Close(CloseReason::Error)
            }
            Err(_) => {
                error!("bug: serving a connection panicked; closing that connection only");
                *scratch = Scratch::new();
                stats.errors.incr();
                Status::Close(CloseReason::Error)
            }
        }
    }

    fn turn(
        &mut self,
        scratch: &mut Scratch,
        limits: &Limits,
        costly: Costly,
        stats: &Stats,
        moved: &mut bool,
    ) -> io::Result<Status> {
        if self.core.deadline().is_some_and(|d| Instant::now() >= d) {
            return Ok(Status::Close(CloseReason::Finished));
        }
        let Scratch { read, out } = scratch;
        let core = &mut self.core;
        let mut tx = Sender {
            stream: &self.stream,
            stats,
            moved,
        };
        let mut turn = Turn::new(out, costly, stats);
        flush(core, &mut tx)?;
        if let Received::Stopped(stop) = core.resume(limits, &mut turn, &mut tx)? {
            if let Some(status) = stopped(stop) {
                return Ok(status);
            }
        }
        let to_eof = self.peer_closed;
        let reads = read_and_receive(core, read, limits, &mut turn, &mut tx, to_eof)?;
        if let Reads::Stopped(status) = reads {
            return Ok(status);
        }
        if core.fin_due() {
            // Lingering and flushed by the replies just sent: no further event may come to
            // send the FIN, so send it now.
            flush(core, &mut tx)?;
        }
        Ok(match (status(core.next(limits)), reads) {
            (Status::Wait(interest), Reads::BudgetSpent) => Status::More(interest),
            (status, _) => status,
        })
    }
}

/// How the reads of a turn ended.
enum Reads {
    /// The socket is drained (EAGAIN, a short read, EOF), or the core wants no more input.
    Done,
    /// `read_budget` full reads: the socket may hold more.
    BudgetSpent,
    /// The core stopped the turn (its `WORK` budget, an offload).
    Stopped(Status),
}

/// Reads while the core wants input, at most `read_budget` times, handing each read to the
/// core. With `to_eof`, a short read does not end the turn: the FIN is already there.
fn read_and_receive(
    core: &mut Core,
    read: &mut [u8],
    limits: &Limits,
    turn: &mut Turn<'_>,
    tx: &mut Sender<'_>,
    to_eof: bool,
) -> io::Result<Reads> {
    let mut reads = 0;
    while core.wants_read(limits) {
        if reads == limits.read_budget {
            return Ok(Reads::BudgetSpent);
        }
        let n = match tx.stream.read(read) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        };
        reads += 1;
        *tx.moved = true;
        if n == 0 {
            core.received_eof(turn, tx)?;
            break;
        }
        tx.stats.bytes_in.add(n as u64);
        if let Received::Stopped(stop) = core.receive(&read[..n], limits, turn, tx)? {
            if let Some(status) = stopped(stop) {
                return Ok(Reads::Stopped(status));
            }
            // High water: whether to read on is the loop condition's business. The replies
            // may all have gone out (then the core wants input again), or the core is paused
            // or holds input set aside. Stopping here instead would leave bytes in the socket
            // that an edge-triggered registration never announces again.
        }
        if n < read.len() && !to_eof {
            // A short read means the socket held less than we asked for: it is drained now.
            // Trying again would cost a read(2) that returns EAGAIN on nearly every message
            // (nginx's ngx_unix_recv reasons the same). Data that arrives later makes a
            // level-triggered socket readable again and raises a new edge on an
            // edge-triggered one, so nothing is missed either way. Not so a FIN that arrived
            // with the data: its edge is already spent, so after `EPOLLRDHUP` we read on to
            // the end of the stream.
            break;
        }
    }
    Ok(Reads::Done)
}

/// The status a stopped `receive` turns into, or `None` to go on with the turn (high water:
/// stop reading, wait for the socket to drain).
fn stopped(stop: Stop) -> Option<Status> {
    match stop {
        Stop::HighWater => None,
        Stop::Budget => Some(Status::Yield),
        Stop::Offload => Some(Status::Offload),
    }
}

/// The core's wishes as an epoll interest.
fn status(next: Next) -> Status {
    match next {
        Next::Wait { read, write } => {
            let mut interest = Interest::NONE;
            if read {
                interest = interest | Interest::READABLE;
            }
            if write {
                interest = interest | Interest::WRITABLE;
            }
            Status::Wait(interest)
        }
        Next::Yield => Status::Yield,
        Next::Offload => Status::Offload,
        Next::Close(reason) => Status::Close(reason),
    }
}

/// Writes the queued replies, then our FIN when the core says it is due.
fn flush(core: &mut Core, tx: &mut Sender<'_>) -> io::Result<()> {
    core.flush(tx)?;
    if core.fin_due() {
        // ENOTCONN here means the peer is already gone; the read side will see it.
        let _ = tx.stream.shutdown(Shutdown::Write);
        core.fin_sent();
    }
    Ok(())
}

/// The readiness driver's [`Transmit`]: `send(2)` until all is written or the kernel says
/// EAGAIN.
struct Sender<'a> {
    stream: &'a TcpStream,
    stats: &'a Stats,
    moved: &'a mut bool,
}

impl Transmit for Sender<'_> {
    fn transmit(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < bytes.len() {
            match self.stream.write(&bytes[written..]) {
                Ok(n) => {
                    written += n;
                    self.stats.bytes_out.add(n as u64);
                    *self.moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }
}
