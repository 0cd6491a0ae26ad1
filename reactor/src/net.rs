//! TCP sockets from `socket(2)` up: a nonblocking [`TcpListener`] and a [`TcpStream`].
//!
//! std's `TcpListener` hides the steps a server is made of; here each one is a visible call:
//! `socket(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`, `setsockopt(2)` for `SO_REUSEADDR` and
//! `SO_REUSEPORT`, `bind(2)`, `listen(2)` with an explicit backlog, then `accept4(2)` per
//! connection. Both IPv4 and IPv6 (ip(7), ipv6(7)).
//!
//! Writes never raise `SIGPIPE`. By default, writing to a socket whose peer has gone sends the
//! writer `SIGPIPE`, whose default action kills the process: a server would die because one
//! client hung up. The classic fix is `signal(SIGPIPE, SIG_IGN)`, but that changes a
//! process-wide disposition, which is not a library's decision to make (the application may
//! rely on `SIGPIPE`, e.g. a CLI in a shell pipeline). Instead every write passes
//! `MSG_NOSIGNAL` to `send(2)`/`sendmsg(2)`, which suppresses the signal for that call only and
//! still reports `EPIPE` (send(2)). That is also why `writev` uses `sendmsg(2)`: writev(2)
//! takes no flags.
//!
//! Read and write retry `EINTR` themselves; `EAGAIN` comes back as `ErrorKind::WouldBlock`
//! (std's mapping), the reactor's cue to wait for the next readiness event.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::sys;
use crate::syscalls;

/// How [`TcpListener::bind`] sets up the listening socket.
#[derive(Clone, Debug)]
pub struct ListenOptions {
    /// Length of the accept queue: connections the kernel has completed (three-way handshake
    /// done) but the application has not yet `accept`ed. Default 1024. The kernel **silently**
    /// caps it at `net.core.somaxconn` (listen(2), NOTES: "If the backlog argument is greater
    /// than the value in /proc/sys/net/core/somaxconn, then it is silently truncated to that
    /// value"); [`somaxconn`] reads the cap and [`TcpListener::accept_queue`] the value in force.
    pub backlog: u32,
    /// `SO_REUSEADDR` (default true): allows binding the port again while connections from a
    /// previous run sit in TIME_WAIT, so a restarted server does not fail with `EADDRINUSE`.
    pub reuse_addr: bool,
    /// `SO_REUSEPORT` (default false): lets several sockets bind the same port, each with its
    /// own accept queue; the kernel spreads incoming connections across them by hash
    /// (socket(7)). One listener per worker thread, without a shared accept lock.
    pub reuse_port: bool,
}

impl Default for ListenOptions {
    fn default() -> ListenOptions {
        ListenOptions {
            backlog: 1024,
            reuse_addr: true,
            reuse_port: false,
        }
    }
}

/// The kernel's cap on any listen backlog, from `/proc/sys/net/core/somaxconn` (listen(2)).
/// `None` if the file cannot be read or parsed (e.g. no procfs).
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A listening socket's accept queue, as the kernel reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AcceptQueue {
    /// Connections fully established and waiting for `accept`.
    pub len: u32,
    /// The queue's limit: the requested backlog after the somaxconn cap.
    pub backlog: u32,
}

/// A listening TCP socket, always nonblocking: [`accept`](TcpListener::accept) returns
/// `WouldBlock` instead of sleeping, so it belongs in an epoll set.
pub struct TcpListener {
    fd: OwnedFd,
}

impl TcpListener {
    /// socket(SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC) for v4 or v6, options, bind(2), listen(2).
    ///
    /// For an IPv6 address the socket keeps the system's `IPV6_V6ONLY` default (usually off:
    /// `[::]` then also accepts IPv4 as mapped addresses, ipv6(7)).
    pub fn bind(addr: SocketAddr, opts: &ListenOptions) -> io::Result<TcpListener> {
        let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        let fd = sys::socket(domain(&addr), ty)?;
        if opts.reuse_addr {
            sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        }
        if opts.reuse_port {
            sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        sys::bind(fd.as_fd(), &addr)?;
        // listen(2) takes an int; a larger request would be capped by somaxconn anyway.
        let backlog = opts.backlog.min(libc::c_int::MAX as u32) as libc::c_int;
        sys::listen(fd.as_fd(), backlog)?;
        Ok(TcpListener { fd })
    }

    /// The bound address; after binding port 0, this holds the port the kernel chose.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::getsockname(self.fd.as_fd())
    }

