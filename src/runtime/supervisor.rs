//! The main thread of the multi-threaded models: signals, periodic stats, orderly stop.
//!
//! Signals are blocked in every thread (the mask is set before any thread is spawned and
//! inherited) and read here from a signalfd, so no thread is ever interrupted by an
//! asynchronous handler. The supervisor is a tiny event loop of its own: one epoll set with the
//! signalfd, a timerfd for `--stats-interval`, a timerfd for the drain deadline, and an eventfd
//! that tells it every worker thread has finished.
//!
//! First SIGINT/SIGTERM: call the model's `stop` (which asks each loop to drain and close its
//! listener), then wait for the threads. Second signal: exit at once, without draining
//! ([`crate::runtime::shutdown`]). And the drain deadline is kept whatever the threads do: a
//! thread still busy [`DEADLINE_GRACE`] after `--drain-timeout` (longer than one `WORK` request)
//! does not hold the process; the supervisor prints the final line and exits.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::warn;
use reactor::{Epoll, Events, Interest, Signals, Timer, Token, Waker};

use super::names;
use super::shutdown::{read_stop_signals, DEADLINE_GRACE};
use crate::config::Settings;
use crate::report;

const SIGNALS: Token = Token(0);
const STATS: Token = Token(1);
const DONE: Token = Token(2);
const DEADLINE: Token = Token(3);

/// What the supervisor needs from a model.
pub struct Supervised<'a> {
    /// The signalfd, created before any thread was spawned.
    pub signals: Signals,
    /// Print a stats line this often.
    pub stats_interval: Option<Duration>,
    /// `--drain-timeout`: how long the threads may take after the first signal (plus
    /// [`DEADLINE_GRACE`]).
    pub drain_timeout: Duration,
    /// Builds the current stats line.
    pub report: &'a dyn Fn() -> String,
    /// Asks every thread to drain and stop; called once, on the first signal.
    pub stop: &'a dyn Fn(),
    /// The threads to wait for.
    pub threads: Vec<JoinHandle<()>>,
}

impl<'a> Supervised<'a> {
    /// A job with the stats interval and drain timeout of `settings`.
    pub fn new(
        settings: &Settings,
        signals: Signals,
        report: &'a dyn Fn() -> String,
        stop: &'a dyn Fn(),
        threads: Vec<JoinHandle<()>>,
    ) -> Supervised<'a> {
        Supervised {
            signals,
            stats_interval: settings.stats_interval,
            drain_timeout: settings.drain_timeout,
            report,
            stop,
            threads,
        }
    }
}

/// Runs until the threads have finished after a stop (or until a second signal or the drain
/// deadline ends it), then prints the final stats line.
pub fn supervise(job: Supervised<'_>) -> io::Result<()> {
    let epoll = Epoll::new()?;
    epoll.add(&job.signals, SIGNALS, Interest::READABLE)?;
    let stats_tick = Timer::new()?;
    if let Some(every) = job.stats_interval {
        stats_tick.set_interval(every)?;
    }
    epoll.add(&stats_tick, STATS, Interest::READABLE)?;
    let deadline = Timer::new()?;
    epoll.add(&deadline, DEADLINE, Interest::READABLE)?;
    let done = Arc::new(Waker::new()?);
    epoll.add(done.as_ref(), DONE, Interest::READABLE)?;
    join_in_background(job.threads, Arc::clone(&done))?;

    let final_line = || format!("{} final=1", (job.report)());
    let mut stopping = false;
    let mut events = Events::with_capacity(8);
    loop {
        epoll.wait(&mut events, None)?;
        for event in events.iter() {
            match event.token() {
                SIGNALS => {
                    if read_stop_signals(&job.signals, stopping, &final_line, || {}, || {})? {
                        stopping = true;
                        deadline.set_after(job.drain_timeout + DEADLINE_GRACE)?;
                        (job.stop)();
                    }
                }
                STATS => {
                    stats_tick.read()?;
                    report::emit(&(job.report)());
                }
                DEADLINE => {
                    warn!("threads still busy past the drain deadline: exiting without them");
                    report::emit(&final_line());
                    std::process::exit(0);
                }
                _ => {
                    report::emit(&final_line());
                    return Ok(());
                }
            }
        }
    }
}

/// A joiner thread turns "all threads returned" into an epoll event, so that the main thread
/// can wait for it, for a second signal and for the deadline at the same time.
fn join_in_background(threads: Vec<JoinHandle<()>>, done: Arc<Waker>) -> io::Result<()> {
    std::thread::Builder::new()
        .name(names::JOINER.into())
        .spawn(move || {
            for thread in threads {
                if thread.join().is_err() {
                    warn!("a server thread panicked");
                }
            }
            let _ = done.wake();
        })?;
    Ok(())
}
