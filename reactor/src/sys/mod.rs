//! The only module of `reactor` with `unsafe` code: thin, safe wrappers around each raw syscall.
//!
//! Every wrapper does three things and nothing more: it turns Rust values into the C
//! arguments the kernel expects, it makes the call inside one `unsafe` block whose
//! `// SAFETY:` comment names the guarantee (citing the man page), and it turns the C result
//! back into Rust: `-1` becomes [`io::Error::last_os_error`] through the [`syscall!`] macro,
//! new descriptors become [`OwnedFd`]. Policy (retrying `EINTR`, mapping `EAGAIN`, counting)
//! lives one level up, in the module that owns the concept; this file stays a dictionary.
//!
//! # What lives here: the rule is `unsafe`, not libc
//!
//! This module holds what is unsafe, and only that. The reactor calls raw libc where the raw
//! call is the lesson: epoll, `accept4` and the socket options, eventfd, signalfd, timerfd,
//! `TCP_INFO`, io_uring (`uring.rs`), and the `MAP_SHARED` counters of `shm.rs`, which show
//! how processes share memory. A raw call is always `unsafe`, so all of them are here. Calls
//! whose raw form teaches nothing but how to fill a C struct go through the `nix` crate, and
//! a safe nix call is made in the module that owns the concept, not here: `kill`, `getpid`,
//! `prctl` and the rlimits in `process.rs`, the signal set and mask in `signal.rs`. A nix call
//! that stays `unsafe` by nature, `fork`, stays here with its `SAFETY:` comment. Two process
//! calls stay raw although they teach little: `_exit`, which nix lacks, and `waitpid`, whose nix
//! form loses a child killed by a real-time signal (see [`waitpid_any_nohang`]).
//!
//! The `syscall!` macro follows mio's `src/sys/unix/mod.rs`, except that the `unsafe` block is
//! written at each call site, so clippy's `undocumented_unsafe_blocks` lint makes every
//! syscall in this file carry its own justification.
//!
//! Descriptors are owned by [`OwnedFd`] the moment the kernel returns them and are always created
//! with `*_CLOEXEC`, so a `fork`+`exec` elsewhere in the process never leaks them. Dropping an
//! `OwnedFd` calls `close(2)` once and ignores its result, and that is deliberate: on Linux the
//! descriptor is released even when `close` reports `EINTR` (close(2), "Dealing with error
//! returns from close()"), so retrying could close a descriptor number that another thread has
//! just been given by `accept4` or `socket`.

mod shm;

pub use shm::SharedCounters;

use std::io::{self, IoSlice};
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::signal::SigSet;
use nix::unistd::ForkResult;

