//! Stopping a server: the drain deadline, and what a second signal means.
//!
//! The first SIGINT or SIGTERM asks for a graceful stop: close the listener, let every
//! connection flush its echoes and linger until its client's FIN (see
//! [`crate::conn::core`]), and close whatever is left at `--drain-timeout`. A second signal
//! means the operator is out of patience: print the final stats line and exit at once, without
//! draining. Every model follows these two rules through this module, whatever its clients do:
//! a loop checks its signals at least once per turn, and a turn is bounded (a connection yields
//! after its `WORK` budget), so the longest a signal waits is one `WORK` request.

use std::io;
use std::time::{Duration, Instant};

use log::{info, warn};
use reactor::{Signal, Signals};

use crate::protocol::MAX_WORK;
use crate::report;

/// How long past the drain deadline a supervisor waits for its threads before it exits anyway:
/// a thread may be inside one `WORK` request when the deadline passes.
pub const DEADLINE_GRACE: Duration = MAX_WORK.saturating_add(Duration::from_millis(500));

/// The drain state of one loop: not draining, or draining until a deadline.
#[derive(Copy, Clone, Debug, Default)]
pub struct Drain {
    deadline: Option<Instant>,
}

impl Drain {
    /// Starts draining with `timeout` from now. Returns the deadline the first time, `None`
    /// when already draining (the first deadline stands).
    pub fn begin(&mut self, timeout: Duration) -> Option<Instant> {
        if self.deadline.is_some() {
            return None;
        }
        let deadline = Instant::now() + timeout;
        self.deadline = Some(deadline);
        Some(deadline)
    }

    /// The deadline, once draining.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True once [`begin`](Drain::begin) was called.
    pub fn is_draining(&self) -> bool {
        self.deadline.is_some()
    }

    /// True once the deadline has passed.
    pub fn is_overdue(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// How long a loop may sleep so that it wakes at the deadline (`None`: not draining).
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// Reads every pending signal from `signals`. The first stop signal returns `true` (begin
/// draining); a stop signal while `draining` calls `before_exit` (to kill children, say),
/// prints `final_line()` and exits the process with status 0. SIGCHLD, if it is in the set,
/// goes to `on_child`.
pub fn read_stop_signals(
    signals: &Signals,
    draining: bool,
    final_line: &dyn Fn() -> String,
    mut on_child: impl FnMut(),
    before_exit: impl FnOnce(),
) -> io::Result<bool> {
    let mut begin = false;
    while let Some(signal) = signals.read()? {
        match signal {
            Signal::Child => on_child(),
            _ if draining || begin => exit_on_second_signal(signal, final_line, before_exit),
            _ => {
                info!("{signal:?}: draining");
                begin = true;
            }
        }
    }
    Ok(begin)
}

/// The second stop signal: no more draining. Prints the final stats line and exits 0.
pub fn exit_on_second_signal(
    signal: Signal,
    final_line: &dyn Fn() -> String,
    before_exit: impl FnOnce(),
) -> ! {
    warn!("second {signal:?}: exiting without draining");
    before_exit();
    report::emit(&final_line());
    std::process::exit(0)
}
