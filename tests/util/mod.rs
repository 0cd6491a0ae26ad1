//! Helpers shared by the echo-server integration tests (mio's and polling's `tests/util`
//! layout): a [`Server`] guard around a real `echo-server` process, a table-driven runner
//! that tries a behaviour against every concurrency model, a watchdog, and a seeded PRNG.
//!
//! Everything here drives the real binary over real loopback sockets; the kernel is never
//! mocked. Deadlines are generous because they only bound a failure: a passing test returns
//! as soon as the kernel delivers.
//!
//! # Layout
//! - this file: [`Server`] (spawn, `listening on`, SIGTERM and exit stats, SIGKILL on drop),
//!   [`Stats`], [`for_each_model`], [`Watchdog`].
//! - [`client`]: client sockets, byte-exact echo checks, and [`client::Swarm`], an epoll-driven
//!   client that verifies thousands of connections from one thread.
//! - [`procfs`]: process tree, RSS, descriptor counts and CPU time from `/proc`.
//! - `rng`: [`Rng`], a seeded SplitMix64, so every run sends the same bytes.
//! - `sys`: the only `unsafe` of the tests (pre-exec limits, pre-connect socket options).

#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

pub mod client;
pub mod procfs;
mod rng;
pub mod sys;

#[allow(unused_imports)] // Re-exported for the test files; not every one of them uses it.
pub use rng::{seed_for, Rng};

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use reactor::process::Pid;
use reactor::Signal;

/// Every concurrency model of `echo-server --model`.
pub const MODELS: &[&str] = &[
    "event-loop",
    "thread-per-conn",
    "process-per-conn",
    "listener-pool",
    "reactor-pool",
    "reactor-offload",
    "reuseport",
    "prefork",
];

/// How long a socket read or write may block before the test declares the server stuck.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the server may take to print `listening on`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Lines of the server's stderr kept for failure messages.
const STDERR_TAIL: usize = 60;

/// A running `echo-server`. Dropping it SIGKILLs the server and every process it forked, so
/// no server outlives its test, even when the test panics.
///
/// The server is also spawned with `PR_SET_PDEATHSIG(SIGKILL)`, so if the test process dies
/// (a watchdog abort), it dies too. prctl(2) ties that signal to the *thread* that spawned it:
/// keep a `Server` on the thread that started it.
pub struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    model: String,
    output: Arc<Output>,
    started: Instant,
}

/// How to start a server: model, flags, descriptor limit.
pub struct ServerBuilder {
    model: String,
    args: Vec<String>,
    bind: String,
    nofile: Option<u64>,
}

/// What a server left behind when it exited.
pub struct Exit {
    /// The model, for messages.
    pub model: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Every stdout line, `listening on` first.
    pub stdout: Vec<String>,
    /// The last lines of stderr.
    pub stderr_tail: String,
    /// Lines on stderr saying a thread panicked.
    pub panics: usize,
    /// From the signal (or the call to `wait_exit`) to the exit.
    pub elapsed: Duration,
}

/// One parsed `stats k=v ...` line.
#[derive(Clone, Debug, Default)]
pub struct Stats(pub HashMap<String, String>);

/// Output collected by the reader threads.
#[derive(Default)]
struct Output {
    stdout: Mutex<Vec<String>>,
    stderr: Mutex<VecDeque<String>>,
    panics: AtomicUsize,
    stdout_closed: AtomicBool,
    stderr_closed: AtomicBool,
}

impl ServerBuilder {
    /// Appends command-line flags.
    pub fn args(mut self, args: &[&str]) -> ServerBuilder {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// `--bind` (default `127.0.0.1:0`).
    pub fn bind(mut self, addr: &str) -> ServerBuilder {
        self.bind = addr.to_string();
        self
    }

    /// Caps RLIMIT_NOFILE, soft and hard, at `n` for the server.
    pub fn nofile(mut self, n: u64) -> ServerBuilder {
        self.nofile = Some(n);
        self
    }

    /// Spawns the server and waits for `listening on <addr>`. Panics (naming the model and
    /// quoting stderr) if it does not come.
    pub fn start(self) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo-server"));
        cmd.args(["--model", &self.model, "--bind", &self.bind])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        sys::configure_child(&mut cmd, self.nofile);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("[{}] cannot spawn echo-server: {e}", self.model));
        let output = Arc::new(Output::default());
        spawn_reader(
            child.stdout.take().unwrap(),
            Arc::clone(&output),
            Stream::Out,
        );
        spawn_reader(
            child.stderr.take().unwrap(),
            Arc::clone(&output),
            Stream::Err,
        );
        let mut server = Server {
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            model: self.model,
            output,
            started: Instant::now(),
        };
        server.addr = server.wait_listening();
        server
    }
}

