//! Writes to a vanished peer never raise SIGPIPE, and this test can tell.
//!
//! A naive version ("write to a dead peer; the process survived") could not fail: Rust's
//! runtime sets SIGPIPE to SIG_IGN before `main`, so the test binary survives with or without
//! `MSG_NOSIGNAL`. Instead a dedicated thread *blocks* SIGPIPE and then asks the kernel whether
//! one is pending. Two kernel facts make that exact:
//! - a SIGPIPE raised by send(2) is directed at the writing thread, not the process;
//! - Linux keeps a blocked signal pending even when its disposition is "ignore"
//!   (kernel/signal.c, `sig_ignored`: "Blocked signals are never ignored, since the signal
//!   handler may change by the time it is unblocked"), so sigpending(2) sees it.
//!
//! A control write through plain `send(fd, .., 0)` proves the check does see a SIGPIPE when one
//! is raised. The thread's mask and its pending signal die with the thread, so nothing leaks
//! into other tests. The test calls libc directly: it is not the product, and each unsafe block
//! says why it is sound.

mod util;

use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use reactor::TcpStream;
use util::{pair, DEADLINE};

#[test]
fn msg_nosignal_suppresses_sigpipe_and_plain_send_does_not() {
    thread::spawn(|| {
        block_sigpipe_in_this_thread();
        assert!(!sigpipe_pending(), "nothing pending yet");

        let client = dead_peer_stream();
        // The reactor's writes: EPIPE, and no signal.
        let err = client.write(b"after the RST").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let err = client.writev(&[IoSlice::new(b"x")]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(!sigpipe_pending(), "MSG_NOSIGNAL must suppress SIGPIPE");

        // Control: the same write without MSG_NOSIGNAL raises it.
        let buf = b"plain send";
        // SAFETY: `client` owns an open socket and `buf` is valid for reads of its length
        // (send(2)).
        let rc = unsafe { libc::send(client.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        assert_eq!(rc, -1);
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EPIPE));
        assert!(
            sigpipe_pending(),
            "a plain send to a dead peer raises SIGPIPE"
        );
    })
    .join()
    .expect("the SIGPIPE thread failed");
}

/// A stream whose peer reset the connection, with the reset already consumed, so the next
/// write fails with EPIPE.
fn dead_peer_stream() -> TcpStream {
    let (client, server) = pair();
    server.set_linger_zero().unwrap();
    drop(server); // RST
    let start = Instant::now();
    loop {
        match client.write(b"anyone there?") {
            // Accepted into the send buffer before the RST was processed.
            Ok(_) => assert!(start.elapsed() < DEADLINE, "the RST never arrived"),
            // The first error reports the reset itself (ECONNRESET), or EPIPE if the error was
            // already consumed; either way the socket is dead from here on.
            Err(_) => return client,
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain bit array; sigemptyset gives it a defined value right away.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t and SIGPIPE a valid signal (sigsetops(3)).
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
    }
    set
}

fn block_sigpipe_in_this_thread() {
    let set = sigpipe_set();
    // SAFETY: `set` is a valid sigset_t; a null old set is allowed (pthread_sigmask(3)).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    assert_eq!(rc, 0);
}

fn sigpipe_pending() -> bool {
    // SAFETY: as in sigpipe_set, zero bytes are a valid sigset_t, filled in by sigpending.
    let mut pending: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `pending` is valid for writes of one sigset_t (sigpending(2)).
    let rc = unsafe { libc::sigpending(&mut pending) };
    assert_eq!(rc, 0);
    // SAFETY: `pending` is a valid sigset_t (sigismember(3)).
    unsafe { libc::sigismember(&pending, libc::SIGPIPE) == 1 }
}
