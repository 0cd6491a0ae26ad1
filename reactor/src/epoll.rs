//! The readiness queue: an `epoll(7)` instance, the interests registered in it and the events
//! it reports.
//!
//! epoll is Linux's answer to "which of my ten thousand descriptors can make progress now?".
//! Each descriptor is registered once with [`Epoll::add`] (epoll_ctl(2)); from then on the kernel
//! tracks its readiness itself, and [`Epoll::wait`] (epoll_wait(2)) returns only the ready ones,
//! in time proportional to their number, not to the number registered (that is what `select(2)`
//! and `poll(2)` cannot do). Each registration carries a [`Token`], an opaque `u64` the kernel
//! hands back with every event so the caller can find its connection without a lookup by fd.
//!
//! Three trigger modes, from epoll(7):
//! - **level-triggered** (default): reported on every `wait` while the fd stays ready. Forgiving:
//!   a handler may read only part of the data and will be told again.
//! - **edge-triggered** ([`Interest::edge`], `EPOLLET`): reported when readiness *changes*. The
//!   handler must read/write until `EAGAIN`, or it will never hear about the rest.
//! - **one-shot** ([`Interest::oneshot`], `EPOLLONESHOT`): reported once, then disarmed until
//!   [`Epoll::modify`] re-arms it. This lets several threads share one epoll set without two of
//!   them ever handling the same connection at once.
//!
//! The design follows mio's `src/sys/unix/selector/epoll.rs`, without its cross-platform layer.

use std::io;
use std::ops::BitOr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::sys;
use crate::syscalls;

/// The caller's name for a registration, handed back by the kernel in every [`Event`]
/// (epoll_event's `data.u64`). Typically an index into a slab of connections.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// The readiness a registration asks for, plus its trigger mode. A set of `EPOLL*` bits.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Interest(u32);

impl Interest {
    /// No readiness asked for. epoll still reports `EPOLLHUP` and `EPOLLERR`, which it always
    /// includes whether asked or not (epoll_ctl(2)); useful to park a connection.
    pub const NONE: Interest = Interest(0);
    /// Data to read, or the peer's FIN. `EPOLLRDHUP` makes a half-close visible as its own
    /// flag ([`Event::is_read_closed`]) instead of only as a zero-length read.
    pub const READABLE: Interest = Interest((libc::EPOLLIN | libc::EPOLLRDHUP) as u32);
    /// Room in the send buffer.
    pub const WRITABLE: Interest = Interest(libc::EPOLLOUT as u32);

    /// Both interests' bits (also available as `a | b`).
    pub const fn add(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }

    /// Edge-triggered (`EPOLLET`): reported on readiness *changes* only; drain to `EAGAIN`.
    pub const fn edge(self) -> Interest {
        Interest(self.0 | libc::EPOLLET as u32)
    }

    /// One-shot (`EPOLLONESHOT`): disarmed after one event until [`Epoll::modify`] re-arms it.
    pub const fn oneshot(self) -> Interest {
        Interest(self.0 | libc::EPOLLONESHOT as u32)
    }

    /// Exclusive wakeup (`EPOLLEXCLUSIVE`, epoll_ctl(2)): when several epoll sets watch the same
    /// descriptor, an event wakes one (or a few) of their waiters, not all of them. For a
    /// listener shared by worker loops: no thundering herd on every connection. Only with
    /// `EPOLL_CTL_ADD`; such a registration cannot be modified, only deleted and added again.
    /// epoll_ctl(2) allows it with `EPOLLIN`, `EPOLLOUT`, `EPOLLWAKEUP` and `EPOLLET` only, so
    /// `EPOLLRDHUP` (which a listener never reports anyway) is dropped.
    pub const fn exclusive(self) -> Interest {
        let allowed = self.0 & !(libc::EPOLLRDHUP as u32);
        Interest(allowed | libc::EPOLLEXCLUSIVE as u32)
    }

    /// Whether this asks for readability.
    pub const fn is_readable(self) -> bool {
        self.0 & libc::EPOLLIN as u32 != 0
    }

    /// Whether this asks for writability.
    pub const fn is_writable(self) -> bool {
        self.0 & libc::EPOLLOUT as u32 != 0
    }

    /// Whether this is edge-triggered.
    pub const fn is_edge(self) -> bool {
        self.0 & libc::EPOLLET as u32 != 0
    }

    /// Whether this is one-shot.
    pub const fn is_oneshot(self) -> bool {
        self.0 & libc::EPOLLONESHOT as u32 != 0
    }
}

impl BitOr for Interest {
    type Output = Interest;

    fn bitor(self, other: Interest) -> Interest {
        self.add(other)
    }
}