/// Evaluates one libc call and maps a `-1` return to `Err(io::Error::last_os_error())`, i.e. to
/// the `errno` the call left behind; any other value is `Ok`.
///
/// Written `syscall!(unsafe { libc::name(args) })`. mio's macro takes `name(args)` and writes
/// the `unsafe` block itself; we keep the block at the call site so that it stays visible where
/// the pointers are built, and so that clippy's `undocumented_unsafe_blocks` demands a
/// `// SAFETY:` comment above every single call (for a block generated inside the macro it would
/// not find the call site's comment).
macro_rules! syscall {
    ($call:expr) => {{
        let res = $call;
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

// io_uring(7) has a file of its own: its memory is shared with the kernel beyond one call, so
// more than thin wrappers must live behind `unsafe` (see its module doc). Declared after the
// `syscall!` macro, which it uses.
pub(crate) mod uring;

// ---------------------------------------------------------------------------------------------
// epoll(7)
// ---------------------------------------------------------------------------------------------

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub(crate) fn epoll_create1() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1(2) takes no pointers; it returns a new descriptor or -1.
    let fd = syscall!(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    Ok(owned(fd))
}

/// `epoll_ctl(epfd, op, fd, {events, data})`. `op` is `EPOLL_CTL_ADD`, `_MOD` or `_DEL`.
pub(crate) fn epoll_ctl(
    epfd: BorrowedFd<'_>,
    op: libc::c_int,
    fd: BorrowedFd<'_>,
    events: u32,
    data: u64,
) -> io::Result<()> {
    // EPOLL_CTL_DEL ignores the event, but kernels before 2.6.9 required a non-null pointer
    // (epoll_ctl(2), BUGS), so we always pass a real one.
    let mut event = libc::epoll_event { events, u64: data };
    // SAFETY: both descriptors are borrowed, hence open; `event` is a valid epoll_event that
    // the kernel only reads during the call (epoll_ctl(2)).
    syscall!(unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd.as_raw_fd(), &mut event) })?;
    Ok(())
}

/// `epoll_wait` into the spare capacity of `buf`, which it first clears. The kernel writes at
/// most `buf.capacity()` events; `buf.len()` is then set to the number it wrote.
pub(crate) fn epoll_wait(
    epfd: BorrowedFd<'_>,
    buf: &mut Vec<libc::epoll_event>,
    timeout_ms: libc::c_int,
) -> io::Result<()> {
    buf.clear();
    let max_events = buf.capacity().min(libc::c_int::MAX as usize) as libc::c_int;
    debug_assert!(
        max_events > 0,
        "epoll_wait(2) fails with EINVAL when maxevents <= 0"
    );
    // SAFETY: `buf` owns `capacity()` >= `max_events` slots, so the kernel's writes of up to
    // `max_events` epoll_event structs stay inside the allocation (epoll_wait(2)).
    let n = syscall!(unsafe {
        libc::epoll_wait(epfd.as_raw_fd(), buf.as_mut_ptr(), max_events, timeout_ms)
    })?;
    debug_assert!(n as usize <= buf.capacity());
    // SAFETY: epoll_wait(2) returned `n`, the number of events it initialised at the front of
    // the buffer; `n <= max_events <= capacity()`.
    unsafe { buf.set_len(n as usize) };
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sockets: socket(2), setsockopt(2), bind(2), listen(2), accept4(2), connect(2), ...
// ---------------------------------------------------------------------------------------------

/// `socket(domain, ty, 0)`; `ty` carries `SOCK_NONBLOCK`/`SOCK_CLOEXEC` as wanted.
pub(crate) fn socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; it returns a new descriptor or -1.
    let fd = syscall!(unsafe { libc::socket(domain, ty, 0) })?;
    Ok(owned(fd))
}

/// `setsockopt` for the common `int` options (SO_REUSEADDR, TCP_NODELAY, SO_RCVBUF, ...).
pub(crate) fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt(fd, level, name, &value)
}

/// `setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)`, whose value is a `struct timeval` (socket(7)).
pub(crate) fn setsockopt_timeval(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
    d: Duration,
) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    setsockopt(fd, libc::SOL_SOCKET, name, &tv)
}

/// `setsockopt(SO_LINGER)`, whose value is a `struct linger` (socket(7)).
pub(crate) fn setsockopt_linger(fd: BorrowedFd<'_>, on: bool, secs: i32) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: on as libc::c_int,
        l_linger: secs,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &linger)
}

/// `SO_ATTACH_REUSEPORT_CBPF` from asm-generic/socket.h; the libc crate defines it for Android
/// only.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// `setsockopt(SO_ATTACH_REUSEPORT_CBPF)`: attaches the classic BPF program `program` to the
/// SO_REUSEPORT group of `fd`; its return value picks the socket, by index in the group
/// (socket(7)).
pub(crate) fn attach_reuseport_cbpf(
    fd: BorrowedFd<'_>,
    program: &[libc::sock_filter],
) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        // The kernel only reads the program (it copies it during the call): the `*mut` is the
        // C struct's spelling, not a licence to write.
        filter: program.as_ptr().cast_mut(),
    };
    setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

/// `getsockopt` for the `int` options (SO_ERROR, SO_RCVBUF, ...).
pub(crate) fn getsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and `len` holds the size of `value`, so the
    // kernel writes at most that many bytes (getsockopt(2)); every bit pattern is a valid int.
    syscall!(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// `getsockopt(IPPROTO_TCP, TCP_INFO)` (tcp(7)). On a LISTEN socket the kernel reuses two
/// fields for the accept queue; see `TcpListener::accept_queue`.
pub(crate) fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is a C struct of plain integers, for which all-zero bytes are valid.
    let mut info: libc::tcp_info = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes and `len` is the size of `info`; an older or
    // newer kernel copies min(len, its own size) bytes and leaves the rest zeroed (tcp(7)).
    syscall!(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    })?;
    Ok(info)
}

