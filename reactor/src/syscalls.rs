//! Opt-in syscall counters, so `--syscall-stats` can show how many syscalls each echoed
//! message costs under each concurrency model.
//!
//! The reactor's wrappers bump one of these counters per syscall *attempt* (an `accept4` that
//! returns `EAGAIN` still crossed into the kernel and still counts). Counting is off by default:
//! a disabled counter costs one `Relaxed` load of a flag that never changes after startup, so the
//! branch is perfectly predicted. Enabled, each count is one `Relaxed` `fetch_add`.
//!
//! `Relaxed` is enough because the counters order nothing: no thread reads a counter to decide
//! whether some other memory is ready. A [`snapshot`] taken while other threads run is therefore
//! not an atomic picture of all the counters at one instant, only individually exact
//! values; take it when the workload is quiet (or subtract two snapshots and accept the skew).
//! A production system would use per-thread counters summed on demand, to avoid bouncing these
//! cache lines between cores; here one shared line per counter keeps the code obvious.
//!
//! io_uring adds three: `io_uring_enter(2)` calls, which are syscalls, and the SQEs submitted and
//! CQEs reaped through them, which are not (they are the work one enter carries). A batched loop
//! shows as few enters and many SQEs and CQEs per message; [`SyscallCounts::total`] counts only
//! the enters.

use std::ops::Sub;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

static ENABLED: AtomicBool = AtomicBool::new(false);

pub(crate) static EPOLL_WAIT: AtomicU64 = AtomicU64::new(0);
pub(crate) static EPOLL_CTL: AtomicU64 = AtomicU64::new(0);
pub(crate) static ACCEPT: AtomicU64 = AtomicU64::new(0);
pub(crate) static READ: AtomicU64 = AtomicU64::new(0);
pub(crate) static WRITE: AtomicU64 = AtomicU64::new(0);
pub(crate) static WAKE: AtomicU64 = AtomicU64::new(0);
pub(crate) static IO_URING_ENTER: AtomicU64 = AtomicU64::new(0);
pub(crate) static URING_SQES: AtomicU64 = AtomicU64::new(0);
pub(crate) static URING_CQES: AtomicU64 = AtomicU64::new(0);

/// Turns counting on for the whole process. Call it once at startup; counts begin at that point.
pub fn enable() {
    ENABLED.store(true, Relaxed);
}

/// Whether [`enable`] has been called.
pub fn is_enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Syscalls made through the reactor since [`enable`] (all zero if counting is off).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SyscallCounts {
    /// `epoll_wait(2)` calls made by `Epoll::wait`, including `EINTR` retries.
    pub epoll_wait: u64,
    /// `epoll_ctl(2)` calls made by `Epoll::add`, `modify` and `delete`.
    pub epoll_ctl: u64,
    /// `accept4(2)` calls made by `TcpListener::accept`, including those returning `EAGAIN`.
    pub accept: u64,
    /// `recv(2)` calls made by `TcpStream::read`.
    pub read: u64,
    /// `send(2)` and `sendmsg(2)` calls made by `TcpStream::write` and `writev`.
    pub write: u64,
    /// eventfd `write(2)` calls made by `Waker::wake`.
    pub wake: u64,
    /// `io_uring_enter(2)` calls made by `uring::Ring` (submit, wait, overflow flush).
    pub io_uring_enter: u64,
    /// SQEs the kernel consumed from `uring::Ring`s (not syscalls: work carried by the enters).
    pub uring_sqes_submitted: u64,
    /// CQEs read from `uring::Ring`s' completion queues (not syscalls either).
    pub uring_cqes_reaped: u64,
}

/// Reads every counter (each one exactly; see the module doc for what "at once" means).
pub fn snapshot() -> SyscallCounts {
    SyscallCounts {
        epoll_wait: EPOLL_WAIT.load(Relaxed),
        epoll_ctl: EPOLL_CTL.load(Relaxed),
        accept: ACCEPT.load(Relaxed),
        read: READ.load(Relaxed),
        write: WRITE.load(Relaxed),
        wake: WAKE.load(Relaxed),
        io_uring_enter: IO_URING_ENTER.load(Relaxed),
        uring_sqes_submitted: URING_SQES.load(Relaxed),
        uring_cqes_reaped: URING_CQES.load(Relaxed),
    }
}

impl SyscallCounts {
    /// Sum of the syscall counters: all but `uring_sqes_submitted` and `uring_cqes_reaped`,
    /// which count work inside `io_uring_enter` calls rather than syscalls.
    pub fn total(&self) -> u64 {
        self.epoll_wait
            + self.epoll_ctl
            + self.accept
            + self.read
            + self.write
            + self.wake
            + self.io_uring_enter
    }
}

/// `later - earlier`: the syscalls made between two snapshots (saturating, never panics).
impl Sub for SyscallCounts {
    type Output = SyscallCounts;

    fn sub(self, earlier: SyscallCounts) -> SyscallCounts {
        SyscallCounts {
            epoll_wait: self.epoll_wait.saturating_sub(earlier.epoll_wait),
            epoll_ctl: self.epoll_ctl.saturating_sub(earlier.epoll_ctl),
            accept: self.accept.saturating_sub(earlier.accept),
            read: self.read.saturating_sub(earlier.read),
            write: self.write.saturating_sub(earlier.write),
            wake: self.wake.saturating_sub(earlier.wake),
            io_uring_enter: self.io_uring_enter.saturating_sub(earlier.io_uring_enter),
            uring_sqes_submitted: self
                .uring_sqes_submitted
                .saturating_sub(earlier.uring_sqes_submitted),
            uring_cqes_reaped: self
                .uring_cqes_reaped
                .saturating_sub(earlier.uring_cqes_reaped),
        }
    }
}

/// Counts one syscall on `counter` if counting is enabled.
#[inline]
pub(crate) fn count(counter: &AtomicU64) {
    add(counter, 1);
}

/// Adds `n` to `counter` if counting is enabled (SQEs consumed by one `io_uring_enter`).
#[inline]
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if ENABLED.load(Relaxed) {
        counter.fetch_add(n, Relaxed);
    }
}