/// An epoll instance. `Send + Sync`: epoll_ctl and epoll_wait are thread-safe, so one `Epoll`
/// can be shared by threads that wait on it and threads that register into it.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`: a new, empty interest list.
    pub fn new() -> io::Result<Epoll> {
        Ok(Epoll {
            fd: sys::epoll_create1()?,
        })
    }

    /// Registers `fd` (`EPOLL_CTL_ADD`). `EEXIST` if it is already registered.
    ///
    /// epoll tracks the *open file description*, not the number: a registration lives until the
    /// last descriptor referring to it is closed (epoll(7), Q6), so closing the fd is enough to
    /// unregister it unless it was `dup`ed or inherited.
    pub fn add(&self, fd: impl AsFd, token: Token, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_fd(), token, interest)
    }

    /// Changes the token and interest of a registered `fd` (`EPOLL_CTL_MOD`). This is also how a
    /// one-shot registration is re-armed after it fired.
    pub fn modify(&self, fd: impl AsFd, token: Token, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_fd(), token, interest)
    }

    /// Unregisters `fd` (`EPOLL_CTL_DEL`). `ENOENT` if it was not registered.
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_fd(), Token(0), Interest::NONE)
    }

    /// Blocks until at least one event or the timeout. `None` = forever. The timeout is rounded
    /// UP to whole milliseconds, so 100us does not become a busy 0 ms poll. EINTR is retried
    /// with the time left. Replaces the contents of `events` (no allocation: `Events` keeps its
    /// buffer). On timeout `events` is empty.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        // Compute the deadline once so EINTR retries wait only for what is left, not for the
        // whole timeout again (a process receiving signals steadily would never time out).
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut left = timeout;
        loop {
            syscalls::count(&syscalls::EPOLL_WAIT);
            match sys::epoll_wait(self.fd.as_fd(), &mut events.buf, timeout_ms(left)) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if let Some(deadline) = deadline {
                        left = Some(deadline.saturating_duration_since(Instant::now()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn ctl(&self, op: i32, fd: BorrowedFd<'_>, token: Token, interest: Interest) -> io::Result<()> {
        syscalls::count(&syscalls::EPOLL_CTL);
        sys::epoll_ctl(self.fd.as_fd(), op, fd, interest.0, token.0)
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A reusable buffer that [`Epoll::wait`] fills with ready events.
///
/// Invariant: `buf.capacity()` is fixed at construction and is at least 1 (epoll_wait(2) fails
/// with `EINVAL` for `maxevents <= 0`); `buf.len()` is the number of events from the last wait.
/// The buffer is allocated once, so the event loop's hot path never allocates.
pub struct Events {
    buf: Vec<libc::epoll_event>,
}

impl Events {
    /// A buffer for up to `n` events per wait (at least 1). If more descriptors are ready, the
    /// rest are reported by the next wait: epoll round-robins through its ready list
    /// (epoll_wait(2)), so a small buffer delays events but never starves one.
    pub fn with_capacity(n: usize) -> Events {
        Events {
            buf: Vec::with_capacity(n.max(1)),
        }
    }

    /// The number of events from the last wait.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the last wait timed out (or the buffer was cleared).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The most events one wait can return.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The events of the last wait.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf.iter().map(|raw| Event {
            // `epoll_event` is `packed` on x86-64, so its fields are copied out, never borrowed.
            token: Token(raw.u64),
            bits: raw.events,
        })
    }

    /// Forgets the events (keeps the buffer).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One ready descriptor: its [`Token`] and what it is ready for.
#[derive(Copy, Clone, Debug)]
pub struct Event {
    token: Token,
    bits: u32,
}

impl Event {
    /// The token given at registration.
    pub fn token(&self) -> Token {
        self.token
    }

    /// `EPOLLIN`: a read will not block (it may return data, 0 for EOF, or an error).
    pub fn is_readable(&self) -> bool {
        self.bits & libc::EPOLLIN as u32 != 0
    }

    /// `EPOLLOUT`: a write will not block.
    pub fn is_writable(&self) -> bool {
        self.bits & libc::EPOLLOUT as u32 != 0
    }

    /// `EPOLLRDHUP` or `EPOLLHUP`: the peer sent FIN (half-close), or both directions are shut.
    /// Data may still be buffered: read until 0 before closing.
    pub fn is_read_closed(&self) -> bool {
        self.bits & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0
    }

    /// `EPOLLERR`: the socket has a pending error (read it with `TcpStream::take_error`).
    pub fn is_error(&self) -> bool {
        self.bits & libc::EPOLLERR as u32 != 0
    }
}

/// Converts a timeout to epoll_wait's milliseconds, rounding UP.
///
/// `Duration::as_millis` truncates, so 100us would become 0 ms: a nonblocking poll that returns
/// at once and turns the caller's "sleep a little" into a busy loop. Rounding up can only wait
/// up to 1 ms longer than asked, which is the lesser evil (mio's epoll selector does the same).
/// Huge timeouts saturate at `i32::MAX` ms (about 24.8 days); `None` is -1, "forever".
fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(100))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(5))), 5);
        assert_eq!(timeout_ms(Some(Duration::from_micros(5_001))), 6);
        assert_eq!(timeout_ms(Some(Duration::MAX)), libc::c_int::MAX);
    }

    #[test]
    fn interest_bits_compose() {
        let i = Interest::READABLE | Interest::WRITABLE;
        assert!(i.is_readable() && i.is_writable());
        assert!(!i.is_edge() && !i.is_oneshot());
        assert!(Interest::READABLE.edge().is_edge());
        assert!(Interest::READABLE.oneshot().is_oneshot());
        assert!(!Interest::NONE.is_readable() && !Interest::NONE.is_writable());
    }
}
