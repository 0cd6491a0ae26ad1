//! `io_uring(7)` from raw syscalls: a completion-based loop beside the epoll reactor.
//!
//! epoll tells a loop *which descriptor is ready*; the loop then makes the syscall itself
//! (`accept4`, `recv`, `send`), one per event. io_uring turns that around: the loop describes the
//! syscalls it wants in a **submission queue** (SQ) shared with the kernel, enters the kernel once
//! for a whole batch (`io_uring_enter(2)`), and later reads their results from a **completion
//! queue** (CQ), also shared. One `io_uring_enter` can submit hundreds of operations and collect
//! hundreds of results; *multishot* operations go further, one SQE for a stream of completions
//! (every accepted connection, every received chunk).
//!
//! ```text
//!   user space                                 kernel
//!   push(op) ─▶ SQ ring [sqe sqe sqe ...] ───▶ io_uring_enter ─▶ accept / recv / send ...
//!   next_completion() ◀─ CQ ring [cqe cqe ...] ◀── results (user_data, res, flags)
//!   recycle(buf) ─▶ buffer ring [buf buf ...] ──▶ multishot recv fills one per chunk
//! ```
//!
//! `docs/uring.md` draws the three rings and the memory ordering of each head and tail.
//!
//! # Ownership: why the API is safe
//!
//! The kernel reads a send's bytes and writes a read's bytes *after* the call that submitted
//! them returned, so those buffers cannot be borrowed from the caller: a borrow could end (and
//! the memory be freed) while the kernel still uses it. Every operation therefore *moves* what
//! the kernel may touch into the ring (tokio-uring's and monoio's design): [`Ring::send`] takes a
//! `Vec<u8>` and the final [`Completion`] gives it back. The ring keeps an in-flight table whose
//! index is the kernel's `user_data`; an entry is freed only at its operation's final CQE (one
//! without `IORING_CQE_F_MORE`), and a cancelled operation still delivers that CQE. Dropping the
//! ring cancels everything and waits for those CQEs; whatever still does not complete is leaked,
//! never freed.
//!
//! Received data arrives in *provided buffers* owned by the ring ([`Ring::add_buffer_group`]):
//! a completion lends one ([`ProvidedBuf`]); read it with [`Ring::buffer`], give it back with
//! [`Ring::recycle`]. The borrow rules make "read after recycle" a compile error.
//!
//! # One thread
//!
//! A [`Ring`] is `!Send` and `!Sync`: create it on the thread that drives it. The ring is set up
//! with `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`, under which only the creating
//! thread may submit or wait (the kernel answers `EEXIST` to any other) and completion work runs
//! only inside that thread's [`Ring::wait`]; its registered ring index is valid in that thread
//! only. Other threads reach a ring's loop by writing to an eventfd the loop reads through the
//! ring ([`Ring::read`]), so the loop blocks in exactly one place.
//!
//! # Example
//!
//! ```no_run
//! use reactor::uring::{OpKind, Ring, RingOptions};
//! use reactor::{ListenOptions, TcpListener, Token};
//!
//! const LISTENER: Token = Token(u64::MAX);
//! let listener = TcpListener::bind("127.0.0.1:7000".parse().unwrap(), &ListenOptions::default())?;
//! let mut ring = Ring::new(&RingOptions::default())?;
//! let group = ring.add_buffer_group(256, 4096)?;
//! ring.accept_multishot(&listener, LISTENER);
//! let mut conns = Vec::new();
//! loop {
//!     ring.wait(1, None)?;
//!     while let Some(mut done) = ring.next_completion() {
//!         match done.kind() {
//!             OpKind::Accept => {
//!                 if let Some(conn) = done.take_accepted() {
//!                     ring.recv_multishot(&conn, group, Token(conns.len() as u64));
//!                     conns.push(conn);
//!                 }
//!                 if !done.more() {
//!                     ring.accept_multishot(&listener, LISTENER); // ended: re-arm
//!                 }
//!             }
//!             OpKind::Recv => {
//!                 if let Some(buf) = done.take_provided() {
//!                     let bytes = ring.buffer(&buf).to_vec(); // copy out...
//!                     ring.recycle(buf); // ...then give the buffer back
//!                     // A real server keeps ONE send in flight per connection.
//!                     ring.send(&conns[done.token().0 as usize], bytes, 0, done.token());
//!                 }
//!             }
//!             _ => {} // a send's buffer comes back in `done.take_buf()`
//!         }
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

