//! Waiting for what the kernel or the server cannot announce: poll a condition until it holds
//! or a deadline passes, the way tokio's and mio's tests wait for a child process or a
//! descriptor count (a loop of check, sleep, check), written once.
//!
//! Every wait of the test suite goes through [`poll_until`] (or [`poll_until_steady`], built on
//! it), so every wait has a deadline and every timeout says what was awaited and what was last
//! seen. Deadlines only bound a failure: a passing test returns as soon as the condition holds.

use std::fmt;
use std::time::{Duration, Instant};

/// When a wait gives up: a moment, or a duration from the call (`Duration` and `Instant` both
/// convert into it).
#[derive(Clone, Copy, Debug)]
pub struct Deadline(pub Instant);

impl From<Instant> for Deadline {
    fn from(at: Instant) -> Deadline {
        Deadline(at)
    }
}

impl From<Duration> for Deadline {
    fn from(within: Duration) -> Deadline {
        Deadline(Instant::now() + within)
    }
}

/// A wait that ran out of time: how long it waited, and the last answer of its check (what was
/// still awaited, or the last value seen). `Display` and `Debug` both read
/// "timed out after 10s: <last>", so `.unwrap()` gives a clear failure.
pub struct TimedOut<E> {
    /// From the call to the last check.
    pub waited: Duration,
    /// What the check said the last time it was not satisfied.
    pub last: E,
}

/// Calls `check` every `every` until it returns `Ok(value)`, and returns that value. Past the
/// deadline (checked once more right at it), returns [`TimedOut`] with the last `Err`, which
/// should name what is awaited and how far it got, e.g.
/// `Err(format!("a replacement child (children now {now:?})"))`.
pub fn poll_until<T, E>(
    limit: impl Into<Deadline>,
    every: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> Result<T, TimedOut<E>> {
    let start = Instant::now();
    let Deadline(deadline) = limit.into();
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(last) => {
                let now = Instant::now();
                if now >= deadline {
                    let waited = now - start;
                    return Err(TimedOut { waited, last });
                }
                std::thread::sleep(every.min(deadline - now));
            }
        }
    }
}

/// Samples every `every` until the sample has not changed for `quiet`, and returns it: a
/// descriptor count that has settled, a writer that has stalled. If it still changes at the
/// deadline, [`TimedOut::last`] holds the last sample.
pub fn poll_until_steady<V: PartialEq + Clone>(
    limit: impl Into<Deadline>,
    quiet: Duration,
    every: Duration,
    mut sample: impl FnMut() -> V,
) -> Result<V, TimedOut<V>> {
    let mut last = sample();
    let mut since = Instant::now();
    poll_until(limit, every, || {
        let now = sample();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if since.elapsed() >= quiet {
            Ok(last.clone())
        } else {
            Err(last.clone())
        }
    })
}

impl<E: fmt::Display> fmt::Display for TimedOut<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?}: {}", self.waited, self.last)
    }
}

impl<E: fmt::Display> fmt::Debug for TimedOut<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
