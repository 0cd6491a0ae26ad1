//! Timers as descriptors: `timerfd_create(2)` on `CLOCK_MONOTONIC`.
//!
//! An event loop needs timeouts (idle connections, periodic stats, a shutdown grace period).
//! There are two classic designs. One keeps a heap of deadlines in user space and passes the
//! nearest one as `epoll_wait`'s timeout, then checks the heap after every wake: no extra
//! syscalls per timer, but every loop must carry that logic, and `epoll_wait`'s whole-millisecond
//! timeout limits precision. The other, used here, makes each timer a descriptor that becomes
//! readable when it expires: it goes into the same epoll set as the sockets and arrives as just
//! another event with its own [`Token`](crate::Token), so the loop has a single way to learn that
//! something happened. The price is one descriptor and a `read(2)` per expiry, which is fine for
//! the handful of timers a server keeps (a timer per connection would favour the heap; that is
//! what tokio's timer wheel does).
//!
//! `CLOCK_MONOTONIC` never jumps when the wall clock is set, so intervals stay intervals.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::sys;

/// A `timerfd`: readable when it has expired at least once since the last [`read`](Timer::read).
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// `timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)`, initially disarmed.
    pub fn new() -> io::Result<Timer> {
        Ok(Timer {
            fd: sys::timerfd_create()?,
        })
    }

    /// Expires every `period`, the first time after `period`. If the loop falls behind, the
    /// expirations are counted, not lost: [`read`](Timer::read) returns how many passed.
    pub fn set_interval(&self, period: Duration) -> io::Result<()> {
        let period = non_zero(period);
        sys::timerfd_settime(self.fd.as_fd(), period, period)
    }

    /// Expires once, after `delay`.
    pub fn set_after(&self, delay: Duration) -> io::Result<()> {
        sys::timerfd_settime(self.fd.as_fd(), non_zero(delay), Duration::ZERO)
    }

    /// Stops the timer (a zero `it_value` disarms, timerfd_create(2)).
    pub fn disarm(&self) -> io::Result<()> {
        sys::timerfd_settime(self.fd.as_fd(), Duration::ZERO, Duration::ZERO)
    }

    /// Expirations since the last read, which resets the count; 0 when none (EAGAIN).
    pub fn read(&self) -> io::Result<u64> {
        loop {
            match sys::read_u64(self.fd.as_fd()) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A zero `it_value` would *disarm* the timer instead of firing at once, and a zero interval
/// would make it one-shot, so a zero duration is bumped to the smallest one, 1 ns.
fn non_zero(d: Duration) -> Duration {
    d.max(Duration::from_nanos(1))
}

impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
