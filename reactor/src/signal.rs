//! Signals as epoll events, through `signalfd(2)`.
//!
//! A signal handler runs in the middle of whatever the thread was doing, so it may only call
//! async-signal-safe functions (signal-safety(7)): no allocation, no locks, no logging. The
//! classic workaround is the self-pipe trick: the handler writes one byte to a pipe whose read
//! end sits in the epoll set. It works, but it needs a handler, a pipe and care with `errno`.
//! Linux's `signalfd` removes all three: the signals are *blocked*, so no handler ever runs, and
//! the kernel queues them on a descriptor that becomes readable when one is pending. `SIGTERM`
//! then reaches the event loop as an ordinary event, handled in ordinary code.
//!
//! The caveat: a blocked signal is only blocked in the threads whose mask says so. A
//! process-directed signal (what `kill` sends) goes to *any* thread that does not block it, and
//! if that happens the default action runs (for `SIGTERM`: death) and the signalfd never sees
//! it. Threads inherit their creator's mask (pthread_sigmask(3)), so create [`Signals`] on the
//! main thread **before spawning any thread**; then every thread blocks the signals and the
//! descriptor is the only way they can arrive.
//!
//! The signalfd and its reads are raw syscalls in `sys`, because the descriptor is the lesson.
//! The signal set and the mask are safe `nix` calls made here (`SigSet`, `pthread_sigmask`):
//! filling a `sigset_t` by hand teaches nothing.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::signal::{self as nix_signal, SigSet, SigmaskHow};

use crate::sys;

/// The signals the reactor deals in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `SIGINT`: Ctrl-C.
    Interrupt,
    /// `SIGTERM`: polite termination request (what `kill` and service managers send).
    Terminate,
    /// `SIGCHLD`: a child process exited (see [`process::reap_any`](crate::process::reap_any)).
    Child,
    /// `SIGKILL`: cannot be blocked, caught or read from a signalfd; only for
    /// [`process::kill`](crate::process::kill).
    Kill,
    /// `SIGSTOP`: freezes a process (it cannot be caught either); only for `kill`. Tests and the
    /// lab use it to hold a server still while the kernel keeps completing handshakes.
    Stop,
    /// `SIGCONT`: resumes a stopped process; only for `kill`.
    Continue,
}

impl Signal {
    /// The signal's number (signal(7)).
    pub fn number(self) -> i32 {
        self.to_nix() as i32
    }

    /// The `Signal` with this number, if it is one of ours.
    pub fn from_number(signo: i32) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.number() == signo)
    }

    /// The same signal as nix names it, for nix's `kill`, `prctl` and `SigSet`.
    pub(crate) fn to_nix(self) -> nix_signal::Signal {
        match self {
            Signal::Interrupt => nix_signal::Signal::SIGINT,
            Signal::Terminate => nix_signal::Signal::SIGTERM,
            Signal::Child => nix_signal::Signal::SIGCHLD,
            Signal::Kill => nix_signal::Signal::SIGKILL,
            Signal::Stop => nix_signal::Signal::SIGSTOP,
            Signal::Continue => nix_signal::Signal::SIGCONT,
        }
    }

    /// Every variant, for [`Signal::from_number`]: one table, in [`Signal::to_nix`].
    const ALL: [Signal; 6] = [
        Signal::Interrupt,
        Signal::Terminate,
        Signal::Child,
        Signal::Kill,
        Signal::Stop,
        Signal::Continue,
    ];
}

/// A signalfd for a set of blocked signals: readable while one of them is pending.
#[derive(Debug)]
pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks `signals` in the calling thread's mask (pthread_sigmask) and opens a signalfd for
    /// them. Must be created on the main thread BEFORE spawning threads, so every thread
    /// inherits the mask and the signal is only ever delivered through the fd.
    ///
    /// `Signal::Kill` is refused with `InvalidInput`: SIGKILL cannot be blocked, and signalfd
    /// silently ignores it (signalfd(2)), so asking for it would be a silent no-op.
    ///
    /// The signals stay blocked after the `Signals` is dropped: unblocking would deliver any
    /// still-pending one with its default action, i.e. kill the process at an arbitrary point.
    pub fn new(signals: &[Signal]) -> io::Result<Signals> {
        if signals.contains(&Signal::Kill) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SIGKILL cannot be blocked or read from a signalfd",
            ));
        }
        let set: SigSet = signals.iter().map(|s| s.to_nix()).collect();
        // Block first: a signal arriving between the two calls then waits, pending, for the fd
        // instead of running its default action. pthread_sigmask(3), not sigprocmask(2): the
        // latter is unspecified in a multi-threaded process, and the mask is per thread anyway.
        nix_signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = sys::signalfd(&set)?;
        Ok(Signals { fd })
    }

    /// Next pending signal, or Ok(None) when none is pending (nonblocking fd). Standard signals
    /// do not queue: two SIGCHLDs sent before a read arrive as one (signal(7)), which is why a
    /// SIGCHLD handler must reap in a loop until `reap_any` returns `None`.
    pub fn read(&self) -> io::Result<Option<Signal>> {
        loop {
            match sys::read_signalfd(self.fd.as_fd()) {
                Ok(signo) => {
                    return Signal::from_number(signo).map(Some).ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("signalfd returned unexpected signal {signo}"),
                        )
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sets or clears `O_NONBLOCK` on the fd (it is created nonblocking, for
    /// [`Signals::read`], which must then never be called on a blocking one).
    ///
    /// For a reader that hands the fd to io_uring instead: io_uring completes a read of a
    /// nonblocking file whose driver cannot say "would block" (signalfd before Linux 6.10, which
    /// gave it `FMODE_NOWAIT`) at once with `EAGAIN`, so a loop would never hear of a signal. A
    /// blocking fd reads correctly on every kernel: where signalfd supports nonblocking
    /// attempts, io_uring still tries one and waits by polling; where it does not, io_uring
    /// hands the read to a kernel worker that blocks in it.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        sys::set_nonblocking(self.fd.as_fd(), on)
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Signals {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
