//! `TcpListener::steer_by_cpu`: with the CBPF program attached to a SO_REUSEPORT group, a
//! connection lands on the listener whose index is the CPU that processed its SYN. On loopback
//! that is the CPU of the connecting thread, so a client pinned to CPU `k` must be accepted by
//! listener `k % n`, every time (without steering, the 4-tuple hash spreads them at random).

use std::net::TcpStream as StdStream;
use std::time::{Duration, Instant};

use reactor::{ListenOptions, TcpListener};

#[test]
fn connections_land_on_the_listener_of_their_cpu() {
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    if cpus.len() < 2 {
        eprintln!("skipped: needs 2 CPUs, this machine has {}", cpus.len());
        return;
    }
    let options = ListenOptions {
        reuse_port: true,
        ..ListenOptions::default()
    };
    let first = TcpListener::bind("127.0.0.1:0".parse().unwrap(), &options).unwrap();
    let addr = first.local_addr().unwrap();
    let group: Vec<TcpListener> = std::iter::once(first)
        .chain((1..cpus.len()).map(|_| TcpListener::bind(addr, &options).unwrap()))
        .collect();
    group[0].steer_by_cpu(group.len() as u32).unwrap();
    for (index, cpu) in cpus.iter().enumerate() {
        let cpu = *cpu;
        // 20 connections from a thread pinned to this CPU, kept open until they are accepted.
        let clients = std::thread::spawn(move || {
            assert!(core_affinity::set_for_current(cpu), "pin to {cpu:?}");
            (0..20)
                .map(|_| StdStream::connect(addr).unwrap())
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        let got = accept_all(&group, clients.len());
        let expected: Vec<usize> = vec![index; clients.len()];
        assert_eq!(
            got, expected,
            "listener of each connection from CPU {index}"
        );
    }
}

#[test]
fn steering_needs_at_least_one_listener() {
    let options = ListenOptions {
        reuse_port: true,
        ..ListenOptions::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), &options).unwrap();
    assert!(listener.steer_by_cpu(0).is_err());
}

/// Accepts `n` connections from the group; returns the listener index of each.
fn accept_all(group: &[TcpListener], n: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(Instant::now() < deadline, "accepted only {got:?}");
        for (i, listener) in group.iter().enumerate() {
            while let Ok((stream, _)) = listener.accept() {
                drop(stream);
                got.push(i);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    got
}
