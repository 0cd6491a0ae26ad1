//! The io_uring models (`uring`, `uring-reuseport`) against the pitfalls of `docs/uring.md`,
//! through the real server: each test drives a real `echo-server` over loopback into the
//! situation where a pitfall bites, checks every echoed byte, and then reads the server's
//! `uring=` stats field to prove the situation really happened (a test whose scenario never
//! occurred would prove nothing). The ring-level rules are unit-tested in
//! `reactor/tests/uring.rs`; here they are tested as a server must live with them.
//!
//! | pitfall | how the test provokes it | what must hold |
//! |---|---|---|
//! | a multishot op ends without `F_MORE` | a 4-entry CQ under 32 streams and a burst of connects | exact bytes; `recv_rearm`, `cq_overflow` > 0 |
//! | `-ENOBUFS` | four 64-byte provided buffers under 16 streams | exact bytes; `enobufs` > 0 |
//! | one send in flight, short sends | a 16 MiB stream read only once the writer is stuck | exact bytes; `short_send` > 0, `recv_cancel` + `recv_held` > 0 |
//! | a buffer goes back only once copied | the same four tiny buffers, reused constantly | distinct random bytes per connection, exact |
//! | CQ overflow | the 4-entry CQ | nothing lost |
//! | a buffer lives until its final CQE | connections reset or dropped mid-stream with sends and recvs in flight | no crash, survivors exact, no descriptor leaked |
//!
//! Where io_uring is unavailable each test prints `skipped: <cause>` on stderr and returns,
//! unless `RAWLOOP_REQUIRE_URING` is set. No test measures time.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rawloop::conn::{memory_bound, Limits};
use util::client::{
    connect_many, echo_exact, echo_many, fill_without_reading, reset, set_timeouts,
    write_without_reading, Finish,
};
use util::procfs::kernel_send_buffer_max;
use util::{uses_io_uring, Models, Rng, Server, Stats, Watchdog, IO_TIMEOUT};

/// The io_uring models, `parallel` at a time.
fn uring_models(parallel: usize) -> Models {
    Models::ALL.only(uses_io_uring).parallel(parallel)
}

/// True if io_uring can run here; otherwise prints `<test>: skipped: <cause>` where libtest
/// does not capture it (or fails, under `RAWLOOP_REQUIRE_URING`).
fn uring_or_skip(test: &str) -> bool {
    let Err(cause) = reactor::uring::available() else {
        return true;
    };
    assert!(
        std::env::var_os("RAWLOOP_REQUIRE_URING").is_none(),
        "{test}: io_uring required but unavailable: {cause}"
    );
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {cause}");
    false
}

/// One count of the `uring=a:1,b:2` field of a stats line.
fn uring_count(stats: &Stats, key: &str) -> u64 {
    let field = stats
        .0
        .get("uring")
        .expect("stats line has no `uring` field");
    field
        .split(',')
        .filter_map(|kv| kv.split_once(':'))
        .find(|(k, _)| *k == key)
        .unwrap_or_else(|| panic!("no `{key}` in uring={field}"))
        .1
        .parse()
        .expect("a number")
}

/// How often a recv was cancelled, or left unarmed, because a connection wanted no input.
fn backpressure(stats: &Stats) -> u64 {
    uring_count(stats, "recv_cancel") + uring_count(stats, "recv_held")
}

/// Stops the server, checks a clean exit, and returns its final stats line.
fn finish(server: Server) -> Stats {
    let exit = server.terminate(Duration::from_secs(30));
    exit.assert_clean();
    exit.last_final()
}

/// `n` distinct random payloads of `len` bytes.
fn payloads(rng: &mut Rng, n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n).map(|_| rng.bytes(len)).collect()
}