pub(crate) mod abi;
mod completion;
mod setup;

use std::collections::VecDeque;
use std::io;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub use completion::{BufGroup, Completion, OpId, OpKind, ProvidedBuf};
pub use setup::{available, Features, RingOptions, Unavailable};

use crate::epoll::Token;
use crate::sys::uring::{Op, RawRing};
use crate::syscalls;
use abi::Cqe;

/// How long dropping a ring waits for its cancelled operations' final CQEs.
const DRAIN_ON_DROP: Duration = Duration::from_secs(2);

/// An io_uring instance with its in-flight table and provided-buffer groups. See the module doc.
pub struct Ring {
    raw: RawRing,
    /// CQEs taken out of the CQ ring to make room (`EBUSY` on older kernels), not yet handed out.
    backlog: VecDeque<Cqe>,
    features: Features,
    stats: RingStats,
    /// `!Send` and `!Sync`, stated here although `RawRing`'s raw pointers already imply it.
    _one_thread: PhantomData<*const ()>,
}

/// Counters of one ring (the process-wide ones are in [`crate::syscalls`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// `io_uring_enter(2)` calls.
    pub enters: u64,
    /// SQEs the kernel consumed.
    pub sqes_submitted: u64,
    /// CQEs read from the CQ ring.
    pub cqes_reaped: u64,
    /// Enters made only to move overflowed CQEs into the CQ ring.
    pub overflow_flushes: u64,
    /// Submissions refused with `EBUSY` (CQ overflow on kernels before 5.19) and retried.
    pub busy_retries: u64,
}

impl Ring {
    /// Creates a ring on the calling thread, which alone may use it. Fails with an error
    /// carrying an [`Unavailable`] (see [`Unavailable::from_io`]) when io_uring cannot be used
    /// here, naming the cause.
    pub fn new(opts: &RingOptions) -> io::Result<Ring> {
        let (raw, features) = setup::open(opts)?;
        Ok(Ring {
            raw,
            backlog: VecDeque::new(),
            features,
            stats: RingStats::default(),
            _one_thread: PhantomData,
        })
    }

    /// What the kernel granted this ring.
    pub fn features(&self) -> Features {
        self.features
    }

    /// This ring's counters.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Operations submitted (or queued) whose final completion has not been handed out.
    pub fn in_flight(&self) -> usize {
        self.raw.in_flight()
    }

