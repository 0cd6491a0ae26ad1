//! The blocking driver: one connection, one thread (or process), blocking `recv(2)`.
//!
//! The oldest way to drive a connection, and the easiest to read: [`Conn::serve`] is called in
//! a plain loop with a read budget of one, so each turn blocks in at most one read. The kernel
//! does the scheduling: a thread blocked in `recv` costs no CPU.
//!
//! Timers without an event loop: every blocked `recv` or `send` returns EAGAIN after
//! [`POLL_INTERVAL`] (`SO_RCVTIMEO`/`SO_SNDTIMEO`, socket(7)), so the thread regularly gets a
//! chance to notice an idle timeout or a drain. When the model publishes a drain deadline the
//! connection performs the same lingering close as in every other model (flush, FIN, read until
//! the client's FIN). We do not wake the thread with `shutdown(SHUT_RD)`: on Linux that makes
//! reads return 0 before the client has finished, and a socket shut for reading answers the
//! client's next bytes with RST, which destroys echo bytes still in flight.

use std::io;
use std::time::{Duration, Instant};

use reactor::TcpStream;

use super::core::{Costly, Limits};
use super::readiness::{Conn, Status};
use super::with_scratch;
use crate::protocol::Protocol;
use crate::stats::Stats;

/// How long a blocked read or write waits before returning to check the clock.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Switches an accepted socket to blocking mode, with reads and writes that give up after
/// [`POLL_INTERVAL`].
pub fn prepare_blocking(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL_INTERVAL))?;
    stream.set_write_timeout(Some(POLL_INTERVAL))
}

/// The connection's whole life on the calling thread. `drain` returns the drain deadline once
/// the server is stopping; it is asked between turns, so at least every [`POLL_INTERVAL`] and
/// between two costly requests of a pipeline (a turn yields after its `WORK` budget).
pub fn serve_blocking(
    stream: TcpStream,
    protocol: Protocol,
    limits: &Limits,
    idle_timeout: Option<Duration>,
    stats: &Stats,
    mut drain: impl FnMut() -> Option<Instant>,
) {
    // One read per turn: a second read on a blocking socket would wait for the client.
    let limits = Limits {
        read_budget: 1,
        ..*limits
    };
    let mut conn = Conn::new(stream, protocol, &limits);
    let mut closing = false;
    with_scratch(|scratch| loop {
        if !closing {
            if let Some(deadline) = drain() {
                conn.begin_close(deadline);
                closing = true;
            }
        }
        if let Status::Close(_) = conn.serve(scratch, &limits, Costly::Inline, stats) {
            return;
        }
        if conn
            .core()
            .expired(Instant::now(), idle_timeout, stats)
            .is_some()
        {
            return;
        }
    });
}
