//! Slow reader, every model: a client sends well over 4 MiB without reading any echo. The server must
//! stop reading from it (backpressure) instead of buffering the echo in its own memory, and
//! once the client reads, every byte must arrive.
//!
//! The contract: a connection that does not read holds at most `--high-water` bytes of echo
//! plus one 64 KiB read chunk of server memory; the rest stays in the kernel's socket buffers,
//! where TCP flow control (RFC 9293, 3.8.6) pushes back on the sender. The client here sets
//! small socket buffers before connecting ([`util::sys::connect_with_buffers`]) so the kernel
//! cannot hide much of the backlog on the client side, and the test watches the server's
//! resident memory (VmRSS, proc_pid_status(5)) the whole time.
//!
//! How much is "well over": 4 MiB more than the server's kernel send buffer can ever hold
//! (`net.ipv4.tcp_wmem` max, 4 MiB by default). Loopback autotunes that buffer to its maximum,
//! so a plain 4 MiB would vanish into the kernel even for a server that never stops reading,
//! and the RSS check could not tell a correct server from a broken one.
//!
//! A control test runs the same client against `--high-water 1GiB`, a server that buffers
//! everything, and requires the measurement to catch it: it proves the RSS check can fail.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use util::client::{connect_buffered, echo_exact, read_expecting};
use util::procfs::kernel_send_buffer_max;
use util::{each_model, poll_until, Model, Models, Rng, Server, Watchdog};

/// What the slow client sends: 4 MiB more than the server's send buffer can absorb.
fn total() -> usize {
    (4 << 20) + kernel_send_buffer_max()
}

/// Most server RSS growth allowed while the client does not read: the contract's 64 KiB of
/// pending echo plus a 64 KiB read, with room for allocator slack, a connection thread's
/// stack and scratch buffers (thread-per-conn), and page-granular RSS accounting.
const RSS_BOUND: u64 = 2 << 20;

#[test]
fn slow_reader_is_backpressured_and_gets_every_byte() {
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    Models::ALL.parallel(2).each_model(&[], |server| {
        let seen = slow_reader(server, server.rng(0));
        eprintln!(
            "[{}] slow reader: RSS grew {} KiB, {} KiB sent before the client stalled",
            server.label(),
            seen.growth >> 10,
            seen.sent_at_stall >> 10
        );
        assert!(
            seen.growth <= RSS_BOUND,
            "server RSS grew {} KiB while a client did not read (bound {} KiB)",
            seen.growth >> 10,
            RSS_BOUND >> 10
        );
    });
}

#[test]
fn control_unbounded_buffering_is_caught_by_the_rss_check() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let server = Server::start(Model::EventLoop, &["--high-water", "1073741824"]);
    let seen = slow_reader(&server, Rng::new(42));
    eprintln!("control: RSS grew {} KiB", seen.growth >> 10);
    assert!(
        seen.growth > RSS_BOUND,
        "a server that buffers without bound grew only {} KiB: the RSS check could not fail",
        seen.growth >> 10
    );
    server.terminate(Duration::from_secs(20)).assert_clean();
}

/// What [`slow_reader`] observed.
struct Seen {
    /// Largest RSS growth of any server process over the largest baseline RSS.
    growth: u64,
    /// Bytes the client had written when its writes stopped making progress.
    sent_at_stall: usize,
}

/// Sends [`total`] bytes without reading until the writer stalls, sampling server RSS; then
/// reads and verifies the whole echo.
fn slow_reader(server: &Server, mut rng: Rng) -> Seen {
    // Warm up: threads, scratch buffers and allocator arenas exist before the baseline.
    server.warm_up(&rng.bytes(256 * 1024));
    let baseline = server.max_rss();

    let payload = rng.bytes(total());
    let stream = connect_buffered(server.addr(), 16 * 1024, 16 * 1024);
    let sent = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| write_counting(&stream, &payload, &sent, &done));
        let every = Duration::from_millis(50);
        let (sent_at_stall, peak) = server.peak_rss_during(every, || stalled(&sent, &done));
        read_expecting(&stream, &payload).unwrap_or_else(|e| panic!("reading the echo late: {e}"));
        writer.join().unwrap().expect("writer");
        Seen {
            growth: peak.saturating_sub(baseline),
            sent_at_stall,
        }
    })
}

/// Writes `payload` in 16 KiB chunks, counting in `sent`; sets `done` when it stops.
fn write_counting(
    stream: &TcpStream,
    payload: &[u8],
    sent: &AtomicUsize,
    done: &AtomicBool,
) -> std::io::Result<()> {
    let written = payload.chunks(16 * 1024).try_for_each(|chunk| {
        (&*stream).write_all(chunk)?;
        sent.fetch_add(chunk.len(), Ordering::Release);
        Ok(())
    });
    done.store(true, Ordering::Release);
    written
}

/// Waits until the writer has made no progress for a second, or has finished (30 s at most):
/// by then the server has taken all it is going to take. Returns the bytes sent by then.
fn stalled(sent: &AtomicUsize, done: &AtomicBool) -> usize {
    let (mut last, mut since) = (0, Instant::now());
    let _ = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let now = sent.load(Ordering::Acquire);
        if now != last {
            (last, since) = (now, Instant::now());
        }
        let finished = done.load(Ordering::Acquire);
        if finished || since.elapsed() >= Duration::from_secs(1) {
            Ok(())
        } else {
            Err("the writer to stall")
        }
    });
    sent.load(Ordering::Acquire)
}

#[test]
fn extreme_high_water_marks_still_echo_every_byte() {
    let _watchdog = Watchdog::new(Duration::from_secs(180));
    // `--high-water 2` (low water 0) pauses reading after nearly every partial write and
    // resumes only when everything is flushed: a resume that is never scheduled would hang
    // here. 16 MiB hardly ever pauses.
    for high_water in ["2", "16777216"] {
        each_model(&["--high-water", high_water], |server| {
            let payload = server.rng(0).bytes(3 << 20);
            let stream = connect_buffered(server.addr(), 8 * 1024, 8 * 1024);
            echo_exact(&stream, &payload)
                .unwrap_or_else(|e| panic!("--high-water {high_water}: {e}"));
        });
    }
}