    /// One accept4(SOCK_NONBLOCK|SOCK_CLOEXEC). EAGAIN -> ErrorKind::WouldBlock. EINTR retried.
    /// Other errors (ECONNABORTED, EMFILE, ENFILE, ENOBUFS...) returned as is for the caller to
    /// decide: `ECONNABORTED` just means "try the next one", while `EMFILE` means the process is
    /// out of descriptors and the connection stays queued (accept4(2), ERRORS).
    ///
    /// The accepted stream is nonblocking; the flags set it atomically, saving the `fcntl(2)`
    /// that `accept(2)` would need.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        loop {
            syscalls::count(&syscalls::ACCEPT);
            match sys::accept4(self.fd.as_fd(), flags) {
                Ok((fd, peer)) => return Ok((TcpStream { fd }, peer)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Steers the connections of this listener's SO_REUSEPORT group by CPU: a new connection
    /// goes to the group's listener number `cpu % n`, where `cpu` is the CPU that processed its
    /// packets (so, with each listener's thread pinned to its CPU, a connection stays on the
    /// core whose caches hold it). Without this the kernel picks a listener by a hash of the
    /// 4-tuple, blind to CPUs.
    ///
    /// The program is the classic three-instruction one of Cloudflare's "perfect locality"
    /// experiment, attached with `SO_ATTACH_REUSEPORT_CBPF` (socket(7)); it applies to the whole
    /// group, whose sockets are numbered in the order they joined it. `n` must be at least 1.
    pub fn steer_by_cpu(&self, n: u32) -> io::Result<()> {
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "steer_by_cpu(0)",
            ));
        }
        let op = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let program = [
            // A = the current CPU: an "ancillary" load at SKF_AD_OFF + SKF_AD_CPU (filter.h).
            op(
                libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
                (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
            ),
            // A = A % n.
            op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, n),
            // Return A: the index of the socket in the group.
            op(libc::BPF_RET | libc::BPF_A, 0),
        ];
        sys::attach_reuseport_cbpf(self.fd.as_fd(), &program)
    }

    /// getsockopt(TCP_INFO) on a LISTEN socket: tcpi_unacked = current accept-queue length,
    /// tcpi_sacked = its backlog (see tcp_get_info in net/ipv4/tcp.c, which fills those two
    /// fields from `sk_ack_backlog` and `sk_max_ack_backlog` when the state is TCP_LISTEN).
    ///
    /// This is the number `ss -lnt` shows as Recv-Q/Send-Q; watching it under load shows whether
    /// the server accepts as fast as clients connect. When `len` reaches `backlog`, new
    /// handshakes are dropped (or reset with `tcp_abort_on_overflow`) and clients see latency
    /// spikes from SYN retransmits.
    pub fn accept_queue(&self) -> io::Result<AcceptQueue> {
        let info = sys::tcp_info(self.fd.as_fd())?;
        debug_assert_eq!(
            info.tcpi_state, TCP_LISTEN,
            "the field reuse only holds for LISTEN sockets"
        );
        Ok(AcceptQueue {
            len: info.tcpi_unacked,
            backlog: info.tcpi_sacked,
        })
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpListener");
        d.field("fd", &self.fd.as_raw_fd());
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        d.finish()
    }
}

/// A connected TCP socket. Blocking or nonblocking depending on how it was made (see
/// [`connect`](TcpStream::connect), [`connect_nonblocking`](TcpStream::connect_nonblocking),
/// [`TcpListener::accept`]) and on [`set_nonblocking`](TcpStream::set_nonblocking).
///
/// All methods take `&self`: the kernel serialises concurrent calls on one socket, so a reader
/// thread and a writer thread may share one stream (as `&TcpStream` implements `Read`/`Write`).
pub struct TcpStream {
    fd: OwnedFd,
}

