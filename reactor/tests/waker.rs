//! The eventfd waker: another thread can end a blocked `epoll_wait`, wakes coalesce, and
//! `reset` stops a level-triggered registration from reporting again.

mod util;

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use reactor::{Epoll, Events, Interest, Token, Waker};
use util::{fires_within_quiet, DEADLINE};

const WAKE: Token = Token(u64::MAX);

#[test]
fn wakes_a_wait_blocked_forever_from_another_thread() {
    let epoll = Arc::new(Epoll::new().unwrap());
    let waker = Arc::new(Waker::new().unwrap());
    epoll.add(&*waker, WAKE, Interest::READABLE).unwrap();

    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let waiter = {
        let epoll = Arc::clone(&epoll);
        thread::spawn(move || {
            let mut events = Events::with_capacity(4);
            let start = Instant::now();
            ready_tx.send(()).unwrap();
            // `None`: without the waker this would block forever.
            epoll.wait(&mut events, None).unwrap();
            let tokens: Vec<Token> = events.iter().map(|ev| ev.token()).collect();
            done_tx.send((tokens, start.elapsed())).unwrap();
        })
    };
    ready_rx.recv_timeout(DEADLINE).unwrap();
    // Give the waiter time to block, so the wake really ends a sleeping wait.
    thread::sleep(Duration::from_millis(100));
    assert!(
        done_rx.try_recv().is_err(),
        "the wait returned before any wake"
    );
    waker.wake().unwrap();
    let (tokens, blocked_for) = done_rx
        .recv_timeout(DEADLINE)
        .expect("the waker did not wake");
    assert_eq!(tokens, vec![WAKE]);
    // `start` was taken before `ready` was sent, and the wake came 100ms after that.
    assert!(
        blocked_for >= Duration::from_millis(100),
        "woke too early: {blocked_for:?}"
    );
    waiter.join().unwrap();
}

#[test]
fn wakes_coalesce_and_reset_clears_readiness() {
    let epoll = Epoll::new().unwrap();
    let waker = Waker::new().unwrap();
    let mut events = Events::with_capacity(4);
    epoll.add(&waker, WAKE, Interest::READABLE).unwrap();

    assert!(
        !fires_within_quiet(&epoll, &mut events, WAKE),
        "a new waker is quiet"
    );
    for _ in 0..10 {
        waker.wake().unwrap();
    }
    assert!(fires_within_quiet(&epoll, &mut events, WAKE));
    assert_eq!(events.len(), 1, "ten wakes, one event");
    // Level-triggered: still readable until reset.
    assert!(fires_within_quiet(&epoll, &mut events, WAKE));
    waker.reset().unwrap();
    assert!(!fires_within_quiet(&epoll, &mut events, WAKE));
    // Resetting an already-zero counter is fine (EAGAIN is Ok).
    waker.reset().unwrap();
}

#[test]
fn wake_is_counted_when_counting_is_enabled() {
    reactor::syscalls::enable();
    assert!(reactor::syscalls::is_enabled());
    let waker = Waker::new().unwrap();
    let before = reactor::syscalls::snapshot();
    waker.wake().unwrap();
    waker.wake().unwrap();
    let delta = reactor::syscalls::snapshot() - before;
    // Other tests in this binary may wake concurrently, hence `>=`.
    assert!(delta.wake >= 2, "{delta:?}");
}
