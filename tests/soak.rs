//! Fault soak: for `SOAK_SECS` seconds (default 30) per model, all models at once, client
//! threads pick behaviours at random from a fixed seed: well-behaved request/response clients,
//! clients that reset, half-close, stall mid-line, send garbage and over-long lines, read
//! slowly, or disconnect in the middle of a write. The server speaks `--protocol lines`, so
//! the garbage reaches the parser.
//!
//! Afterwards: every well-behaved client got exactly its bytes back, every garbage client got
//! an answer and a clean end, the server's descriptor count is back to where it started (+-2,
//! polled for up to 10 s: no leak on any error path), its RSS stayed bounded throughout, and it
//! exits 0 on SIGTERM with no thread panicked. A failure prints the seed-determined behaviour
//! that broke, so it can be replayed with the same `SOAK_SECS` (and `SOAK_MODELS=a,b` to run
//! only those models).

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use util::client::{echo_exact, read_to_eof, reset, set_timeouts};
use util::{Model, Models, Rng, Server, Watchdog};

/// Client threads per model.
const CLIENTS: u64 = 6;

/// Most RSS growth of any server process during the soak, over its RSS at start.
const RSS_BOUND: u64 = 64 << 20;

const SERVER_ARGS: &[&str] = &[
    "--protocol",
    "lines",
    "--max-line",
    "4096",
    "--idle-timeout",
    "10",
    "--workers",
    "2",
];

#[derive(Copy, Clone, Debug)]
enum Behaviour {
    Polite,
    HalfClose,
    Stall,
    SlowReader,
    Reset,
    Garbage,
    TooLong,
    QuitMidWrite,
}

const BEHAVIOURS: [Behaviour; 8] = [
    Behaviour::Polite,
    Behaviour::HalfClose,
    Behaviour::Stall,
    Behaviour::SlowReader,
    Behaviour::Reset,
    Behaviour::Garbage,
    Behaviour::TooLong,
    Behaviour::QuitMidWrite,
];

#[test]
fn fault_soak_every_model() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let _watchdog = Watchdog::new(Duration::from_secs(secs + 180));
    let models = Models::ALL
        .only(chosen)
        .exit_within(Duration::from_secs(30));
    models
        .parallel(models.count() as usize)
        .each_model(SERVER_ARGS, |server| {
            soak(server, Duration::from_secs(secs))
        });
}

/// The models `SOAK_MODELS=a,b` names (all without it), to replay a failure on some only.
fn chosen(model: Model) -> bool {
    let only = std::env::var("SOAK_MODELS").unwrap_or_default();
    only.is_empty() || only.split(',').any(|name| name == model.name())
}

/// Soaks one server for `length`, then checks it leaked no descriptor and kept its RSS bounded.
fn soak(server: &Server, length: Duration) {
    let baseline_fds = server.settled_fds();
    let baseline_rss = server.max_rss();
    let failures = Mutex::new(Vec::<String>::new());
    let counts: Vec<AtomicU64> = BEHAVIOURS.iter().map(|_| AtomicU64::new(0)).collect();
    let every = Duration::from_millis(250);
    let ((), peak_rss) = server.peak_rss_during(every, || {
        std::thread::scope(|s| {
            for t in 0..CLIENTS {
                let (failures, counts) = (&failures, &counts);
                s.spawn(move || {
                    let mut rng = server.rng(t << 32);
                    client_loop(server, t, &mut rng, length, failures, counts)
                });
            }
        })
    });
    let failures = failures.into_inner().unwrap();
    let summary: Vec<String> = BEHAVIOURS
        .iter()
        .zip(&counts)
        .map(|(b, n)| format!("{b:?}={}", n.load(Ordering::Relaxed)))
        .collect();
    eprintln!("[{}] soak: {}", server.label(), summary.join(" "));
    let first: Vec<&str> = failures.iter().take(5).map(String::as_str).collect();
    assert!(
        failures.is_empty(),
        "{} failures, first ones:\n{}",
        failures.len(),
        first.join("\n")
    );
    assert!(
        counts.iter().all(|n| n.load(Ordering::Relaxed) > 0),
        "some behaviour never ran: {summary:?}"
    );
    server.expect_fds_back_to(baseline_fds, Duration::from_secs(10));
    let growth = peak_rss.saturating_sub(baseline_rss);
    assert!(
        growth <= RSS_BOUND,
        "RSS grew {} KiB during the soak (bound {} KiB)",
        growth >> 10,
        RSS_BOUND >> 10
    );
}

/// One client thread: random behaviours until `length` has passed.
fn client_loop(
    server: &Server,
    t: u64,
    rng: &mut Rng,
    length: Duration,
    failures: &Mutex<Vec<String>>,
    counts: &[AtomicU64],
) {
    let start = Instant::now();
    let mut round = 0u64;
    while start.elapsed() < length {
        let pick = rng.below(BEHAVIOURS.len() as u64) as usize;
        let behaviour = BEHAVIOURS[pick];
        counts[pick].fetch_add(1, Ordering::Relaxed);
        if let Err(e) = run(server, behaviour, rng) {
            let mut failures = failures.lock().unwrap();
            failures.push(format!("client {t} round {round} {behaviour:?}: {e}"));
        }
        round += 1;
    }
}