impl TcpStream {
    /// Blocking connect(2); the returned stream is in BLOCKING mode (handy for tests and tools).
    ///
    /// If a signal interrupts the connect, the handshake carries on in the kernel and a second
    /// `connect` would fail with `EALREADY` (connect(2), EINTR). So on `EINTR` we wait for the
    /// socket to become writable with poll(2) and read the outcome from `SO_ERROR`.
    pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let fd = sys::socket(domain(&addr), libc::SOCK_STREAM | libc::SOCK_CLOEXEC)?;
        let stream = TcpStream { fd };
        match sys::connect(stream.fd.as_fd(), &addr) {
            Ok(()) => Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                stream.wait_connected()?;
                Ok(stream)
            }
            Err(e) => Err(e),
        }
    }

    /// Nonblocking connect: returns at once (EINPROGRESS is Ok); wait for writable, then
    /// `take_error()`: `None` means connected (connect(2), EINPROGRESS).
    pub fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
        let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        let fd = sys::socket(domain(&addr), ty)?;
        match sys::connect(fd.as_fd(), &addr) {
            Ok(()) => {}
            // EINTR on a nonblocking connect also leaves the handshake running.
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream { fd })
    }

    /// recv(2); EINTR retried; EAGAIN -> WouldBlock. `Ok(0)` means the peer sent FIN (or `buf`
    /// is empty).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            syscalls::count(&syscalls::READ);
            match sys::recv(self.fd.as_fd(), buf, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }

    /// send(2) with MSG_NOSIGNAL (never SIGPIPE; see the module doc). A write to a peer that
    /// has gone returns `EPIPE` (`BrokenPipe`) or `ECONNRESET`. May write less than `buf`.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            syscalls::count(&syscalls::WRITE);
            match sys::send(self.fd.as_fd(), buf, libc::MSG_NOSIGNAL) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }

    /// sendmsg(2) + MSG_NOSIGNAL (writev(2) takes no flags): one syscall for several buffers.
    /// May write less than their total; at most 1024 buffers (UIO_MAXIOV) per call.
    pub fn writev(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            syscalls::count(&syscalls::WRITE);
            match sys::sendmsg(self.fd.as_fd(), bufs, libc::MSG_NOSIGNAL) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }

    /// shutdown(2): `Write` sends FIN after the buffered data (a half-close; the peer reads 0).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        sys::shutdown(self.fd.as_fd(), how)
    }

    /// `TCP_NODELAY`: send small segments at once instead of waiting (Nagle's algorithm, tcp(7))
    /// to coalesce them. An echo server wants it: each reply is small and latency-bound.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        sys::setsockopt_int(
            self.fd.as_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            on as i32,
        )
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(sys::getsockopt_int(self.fd.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0)
    }

    /// Sets or clears `O_NONBLOCK` (fcntl(2)).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        sys::set_nonblocking(self.fd.as_fd(), on)
    }

    /// `SO_RCVTIMEO` (blocking models): a blocking read gives up with `WouldBlock` after `d`.
    /// `None` waits forever. `Some(Duration::ZERO)` is rejected, as in std, because the kernel
    /// would read a zero timeval as "forever".
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        sys::setsockopt_timeval(self.fd.as_fd(), libc::SO_RCVTIMEO, timeout_value(d)?)
    }

    /// `SO_SNDTIMEO`: a blocking write gives up after `d`; same rules as the read timeout.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        sys::setsockopt_timeval(self.fd.as_fd(), libc::SO_SNDTIMEO, timeout_value(d)?)
    }

    /// SO_LINGER {1,0}: close() then discards unsent data and sends RST instead of FIN
    /// (socket(7)). Tests use it to make a peer vanish abruptly.
    pub fn set_linger_zero(&self) -> io::Result<()> {
        sys::setsockopt_linger(self.fd.as_fd(), true, 0)
    }

    /// `SO_RCVBUF`. The kernel doubles the value for bookkeeping and clamps it to
    /// `net.core.rmem_max` (socket(7)).
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        let v = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
        sys::setsockopt_int(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, v)
    }

    /// `SO_SNDBUF`. Doubled and clamped to `net.core.wmem_max`, as for `SO_RCVBUF`.
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        let v = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
        sys::setsockopt_int(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, v)
    }

    /// `SO_ERROR`: the pending socket error, cleared by reading it. After a nonblocking connect
    /// turns writable, `None` means the connection is established.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let err = sys::getsockopt_int(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
    }

    /// The remote address (getpeername(2)); `ENOTCONN` while a connect is still in progress.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sys::getpeername(self.fd.as_fd())
    }

    /// The local address (getsockname(2)).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::getsockname(self.fd.as_fd())
    }

    /// After an interrupted blocking connect: waits until writable, then reports `SO_ERROR`.
    fn wait_connected(&self) -> io::Result<()> {
        loop {
            match sys::poll_one(self.fd.as_fd(), libc::POLLOUT, -1) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        match self.take_error()? {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::read(self, buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::write(self, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::writev(self, bufs)
    }

    /// A no-op: nothing is buffered in user space.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::read(self, buf)
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::write(self, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::writev(self, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpStream");
        d.field("fd", &self.fd.as_raw_fd());
        if let Ok(addr) = self.local_addr() {
            d.field("local", &addr);
        }
        if let Ok(addr) = self.peer_addr() {
            d.field("peer", &addr);
        }
        d.finish()
    }
}

macro_rules! impl_fd_traits {
    ($ty:ident) => {
        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }

        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.fd.as_raw_fd()
            }
        }

        impl From<$ty> for OwnedFd {
            fn from(value: $ty) -> OwnedFd {
                value.fd
            }
        }

        /// Adopts a descriptor that must be a TCP socket in the matching state; nothing checks.
        impl From<OwnedFd> for $ty {
            fn from(fd: OwnedFd) -> $ty {
                $ty { fd }
            }
        }
    };
}

impl_fd_traits!(TcpListener);
impl_fd_traits!(TcpStream);

/// `TCP_LISTEN` from include/net/tcp_states.h, the value of `tcpi_state` for a listening
/// socket; libc does not export the TCP state numbers.
const TCP_LISTEN: u8 = 10;

/// The address family for `addr`: `AF_INET` or `AF_INET6`.
fn domain(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// Maps a user timeout to SO_RCVTIMEO/SO_SNDTIMEO's value, where a zero timeval means "none".
fn timeout_value(d: Option<Duration>) -> io::Result<Duration> {
    match d {
        None => Ok(Duration::ZERO),
        Some(d) if d.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a zero timeout would mean 'block forever' to the kernel",
        )),
        // A sub-microsecond timeout would truncate to zero ("forever"): round it up to 1us.
        Some(d) => Ok(d.max(Duration::from_micros(1))),
    }
}
