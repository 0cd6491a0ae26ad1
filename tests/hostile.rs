//! Hostile clients, against every model: what an attacker (or a buggy client) may do, and what
//! the server must still guarantee to everyone else.
//!
//! - **Replies that outgrow the cap.** A request can earn a longer reply than itself (`WORK\n`,
//!   5 bytes, earns a 47-byte `ERR`), so capping pending replies at the high-water mark is not
//!   enough if a whole read of such requests is processed at once. The core stops processing
//!   when pending replies reach the mark; a client that never reads holds at most
//!   `conn::memory_bound` bytes of server memory, whatever it sends.
//! - **A pipeline of costly requests.** Each `WORK` is capped (1 s), but a pipeline of them is
//!   not: without a turn budget, one connection would hold its thread (and, in single-threaded
//!   models, the signals) for as long as it likes. Signals must still be answered (drain within
//!   the drain timeout plus one request; a second signal at once) and a cheap neighbour must
//!   not wait more than about one request.
//! - **Running out of descriptors.** Connections that arrive while the process has no
//!   descriptor left are shed or served later, never left hanging, round after round (the
//!   spare descriptor must come back).
//! - **A refused client that already spoke** gets a clean FIN, not an RST.
//!
//! Bounds are generous: the failures they catch are orders of magnitude away (a pipeline of a
//! minute, megabytes per connection, a connection that hangs forever).

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use rawloop::conn::{memory_bound, Limits, READ_CHUNK};
use reactor::Signal;
use util::client::{connect, echo_exact, is_timeout, set_timeouts, write_without_reading, Finish};
use util::{holds_many_client_fds, no_greedy_neighbour, Model, Models, Server, Watchdog};

/// The limits the memory test runs with, small so that "bounded" and "unbounded" are far apart.
const HIGH_WATER: usize = 16 * 1024;
const MAX_LINE: usize = 1024;

#[test]
fn replies_that_outgrow_their_requests_cannot_grow_memory_past_the_bound() {
    let _watchdog = Watchdog::new(Duration::from_secs(600));
    let args = [
        "--protocol",
        "lines",
        "--high-water",
        "16384",
        "--max-line",
        "1024",
        "--workers",
        "2",
    ];
    let limits = Limits {
        high_water: HIGH_WATER,
        low_water: HIGH_WATER / 4,
        max_line: MAX_LINE,
        ..Limits::default()
    };
    let bound = memory_bound(&limits) as u64;
    Models::ALL.parallel(2).each_model(&args, |server| {
        const CLIENTS: usize = 60;
        // Connected and served once, so threads, processes and buffers of a served connection
        // are in the baseline; only what the amplifying requests add is measured.
        let clients = server.echo_clients(&vec![b"hello\n"; CLIENTS], Finish::KeepOpen, IO);
        let before = server.settled_rss();
        // 256 KiB of `WORK\n` each: 52,428 requests earning 2.4 MB of `ERR` replies each if
        // nothing stopped the server.
        let flood = b"WORK\n".repeat(256 * 1024 / 5);
        write_without_reading(&clients, &vec![&flood; CLIENTS], QUIET, IO);
        let after = server.settled_rss();
        let per_conn = after.saturating_sub(before) / CLIENTS as u64;
        // A model with a thread or process per connection also gives each connection its
        // thread's scratch buffers (a read and a batch of replies), first touched here; and a
        // process per connection gives each its own heap, where the pages of buffers freed and
        // reallocated stay resident, up to about as much again. Unbounded, it is 700 KiB to
        // 1 MiB per client (measured with the high-water stop disabled).
        let allowed = match server.model() {
            Model::ProcessPerConn => 2 * (bound + 2 * READ_CHUNK as u64),
            model if dedicated_thread(model) => bound + 2 * READ_CHUNK as u64,
            _ => bound,
        };
        assert!(
            per_conn <= allowed,
            "{per_conn} bytes per never-reading client (allowed {allowed}, core bound {bound}): \
             RSS {before} -> {after}"
        );
        drop(clients);
    });
}

#[test]
fn a_pipeline_of_costly_requests_leaves_signals_and_neighbours_served() {
    let _watchdog = Watchdog::new(Duration::from_secs(900));
    let args = [
        "--protocol",
        "lines",
        "--workers",
        "2",
        "--drain-timeout",
        "2",
    ];
    Models::ALL
        .parallel(1)
        .exit_within(Duration::from_secs(15))
        .each_model(&args, |server| {
            let burst = burst(server);
            let neighbour = server.connect();
            echo_exact(&neighbour, b"warm\n").unwrap();
            let worst = worst_reply(&neighbour, Duration::from_secs(3));
            if no_greedy_neighbour(server.model()) || nonblocking(server.model()) {
                assert!(
                    worst <= 2 * CAP,
                    "a cheap neighbour waited {worst:?} beside a pipeline of WORK"
                );
            }
            drop((burst, neighbour));
            // Drain within the drain timeout plus one request: checked by `exit_within`.
        });
}