    /// Registers `count` buffers of `size` bytes as a new provided-buffer ring
    /// (`IORING_REGISTER_PBUF_RING`), all of them available to
    /// [`recv_multishot`](Self::recv_multishot).
    pub fn add_buffer_group(&mut self, count: u16, size: u32) -> io::Result<BufGroup> {
        self.raw
            .add_buffer_group(count, size)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => {
                    Unavailable::MissingFeature("IORING_REGISTER_PBUF_RING (Linux 5.19)").into()
                }
                _ => e,
            })
    }

    /// The bytes received into a lent buffer. Panics if `buf` is not lent out by this ring.
    pub fn buffer(&self, buf: &ProvidedBuf) -> &[u8] {
        self.raw.provided_bytes(buf)
    }

    /// Gives a lent buffer back to the kernel (a Release store of the buffer ring's tail).
    /// Call it once the bytes are copied or sent, never before.
    pub fn recycle(&mut self, buf: ProvidedBuf) {
        self.raw.recycle(buf);
    }

    /// Buffers of `group` in its ring, i.e. not lent to the caller.
    pub fn buffers_in_ring(&self, group: BufGroup) -> usize {
        self.raw.buffers_in_ring(group)
    }

    /// `IORING_OP_NOP`: completes with `res = 0`. Measures the ring itself.
    pub fn nop(&mut self, token: Token) -> OpId {
        self.raw.push(Op::Nop, token)
    }

    /// Multishot accept (`IORING_ACCEPT_MULTISHOT`): one completion per accepted connection
    /// ([`Completion::take_accepted`], `SOCK_NONBLOCK | SOCK_CLOEXEC`) while `more()`. It ends
    /// (a completion without `more()`) on an error (`EMFILE`, ...), a cancel, or a full CQ, in
    /// which case that last completion may still carry a connection: take it, then re-arm.
    pub fn accept_multishot(&mut self, listener: &impl AsFd, token: Token) -> OpId {
        let fd = listener.as_fd().as_raw_fd();
        self.raw.push(Op::AcceptMulti { fd }, token)
    }

    /// Multishot recv (`IORING_RECV_MULTISHOT` + `IOSQE_BUFFER_SELECT`): one completion per
    /// chunk received, each in a provided buffer of `group`, while `more()`. It ends (a
    /// completion without `more()`) with `res = 0` at end of stream, `-ENOBUFS` when the group
    /// ran dry (recycle, then re-arm), a socket error, a cancel, or, when the CQ was full, with
    /// data in that last completion (handle it, then re-arm).
    pub fn recv_multishot(&mut self, socket: &impl AsFd, group: BufGroup, token: Token) -> OpId {
        self.push_recv(socket, group, 0, token)
    }

    /// [`recv_multishot`](Self::recv_multishot) that ends (a completion without `more()`) once
    /// it has received `limit` bytes or more in total: at most `limit - 1` plus one buffer. A
    /// multishot recv keeps taking whatever the socket holds into the group's buffers, faster
    /// than a cancel can stop it; a limit bounds what one arm can bring, which is what
    /// backpressure needs. `Unsupported` where [`Features::recv_limit`] is false (before
    /// Linux 6.17).
    pub fn recv_multishot_limited(
        &mut self,
        socket: &impl AsFd,
        group: BufGroup,
        limit: NonZeroU32,
        token: Token,
    ) -> io::Result<OpId> {
        if !self.features.recv_limit {
            let name = "a multishot recv's byte limit (Linux 6.17)";
            return Err(Unavailable::MissingFeature(name).into());
        }
        Ok(self.push_recv(socket, group, limit.get(), token))
    }

    fn push_recv(&mut self, socket: &impl AsFd, group: BufGroup, limit: u32, token: Token) -> OpId {
        assert!(
            self.raw.has_group(group),
            "{group:?} is not a buffer group of this ring"
        );
        let fd = socket.as_fd().as_raw_fd();
        self.raw.push(
            Op::RecvMulti {
                fd,
                group: group.0,
                limit,
            },
            token,
        )
    }

    /// `send(fd, &buf[offset..], MSG_NOSIGNAL)`. The ring owns `buf` until the final completion,
    /// which returns it ([`Completion::take_buf`]); `res` may be short. Keep one send in flight
    /// per socket, or bytes can reorder.
    pub fn send(&mut self, socket: &impl AsFd, buf: Vec<u8>, offset: usize, token: Token) -> OpId {
        let fd = socket.as_fd().as_raw_fd();
        self.raw.push(Op::Send { fd, buf, offset }, token)
    }

    /// `read(fd, ...)` into the spare capacity of `buf` (at most `capacity() - len()` bytes);
    /// the completion returns `buf` with `res` more bytes. For an eventfd give 8 bytes of
    /// capacity, for a signalfd 128 (one `signalfd_siginfo`).
    pub fn read(&mut self, fd: &impl AsFd, buf: Vec<u8>, token: Token) -> OpId {
        let fd = fd.as_fd().as_raw_fd();
        self.raw.push(Op::Read { fd, buf }, token)
    }

    /// `close(fd)` through the ring. It does not cancel operations still armed on the socket
    /// (they hold their own reference to it): cancel them first ([`cancel_fd`](Self::cancel_fd)).
    pub fn close(&mut self, fd: impl Into<OwnedFd>, token: Token) -> OpId {
        self.raw.push(Op::Close { fd: fd.into() }, token)
    }

    /// A one-shot timer (`IORING_OP_TIMEOUT`): completes with `-ETIME` after `after`.
    pub fn timeout(&mut self, after: Duration, token: Token) -> OpId {
        let op = Op::Timeout {
            after,
            multishot: false,
            count: 0,
        };
        self.raw.push(op, token)
    }

    /// A repeating timer (`IORING_TIMEOUT_MULTISHOT`, Linux 6.4): `-ETIME` every `period` with
    /// `more()` set, until cancelled (or until a full CQ ends it: re-arm on `!more()`).
    /// `Unsupported` where [`Features::multishot_timeout`] is false; re-arm
    /// [`timeout`](Self::timeout) on each completion there instead.
    pub fn tick(&mut self, period: Duration, token: Token) -> io::Result<OpId> {
        if !self.features.multishot_timeout {
            return Err(Unavailable::MissingFeature("IORING_TIMEOUT_MULTISHOT (Linux 6.4)").into());
        }
        let op = Op::Timeout {
            after: period,
            multishot: true,
            count: 0,
        };
        Ok(self.raw.push(op, token))
    }

    /// `IORING_OP_ASYNC_CANCEL` of one operation. Its own completion says `0` (found),
    /// `-ENOENT` (already finished) or `-EALREADY` (running); the target still delivers its
    /// final completion (usually `-ECANCELED`), and only then are its resources released.
    pub fn cancel(&mut self, target: OpId, token: Token) -> OpId {
        self.raw.push(Op::Cancel { target }, token)
    }

    /// Cancels every operation on `fd` (`IORING_ASYNC_CANCEL_FD | _ALL`); `res` = how many.
    pub fn cancel_fd(&mut self, fd: &impl AsFd, token: Token) -> OpId {
        let fd = fd.as_fd().as_raw_fd();
        self.raw.push(Op::CancelFd { fd }, token)
    }

    /// Submits every queued operation without waiting; returns how many the kernel consumed.
    /// Descriptors named by queued operations must still be open here: the kernel looks them
    /// up now, not when the operation was pushed.
    pub fn submit(&mut self) -> io::Result<u32> {
        self.enter_loop(false, 0, None)
    }

    /// Submits everything queued, then waits until at least `min_complete` completions are
    /// ready or `timeout` passes (`None`: no limit), and runs the kernel's deferred completion
    /// work. Returns early (`Ok`) on a signal. Then drain
    /// [`next_completion`](Self::next_completion).
    pub fn wait(&mut self, min_complete: u32, timeout: Option<Duration>) -> io::Result<()> {
        self.enter_loop(true, min_complete, timeout).map(drop)
    }

    /// The next completion, or `None` when none is ready. Moves overflowed CQEs into the ring
    /// when the kernel flags them (one extra enter), so none is ever lost.
    pub fn next_completion(&mut self) -> Option<Completion> {
        let mut flushed = false;
        loop {
            let cqe = match self.backlog.pop_front() {
                Some(cqe) => cqe,
                None => match self.pop_cqe() {
                    Some(cqe) => cqe,
                    None if !flushed && self.raw.cq_overflowed() => {
                        flushed = true;
                        self.flush_overflow();
                        continue;
                    }
                    None => return None,
                },
            };
            if let Some(completion) = self.raw.complete(cqe) {
                return Some(completion);
            }
        }
    }

    /// Submits in SQ-sized chunks, the last one with `GETEVENTS` if `wait` (see [`Ring::wait`]).
    fn enter_loop(
        &mut self,
        wait: bool,
        min_complete: u32,
        timeout: Option<Duration>,
    ) -> io::Result<u32> {
        let mut submitted = 0;
        loop {
            let to_submit = self.raw.flush_sq();
            let last = self.raw.queued() == 0;
            let wait_now = wait && last;
            if to_submit == 0 && !wait_now {
                return Ok(submitted);
            }
            // Completions already taken out of the ring must not be waited for again.
            let min = if wait_now && self.backlog.is_empty() {
                min_complete
            } else {
                0
            };
            match self.enter(to_submit, min, wait_now, timeout.filter(|_| wait_now)) {
                Ok(n) => {
                    submitted += n;
                    if last && n == to_submit {
                        return Ok(submitted);
                    }
                    if n == 0 {
                        // The kernel took nothing (it could not allocate requests): give up now.
                        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                    }
                }
                Err(e) => {
                    match e.raw_os_error() {
                        Some(libc::ETIME | libc::EINTR) if wait_now => return Ok(submitted),
                        Some(libc::EINTR) => {}
                        Some(libc::EBUSY) => {
                            // The CQ overflowed and this kernel refuses new work until it is
                            // drained: move the CQ ring into the backlog, then flush the overflow.
                            self.stats.busy_retries += 1;
                            while let Some(cqe) = self.pop_cqe() {
                                self.backlog.push_back(cqe);
                            }
                            self.flush_overflow();
                        }
                        Some(libc::EBADR) => return Err(io::Error::other(
                            "io_uring dropped completions (EBADR): the kernel could not allocate \
                             overflow entries",
                        )),
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// One `io_uring_enter`, counted.
    fn enter(
        &mut self,
        to_submit: u32,
        min: u32,
        getevents: bool,
        timeout: Option<Duration>,
    ) -> io::Result<u32> {
        self.stats.enters += 1;
        syscalls::count(&syscalls::IO_URING_ENTER);
        let n = self.raw.enter(to_submit, min, getevents, timeout)?;
        self.stats.sqes_submitted += u64::from(n);
        syscalls::add(&syscalls::URING_SQES, u64::from(n));
        Ok(n)
    }

    /// `io_uring_enter(0, 0, GETEVENTS)`: the kernel copies overflowed CQEs into the free part
    /// of the CQ ring (and runs deferred work). Errors are left for the next `wait` to report.
    fn flush_overflow(&mut self) {
        self.stats.overflow_flushes += 1;
        let _ = self.enter(0, 0, true, None);
    }

    fn pop_cqe(&mut self) -> Option<Cqe> {
        let cqe = self.raw.pop_cqe()?;
        self.stats.cqes_reaped += 1;
        syscalls::count(&syscalls::URING_CQES);
        Some(cqe)
    }
}

impl Drop for Ring {
    /// Cancels every operation still in flight and waits (up to two seconds) for their final
    /// completions, so the memory they use can be freed. Anything left is leaked, not freed.
    fn drop(&mut self) {
        let _ = self.submit();
        if self.raw.in_flight() == 0 {
            return;
        }
        self.raw.push(Op::CancelAny, Token(u64::MAX));
        let deadline = Instant::now() + DRAIN_ON_DROP;
        while self.raw.in_flight() > 0 && Instant::now() < deadline {
            if self.wait(1, Some(Duration::from_millis(10))).is_err() {
                break;
            }
            // Dropping a completion closes an accepted socket and frees a returned buffer.
            while self.next_completion().is_some() {}
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("features", &self.features)
            .field("in_flight", &self.raw.in_flight())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Operations, over the whole process, whose memory a dropped [`Ring`] had to leak because
/// their final completion did not arrive within two seconds of cancelling them. Expected to
/// stay 0; tests check it.
pub fn leaked_operations() -> u64 {
    crate::sys::uring::LEAKED_OPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The signal number in the first field (`ssi_signo`) of a `struct signalfd_siginfo` read from
/// a signalfd through [`Ring::read`] (signalfd(2)); `None` if `bytes` is shorter than one.
pub fn siginfo_signal(bytes: &[u8]) -> Option<crate::Signal> {
    if bytes.len() < SIGINFO_SIZE {
        return None;
    }
    let signo = u32::from_ne_bytes(bytes[..4].try_into().ok()?);
    crate::Signal::from_number(signo as i32)
}

/// Bytes of one `struct signalfd_siginfo`: the capacity to give [`Ring::read`] for a signalfd.
pub const SIGINFO_SIZE: usize = 128;

const _: () = assert!(std::mem::size_of::<libc::signalfd_siginfo>() == SIGINFO_SIZE);