/// `bind(fd, addr)`.
pub(crate) fn bind(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let (raw, len) = SockAddr::from(addr);
    // SAFETY: `raw` holds a sockaddr_in or sockaddr_in6 that `len` describes exactly; the kernel
    // only reads it during the call (bind(2)).
    syscall!(unsafe { libc::bind(fd.as_raw_fd(), raw.as_ptr(), len) })?;
    Ok(())
}

/// `listen(fd, backlog)`.
pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: listen(2) takes no pointers.
    syscall!(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// One `accept4(fd, &addr, &len, flags)`; returns the new connection and the peer's address.
pub(crate) fn accept4(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<(OwnedFd, SocketAddr)> {
    let mut storage = zeroed_storage();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is a sockaddr_storage, large enough for any address, and `len` holds its
    // size; the kernel writes at most `len` bytes and stores the real length (accept4(2)).
    let new_fd = syscall!(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
            flags,
        )
    })?;
    // Own the descriptor before anything else can fail, so an error below does not leak it.
    let stream = owned(new_fd);
    Ok((stream, storage_to_addr(&storage, len)?))
}

/// `connect(fd, addr)`. On a nonblocking socket `EINPROGRESS` comes back as an error.
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let (raw, len) = SockAddr::from(addr);
    // SAFETY: `raw` holds a sockaddr_in or sockaddr_in6 that `len` describes exactly; the kernel
    // only reads it during the call (connect(2)).
    syscall!(unsafe { libc::connect(fd.as_raw_fd(), raw.as_ptr(), len) })?;
    Ok(())
}

/// `recv(fd, buf, flags)`.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
    // SAFETY: `ptr` is valid for writes of `len` bytes, the most the kernel writes (recv(2)).
    let n = syscall!(unsafe { libc::recv(fd.as_raw_fd(), ptr, len, flags) })?;
    Ok(n as usize)
}

/// `send(fd, buf, flags)`.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes, the most the kernel reads (send(2)).
    let n = syscall!(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) })?;
    Ok(n as usize)
}

/// `sendmsg(fd, {iov = bufs}, flags)`: a gather write that, unlike writev(2), takes flags.
pub(crate) fn sendmsg(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    flags: libc::c_int,
) -> io::Result<usize> {
    // More than UIO_MAXIOV (1024) buffers fail with EMSGSIZE (sendmsg(2)); sending a prefix is
    // a legal short write, which every caller must handle anyway.
    let iov_len = bufs.len().min(libc::UIO_MAXIOV as usize);
    let msg = libc::msghdr {
        msg_name: std::ptr::null_mut(),
        msg_namelen: 0,
        // The kernel never writes through msg_iov; the `*mut` is only C's lack of `const`.
        msg_iov: bufs.as_ptr() as *mut libc::iovec,
        msg_iovlen: iov_len,
        msg_control: std::ptr::null_mut(),
        msg_controllen: 0,
        msg_flags: 0,
    };
    // SAFETY: std guarantees IoSlice is ABI-compatible with `struct iovec` on Unix, so `msg_iov`
    // points to `iov_len` valid iovecs, each describing readable bytes borrowed for this call;
    // the kernel only reads `msg` and the buffers (sendmsg(2)).
    let n = syscall!(unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) })?;
    Ok(n as usize)
}

/// `shutdown(fd, how)`, `how` one of `SHUT_RD`, `SHUT_WR`, `SHUT_RDWR`.
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: libc::c_int) -> io::Result<()> {
    // SAFETY: shutdown(2) takes no pointers.
    syscall!(unsafe { libc::shutdown(fd.as_raw_fd(), how) })?;
    Ok(())
}

/// `getsockname(fd)`: the local address.
pub(crate) fn getsockname(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut storage = zeroed_storage();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is large enough for any address and `len` holds its size; the kernel
    // writes at most `len` bytes and stores the real length (getsockname(2)).
    syscall!(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    storage_to_addr(&storage, len)
}

/// `getpeername(fd)`: the remote address.
pub(crate) fn getpeername(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut storage = zeroed_storage();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as in getsockname; the contract is the same (getpeername(2)).
    syscall!(unsafe {
        libc::getpeername(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    storage_to_addr(&storage, len)
}

/// Sets or clears `O_NONBLOCK` with `fcntl(F_GETFL)` + `fcntl(F_SETFL)` (fcntl(2)).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL takes no third argument (fcntl(2)).
    let flags = syscall!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let new_flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new_flags != flags {
        // SAFETY: F_SETFL takes an int of file status flags (fcntl(2)).
        syscall!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new_flags) })?;
    }
    Ok(())
}

