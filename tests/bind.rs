//! `--bind`: port discovery with port 0, IPv6 loopback, and failing loudly when the address is
//! taken.
//!
//! Scripts start `echo-server --bind 127.0.0.1:0` and read the port from the first stdout line,
//! `listening on <addr>`: the kernel picks a free ephemeral port at bind(2), and
//! getsockname(2) tells which (ip(7), "ip_local_port_range"). Every model must print the real
//! port, including the ones that bind several SO_REUSEPORT sockets.

mod util;

use std::time::Duration;

use util::client::{connect, echo_exact};
use util::{each_model, run_to_exit, Models, Watchdog};

#[test]
fn bind_port_zero_prints_the_real_port() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(&[], |server| {
        let addr = server.addr();
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(
            addr.port(),
            0,
            "the announced port must be the one the kernel picked"
        );
        let stream = server.connect();
        echo_exact(&stream, b"port discovery works\n").unwrap();
    });
}

#[test]
fn ipv6_loopback_is_served() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        eprintln!("skipping: this machine has no IPv6 loopback ({e})");
        return;
    }
    Models::ALL.each_server(
        |server| server.bind("[::1]:0"),
        |server| {
            let addr = server.addr();
            assert!(
                addr.is_ipv6() && addr.ip().is_loopback(),
                "announced {addr}"
            );
            assert_ne!(addr.port(), 0);
            let stream = connect(addr).unwrap();
            let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            echo_exact(&stream, &payload).unwrap();
        },
    );
}

#[test]
fn a_taken_address_is_an_error_not_a_hang() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    // A plain listener without SO_REUSEPORT owns the port: bind(2) must fail with EADDRINUSE
    // for every model, SO_REUSEPORT ones included (socket(7): all sockets in a group must set
    // the option).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    Models::ALL.each(|target| {
        let mut argv = target.argv();
        argv.extend(["--bind", &addr]);
        let output = run_to_exit(&argv, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "exit status {:?}; stderr: {stderr}",
            output.status
        );
        assert!(
            stderr.contains("cannot listen on"),
            "stderr should say why: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("listening on"),
            "must not announce an address it does not hold"
        );
    });
}
