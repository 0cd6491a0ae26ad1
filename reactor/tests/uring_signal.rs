//! A signal read from a signalfd *through the ring*, so that a loop built on `uring::Ring`
//! blocks in exactly one place (`Ring::wait`) and still hears SIGTERM.
//!
//! Runs with `harness = false` (see reactor/Cargo.toml) for the reason `signal.rs` gives: a
//! process-directed signal goes to any thread that does not block it, so every thread must
//! block it, which only holds in a process whose one thread blocks the signals before anything
//! else runs. libtest's worker threads would not.

use std::io::Write;
use std::time::{Duration, Instant};

use reactor::process;
use reactor::uring::{self, OpKind, Ring, RingOptions, SIGINFO_SIZE};
use reactor::{Signal, Signals, Token};

const DEADLINE: Duration = Duration::from_secs(10);

fn main() {
    // Must come first: blocks the signals in this, the only thread.
    let signals = Signals::new(&[Signal::Interrupt, Signal::Terminate]).expect("signalfd");
    if let Err(cause) = uring::available() {
        assert!(
            std::env::var_os("RAWLOOP_REQUIRE_URING").is_none(),
            "io_uring required but unavailable: {cause}"
        );
        let _ = writeln!(std::io::stderr(), "uring_signal: skipped: {cause}");
        return;
    }
    let mut ring = Ring::new(&RingOptions::default()).expect("Ring::new");
    for (name, sig) in [
        ("sigterm_read_through_the_ring", Signal::Terminate),
        ("sigint_read_through_the_ring", Signal::Interrupt),
    ] {
        read_one_signal(&mut ring, &signals, sig);
        println!("test {name} ... ok");
    }
    println!("\ntest result: ok. 2 passed (uring_signal.rs, single-threaded)");
}

/// Arms a read of the signalfd, checks that nothing completes before the signal, raises `sig`
/// and checks that the read returns one `signalfd_siginfo` naming it.
fn read_one_signal(ring: &mut Ring, signals: &Signals, sig: Signal) {
    ring.read(signals, Vec::with_capacity(SIGINFO_SIZE), Token(1));
    ring.wait(1, Some(Duration::from_millis(50))).unwrap();
    assert!(
        ring.next_completion().is_none(),
        "a read completed before any signal"
    );
    process::kill(process::getpid(), sig).unwrap();
    let start = Instant::now();
    let mut done = loop {
        if let Some(done) = ring.next_completion() {
            break done;
        }
        assert!(start.elapsed() < DEADLINE, "no completion for {sig:?}");
        ring.wait(1, Some(DEADLINE)).unwrap();
    };
    assert_eq!((done.token(), done.kind()), (Token(1), OpKind::Read));
    assert_eq!(
        done.res(),
        SIGINFO_SIZE as i32,
        "one whole signalfd_siginfo"
    );
    let buf = done.take_buf().unwrap();
    assert_eq!(uring::siginfo_signal(&buf), Some(sig));
    assert_eq!(ring.in_flight(), 0);
}