/// `poll(2)` on one descriptor; returns the `revents` (0 on timeout). `timeout_ms < 0` waits
/// forever.
pub(crate) fn poll_one(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    timeout_ms: libc::c_int,
) -> io::Result<libc::c_short> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd, matching nfds = 1 (poll(2)).
    syscall!(unsafe { libc::poll(&mut pfd, 1, timeout_ms) })?;
    Ok(pfd.revents)
}

// ---------------------------------------------------------------------------------------------
// eventfd(2), signalfd(2), timerfd_create(2), and read(2)/write(2) on them
// ---------------------------------------------------------------------------------------------

/// `eventfd(initval, flags)`.
pub(crate) fn eventfd(initval: u32, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) takes no pointers; it returns a new descriptor or -1.
    let fd = syscall!(unsafe { libc::eventfd(initval, flags) })?;
    Ok(owned(fd))
}

/// `write(fd, &value, 8)`: adds to an eventfd counter (eventfd(2)).
pub(crate) fn write_u64(fd: BorrowedFd<'_>, value: u64) -> io::Result<()> {
    let bytes = value.to_ne_bytes();
    // SAFETY: `bytes` is valid for reads of its 8 bytes (write(2)).
    syscall!(unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) })?;
    Ok(())
}

/// `read(fd, &value, 8)`: the 8-byte counter of an eventfd or timerfd (eventfd(2),
/// timerfd_create(2)).
pub(crate) fn read_u64(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    let (ptr, len) = (bytes.as_mut_ptr().cast(), bytes.len());
    // SAFETY: `ptr` is valid for writes of `len` (8) bytes (read(2)).
    let n = syscall!(unsafe { libc::read(fd.as_raw_fd(), ptr, len) })?;
    debug_assert_eq!(n, 8, "eventfd and timerfd reads are all-or-nothing");
    Ok(u64::from_ne_bytes(bytes))
}

/// `signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC)`: a new descriptor for the signals in `set`.
///
/// The set itself is built and blocked with nix in `signal.rs` (a `sigset_t` is a bit array
/// whose raw construction teaches nothing); the descriptor is the lesson, so it stays raw.
pub(crate) fn signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    let set: &libc::sigset_t = set.as_ref();
    // SAFETY: `set` points to a valid sigset_t (nix's SigSet wraps one, initialised by
    // sigemptyset(3)) that the kernel only reads; fd -1 asks for a new descriptor (signalfd(2)).
    let fd = syscall!(unsafe { libc::signalfd(-1, set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    Ok(owned(fd))
}

/// Reads one `signalfd_siginfo` and returns its signal number (signalfd(2)).
pub(crate) fn read_signalfd(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: signalfd_siginfo is a C struct of plain integers; all-zero bytes are valid.
    let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is valid for writes of `size` bytes; signalfd reads are whole structs
    // (signalfd(2)).
    let n = syscall!(unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    })?;
    debug_assert_eq!(n as usize, size);
    Ok(info.ssi_signo as libc::c_int)
}

/// `timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)`.
pub(crate) fn timerfd_create() -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create(2) takes no pointers; it returns a new descriptor or -1.
    let fd = syscall!(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })?;
    Ok(owned(fd))
}

