//! Signals through signalfd, and a fork that succeeds: the scenarios that need a
//! single-threaded process.
//!
//! This file runs with `harness = false` (see reactor/Cargo.toml), i.e. as a plain `main`.
//! libtest runs tests on worker threads, and that is fatal here twice over: a process-directed
//! `SIGTERM` goes to *any* thread that does not block it, so a harness thread would take the
//! default action and kill the whole test binary; and `process::fork` rightly refuses in a
//! multi-threaded process. A plain `main` has exactly one thread, which blocks the signals
//! before anything else runs: exactly the order `Signals::new` documents for a real server.
//! (The alternative, re-executing the test binary as a child with an environment variable,
//! still runs that child under libtest's threads.)

use std::io;
use std::time::{Duration, Instant};

use reactor::process::{self, ExitStatus, Fork};
use reactor::{Epoll, Events, Interest, Signal, Signals, Token};

const SIGNALS: Token = Token(1);
const DEADLINE: Duration = Duration::from_secs(10);

fn main() {
    // Must come first, before anything could start a thread.
    let signals =
        Signals::new(&[Signal::Interrupt, Signal::Terminate, Signal::Child]).expect("signalfd");
    let epoll = Epoll::new().unwrap();
    epoll.add(&signals, SIGNALS, Interest::READABLE).unwrap();
    let mut events = Events::with_capacity(4);
    let ctx = Ctx {
        signals: &signals,
        epoll: &epoll,
    };

    let scenarios: [(&str, Scenario); 7] = [
        (
            "sigkill_cannot_be_read_from_a_signalfd",
            sigkill_cannot_be_read_from_a_signalfd,
        ),
        (
            "sigterm_arrives_as_an_epoll_event",
            sigterm_arrives_as_an_epoll_event,
        ),
        (
            "sigint_arrives_as_an_epoll_event",
            sigint_arrives_as_an_epoll_event,
        ),
        ("standard_signals_coalesce", standard_signals_coalesce),
        (
            "fork_child_exit_is_reaped_after_sigchld",
            fork_child_exit_is_reaped_after_sigchld,
        ),
        (
            "killed_child_is_reaped_as_signaled",
            killed_child_is_reaped_as_signaled,
        ),
        (
            "child_killed_by_a_realtime_signal_is_reaped",
            child_killed_by_a_realtime_signal_is_reaped,
        ),
    ];
    for (name, scenario) in scenarios {
        scenario(&ctx, &mut events);
        println!("test {name} ... ok");
    }
    println!(
        "\ntest result: ok. {} passed (signal.rs, single-threaded)",
        scenarios.len()
    );
}

type Scenario = fn(&Ctx, &mut Events);

struct Ctx<'a> {
    signals: &'a Signals,
    epoll: &'a Epoll,
}

impl Ctx<'_> {
    /// Waits for the signalfd to become readable and returns the next signal.
    fn next_signal(&self, events: &mut Events) -> Signal {
        let start = Instant::now();
        loop {
            if let Some(sig) = self.signals.read().unwrap() {
                return sig;
            }
            assert!(start.elapsed() < DEADLINE, "no signal within {DEADLINE:?}");
            self.epoll.wait(events, Some(DEADLINE)).unwrap();
        }
    }
}