/// Runs one client behaviour. `Err` only for what the server did wrong; a fault client's own
/// I/O errors (the reset it caused, a write into a closed connection) are expected.
fn run(server: &Server, behaviour: Behaviour, rng: &mut Rng) -> Result<(), String> {
    let c = util::client::connect(server.addr()).map_err(|e| format!("connect: {e}"))?;
    set_timeouts(&c, Duration::from_secs(15)).unwrap();
    match behaviour {
        Behaviour::Polite => {
            for _ in 0..rng.below(20) + 1 {
                let n = 1 + rng.below(8) as usize;
                echo_exact(&c, &lines(rng, n))?;
            }
            finish(&c)
        }
        Behaviour::HalfClose => {
            let n = 1 + rng.below(200) as usize;
            let msg = lines(rng, n);
            (&c).write_all(&msg).map_err(|e| format!("write: {e}"))?;
            c.shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            let got = read_to_eof(&c).map_err(|e| format!("read to EOF: {e}"))?;
            (got == msg)
                .then_some(())
                .ok_or_else(|| format!("echo of {} bytes: got {}", msg.len(), got.len()))
        }
        Behaviour::Stall => {
            let msg = lines(rng, 1);
            let cut = rng.below(msg.len() as u64) as usize;
            (&c).write_all(&msg[..cut])
                .map_err(|e| format!("write: {e}"))?;
            std::thread::sleep(Duration::from_millis(200 + rng.below(1500)));
            (&c).write_all(&msg[cut..])
                .map_err(|e| format!("write: {e}"))?;
            util::client::read_expecting(&c, &msg)?;
            finish(&c)
        }
        Behaviour::SlowReader => {
            let n = 300 + rng.below(300) as usize;
            let msg = lines(rng, n);
            let pause = Duration::from_millis(300 + rng.below(700));
            std::thread::scope(|s| {
                let writer = s.spawn(|| (&c).write_all(&msg));
                std::thread::sleep(pause);
                let read = util::client::read_expecting(&c, &msg);
                writer.join().unwrap().map_err(|e| format!("write: {e}"))?;
                read
            })?;
            finish(&c)
        }
        _ => faulty(c, behaviour, rng),
    }
}

/// The fault behaviours: only the server's answer (or its end of the connection) is checked.
fn faulty(c: TcpStream, behaviour: Behaviour, rng: &mut Rng) -> Result<(), String> {
    match behaviour {
        Behaviour::Reset => {
            if rng.below(2) == 0 {
                let n = 1 + rng.below(50) as usize;
                let _ = (&c).write_all(&lines(rng, n));
            }
            reset(c);
            Ok(())
        }
        Behaviour::Garbage => {
            // Random bytes with newlines, and malformed WORK requests, then FIN: the server
            // must answer something and then close, never hang.
            let len = rng.below(3000) as usize;
            let mut junk = rng.bytes(len);
            for _ in 0..rng.below(5) {
                let at = rng.below(junk.len() as u64 + 1) as usize;
                junk.splice(at..at, b"\nWORK x\nWORK 99999999 y\nWORK\n".iter().copied());
            }
            let _ = (&c).write_all(&junk);
            let _ = c.shutdown(Shutdown::Write);
            drain_to_end(&c)
        }
        Behaviour::TooLong => {
            let mut long = vec![b'L'; 4097 + rng.below(10_000) as usize];
            long.push(b'\n');
            let _ = (&c).write_all(&long);
            let mut reply = [0u8; 18];
            (&c).read_exact(&mut reply)
                .map_err(|e| format!("no ERR reply: {e}"))?;
            if &reply != b"ERR line too long\n" {
                return Err(format!("reply {:?}", String::from_utf8_lossy(&reply)));
            }
            let _ = c.shutdown(Shutdown::Write);
            drain_to_end(&c)
        }
        Behaviour::QuitMidWrite => {
            c.set_nonblocking(true).unwrap();
            let chunk = lines(rng, 100);
            for _ in 0..rng.below(40) {
                match (&c).write(&chunk) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
            drop(c); // unread echo: the kernel answers with RST
            Ok(())
        }
        _ => unreachable!("{behaviour:?} is well-behaved"),
    }
}

/// Half-close and expect EOF with nothing more.
fn finish(c: &TcpStream) -> Result<(), String> {
    c.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    match read_to_eof(c) {
        Ok(rest) if rest.is_empty() => Ok(()),
        Ok(rest) => Err(format!("{} unexpected bytes before EOF", rest.len())),
        Err(e) => Err(format!("waiting for EOF: {e}")),
    }
}

/// Reads until EOF or reset; a timeout means the server never ended the connection.
fn drain_to_end(c: &TcpStream) -> Result<(), String> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match (&*c).read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(format!("server never closed: {e}")),
        }
    }
}

/// `n` lines of printable text (and a few cheap WORK requests), each under `--max-line`.
fn lines(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        if rng.below(20) == 0 {
            out.extend(format!("WORK {} cheap\n", rng.below(200)).bytes());
            continue;
        }
        let len = rng.below(1000) as usize;
        out.extend((0..len).map(|_| b' ' + rng.below(95) as u8));
        out.push(b'\n');
    }
    out
}