/// `timerfd_settime(fd, 0, {interval, value})` with relative times. A zero `value` disarms.
pub(crate) fn timerfd_settime(
    fd: BorrowedFd<'_>,
    value: Duration,
    interval: Duration,
) -> io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: timespec(interval),
        it_value: timespec(value),
    };
    // SAFETY: `spec` is a valid itimerspec the kernel only reads; a null `old_value` is allowed
    // (timerfd_create(2)).
    syscall!(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
    Ok(())
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: fork(2), waitpid(2), _exit(2). The safe ones (kill, getpid, prctl, rlimits) are
// nix calls in `process.rs`: see the module doc.
// ---------------------------------------------------------------------------------------------

/// `fork()` through nix: `Child` in the child, `Parent { child }` in the parent.
///
/// Safe only in a single-threaded process, which `process::fork` checks before calling it.
pub(crate) fn fork() -> io::Result<ForkResult> {
    // SAFETY: nix's fork is `unsafe` because a child forked from a multi-threaded process may
    // only make async-signal-safe calls until it execs (fork(2) NOTES, signal-safety(7)): the
    // other threads vanish with the locks they held. The caller has checked that this process
    // has one thread, so the child is a full copy in which no lock is held by a missing thread.
    Ok(unsafe { nix::unistd::fork() }?)
}

/// How a reaped child ended, decoded from waitpid's status word (waitpid(2), WIFEXITED etc.).
pub(crate) enum RawExit {
    Exited(i32),
    Signaled(i32),
    /// Stopped or continued; only reported with WUNTRACED/WCONTINUED, which we never pass.
    Other,
}

/// `waitpid(-1, &status, WNOHANG)`: `Ok(None)` when children exist but none has exited.
///
/// Raw libc, not nix, on purpose. nix decodes the status into its `Signal` enum, which knows
/// only the standard signals: a child killed by a real-time signal (`kill -RTMIN pid`) makes
/// nix's `waitpid` return `EINVAL` *after* the kernel has reaped the child, so its pid would
/// be lost and a supervisor would never learn that the worker died. Here the signal number
/// passes through as a plain integer (tests/signal.rs kills a child with SIGRTMIN).
pub(crate) fn waitpid_any_nohang() -> io::Result<Option<(libc::pid_t, RawExit)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is valid for writes of one int (waitpid(2)).
    let pid = syscall!(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) })?;
    if pid == 0 {
        return Ok(None);
    }
    let exit = if libc::WIFEXITED(status) {
        RawExit::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        RawExit::Signaled(libc::WTERMSIG(status))
    } else {
        RawExit::Other
    };
    Ok(Some((pid, exit)))
}

/// `_exit(code)`: ends the process at once, without running atexit handlers or flushing stdio.
///
/// Raw libc because nix has no `_exit` (and std's `process::exit` runs exactly the clean-up a
/// forked child must skip).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) takes no pointers and does not return; skipping destructors is safe
    // (leaking is not undefined behaviour).
    unsafe { libc::_exit(code) }
}

// ---------------------------------------------------------------------------------------------
// Helpers: descriptor ownership and socket-address conversion (ip(7), ipv6(7))
// ---------------------------------------------------------------------------------------------

/// Takes ownership of a descriptor the kernel has just returned.
fn owned(fd: RawFd) -> OwnedFd {
    debug_assert!(fd >= 0);
    // SAFETY: `fd` was just returned by a successful syscall that creates a descriptor, so it is
    // open and owned by nobody else (OwnedFd::from_raw_fd requires exactly that).
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A sockaddr_in or sockaddr_in6 built from a `SocketAddr`, laid out as the kernel reads it.
/// A union (as in mio) lets one pointer serve both without any unsafe construction.
#[repr(C)]
union SockAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl SockAddr {
    fn from(addr: &SocketAddr) -> (SockAddr, libc::socklen_t) {
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    // Ports and addresses travel in network byte order (ip(7)).
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                let len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                (SockAddr { v4: sin }, len)
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                let len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                (SockAddr { v6: sin6 }, len)
            }
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        (self as *const SockAddr).cast()
    }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is a C struct of integers and padding; all-zero bytes are valid.
    unsafe { mem::zeroed() }
}

/// Converts what accept4/getsockname/getpeername wrote into a `SocketAddr`.
fn storage_to_addr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> io::Result<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a sockaddr_in of `len` bytes, and
            // sockaddr_storage is sized and aligned for every socket address type (socket(7)).
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        family => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected socket address family {family} ({len} bytes)"),
        )),
    }
}

/// Sets `SO_*`/`TCP_*` options from any plain C value. Private: each public wrapper above fixes
/// the type the man page documents for its option, so callers cannot pass the wrong one.
fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is valid for reads of size_of::<T>() bytes, the length we pass; the kernel
    // copies that many bytes and validates them for the option (setsockopt(2)).
    syscall!(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}
