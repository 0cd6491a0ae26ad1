//! `thread-per-conn`: a listener thread accepts; each connection gets a thread of its own.
//!
//! The oldest multi-threaded server design, and the easiest to read: the connection's thread
//! uses blocking I/O, so [`Conn::serve`] is called in a plain loop with a read budget of one.
//! The kernel does the scheduling: a thread blocked in `recv(2)` costs no CPU.
//!
//! Its costs are the ones our notes list. Each thread has a stack: we ask for
//! [`STACK_SIZE`] (128 KiB) instead of Rust's default 2 MiB, because `serve` needs little stack
//! and its buffers live on the heap; the reservation is virtual memory, but page tables, the
//! kernel's task struct and the per-thread scratch buffers (128 KiB) are real, so ten thousand
//! connections cost about a gigabyte. Creating a thread per connection costs tens of
//! microseconds. And without a cap, a connection storm becomes a thread explosion, so
//! `--max-conns` is enforced at accept (past it connections are refused, not queued).
//!
//! Timers without an event loop: every blocked `recv` or `send` returns EAGAIN after
//! [`POLL_INTERVAL`] (`SO_RCVTIMEO`/`SO_SNDTIMEO`), so the thread regularly gets a chance to
//! notice an idle timeout or a shutdown. At shutdown the listener thread publishes a drain
//! deadline; each connection thread sees it within one interval and performs the same lingering
//! close as every other model (flush, FIN, read until the client's FIN). We do not wake the
//! threads with `shutdown(SHUT_RD)`: on Linux that makes reads return 0 before the client has
//! finished, and a socket shut for reading answers the client's next bytes with RST, which
//! destroys echo bytes still in flight.

use std::io;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use log::{error, warn};
use pool::counters::Counter;
use reactor::{Signals, TcpListener, TcpStream};

use crate::accept::accept_until_stopped;
use crate::config::Settings;
use crate::conn::{Conn, Costly, Limits, Status};
use crate::event_loop::{with_scratch, Control};
use crate::stats::Stats;
use crate::supervisor::{supervise, Supervised};
use crate::{report, server};

/// Stack reserved for each connection thread.
pub const STACK_SIZE: usize = 128 * 1024;

/// How long a blocked read or write waits before returning to check the clock.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The drain deadline, published once by the listener thread at shutdown.
type Drain = OnceLock<Instant>;

/// Runs the listener thread, which spawns a thread per connection, supervised.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let stats = Stats::new();
    let settings = Arc::new(settings.clone());
    let control = Control::new(0)?;
    let watch = Arc::downgrade(&listener);
    let acceptor = {
        let (settings, stats, control) = (
            Arc::clone(&settings),
            Arc::clone(&stats),
            Arc::clone(&control),
        );
        std::thread::Builder::new()
            .name("rawloop-accept".into())
            .spawn(move || {
                if let Err(e) = listen(&settings, &stats, listener, &control) {
                    error!("listener thread failed: {e}");
                }
            })?
    };
    let report = || report::line(&settings, &stats, Weak::upgrade(&watch).as_deref(), None);
    let stop = || control.request_stop();
    supervise(Supervised {
        signals,
        stats_interval: settings.stats_interval,
        report: &report,
        stop: &stop,
        threads: vec![acceptor],
    })
}

fn listen(
    settings: &Arc<Settings>,
    stats: &Arc<Stats>,
    listener: Arc<TcpListener>,
    control: &Control,
) -> io::Result<()> {
    let drain: Arc<Drain> = Arc::new(OnceLock::new());
    accept_until_stopped(
        &listener,
        stats,
        settings.args.max_conns,
        control,
        |stream| {
            spawn_connection(settings, stats, &drain, stream);
        },
    )?;
    drop(listener);
    wait_for_drain(settings, stats, &drain);
    Ok(())
}

fn spawn_connection(
    settings: &Arc<Settings>,
    stats: &Arc<Stats>,
    drain: &Arc<Drain>,
    stream: TcpStream,
) {
    if let Err(e) = prepare_blocking(&stream) {
        warn!("cannot set up a blocking connection: {e}");
        stats.closed.incr();
        return;
    }
    let (settings, stats2, drain) = (Arc::clone(settings), Arc::clone(stats), Arc::clone(drain));
    let spawned = std::thread::Builder::new()
        .name("rawloop-conn".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            serve_blocking(&settings, &stats2, stream, || drain.get().copied());
            stats2.closed.incr();
        });
    if let Err(e) = spawned {
        // EAGAIN from clone(2): the thread limit. The closure, and the socket, are dropped.
        warn!("cannot spawn a connection thread: {e}");
        stats.closed.incr();
    }
}

/// Switches an accepted socket to blocking mode, with reads and writes that give up after
/// [`POLL_INTERVAL`].
pub fn prepare_blocking(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL_INTERVAL))?;
    stream.set_write_timeout(Some(POLL_INTERVAL))
}

/// The connection's whole life, on its own thread (or, in `process-per-conn`, its own
/// process). `drain` returns the drain deadline once the server is stopping.
pub fn serve_blocking(
    settings: &Settings,
    stats: &Stats,
    stream: TcpStream,
    drain: impl Fn() -> Option<Instant>,
) {
    // One read per `serve`: a second read on a blocking socket would wait for the client.
    let limits = Limits {
        read_budget: 1,
        ..settings.limits
    };
    let mut conn = Conn::new(stream, settings.args.protocol, &limits);
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
        let now = Instant::now();
        if conn.expired(now, settings.idle_timeout) {
            if settings
                .idle_timeout
                .is_some_and(|t| conn.idle_for(now) >= t)
            {
                stats.idle_closed.incr();
            }
            return;
        }
    });
}

/// Publishes the drain deadline, then waits for the connection threads to finish: each one
/// closes by the deadline at the latest (plus one poll interval to notice it).
fn wait_for_drain(settings: &Settings, stats: &Stats, drain: &Drain) {
    let deadline = Instant::now() + settings.drain_timeout;
    let _ = drain.set(deadline);
    let give_up = deadline + 2 * POLL_INTERVAL;
    while stats.open() > 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(10));
    }
    if stats.open() > 0 {
        warn!(
            "{} connection threads still running after the drain deadline",
            stats.open()
        );
    }
}
