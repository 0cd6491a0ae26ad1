//! The main thread of the multi-threaded models: signals, periodic stats, orderly stop.
//!
//! Signals are blocked in every thread (the mask is set before any thread is spawned and
//! inherited) and read here from a signalfd, so no thread is ever interrupted by an
//! asynchronous handler. The supervisor is a tiny event loop of its own: one epoll set with the
//! signalfd, a timerfd for `--stats-interval`, and an eventfd that tells it every worker has
//! finished.
//!
//! First SIGINT/SIGTERM: call the model's `stop` (which asks each loop to drain and close its
//! listener), then wait for the threads. Second signal: exit at once, without draining.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{info, warn};
use reactor::{Epoll, Events, Interest, Signals, Timer, Token, Waker};

const SIGNALS: Token = Token(0);
const TICK: Token = Token(1);
const DONE: Token = Token(2);

/// What the supervisor needs from a model.
pub struct Supervised<'a> {
    /// The signalfd, created before any thread was spawned.
    pub signals: Signals,
    /// Print a stats line this often.
    pub stats_interval: Option<Duration>,
    /// Builds the current stats line.
    pub report: &'a dyn Fn() -> String,
    /// Asks every thread to drain and stop; called once, on the first signal.
    pub stop: &'a dyn Fn(),
    /// The threads to wait for.
    pub threads: Vec<JoinHandle<()>>,
}

/// Runs until the threads have finished after a stop (or until a second signal exits), then
/// prints the final stats line.
pub fn supervise(job: Supervised<'_>) -> io::Result<()> {
    let epoll = Epoll::new()?;
    epoll.add(&job.signals, SIGNALS, Interest::READABLE)?;
    let tick = Timer::new()?;
    if let Some(every) = job.stats_interval {
        tick.set_interval(every)?;
    }
    epoll.add(&tick, TICK, Interest::READABLE)?;
    let done = std::sync::Arc::new(Waker::new()?);
    epoll.add(done.as_ref(), DONE, Interest::READABLE)?;

    // A joiner thread turns "all threads returned" into an epoll event, so that the main
    // thread can wait for it and for a second signal at the same time.
    let threads = job.threads;
    let done_tx = std::sync::Arc::clone(&done);
    std::thread::Builder::new()
        .name("rawloop-joiner".into())
        .spawn(move || {
            for thread in threads {
                if thread.join().is_err() {
                    warn!("a server thread panicked");
                }
            }
            let _ = done_tx.wake();
        })?;

    let mut stopping = false;
    let mut events = Events::with_capacity(8);
    loop {
        epoll.wait(&mut events, None)?;
        for event in events.iter() {
            match event.token() {
                SIGNALS => {
                    while let Some(signal) = job.signals.read()? {
                        if stopping {
                            warn!("second {signal:?}: exiting without draining");
                            println!("{} final=1", (job.report)());
                            std::process::exit(0);
                        }
                        info!("{signal:?}: draining");
                        stopping = true;
                        (job.stop)();
                    }
                }
                TICK => {
                    tick.read()?;
                    println!("{}", (job.report)());
                }
                _ => {
                    println!("{} final=1", (job.report)());
                    return Ok(());
                }
            }
        }
    }
}