impl Server {
    /// A server of `model` on `127.0.0.1:0` with extra `args`.
    pub fn start(model: &str, args: &[&str]) -> Server {
        Server::builder(model).args(args).start()
    }

    /// A builder for more options.
    pub fn builder(model: &str) -> ServerBuilder {
        ServerBuilder {
            model: model.to_string(),
            args: Vec::new(),
            bind: "127.0.0.1:0".to_string(),
            nofile: None,
        }
    }

    /// The address from `listening on`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The server's (parent) pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("server already exited").id() as i32
    }

    /// Sends `signal` to the server process.
    pub fn signal(&self, signal: Signal) {
        reactor::process::kill(Pid(self.pid()), signal)
            .unwrap_or_else(|e| panic!("[{}] kill({signal:?}): {e}", self.model));
    }

    /// True while the server process has not exited.
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("server already reaped");
        matches!(child.try_wait(), Ok(None))
    }

    /// A blocking client connection with [`IO_TIMEOUT`] on reads and writes.
    pub fn connect(&self) -> std::net::TcpStream {
        client::connect(self.addr)
            .unwrap_or_else(|e| panic!("[{}] connect {}: {e}", self.model, self.addr))
    }

    /// SIGTERM, then waits up to `within` for the exit; SIGKILLs and panics past it.
    pub fn terminate(self, within: Duration) -> Exit {
        self.signal(Signal::Terminate);
        self.wait_exit(within)
    }

    /// Waits up to `within` for the server to exit on its own (after a signal the test sent);
    /// SIGKILLs it and panics past the deadline.
    pub fn wait_exit(mut self, within: Duration) -> Exit {
        let start = Instant::now();
        let mut child = self.child.take().expect("server already reaped");
        let status = loop {
            if let Some(status) = child.try_wait().expect("waitpid") {
                break status;
            }
            if start.elapsed() > within {
                kill_tree(child.id() as i32);
                let _ = child.wait();
                panic!(
                    "[{}] server did not exit within {within:?}; stderr:\n{}",
                    self.model,
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = start.elapsed();
        // Children (prefork) share the stdout pipe; wait for it to close, but not forever:
        // a leaked grandchild holding it must not hang the test.
        let drained = Instant::now();
        while !(self.output.stdout_closed.load(Ordering::Acquire)
            && self.output.stderr_closed.load(Ordering::Acquire))
            && drained.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        Exit {
            model: self.model.clone(),
            status,
            stdout: self.stdout_lines(),
            stderr_tail: self.stderr_tail(),
            panics: self.output.panics.load(Ordering::Relaxed),
            elapsed,
        }
    }

    /// Stdout lines so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.output.stdout.lock().unwrap().clone()
    }

    /// The most recent stats line printed so far (needs `--stats-interval`).
    pub fn latest_stats(&self) -> Option<Stats> {
        self.stdout_lines()
            .iter()
            .rev()
            .find_map(|l| Stats::parse(l))
    }

    /// Waits up to `within` for a stats line satisfying `pred`; returns the last one seen.
    pub fn wait_stats(&self, within: Duration, pred: impl Fn(&Stats) -> bool) -> Option<Stats> {
        let start = Instant::now();
        loop {
            let latest = self.latest_stats();
            if latest.as_ref().is_some_and(&pred) || start.elapsed() > within {
                return latest;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let lines = self.output.stderr.lock().unwrap();
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The server and every live process it forked.
    pub fn processes(&self) -> Vec<procfs::ProcInfo> {
        procfs::live_tree(self.pid())
    }

    /// Resident memory summed over the server's processes.
    pub fn rss_total(&self) -> u64 {
        let pids = self.processes();
        pids.iter().filter_map(|p| procfs::rss_bytes(p.pid)).sum()
    }

    /// Resident memory of each process of the server: `(pid, bytes)`.
    pub fn rss_each(&self) -> Vec<(i32, u64)> {
        let pids = self.processes();
        pids.iter()
            .filter_map(|p| Some((p.pid, procfs::rss_bytes(p.pid)?)))
            .collect()
    }

    /// Open descriptors summed over the server's processes.
    pub fn fd_total(&self) -> usize {
        let pids = self.processes();
        pids.iter().filter_map(|p| procfs::fd_count(p.pid)).sum()
    }

    /// The server's descriptor count once it has settled: some models create descriptors after
    /// printing `listening on` (the supervisor's epoll set, timerfd and eventfd), so a count
    /// taken at once would be too low. Serves one connection, then waits until the count holds
    /// still for half a second.
    pub fn settled_fds(&self) -> usize {
        let warm = self.connect();
        client::echo_exact(&warm, b"settle\n")
            .unwrap_or_else(|e| panic!("[{}] warm-up echo: {e}", self.model));
        drop(warm);
        let start = Instant::now();
        let (mut last, mut since) = (self.fd_total(), Instant::now());
        while since.elapsed() < Duration::from_millis(500)
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.fd_total();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        last
    }

    /// Polls until `fd_total()` is within `slack` of `target` or `within` passes; returns the
    /// last count.
    pub fn wait_fds(&self, target: usize, slack: usize, within: Duration) -> usize {
        let start = Instant::now();
        loop {
            let n = self.fd_total();
            if n.abs_diff(target) <= slack || start.elapsed() > within {
                return n;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU the server's processes used over `window`, as a fraction of one core.
    pub fn cpu_fraction(&self, window: Duration) -> f64 {
        procfs::cpu_fraction(self.pid(), window)
    }

    /// Time since the server printed `listening on`.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn wait_listening(&mut self) -> SocketAddr {
        let start = Instant::now();
        loop {
            if let Some(first) = self.stdout_lines().first() {
                let addr = first
                    .strip_prefix("listening on ")
                    .and_then(|a| a.trim().parse().ok());
                return addr.unwrap_or_else(|| {
                    panic!(
                        "[{}] first stdout line is {first:?}, not `listening on <addr>`",
                        self.model
                    )
                });
            }
            let exited = !self.is_running();
            if exited || start.elapsed() > START_TIMEOUT {
                std::thread::sleep(Duration::from_millis(100)); // let stderr arrive
                panic!(
                    "[{}] no `listening on` line ({}); stderr:\n{}",
                    self.model,
                    if exited { "server exited" } else { "timed out" },
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(child.id() as i32);
            let _ = child.wait();
        }
    }
}

/// SIGKILLs `root` and every process under it. The tree is read first: once the root dies,
/// its children are re-parented and could no longer be found.
pub fn kill_tree(root: i32) {
    let tree = procfs::tree(root);
    for p in &tree {
        let _ = reactor::process::kill(Pid(p.pid), Signal::Kill);
    }
}

impl Exit {
    /// Every stats line printed.
    pub fn stats(&self) -> Vec<Stats> {
        self.stdout.iter().filter_map(|l| Stats::parse(l)).collect()
    }

    /// The `final=1` stats lines (one per process that serves; several for `prefork`).
    pub fn final_stats(&self) -> Vec<Stats> {
        self.stats()
            .into_iter()
            .filter(|s| s.0.get("final").map(String::as_str) == Some("1"))
            .collect()
    }

    /// `key` summed over the final stats lines.
    pub fn final_sum(&self, key: &str) -> u64 {
        self.final_stats().iter().map(|s| s.get(key)).sum()
    }

    /// Panics unless the server exited 0, printed at least one final stats line, and no
    /// thread of it panicked.
    pub fn assert_clean(&self) {
        assert!(
            self.status.success(),
            "[{}] exit status {:?}, want 0; stderr:\n{}",
            self.model,
            self.status,
            self.stderr_tail
        );
        assert_eq!(
            self.panics, 0,
            "[{}] server panicked:\n{}",
            self.model, self.stderr_tail
        );
        assert!(
            !self.final_stats().is_empty(),
            "[{}] no `final=1` stats line; stdout: {:?}",
            self.model,
            self.stdout
        );
    }
}

impl Stats {
    /// Parses `stats k=v k=v ...`; `None` for any other line.
    pub fn parse(line: &str) -> Option<Stats> {
        let rest = line.strip_prefix("stats ")?;
        let map = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Stats(map))
    }

    /// A numeric field; panics naming the field if it is missing or not a number.
    pub fn get(&self, key: &str) -> u64 {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("stats line has no `{key}`: {:?}", self.0))
            .parse()
            .unwrap_or_else(|e| panic!("stats field `{key}` is not a number ({e}): {:?}", self.0))
    }
}

enum Stream {
    Out,
    Err,
}

fn spawn_reader(pipe: impl Read + Send + 'static, output: Arc<Output>, which: Stream) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            match which {
                Stream::Out => output.stdout.lock().unwrap().push(line),
                Stream::Err => {
                    if line.contains("panicked") {
                        output.panics.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut tail = output.stderr.lock().unwrap();
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        }
        match which {
            Stream::Out => output.stdout_closed.store(true, Ordering::Release),
            Stream::Err => output.stderr_closed.store(true, Ordering::Release),
        }
    });
}

/// Runs `echo-server` with `args` to completion, for invocations that must fail fast (bad
/// flags, a taken address). SIGKILLs it and panics if it is still running after `within`.
pub fn run_to_exit(args: &[&str], within: Duration) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo-server"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sys::configure_child(&mut cmd, None);
    let mut child = cmd.spawn().expect("spawn echo-server");
    let start = Instant::now();
    while child.try_wait().expect("waitpid").is_none() {
        if start.elapsed() > within {
            kill_tree(child.id() as i32);
            let _ = child.wait();
            panic!("echo-server {args:?} still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

/// Runs `check(model)` for every model in `models`, at most `parallel` at a time, each on a
/// thread named after its model. Every model runs even if another fails; then, if any
/// failed, panics with one line per failing model, so the message says which models broke.
pub fn for_each_model(models: &[&str], parallel: usize, check: impl Fn(&str) + Sync) {
    let queue = Mutex::new(models.iter().copied().collect::<VecDeque<_>>());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1).min(models.len()) {
            s.spawn(|| loop {
                let Some(model) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let result = std::thread::scope(|inner| {
                    std::thread::Builder::new()
                        .name(model.to_string())
                        .spawn_scoped(inner, || check(model))
                        .expect("spawn model thread")
                        .join()
                });
                if let Err(payload) = result {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("[{model}] {}", panic_message(&*payload)));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} models failed:\n{}",
        failures.len(),
        models.len(),
        failures.join("\n")
    );
}

/// Runs `f`, turning a panic into `Err(message)` (for checks that should report, not abort).
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".to_string()
    }
}

/// An overall deadline for one test. If the guard is still alive after `limit`, the test is
/// stuck somewhere no socket timeout reaches: the watchdog says so and aborts the test
/// process, which also kills every server through its parent-death signal.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    /// Arms a watchdog named after the test.
    pub fn new(test: &str, limit: Duration) -> Watchdog {
        let (done, rx) = mpsc::channel::<()>();
        let test = test.to_string();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: test `{test}` still running after {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog { done: Some(done) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the watchdog thread with `Disconnected`.
        self.done.take();
    }
}

/// Raises this test process's soft RLIMIT_NOFILE to its hard limit (as the server does at
/// start) and panics, saying why, if that still leaves fewer than `needed` descriptors.
pub fn ensure_nofile(needed: u64) {
    let soft = reactor::process::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    assert!(
        soft >= needed,
        "this test holds {needed} client sockets but RLIMIT_NOFILE allows {soft}; \
         raise the hard limit (ulimit -Hn) to run it"
    );
}

/// The most a TCP socket's send buffer may autotune to (`net.ipv4.tcp_wmem` max, tcp(7)); 4 MiB
/// by default. A slow-reader test must send more than this, or a server that never stops
/// reading could park the whole backlog in its kernel send buffer and look well-behaved.
pub fn kernel_send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20)
        .min(60 << 20)
}
