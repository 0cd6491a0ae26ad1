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
//! Idle timeout: `SO_RCVTIMEO`/`SO_SNDTIMEO` make a blocked read or write return EAGAIN after
//! `--idle-timeout`, and the loop then closes a connection idle that long. Shutdown: the
//! listener thread keeps a duplicate of every connection's descriptor and calls
//! `shutdown(SHUT_RD)` on each, which wakes every blocked `recv` with end-of-file: each thread
//! then flushes and closes exactly as if its client had half-closed.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use log::{error, warn};
use pool::counters::Counter;
use reactor::{Epoll, Events, Interest, Shutdown, Signals, TcpListener, TcpStream};

use crate::accept::{accept_batch, AcceptState};
use crate::config::Settings;
use crate::conn::{Conn, Costly, Limits, Status};
use crate::event_loop::{with_scratch, Control, CONTROL, LISTENER, TICK_PERIOD};
use crate::slab::Slab;
use crate::stats::Stats;
use crate::supervisor::{supervise, Supervised};
use crate::{report, server};

/// Stack reserved for each connection thread.
pub const STACK_SIZE: usize = 128 * 1024;

/// Descriptors of the open connections, duplicated, so the listener thread can shut them
/// down at drain time.
type Registry = Mutex<Slab<TcpStream>>;

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
            .name("rawloop-listener".into())
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
    let registry: Arc<Registry> = Arc::new(Mutex::new(Slab::new()));
    let epoll = Epoll::new()?;
    epoll.add(listener.as_ref(), LISTENER, Interest::READABLE)?;
    epoll.add(control.waker(), CONTROL, Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let mut paused = false;
    while !control.stop_requested() {
        epoll.wait(&mut events, paused.then_some(TICK_PERIOD))?;
        if paused {
            paused = epoll
                .add(listener.as_ref(), LISTENER, Interest::READABLE)
                .is_err();
        }
        if events.iter().any(|e| e.token() == LISTENER) {
            let state = accept_batch(&listener, stats, settings.args.max_conns, |stream| {
                spawn_connection(settings, stats, &registry, stream);
            });
            if state == AcceptState::Pause {
                paused = epoll.delete(listener.as_ref()).is_ok();
            }
        }
    }
    drop(epoll);
    drop(listener);
    drain(settings, stats, &registry);
    Ok(())
}

fn spawn_connection(
    settings: &Arc<Settings>,
    stats: &Arc<Stats>,
    registry: &Arc<Registry>,
    stream: TcpStream,
) {
    let key = match prepare(settings, &stream) {
        Ok(dup) => registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dup),
        Err(e) => {
            warn!("cannot set up a blocking connection: {e}");
            stats.closed.incr();
            return;
        }
    };
    let (settings2, stats2, registry2) = (
        Arc::clone(settings),
        Arc::clone(stats),
        Arc::clone(registry),
    );
    let spawned = std::thread::Builder::new()
        .name("rawloop-conn".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            serve_blocking(&settings2, &stats2, stream);
            registry2
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            stats2.closed.incr();
        });
    if let Err(e) = spawned {
        // EAGAIN from clone(2): the thread limit. The closure, and the socket, are dropped.
        warn!("cannot spawn a connection thread: {e}");
        registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        stats.closed.incr();
    }
}

/// Switches the socket to blocking mode with timeouts, and returns a duplicate descriptor.
fn prepare(settings: &Settings, stream: &TcpStream) -> io::Result<TcpStream> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(settings.idle_timeout)?;
    stream.set_write_timeout(settings.idle_timeout)?;
    let dup: OwnedFd = stream.as_fd().try_clone_to_owned()?;
    Ok(TcpStream::from(dup))
}

/// The connection's whole life, on its own thread. Also used by `process-per-conn`'s children.
pub fn serve_blocking(settings: &Settings, stats: &Stats, stream: TcpStream) {
    // One read per `serve`: a second read on a blocking socket would wait for the client.
    let limits = Limits {
        read_budget: 1,
        ..settings.limits
    };
    let mut conn = Conn::new(stream, settings.args.protocol, &limits);
    with_scratch(|scratch| loop {
        match conn.serve(scratch, &limits, Costly::Inline, stats) {
            Status::Close(_) => return,
            Status::Wait(_) | Status::Offload => {
                if settings
                    .idle_timeout
                    .is_some_and(|t| conn.idle_for(Instant::now()) >= t)
                {
                    stats.idle_closed.incr();
                    return;
                }
            }
        }
    });
}

/// Half-closes every connection, waits for their threads to finish (up to the drain timeout),
/// then shuts the stragglers down completely so their blocked writes fail and they exit.
fn drain(settings: &Settings, stats: &Stats, registry: &Registry) {
    let shut_all = |how: Shutdown| {
        let registry = registry.lock().unwrap_or_else(|p| p.into_inner());
        for key in registry.keys() {
            if let Some(stream) = registry.get(key) {
                let _ = stream.shutdown(how);
            }
        }
    };
    shut_all(Shutdown::Read);
    let deadline = Instant::now() + settings.drain_timeout;
    while stats.open() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if stats.open() > 0 {
        warn!(
            "drain deadline passed: closing {} connections",
            stats.open()
        );
        shut_all(Shutdown::Both);
        let grace = Instant::now() + Duration::from_secs(1);
        while stats.open() > 0 && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
