//! Three `echo-server` instances behind HAProxy, the deployment of `deploy/haproxy.cfg`.
//!
//! This is the last row of our design notes' table: "many single-threaded instances behind a
//! layer-4 load balancer". The tests run the committed template itself (filled in with free
//! loopback ports), so a broken `deploy/haproxy.cfg` fails here. They check what the
//! deployment promises:
//! - bytes go through the proxy unchanged (RFC 862 echo, exact bytes);
//! - round robin spreads connections over every instance, read from each instance's own
//!   `stats` lines (`bytes_in`);
//! - when an instance dies, new connections still succeed: HAProxy retries a refused connect
//!   on another server (`option redispatch`) and its echo health check takes the dead one out.
//!
//! HAProxy must be installed (CI runs `apt-get install haproxy`). Without it these tests fail
//! with a message saying so, unless `RAWLOOP_SKIP_HAPROXY=1` is set.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The committed template; see its header for the placeholders.
const TEMPLATE: &str = include_str!("../deploy/haproxy.cfg");
/// Bytes each test connection sends. Health checks send 15 bytes every 200 ms, so a backend's
/// `bytes_in` can only reach this much through a real client connection.
const PAYLOAD_LEN: usize = 64 * 1024;
/// Generous: CI machines are slow and loaded; nothing here waits this long when it works.
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn echoes_exact_bytes_through_haproxy_and_spreads_over_every_backend() {
    let Some(lab) = Lab::start(3) else { return };
    let n_conns = 9;
    for i in 0..n_conns {
        echo_through(lab.front, i).unwrap_or_else(|e| panic!("connection {i}: {e}"));
    }
    // Round robin gives each of the 3 instances about 3 of the 9 connections (HAProxy's two
    // threads may swap neighbours, and the readiness probe in `Lab::start` takes a turn);
    // asking for at least one each leaves room for that and for a slow CI.
    // Stats lines come every 50 ms, so wait for the counts to catch up with the clients.
    let total_want = (n_conns * PAYLOAD_LEN) as u64;
    let spread = wait_until(|| {
        let got = lab.bytes_in();
        let spread = got.iter().all(|&b| b >= PAYLOAD_LEN as u64);
        (spread && got.iter().sum::<u64>() >= total_want).then_some(got)
    });
    assert!(
        spread.is_some(),
        "every backend should have served a connection, {total_want} bytes in all; \
         bytes_in per backend: {:?}",
        lab.bytes_in()
    );
}

#[test]
fn a_killed_backend_is_skipped_and_new_connections_still_succeed() {
    let Some(mut lab) = Lab::start(3) else { return };
    for i in 0..3 {
        echo_through(lab.front, i).unwrap_or_else(|e| panic!("warm-up connection {i}: {e}"));
    }
    // Only the total is known: HAProxy's two threads may take connections out of order (the
    // readiness probe in `Lab::start` is one), so round robin is not exact over 3 connections.
    let warm_up_total = 3 * PAYLOAD_LEN as u64;
    let before = wait_until(|| {
        let got = lab.bytes_in();
        (got.iter().sum::<u64>() >= warm_up_total).then_some(got)
    })
    .expect("the warm-up connections' bytes never showed in the stats lines");

    // SIGKILL: a crash, no drain. The next connections are sent at once, before the health
    // check can notice, so the ones routed to the dead instance exercise the redispatch.
    lab.backends[1].kill();
    let n_conns = 9;
    for i in 0..n_conns {
        echo_through(lab.front, 100 + i)
            .unwrap_or_else(|e| panic!("connection {i} after the kill: {e}"));
    }
    let survivors_before = before[0] + before[2];
    let survivors_want = survivors_before + (n_conns * PAYLOAD_LEN) as u64;
    let got = wait_until(|| {
        let got = lab.bytes_in();
        (got[0] + got[2] >= survivors_want).then_some(got)
    });
    assert!(
        got.is_some(),
        "the survivors should have read the {n_conns} new connections' bytes: before {before:?}, \
         now {:?}",
        lab.bytes_in()
    );
    let down = wait_until(|| lab.haproxy_log().contains("echo1 is DOWN").then_some(()));
    assert!(
        down.is_some(),
        "HAProxy's health check should have marked echo1 DOWN; its log:\n{}",
        lab.haproxy_log()
    );
}

/// The running deployment: the instances, HAProxy, and the directory holding its config.
struct Lab {
    backends: Vec<Backend>,
    front: SocketAddr,
    dir: PathBuf,
    haproxy: Child,
}