#[test]
fn a_tiny_completion_queue_loses_nothing_and_ended_multishots_are_rearmed() {
    let test = "a_tiny_completion_queue_loses_nothing_and_ended_multishots_are_rearmed";
    if !uring_or_skip(test) {
        return;
    }
    let _watchdog = Watchdog::new(Duration::from_secs(180));
    uring_models(1).each(|target| {
        // 4 CQ entries (and so 4 SQ entries): every batch overflows the CQ, and a multishot
        // recv or accept that finds it full ends, often with data in its last completion.
        let args = ["--uring-cq-entries", "4", "--workers", "2"];
        let server = target.start(&args);
        let mut rng = server.rng(0);
        for round in 0..2 {
            // A burst of connects: the multishot accept ends on the full CQ and is re-armed.
            let streams = connect_many(server.addr(), 32, Duration::from_secs(30)).unwrap();
            let sent = payloads(&mut rng, 32, 256 * 1024);
            echo_many(streams, &sent, Finish::HalfClose, Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let stats = finish(server);
        eprintln!("[{}] tiny CQ: uring={}", target.label(), stats.0["uring"]);
        assert!(
            uring_count(&stats, "cq_overflow") > 0,
            "the CQ never overflowed"
        );
        assert!(
            uring_count(&stats, "recv_rearm") > 0,
            "no multishot recv ended early and was re-armed"
        );
        assert_eq!(stats.get("errors"), 0);
    });
}

#[test]
fn a_provided_buffer_group_that_runs_dry_loses_nothing() {
    let test = "a_provided_buffer_group_that_runs_dry_loses_nothing";
    if !uring_or_skip(test) {
        return;
    }
    let _watchdog = Watchdog::new(Duration::from_secs(180));
    uring_models(1).each(|target| {
        // Four 64-byte buffers per ring for 16 streams: the group runs dry (ENOBUFS) over and
        // over, and each buffer is reused thousands of times, so a buffer given back before
        // its bytes were copied would show as corrupted echoes.
        let args = [
            "--uring-buffers",
            "4",
            "--uring-buffer-size",
            "64",
            "--workers",
            "2",
        ];
        let server = target.start(&args);
        let mut rng = server.rng(0);
        let streams = connect_many(server.addr(), 16, Duration::from_secs(30)).unwrap();
        let sent = payloads(&mut rng, 16, 128 * 1024);
        echo_many(streams, &sent, Finish::HalfClose, Duration::from_secs(120)).unwrap();
        let stats = finish(server);
        eprintln!(
            "[{}] dry buffer group: uring={}",
            target.label(),
            stats.0["uring"]
        );
        assert!(
            uring_count(&stats, "enobufs") > 0,
            "the group never ran dry"
        );
        assert!(uring_count(&stats, "recv_rearm") >= uring_count(&stats, "enobufs"));
    });
}

#[test]
fn a_slow_reader_gets_a_long_stream_exactly_through_short_sends() {
    let test = "a_slow_reader_gets_a_long_stream_exactly_through_short_sends";
    if !uring_or_skip(test) {
        return;
    }
    let _watchdog = Watchdog::new(Duration::from_secs(180));
    uring_models(2).each(|target| {
        // A high-water mark near the kernel's largest send buffer: a send of that much is
        // often more than the socket has room for, so it comes back short.
        let high_water = kernel_send_buffer_max().to_string();
        let server = target.start(&["--workers", "2", "--high-water", &high_water]);
        let mut rng = server.rng(0);
        // More than the kernel and the server buffer together, so the server must stop
        // reading (cancel its recv), hold one send in flight, and continue short sends.
        let payload = rng.bytes((4 << 20) + 3 * kernel_send_buffer_max());
        let stream = util::client::connect_buffered(server.addr(), 16 * 1024, 16 * 1024);
        set_timeouts(&stream, Duration::from_secs(30)).unwrap();
        let sent = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                for chunk in payload.chunks(64 * 1024) {
                    (&stream).write_all(chunk).expect("write");
                    sent.fetch_add(chunk.len(), Ordering::Relaxed);
                }
                stream.shutdown(std::net::Shutdown::Write).unwrap();
            });
            // Read nothing until the writer is stuck: then the server has stopped reading
            // and queued up to its high-water mark, which its next send cannot fit at once.
            wait_until_stalled(&sent, payload.len());
            let got = read_all(&stream, payload.len());
            writer.join().unwrap();
            assert!(got == payload, "the echo differs from what was sent");
        });
        let stats = finish(server);
        eprintln!(
            "[{}] slow reader: uring={}",
            target.label(),
            stats.0["uring"]
        );
        assert!(uring_count(&stats, "short_send") > 0, "no send was short");
        assert!(backpressure(&stats) > 0, "no backpressure");
        assert!(uring_count(&stats, "recv_rearm") > 0, "input never resumed");
    });
}

#[test]
fn connections_dropped_mid_stream_leave_no_descriptor_and_spare_the_others() {
    let test = "connections_dropped_mid_stream_leave_no_descriptor_and_spare_the_others";
    if !uring_or_skip(test) {
        return;
    }
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    uring_models(1).each(|target| {
        let server = target.start(&["--workers", "2"]);
        let baseline = server.settled_fds();
        let mut rng = server.rng(0);
        for round in 0..3 {
            let survivors = connect_many(server.addr(), 16, Duration::from_secs(30)).unwrap();
            let sent = payloads(&mut rng, 16, 512 * 1024);
            let victims = stuff_victims(&server, &mut rng, 16);
            std::thread::scope(|s| {
                let checked = s.spawn(|| {
                    echo_many(
                        survivors,
                        &sent,
                        Finish::HalfClose,
                        Duration::from_secs(120),
                    )
                });
                // Victims die while the server has a send in flight to each (they never
                // read) and a recv armed or being cancelled: reset half, close the rest.
                for (i, victim) in victims.into_iter().enumerate() {
                    match i % 2 {
                        0 => reset(victim),
                        _ => drop(victim),
                    }
                }
                checked
                    .join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            });
        }
        server.expect_fds_back_to(baseline, Duration::from_secs(20));
        let late = server.connect();
        echo_exact(&late, b"still serving\n").unwrap();
        drop(late);
        let stats = finish(server);
        eprintln!(
            "[{}] drops mid-stream: uring={}",
            target.label(),
            stats.0["uring"]
        );
        assert_eq!(stats.get("open"), 0);
        // The victims had stopped the server reading: their recvs were being cancelled.
        assert!(backpressure(&stats) > 0);
    });
}