fn sigkill_cannot_be_read_from_a_signalfd(_: &Ctx, _: &mut Events) {
    let err = Signals::new(&[Signal::Kill]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

fn sigterm_arrives_as_an_epoll_event(ctx: &Ctx, events: &mut Events) {
    assert_eq!(ctx.signals.read().unwrap(), None, "nothing pending yet");
    // Sent to the whole process, as `kill <pid>` would. If it were not blocked, its default
    // action would end this binary right here and the test would fail.
    process::kill(process::getpid(), Signal::Terminate).unwrap();
    ctx.epoll.wait(events, Some(DEADLINE)).unwrap();
    assert!(events
        .iter()
        .any(|ev| ev.token() == SIGNALS && ev.is_readable()));
    assert_eq!(ctx.signals.read().unwrap(), Some(Signal::Terminate));
    assert_eq!(ctx.signals.read().unwrap(), None);
}

fn sigint_arrives_as_an_epoll_event(ctx: &Ctx, events: &mut Events) {
    process::kill(process::getpid(), Signal::Interrupt).unwrap();
    assert_eq!(ctx.next_signal(events), Signal::Interrupt);
}

fn standard_signals_coalesce(ctx: &Ctx, events: &mut Events) {
    // Two SIGTERMs sent before anyone reads: a standard signal is a pending *bit*, not a queue
    // (signal(7)), so one read drains both.
    process::kill(process::getpid(), Signal::Terminate).unwrap();
    process::kill(process::getpid(), Signal::Terminate).unwrap();
    assert_eq!(ctx.next_signal(events), Signal::Terminate);
    assert_eq!(ctx.signals.read().unwrap(), None);
}

fn fork_child_exit_is_reaped_after_sigchld(ctx: &Ctx, events: &mut Events) {
    let child = match process::fork().expect("fork in a single-threaded process") {
        // The child leaves at once with _exit: no unwinding into the parent's main, no
        // flushing of the parent's stdio buffers.
        Fork::Child => process::exit_now(7),
        Fork::Parent(pid) => pid,
    };
    assert_ne!(child, process::getpid());
    assert_eq!(ctx.next_signal(events), Signal::Child);
    assert_eq!(
        process::reap_any().unwrap(),
        Some((child, ExitStatus::Exited(7)))
    );
    assert_eq!(
        process::reap_any().unwrap(),
        None,
        "no children left: ECHILD is None"
    );
}

fn killed_child_is_reaped_as_signaled(ctx: &Ctx, events: &mut Events) {
    let child = match process::fork().unwrap() {
        Fork::Child => {
            // Should the parent die mid-test, do not linger; and give up after a while anyway.
            process::set_parent_death_signal(Signal::Kill).unwrap();
            std::thread::sleep(DEADLINE);
            process::exit_now(1)
        }
        Fork::Parent(pid) => pid,
    };
    // Still running: nothing to reap yet (WNOHANG returns 0, mapped to None).
    assert_eq!(process::reap_any().unwrap(), None);
    process::kill(child, Signal::Kill).unwrap();
    assert_eq!(ctx.next_signal(events), Signal::Child);
    assert_eq!(
        process::reap_any().unwrap(),
        Some((child, ExitStatus::Signaled(libc::SIGKILL)))
    );
}

fn child_killed_by_a_realtime_signal_is_reaped(ctx: &Ctx, events: &mut Events) {
    // `process::reap_any` decodes waitpid's status itself rather than through nix, whose
    // `WaitStatus` cannot name a real-time signal: nix would return EINVAL after the kernel had
    // already reaped the child, and the pid would be lost (see `sys::waitpid_any_nohang`).
    let child = match process::fork().unwrap() {
        Fork::Child => {
            process::set_parent_death_signal(Signal::Kill).unwrap();
            std::thread::sleep(DEADLINE);
            process::exit_now(1)
        }
        Fork::Parent(pid) => pid,
    };
    // `Signal` has no real-time member (the server never sends one), so send it raw, as an
    // operator's `kill -RTMIN <pid>` would. Its default action ends the child (signal(7)).
    let rtmin = libc::SIGRTMIN();
    // SAFETY: kill(2) takes no pointers; `child` is our own child, not yet reaped, so its pid
    // cannot have been reused by another process.
    assert_eq!(unsafe { libc::kill(child.0, rtmin) }, 0);
    assert_eq!(ctx.next_signal(events), Signal::Child);
    assert_eq!(
        process::reap_any().unwrap(),
        Some((child, ExitStatus::Signaled(rtmin)))
    );
    assert_eq!(process::reap_any().unwrap(), None);
}
