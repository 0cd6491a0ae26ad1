//! `thread-per-conn`: a listener thread accepts; each connection gets a thread of its own.
//!
//! The oldest multi-threaded server design, and the easiest to read: the connection's thread
//! runs the blocking driver ([`serve_blocking`]), a plain loop around blocking `recv(2)`. The
//! kernel does the scheduling: a thread blocked in `recv` costs no CPU.
//!
//! Its costs are the ones our notes list. Each thread has a stack: we ask for
//! [`STACK_SIZE`] (128 KiB) instead of Rust's default 2 MiB, because a connection needs little
//! stack and its buffers live on the heap; the reservation is virtual memory, but page tables,
//! the kernel's task struct and the per-thread scratch buffers (128 KiB) are real, so ten
//! thousand connections cost about a gigabyte. Creating a thread per connection costs tens of
//! microseconds. And without a cap, a connection storm becomes a thread explosion, so
//! `--max-conns` is enforced at accept (past it connections are refused, not queued).
//!
//! At shutdown the listener thread publishes a drain deadline; each connection thread sees it
//! between two turns (at least every [`POLL_INTERVAL`]) and performs the same lingering close as
//! every other model.

use std::io;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use log::{error, warn};
use pool::counters::Counter;
use reactor::{Signals, TcpListener, TcpStream};

use crate::config::Settings;
use crate::conn::blocking::{prepare_blocking, serve_blocking, POLL_INTERVAL};
use crate::runtime::accept::{run_listener_thread, AcceptGate};
use crate::runtime::mailbox::Mailbox;
use crate::runtime::names;
use crate::runtime::supervisor::{supervise, Supervised};
use crate::stats::Stats;
use crate::{report, server};

/// Stack reserved for each connection thread.
pub const STACK_SIZE: usize = 128 * 1024;

/// The drain deadline, published once by the listener thread at shutdown.
type Drain = OnceLock<Instant>;

/// Runs the listener thread, which spawns a thread per connection, supervised.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let stats = Stats::new();
    let settings = Arc::new(settings.clone());
    let mailbox = Mailbox::stop_only()?;
    let watch = Arc::downgrade(&listener);
    let acceptor = {
        let (settings, stats, mailbox) = (
            Arc::clone(&settings),
            Arc::clone(&stats),
            Arc::clone(&mailbox),
        );
        std::thread::Builder::new()
            .name(names::ACCEPT.into())
            .spawn(move || {
                if let Err(e) = listen(&settings, &stats, listener, &mailbox) {
                    error!("listener thread failed: {e}");
                }
            })?
    };
    let report = || report::line(&settings, &stats, Weak::upgrade(&watch).as_deref(), None);
    let stop = || mailbox.request_stop();
    supervise(Supervised::new(
        &settings,
        signals,
        &report,
        &stop,
        vec![acceptor],
    ))
}

/// The listener thread: accept and spawn until stopped, then publish the drain deadline and
/// wait for the connection threads.
fn listen(
    settings: &Arc<Settings>,
    stats: &Arc<Stats>,
    listener: Arc<TcpListener>,
    mailbox: &Mailbox,
) -> io::Result<()> {
    let drain: Arc<Drain> = Arc::new(OnceLock::new());
    let gate = AcceptGate::new(listener, settings.args.max_conns);
    run_listener_thread(gate, stats, mailbox, |stream| {
        spawn_connection(settings, stats, &drain, stream);
    })?;
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
        .name(names::CONN.into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let (protocol, limits) = (settings.args.protocol, &settings.limits);
            let drain = || drain.get().copied();
            serve_blocking(
                stream,
                protocol,
                limits,
                settings.idle_timeout,
                &stats2,
                drain,
            );
            stats2.closed.incr();
        });
    if let Err(e) = spawned {
        // EAGAIN from clone(2): the thread limit. The closure, and the socket, are dropped.
        warn!("cannot spawn a connection thread: {e}");
        stats.closed.incr();
    }
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