#[test]
fn a_burst_that_lands_in_one_turn_is_held_like_one_read() {
    let test = "a_burst_that_lands_in_one_turn_is_held_like_one_read";
    if !uring_or_skip(test) {
        return;
    }
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    // A 16 MiB group, so that running dry (ENOBUFS) is not what stops the burst.
    let args = [
        "--protocol",
        "lines",
        "--high-water",
        "16384",
        "--max-line",
        "1024",
        "--workers",
        "1",
        "--uring-buffers",
        "1024",
    ];
    let limits = Limits {
        high_water: 16384,
        low_water: 16384 / 4,
        max_line: 1024,
        ..Limits::default()
    };
    let bound = memory_bound(&limits) as u64;
    uring_models(1).each(|target| {
        const VICTIMS: usize = 32;
        let server = target.start(&args);
        // Small receive buffers: the victims' kernels cannot take the replies off the server's
        // hands either, so what the server reads, it must hold.
        let victims: Vec<TcpStream> = (0..VICTIMS)
            .map(|_| util::client::connect_buffered(server.addr(), 4096, 1 << 20))
            .collect();
        for victim in &victims {
            echo_exact(victim, b"hello\n").unwrap();
        }
        let before = server.settled_rss();
        // The loop burns half a second on one request; meanwhile every victim fills its
        // socket without reading. When the loop next enters the kernel, each multishot recv
        // may take all its socket holds at once, more than the high-water mark, before any
        // cancel can be submitted; the byte limit of an arm (`conn::recv_limit`) keeps that
        // below one read. (On a quiet machine the server's send buffer absorbs most replies
        // and even an unlimited recv stays under the bound here; the overshoot showed under
        // load, in `tests/hostile.rs`. This test holds the bound where bursts are likeliest.)
        let busy = server.connect();
        (&busy).write_all(b"WORK 500000 busy\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let lines = b"0123456789abcdef0123456789abcdef0123456789abcde\n".repeat(1 << 14);
        let quiet = Duration::from_millis(10);
        write_without_reading(&victims, &vec![&lines; VICTIMS], quiet, IO_TIMEOUT);
        util::client::read_expecting(&busy, b"WORK 500000 busy\n").unwrap();
        let after = server.settled_rss();
        let per_conn = after.saturating_sub(before) / VICTIMS as u64;
        drop(victims);
        let stats = finish(server);
        eprintln!(
            "[{}] {per_conn} bytes per victim (bound {bound}); uring={}",
            target.label(),
            stats.0["uring"]
        );
        // The bound counts bytes; RSS counts pages: a victim's two buffers (replies and
        // set-aside input), each up to a page short at either end, plus the allocator's
        // headers, may show up to 4 pages more.
        let allowed = bound + 16 * 1024;
        assert!(
            per_conn <= allowed,
            "{per_conn} bytes per never-reading client (core bound {bound}, allowed {allowed}): \
             RSS {before} -> {after}"
        );
    });
}

#[test]
fn pipelined_costly_requests_yield_to_a_neighbour() {
    let test = "pipelined_costly_requests_yield_to_a_neighbour";
    if !uring_or_skip(test) {
        return;
    }
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    uring_models(1).each(|target| {
        // One loop, so both clients share it.
        let args = ["--protocol", "lines", "--workers", "1"];
        let server = target.start(&args);
        let greedy = server.connect();
        let pipeline: String = (0..30).map(|i| format!("WORK 20000 g{i}\n")).collect();
        // Separate writes, so the requests may arrive in several recv completions.
        for line in pipeline.split_inclusive('\n') {
            (&greedy).write_all(line.as_bytes()).unwrap();
        }
        let first = "WORK 20000 g0\n";
        util::client::read_expecting(&greedy, first.as_bytes()).unwrap();
        let cheap = server.connect();
        echo_exact(&cheap, b"cheap\n").unwrap();
        // If the loop had served the whole pipeline in one turn, all 30 replies would be
        // there by now; one request per turn past the budget leaves most still to come.
        greedy.set_nonblocking(true).unwrap();
        let mut ready = Vec::new();
        let _ = (&greedy).read_to_end(&mut ready);
        greedy.set_nonblocking(false).unwrap();
        let replies = 1 + ready.iter().filter(|&&b| b == b'\n').count();
        eprintln!(
            "[{}] the cheap line came back after {replies} of 30 costly replies",
            target.label()
        );
        assert!(replies < 30, "the cheap line waited for the whole pipeline");
        let rest = &pipeline.as_bytes()[first.len()..];
        assert!(rest.starts_with(&ready), "replies out of order");
        util::client::read_expecting(&greedy, &rest[ready.len()..]).unwrap();
        finish(server);
    });
}

#[test]
fn the_uring_models_make_no_readiness_syscalls() {
    let test = "the_uring_models_make_no_readiness_syscalls";
    if !uring_or_skip(test) {
        return;
    }
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    uring_models(2).each(|target| {
        let server = target.start(&["--syscall-stats", "--workers", "2"]);
        let mut rng = server.rng(0);
        let streams: Vec<TcpStream> = (0..8).map(|_| server.connect()).collect();
        for _ in 0..100 {
            for stream in &streams {
                echo_exact(stream, &rng.bytes(64)).unwrap();
            }
        }
        drop(streams);
        let stats = finish(server);
        let field = stats.0["syscalls_per_msg"].clone();
        eprintln!("[{}] syscalls_per_msg={field}", target.label());
        let per: Vec<(&str, f64)> = field
            .split(',')
            .filter_map(|kv| kv.split_once(':'))
            .map(|(k, v)| (k, v.parse().unwrap()))
            .collect();
        let of = |key: &str| per.iter().find(|(k, _)| *k == key).unwrap().1;
        // `uring-reuseport`'s supervisor has an epoll set of its own (signals, stats, the
        // joiner): a few calls at start, none per message.
        for readiness in ["epoll_wait", "epoll_ctl", "read", "write"] {
            assert!(of(readiness) < 0.05, "{readiness} in {field}");
        }
        assert!(of("io_uring_enter") > 0.0, "{field}");
        // Every echo is at least one send SQE and its CQE, whatever else was batched.
        assert!(of("uring_sqe") >= 1.0 && of("uring_cqe") >= 2.0, "{field}");
    });
}

#[test]
fn without_io_uring_the_model_is_refused_with_its_cause() {
    let test = "without_io_uring_the_model_is_refused_with_its_cause";
    // strace makes io_uring_setup(2) fail with EPERM, as a seccomp profile would.
    let probe = Command::new("strace").arg("-V").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: strace is not installed"
        );
        return;
    }
    let _watchdog = Watchdog::new(Duration::from_secs(60));
    for model in uring_models(1).targets().iter().map(|t| t.model.name()) {
        let mut child = Command::new("strace")
            .args(["-f", "-o", "/dev/null", "-e", "trace=io_uring_setup"])
            .args(["-e", "inject=io_uring_setup:error=EPERM"])
            .arg(env!("CARGO_BIN_EXE_echo-server"))
            .args(["--model", model, "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strace");
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("[{model}] still running without io_uring");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "[{model}] stderr: {stderr}");
        let expected = format!("echo-server: --model {model}: io_uring_setup(2) is not permitted");
        assert!(stderr.contains(&expected), "[{model}] stderr: {stderr}");
        assert!(out.stdout.is_empty(), "[{model}] it must not have started");
    }
}

/// Opens `n` connections that each send until the kernel buffers on both sides are full and
/// the server has stopped reading, and read nothing: the server ends up with a send in flight
/// (blocked on a full socket) and its recv cancelled, which is what dropping them must survive.
fn stuff_victims(server: &Server, rng: &mut Rng, n: usize) -> Vec<TcpStream> {
    let victims = connect_many(server.addr(), n, Duration::from_secs(30)).unwrap();
    let junk = rng.bytes(1 << 20);
    for victim in &victims {
        fill_without_reading(victim, &junk, Duration::from_millis(50), usize::MAX);
    }
    victims
}

/// Returns once `sent` has not moved for half a second (or reached `total`).
fn wait_until_stalled(sent: &AtomicUsize, total: usize) {
    let (mut last, mut since) = (sent.load(Ordering::Relaxed), Instant::now());
    while since.elapsed() < Duration::from_millis(500) && last < total {
        std::thread::sleep(Duration::from_millis(20));
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// Reads exactly `len` bytes.
fn read_all(stream: &TcpStream, len: usize) -> Vec<u8> {
    let mut got = vec![0u8; len];
    (&*stream).read_exact(&mut got).expect("read the echo");
    got
}
