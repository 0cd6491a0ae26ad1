//! timerfd timers inside an epoll set: a one-shot fires once, an interval counts every
//! expiration even when the loop is late, and a disarmed timer stays silent.

mod util;

use std::thread;
use std::time::{Duration, Instant};

use reactor::{Epoll, Events, Interest, Timer, Token};
use util::{fires_within_quiet, wait_for};

const TICK: Token = Token(42);

#[test]
fn one_shot_fires_once_after_the_delay() {
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(4);
    let timer = Timer::new().unwrap();
    epoll.add(&timer, TICK, Interest::READABLE).unwrap();
    assert_eq!(timer.read().unwrap(), 0, "a new timer is disarmed");

    let start = Instant::now();
    timer.set_after(Duration::from_millis(30)).unwrap();
    wait_for(&epoll, &mut events, TICK);
    assert!(start.elapsed() >= Duration::from_millis(30), "fired early");
    assert_eq!(timer.read().unwrap(), 1);
    // Read resets the count and the readiness; a one-shot never fires again.
    assert_eq!(timer.read().unwrap(), 0);
    assert!(!fires_within_quiet(&epoll, &mut events, TICK));
}

#[test]
fn zero_delay_fires_at_once_instead_of_disarming() {
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(4);
    let timer = Timer::new().unwrap();
    epoll.add(&timer, TICK, Interest::READABLE).unwrap();
    timer.set_after(Duration::ZERO).unwrap();
    wait_for(&epoll, &mut events, TICK);
    assert_eq!(timer.read().unwrap(), 1);
}

#[test]
fn interval_counts_every_expiration_even_when_read_late() {
    let timer = Timer::new().unwrap();
    let start = Instant::now();
    timer.set_interval(Duration::from_millis(10)).unwrap();
    // Do not read for a while: the expirations accumulate in the kernel instead of being lost.
    thread::sleep(Duration::from_millis(105));
    let n = timer.read().unwrap();
    let elapsed_ticks = (start.elapsed().as_millis() / 10) as u64;
    assert!(n >= 10, "expected at least 10 expirations, got {n}");
    assert!(
        n <= elapsed_ticks,
        "{n} expirations in {elapsed_ticks} periods"
    );

    // It keeps going after a read.
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(4);
    epoll.add(&timer, TICK, Interest::READABLE).unwrap();
    wait_for(&epoll, &mut events, TICK);
    assert!(timer.read().unwrap() >= 1);
}

#[test]
fn disarm_stops_the_timer() {
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(4);
    let timer = Timer::new().unwrap();
    epoll.add(&timer, TICK, Interest::READABLE).unwrap();
    timer.set_interval(Duration::from_millis(20)).unwrap();
    wait_for(&epoll, &mut events, TICK);
    timer.disarm().unwrap();
    timer.read().unwrap();
    assert!(!fires_within_quiet(&epoll, &mut events, TICK));
    assert_eq!(timer.read().unwrap(), 0);
}