#[test]
fn a_second_signal_exits_at_once_even_during_a_pipeline_of_costly_requests() {
    let _watchdog = Watchdog::new(Duration::from_secs(900));
    let args = [
        "--protocol",
        "lines",
        "--workers",
        "2",
        "--drain-timeout",
        "30",
    ];
    Models::ALL.parallel(1).each(|target| {
        let server = target.start(&args);
        let burst = burst(&server);
        server.signal(Signal::Terminate);
        std::thread::sleep(Duration::from_millis(300));
        let exit = server.terminate(CAP + Duration::from_secs(4));
        assert!(exit.status.success(), "[{}] {:?}", exit.label, exit.status);
        drop(burst);
    });
}

#[test]
fn no_connection_is_left_hanging_after_running_out_of_descriptors() {
    let _watchdog = Watchdog::new(Duration::from_secs(900));
    Models::ALL
        .only(holds_many_client_fds)
        .parallel(2)
        .exit_within(Duration::from_secs(30))
        .each_server(
            |server| server.nofile(128).args(&["--workers", "2"]),
            |server| {
                for round in 0..2 {
                    let hanging = hanging_after_a_storm(server, 300);
                    assert_eq!(hanging, 0, "round {round}: {hanging} of 300 never answered");
                }
                // Still serving normally afterwards.
                echo_exact(&server.connect(), b"after the storms\n").unwrap();
            },
        );
}

#[test]
fn a_refused_client_that_already_sent_gets_fin_not_rst() {
    let _watchdog = Watchdog::new(Duration::from_secs(300));
    let args = ["--max-conns", "1", "--workers", "1"];
    Models::ALL.parallel(2).each_model(&args, |server| {
        let first = server.connect();
        echo_exact(&first, b"I am in\n").unwrap();
        // Stop the server so that the second client's bytes are queued before its accept.
        let pids: Vec<i32> = server.processes().iter().map(|p| p.pid).collect();
        signal_all(&pids, Signal::Stop);
        // kill(2) only sends: wait until the server has really stopped, or it could accept,
        // refuse and close before the line below is written, and that write would meet RST.
        let stopped = || {
            pids.iter()
                .all(|&pid| util::procfs::all_threads_stopped(pid))
        };
        let waited = util::poll_until(IO, Duration::from_millis(5), || match stopped() {
            true => Ok(()),
            false => Err("running"),
        });
        waited.expect("the server never stopped");
        let second = connect(server.addr()).unwrap();
        (&second).write_all(b"let me in\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        signal_all(&pids, Signal::Continue);
        let mut buf = [0u8; 64];
        match (&second).read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("a refused client got {n} bytes"),
            Err(e) => panic!("a refused client that had sent a line got {e} instead of FIN"),
        }
        drop((first, second));
    });
}

/// The cap of one `WORK` request (`protocol::MAX_WORK`).
const CAP: Duration = Duration::from_secs(1);

/// How long a socket must take nothing before a writer decides it is full.
const QUIET: Duration = Duration::from_millis(200);

/// How long a client may wait on a socket before the test calls it stuck.
const IO: Duration = Duration::from_secs(30);

/// The models that give every connection a thread or process of its own (blocking I/O).
fn dedicated_thread(model: Model) -> bool {
    matches!(model, Model::ThreadPerConn | Model::ProcessPerConn)
}

/// The nonblocking models: a turn budget bounds how long a neighbour waits.
fn nonblocking(model: Model) -> bool {
    !dedicated_thread(model)
}

/// Opens a connection that pipelines 200 × `WORK 300000` (a minute of CPU) without reading.
fn burst(server: &Server) -> TcpStream {
    let greedy = server.connect();
    let lines = b"WORK 300000 greedy\n".repeat(200);
    write_without_reading(std::slice::from_ref(&greedy), &[&lines], QUIET, IO);
    std::thread::sleep(Duration::from_millis(200)); // let the server start burning
    greedy
}

/// The slowest of the cheap echoes a client gets during `window`.
fn worst_reply(client: &TcpStream, window: Duration) -> Duration {
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut i = 0;
    while start.elapsed() < window {
        let line = format!("cheap {i}\n");
        let sent = Instant::now();
        echo_exact(client, line.as_bytes()).unwrap();
        worst = worst.max(sent.elapsed());
        i += 1;
    }
    worst
}

/// `n` clients connect at once and each sends a line; returns how many got neither an answer
/// (echo or close) within the I/O timeout: those would be left hanging.
fn hanging_after_a_storm(server: &Server, n: usize) -> usize {
    let clients: Vec<TcpStream> = (0..n).filter_map(|_| connect(server.addr()).ok()).collect();
    for c in &clients {
        let _ = (&*c).write_all(b"storm\n");
        let _ = c.shutdown(Shutdown::Write);
    }
    let mut hanging = 0;
    for c in &clients {
        set_timeouts(c, Duration::from_secs(20)).unwrap();
        let mut buf = Vec::new();
        // Either the echo then EOF, or a refusal (EOF or reset): any answer is an answer.
        if let Err(e) = (&*c).read_to_end(&mut buf) {
            if is_timeout(&e) {
                hanging += 1;
            }
        }
    }
    hanging
}

fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        let _ = reactor::process::kill(reactor::process::Pid(pid), signal);
    }
}
