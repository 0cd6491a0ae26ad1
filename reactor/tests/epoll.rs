//! Epoll's trigger modes on real loopback sockets: level-triggered repeats, edge-triggered
//! reports changes only, one-shot fires once until re-armed, plus registration errors,
//! timeouts, and a small `Events` buffer that still delivers every ready descriptor.

mod util;

use std::io;
use std::time::{Duration, Instant};

use reactor::{Epoll, Events, Interest, Token};
use util::{fires_within_quiet, pair, wait_for, write_all};

const CONN: Token = Token(7);

#[test]
fn level_triggered_repeats_until_drained() {
    let (client, server) = pair();
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(8);
    epoll.add(&server, CONN, Interest::READABLE).unwrap();

    write_all(&client, b"hello");
    assert_eq!(wait_for(&epoll, &mut events, CONN), (true, false, false));
    // Not read yet: level-triggered reports it again, and again.
    assert!(fires_within_quiet(&epoll, &mut events, CONN));
    assert!(fires_within_quiet(&epoll, &mut events, CONN));

    let mut buf = [0u8; 16];
    assert_eq!(server.read(&mut buf).unwrap(), 5);
    assert!(
        !fires_within_quiet(&epoll, &mut events, CONN),
        "drained: no more events"
    );
}

#[test]
fn edge_triggered_reports_changes_only() {
    let (client, server) = pair();
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(8);
    epoll.add(&server, CONN, Interest::READABLE.edge()).unwrap();

    write_all(&client, b"one");
    wait_for(&epoll, &mut events, CONN);
    // Still unread, but nothing changed: edge-triggered stays silent. This is the bug every
    // edge-triggered server must avoid by reading until WouldBlock.
    assert!(!fires_within_quiet(&epoll, &mut events, CONN));

    // New data is a new edge.
    write_all(&client, b"two");
    wait_for(&epoll, &mut events, CONN);
    let mut buf = [0u8; 16];
    assert_eq!(server.read(&mut buf).unwrap(), 6);
    assert_eq!(&buf[..6], b"onetwo");
    assert_eq!(
        server.read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

#[test]
fn oneshot_fires_once_until_rearmed_with_modify() {
    let (client, server) = pair();
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(8);
    epoll
        .add(&server, CONN, Interest::READABLE.oneshot())
        .unwrap();

    write_all(&client, b"x");
    wait_for(&epoll, &mut events, CONN);
    // Disarmed: neither the unread byte (level) nor new data (edge) reports anything.
    assert!(!fires_within_quiet(&epoll, &mut events, CONN));
    write_all(&client, b"y");
    assert!(!fires_within_quiet(&epoll, &mut events, CONN));

    // Re-arming reports the data that is waiting, under the new token.
    epoll
        .modify(&server, Token(8), Interest::READABLE.oneshot())
        .unwrap();
    wait_for(&epoll, &mut events, Token(8));
    assert!(!fires_within_quiet(&epoll, &mut events, Token(8)));
}

#[test]
fn writable_and_read_closed_are_reported() {
    let (client, server) = pair();
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(8);
    epoll
        .add(&server, CONN, Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    // An idle connection has room in its send buffer: writable, not readable.
    assert_eq!(wait_for(&epoll, &mut events, CONN), (false, true, false));

    // The peer's FIN shows as EPOLLRDHUP (and EPOLLIN: read returns 0).
    client.shutdown(reactor::Shutdown::Write).unwrap();
    let start = Instant::now();
    loop {
        let (readable, _, read_closed) = wait_for(&epoll, &mut events, CONN);
        if read_closed {
            assert!(readable);
            break;
        }
        assert!(start.elapsed() < util::DEADLINE, "FIN never reported");
    }
    let mut buf = [0u8; 4];
    assert_eq!(server.read(&mut buf).unwrap(), 0);
}

#[test]
fn add_twice_is_eexist_and_delete_stops_events() {
    let (client, server) = pair();
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(8);
    epoll.add(&server, CONN, Interest::READABLE).unwrap();
    let err = epoll.add(&server, CONN, Interest::READABLE).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));

    epoll.delete(&server).unwrap();
    write_all(&client, b"z");
    assert!(!fires_within_quiet(&epoll, &mut events, CONN));
    let err = epoll.delete(&server).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let err = epoll.modify(&server, CONN, Interest::READABLE).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
}

#[test]
fn wait_times_out_with_no_events_and_rounds_up() {
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let start = Instant::now();
    epoll
        .wait(&mut events, Some(Duration::from_millis(30)))
        .unwrap();
    assert!(events.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(30));

    // 1 ns must round up to a real 1 ms sleep, not a 0 ms poll.
    let start = Instant::now();
    epoll
        .wait(&mut events, Some(Duration::from_nanos(1)))
        .unwrap();
    assert!(events.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(1));
}

#[test]
fn small_buffer_still_delivers_every_ready_descriptor() {
    // Five readable sockets, an Events buffer of two: epoll hands them out in turns.
    let pairs: Vec<_> = (0..5).map(|_| pair()).collect();
    let epoll = Epoll::new().unwrap();
    for (i, (client, server)) in pairs.iter().enumerate() {
        epoll
            .add(server, Token(i as u64), Interest::READABLE)
            .unwrap();
        write_all(client, b"!");
    }
    let mut events = Events::with_capacity(2);
    assert_eq!(events.capacity(), 2);
    let mut seen = [false; 5];
    let start = Instant::now();
    while seen.iter().any(|s| !s) {
        assert!(start.elapsed() < util::DEADLINE, "saw only {seen:?}");
        epoll.wait(&mut events, Some(util::DEADLINE)).unwrap();
        assert!(events.len() <= 2);
        for ev in events.iter() {
            let i = ev.token().0 as usize;
            let mut buf = [0u8; 1];
            if !seen[i] {
                // Drain it so it stops being reported.
                assert_eq!(pairs[i].1.read(&mut buf).unwrap(), 1);
                seen[i] = true;
            }
        }
    }
    events.clear();
    assert!(events.is_empty());
}
