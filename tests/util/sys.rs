//! The only `unsafe` in the integration tests: the few libc calls std does not offer.
//!
//! Two things need raw syscalls. Spawning the server with a lowered descriptor limit and a
//! parent-death signal happens between fork(2) and execve(2) (`CommandExt::pre_exec`), where
//! only async-signal-safe calls are allowed (signal-safety(7)): setrlimit(2) and prctl(2) are
//! plain syscalls, so they qualify. And a client that must advertise a small receive window
//! has to set `SO_RCVBUF` *before* connect(2): the window scale is fixed in the SYN (tcp(7):
//! "the buffer size must be set before calling listen(2) or connect(2)").
//!
//! As in the product crates (mio's `sys/unix` style), every other test file is safe code.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Maps a `-1` return to `io::Error::last_os_error()`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: each call site below documents why its arguments are valid.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Makes the spawned process get SIGKILL when the spawning thread dies (so an aborted test
/// leaves no server behind), and, with `nofile`, caps both its soft and hard RLIMIT_NOFILE
/// (the server raises soft to hard at start-up, so lowering only the soft limit would be
/// undone).
pub fn configure_child(cmd: &mut Command, nofile: Option<u64>) {
    let hook = move || -> io::Result<()> {
        // PR_SET_PDEATHSIG takes the signal number as an unsigned long; the other prctl
        // arguments are unused for this option (prctl(2)).
        syscall!(prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0
        ))?;
        if let Some(n) = nofile {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // `&limit` points to a valid, initialised rlimit for the duration of the call
            // (setrlimit(2)).
            syscall!(setrlimit(libc::RLIMIT_NOFILE, &limit))?;
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec and calls only prctl(2) and
    // setrlimit(2), which are async-signal-safe (signal-safety(7)); it allocates nothing and
    // takes no lock.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// A blocking TCP connection whose `SO_RCVBUF` and `SO_SNDBUF` are set before connect(2), so
/// the kernel advertises a small window from the SYN on and cannot hide a slow reader's
/// backlog in a large client buffer. Sizes are doubled and clamped by the kernel (socket(7)).
pub fn connect_with_buffers(
    addr: SocketAddr,
    rcvbuf: usize,
    sndbuf: usize,
) -> io::Result<TcpStream> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = syscall!(socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: socket(2) just returned this descriptor and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    for (opt, bytes) in [(libc::SO_RCVBUF, rcvbuf), (libc::SO_SNDBUF, sndbuf)] {
        let value = bytes.min(i32::MAX as usize) as libc::c_int;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // `&value` is a valid c_int of `len` bytes for the duration of the call
        // (setsockopt(2)).
        syscall!(setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            len
        ))?;
    }
    let (storage, len) = sockaddr(addr);
    // `storage` holds a sockaddr_in or sockaddr_in6 of `len` bytes (connect(2)); EINTR is
    // not retried because the test harness installs no signal handlers.
    syscall!(connect(
        fd,
        (&storage as *const libc::sockaddr_storage).cast(),
        len
    ))?;
    Ok(TcpStream::from(owned))
}

/// `addr` as a sockaddr_storage and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data, for which all-zero bytes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr
            // (socket(7)), so writing a sockaddr_in at its start stays in bounds.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, sockaddr_storage can hold a sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
