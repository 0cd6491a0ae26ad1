//! Running out of descriptors (EMFILE) must not take the server down or make it spin.
//!
//! When `accept4(2)` fails with EMFILE the connection stays in the kernel's accept queue, so a
//! level-triggered listener stays readable and a naive loop calls `accept4` forever at 100%
//! CPU. The server sheds waiting connections with libuv's spare-descriptor trick and otherwise
//! pauses accepting until its next tick (src/accept.rs). The test starts the server with
//! RLIMIT_NOFILE 64, soft and hard (the server raises soft to hard at start, so both must be
//! low), fills it with verified clients, floods it with more, and checks: CPU stays low, the
//! clients already in are still served, and once some leave, newcomers get in again.

mod util;

use std::net::TcpStream;
use std::time::Duration;

use util::client::{connect, echo_exact, set_timeouts};
use util::{holds_many_client_fds, poll_until, Exit, Model, Models, Server, Watchdog, IO_TIMEOUT};

/// The server's descriptor limit, soft and hard.
const NOFILE: u64 = 64;

/// Most CPU the server may use, as a fraction of one core, while out of descriptors.
const CPU_BOUND: f64 = 0.30;

#[test]
fn out_of_descriptors_the_server_sheds_load_without_spinning_and_recovers() {
    let _watchdog = Watchdog::new(Duration::from_secs(300));
    // Two at a time: the CPU measurement must not be drowned by the other models' floods.
    let models = Models::ALL.only(holds_many_client_fds).parallel(2);
    models.exit_within(Duration::from_secs(30)).each_server(
        |server| server.nofile(NOFILE).args(&["--workers", "2"]),
        |server| {
            let (mut good, rejected) = fill(server);
            assert!(
                good.len() >= 8,
                "only {} clients served before running out",
                good.len()
            );
            assert!(
                good.len() < 200,
                "{} clients served with a limit of {NOFILE} descriptors",
                good.len()
            );
            let flood = flood_without_spinning(server, good.len());
            // Clients already in are still served, byte for byte.
            for (i, c) in good.iter().enumerate() {
                echo_exact(c, format!("still here {i}\n").as_bytes()).unwrap_or_else(|e| {
                    panic!("client {i} of {} while out of descriptors: {e}", good.len())
                });
            }
            // Some leave; newcomers get in again.
            drop(flood);
            drop(rejected);
            good.truncate(good.len() - 6);
            let _newcomers = newcomers(server, 3);
            for (i, c) in good.iter().enumerate() {
                echo_exact(c, b"after recovery\n")
                    .unwrap_or_else(|e| panic!("client {i} after recovery: {e}"));
            }
            |exit: &Exit| {
                // thread-per-conn may hit the limit in dup(2) instead of accept4(2).
                if exit.model != Model::ThreadPerConn {
                    let exhausted = exit.final_sum("fd_exhausted");
                    assert!(exhausted >= 1, "fd_exhausted: {:?}", exit.final_stats());
                }
            }
        },
    );
}

/// Adds verified clients until one is not served; returns the served ones and the first
/// that was not.
fn fill(server: &Server) -> (Vec<TcpStream>, TcpStream) {
    let mut good = Vec::new();
    loop {
        let c = server.connect();
        if good.len() >= 200 || !echoes_within(&c, Duration::from_secs(2)) {
            return (good, c);
        }
        good.push(c);
    }
}

/// Many more clients connect (the kernel completes their handshakes) while the server is out
/// of descriptors; it must not spin. Returns the flood, to be dropped later.
fn flood_without_spinning(server: &Server, fit: usize) -> Vec<TcpStream> {
    let flood: Vec<TcpStream> = (0..150)
        .filter_map(|_| connect(server.addr()).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let cpu = server.cpu_fraction(Duration::from_secs(1));
    eprintln!(
        "[{}] {fit} clients fit; out of descriptors, CPU {:.0}% of a core",
        server.label(),
        cpu * 100.0
    );
    assert!(
        cpu < CPU_BOUND,
        "server uses {:.0}% of a core while out of descriptors",
        cpu * 100.0
    );
    flood
}

/// Connects until `n` newcomers are served, retrying for up to 15 s.
fn newcomers(server: &Server, n: usize) -> Vec<TcpStream> {
    let mut served = Vec::new();
    let all_in = poll_until(Duration::from_secs(15), Duration::from_millis(200), || {
        while served.len() < n {
            let c = server.connect();
            if !echoes_within(&c, Duration::from_secs(2)) {
                let only = served.len();
                return Err(format!(
                    "{n} newcomers served after 6 clients left (only {only})"
                ));
            }
            served.push(c);
        }
        Ok(())
    });
    all_in.unwrap();
    served
}

/// True if a short message is echoed within `within`.
fn echoes_within(c: &TcpStream, within: Duration) -> bool {
    set_timeouts(c, within).unwrap();
    let ok = echo_exact(c, b"are you there?\n").is_ok();
    set_timeouts(c, IO_TIMEOUT).unwrap();
    ok
}
