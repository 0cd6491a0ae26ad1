//! Waking a thread blocked in `epoll_wait` from another thread, with an `eventfd(2)`.
//!
//! An event loop sleeps in `epoll_wait` until a descriptor is ready, so a thread that wants its
//! attention (a new connection handed over, a shutdown request) must make a descriptor ready.
//! An eventfd is the cheapest such descriptor: a 64-bit counter in the kernel that is readable
//! while nonzero. [`Waker::wake`] adds 1 (one `write(2)`), the loop sees `EPOLLIN` for the
//! waker's token and calls [`Waker::reset`] (one `read(2)`) to bring the counter back to zero.
//! Before eventfd, the same job took a pipe and two descriptors (the self-pipe trick); mio's
//! Linux waker is this same eventfd.
//!
//! Register it level-triggered with `Interest::READABLE` and reset it on every wake event; or
//! edge-triggered without resetting, as long as the counter cannot reach its maximum.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::sys;
use crate::syscalls;

/// An eventfd used as a doorbell for one epoll set. `Send + Sync`: any thread may ring it.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`: a counter at zero, so not yet readable.
    pub fn new() -> io::Result<Waker> {
        let fd = sys::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?;
        Ok(Waker { fd })
    }

    /// Adds 1 to the counter, making the eventfd readable. Wakes coalesce: ten wakes before the
    /// loop runs produce one event. `EAGAIN` means the counter is at its maximum
    /// (0xffff_ffff_ffff_fffe, eventfd(2)), which can only happen while it is readable, i.e. the
    /// loop is already due to wake: that is `Ok`.
    pub fn wake(&self) -> io::Result<()> {
        syscalls::count(&syscalls::WAKE);
        match sys::write_u64(self.fd.as_fd(), 1) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads the counter back to zero, so a level-triggered registration stops reporting it.
    /// `EAGAIN` (already zero, e.g. another thread reset it first) is `Ok`.
    pub fn reset(&self) -> io::Result<()> {
        match sys::read_u64(self.fd.as_fd()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