impl Lab {
    /// Starts `n` instances and HAProxy in front, and waits until an echo goes through. `None`
    /// when HAProxy is missing and the caller asked to skip.
    fn start(n: usize) -> Option<Lab> {
        if !haproxy_installed() {
            return None;
        }
        let backends: Vec<Backend> = (0..n).map(Backend::start).collect();
        let dir = std::env::temp_dir().join(format!(
            "rawloop-haproxy-{}-{}",
            std::process::id(),
            unique()
        ));
        fs::create_dir_all(&dir).expect("create the config directory");
        let front = free_addr();
        let config = dir.join("haproxy.cfg");
        fs::write(&config, render(TEMPLATE, front, free_addr(), &backends)).unwrap();
        let log = fs::File::create(dir.join("haproxy.log")).unwrap();
        // -db: foreground, no daemon, so the child is HAProxy itself and `kill` reaches it.
        let haproxy = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        let mut lab = Lab {
            backends,
            front,
            dir,
            haproxy,
        };
        lab.wait_until_serving();
        Some(lab)
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.haproxy.try_wait() {
                panic!(
                    "haproxy exited ({status}); its log:\n{}",
                    self.haproxy_log()
                );
            }
            match TcpStream::connect(self.front) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("haproxy never listened on {}: {e}", self.front)
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Each instance's `bytes_in` from its latest stats line (0 before the first line).
    fn bytes_in(&self) -> Vec<u64> {
        self.backends.iter().map(Backend::bytes_in).collect()
    }

    fn haproxy_log(&self) -> String {
        fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
        let _ = fs::remove_dir_all(&self.dir);
        // The backends kill themselves when the Vec drops.
    }
}

/// One `echo-server --model event-loop` process and its latest stats line.
struct Backend {
    child: Child,
    addr: SocketAddr,
    name: String,
    stats: Arc<Mutex<HashMap<String, String>>>,
}

impl Backend {
    fn start(index: usize) -> Backend {
        let mut child = Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .args(["--model", "event-loop", "--bind", "127.0.0.1:0"])
            .args(["--stats-interval", "0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn echo-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next()
            .expect("echo-server printed nothing")
            .expect("read echo-server's stdout");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
            .parse()
            .expect("parse the address");
        let stats = Arc::new(Mutex::new(HashMap::new()));
        let latest = Arc::clone(&stats);
        // Keeps the newest stats line's fields; ends when the process closes its stdout.
        thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(fields) = line.strip_prefix("stats ") {
                    *latest.lock().unwrap() = parse_fields(fields);
                }
            }
        });
        Backend {
            child,
            addr,
            name: format!("echo{index}"),
            stats,
        }
    }

    fn bytes_in(&self) -> u64 {
        let stats = self.stats.lock().unwrap();
        stats.get("bytes_in").map_or(0, |v| v.parse().unwrap())
    }

    fn kill(&mut self) {
        self.child.kill().expect("kill echo-server");
        self.child.wait().expect("reap echo-server");
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `haproxy` runs; panics if it does not and skipping was not asked for.
fn haproxy_installed() -> bool {
    let found = Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        return true;
    }
    if std::env::var("RAWLOOP_SKIP_HAPROXY").as_deref() == Ok("1") {
        eprintln!("haproxy not found: skipped (RAWLOOP_SKIP_HAPROXY=1)");
        return false;
    }
    panic!(
        "haproxy not found on PATH. Install it (Debian/Ubuntu: apt-get install haproxy) \
         or set RAWLOOP_SKIP_HAPROXY=1 to skip the HAProxy tests."
    );
}

/// Fills in the template: the front and stats addresses, and one `server` line per backend.
fn render(template: &str, front: SocketAddr, stats: SocketAddr, backends: &[Backend]) -> String {
    assert!(
        template.contains("{{FRONT}}") && template.contains("\n{{SERVERS}}\n"),
        "deploy/haproxy.cfg lost its placeholders"
    );
    let servers: String = backends
        .iter()
        .map(|b| format!("    server {} {}\n", b.name, b.addr))
        .collect();
    template
        .replace("{{FRONT}}", &front.to_string())
        .replace("{{STATS}}", &stats.to_string())
        .replace("{{SERVERS}}\n", &servers)
}

/// One connection through `front`: sends [`PAYLOAD_LEN`] bytes that depend on `seed`, half-closes,
/// and checks that exactly those bytes come back before the end of the stream.
fn echo_through(front: SocketAddr, seed: usize) -> io::Result<()> {
    let payload: Vec<u8> = (0..PAYLOAD_LEN)
        .map(|i| (i.wrapping_mul(31) ^ seed) as u8)
        .collect();
    let mut stream = TcpStream::connect(front)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(PATIENCE))?;
    // A writer thread, so neither side's buffers can fill up and deadlock the exchange.
    let mut writer = stream.try_clone()?;
    let sent = payload.clone();
    let send = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&sent)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut echoed = Vec::with_capacity(PAYLOAD_LEN);
    stream.read_to_end(&mut echoed)?;
    send.join().expect("writer thread panicked")?;
    if echoed != payload {
        let at = echoed.iter().zip(&payload).position(|(a, b)| a != b);
        return Err(io::Error::other(format!(
            "echo differs: got {} bytes of {}, first difference at {at:?}",
            echoed.len(),
            payload.len()
        )));
    }
    Ok(())
}

/// Polls `check` every 20 ms until it returns `Some`, for at most [`PATIENCE`].
fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn parse_fields(fields: &str) -> HashMap<String, String> {
    fields
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A loopback address nobody listens on right now. Another process could take the port before
/// HAProxy binds it; HAProxy then exits, and `wait_until_serving` says so.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap()
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
