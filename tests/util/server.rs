//! A real `echo-server` process under a test's control: spawn it, read its `listening on` line,
//! signal it, wait for its exit and parse its stats lines; SIGKILL it (and every process it
//! forked) if the test ends any other way. The guard pattern of mio's and tokio's process tests.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rawloop::config::Model;
use reactor::process::Pid;
use reactor::Signal;

use super::client::{self, Finish};
use super::wait::{poll_until, poll_until_steady};
use super::{procfs, seed_for, sys, Rng};

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
    model: Model,
    label: String,
    output: Arc<Output>,
}

/// How to start a server: model, flags, address, descriptor limit.
pub struct ServerBuilder {
    model: Model,
    label: String,
    args: Vec<String>,
    bind: String,
    nofile: Option<u64>,
}

/// What a server left behind when it exited.
pub struct Exit {
    /// The model.
    pub model: Model,
    /// The model (and variant flags), for messages.
    pub label: String,
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

impl ServerBuilder {
    /// Appends command-line flags.
    pub fn args(mut self, args: &[&str]) -> ServerBuilder {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Appends the flags of a variant, which also name the server in messages
    /// (`[reactor-pool --arm oneshot] ...`).
    pub fn variant(mut self, extra: &[&str]) -> ServerBuilder {
        for flag in extra {
            self.label.push(' ');
            self.label.push_str(flag);
        }
        self.args(extra)
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
        cmd.args(["--model", self.model.name(), "--bind", &self.bind])
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
            .unwrap_or_else(|e| panic!("[{}] cannot spawn echo-server: {e}", self.label));
        let output = Arc::new(Output::default());
        spawn_reader(child.stdout.take().unwrap(), &output, Stream::Out);
        spawn_reader(child.stderr.take().unwrap(), &output, Stream::Err);
        let mut server = Server {
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            model: self.model,
            label: self.label,
            output,
        };
        server.addr = server.wait_listening();
        server
    }
}

impl Server {
    /// A server of `model` on `127.0.0.1:0` with extra `args`.
    pub fn start(model: Model, args: &[&str]) -> Server {
        Server::builder(model).args(args).start()
    }

    /// A builder for more options.
    pub fn builder(model: Model) -> ServerBuilder {
        ServerBuilder {
            model,
            label: model.name().to_string(),
            args: Vec::new(),
            bind: "127.0.0.1:0".to_string(),
            nofile: None,
        }
    }

    /// The address from `listening on`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model.
    pub fn model(&self) -> Model {
        self.model
    }

    /// The model and any variant flags, as failure messages name the server.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// A generator seeded from the label and `salt`: each model (and variant) gets its own
    /// bytes, the same on every run, so a failure replays.
    pub fn rng(&self, salt: u64) -> Rng {
        Rng::new(seed_for(&self.label) ^ salt)
    }

    /// The server's (parent) pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("server already exited").id() as i32
    }

    /// Sends `signal` to the server process.
    pub fn signal(&self, signal: Signal) {
        reactor::process::kill(Pid(self.pid()), signal)
            .unwrap_or_else(|e| panic!("[{}] kill({signal:?}): {e}", self.label));
    }

    /// True while the server process has not exited.
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("server already reaped");
        matches!(child.try_wait(), Ok(None))
    }

    /// A blocking client connection with [`super::IO_TIMEOUT`] on reads and writes.
    pub fn connect(&self) -> TcpStream {
        client::connect(self.addr)
            .unwrap_or_else(|e| panic!("[{}] connect {}: {e}", self.label, self.addr))
    }

    /// `n` client connections, opened one after another.
    pub fn clients(&self, n: usize) -> Vec<TcpStream> {
        (0..n).map(|_| self.connect()).collect()
    }

    /// Connects one client per payload and checks every echo at once, from one thread
    /// ([`client::echo_many`]); panics naming the server if any echo is wrong. Returns the
    /// clients (still open with [`Finish::KeepOpen`]).
    pub fn echo_clients<P: AsRef<[u8]>>(
        &self,
        payloads: &[P],
        finish: Finish,
        within: Duration,
    ) -> Vec<TcpStream> {
        let clients = self.clients(payloads.len());
        client::echo_many(clients, payloads, finish, within)
            .unwrap_or_else(|e| panic!("[{}] {} clients: {e}", self.label, payloads.len()))
    }

    /// Serves one connection echoing `payload`, then waits 200 ms: threads, scratch buffers
    /// and allocator arenas exist before the test takes a baseline of memory.
    pub fn warm_up(&self, payload: &[u8]) {
        let warm = self.connect();
        client::echo_exact(&warm, payload)
            .unwrap_or_else(|e| panic!("[{}] warm-up echo: {e}", self.label));
        drop(warm);
        std::thread::sleep(Duration::from_millis(200));
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
        let exited = poll_until(within, Duration::from_millis(10), || {
            child
                .try_wait()
                .expect("waitpid")
                .ok_or("the server to exit")
        });
        let status = exited.unwrap_or_else(|timeout| {
            kill_tree(child.id() as i32);
            let _ = child.wait();
            panic!(
                "[{}] {timeout}; stderr:\n{}",
                self.label,
                self.stderr_tail()
            )
        });
        let elapsed = start.elapsed();
        // Children (prefork) share the stdout pipe; wait for it to close, but not forever: a
        // leaked grandchild holding it must not hang the test, so the timeout is no failure.
        let _ = poll_until(Duration::from_secs(5), Duration::from_millis(5), || {
            let output = &self.output;
            let closed = output.stdout_closed.load(Ordering::Acquire)
                && output.stderr_closed.load(Ordering::Acquire);
            closed.then_some(()).ok_or("the server's pipes to close")
        });
        Exit {
            model: self.model,
            label: self.label.clone(),
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

    /// Waits up to `within` for a periodic stats line satisfying `pred`; the error quotes the
    /// last line seen.
    pub fn wait_stats(
        &self,
        within: Duration,
        pred: impl Fn(&Stats) -> bool,
    ) -> Result<Stats, super::TimedOut<String>> {
        poll_until(within, Duration::from_millis(50), || {
            match self.latest_stats() {
                Some(stats) if pred(&stats) => Ok(stats),
                latest => Err(format!(
                    "[{}] stats line not there yet: {latest:?}",
                    self.label
                )),
            }
        })
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

    /// The largest resident memory among the server's processes (the only one for the
    /// threaded models): what bounds per-process memory must compare against.
    pub fn max_rss(&self) -> u64 {
        let pids = self.processes();
        let each = pids.iter().filter_map(|p| procfs::rss_bytes(p.pid));
        each.max().unwrap_or(0)
    }

    /// Runs `work` while another thread samples [`Server::max_rss`] every `every` (and once
    /// more at the end); returns what `work` returned and the highest sample.
    pub fn peak_rss_during<T>(&self, every: Duration, work: impl FnOnce() -> T) -> (T, u64) {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let sampler = s.spawn(move || {
                let mut peak = self.max_rss();
                // Wakes every `every`, and at once when `stop` is dropped.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    peak = peak.max(self.max_rss());
                }
                peak
            });
            let out = work();
            drop(stop);
            let peak = sampler.join().expect("RSS sampler");
            (out, peak.max(self.max_rss()))
        })
    }

    /// Open descriptors summed over the server's processes.
    pub fn fd_total(&self) -> usize {
        let pids = self.processes();
        pids.iter().filter_map(|p| procfs::fd_count(p.pid)).sum()
    }

    /// The server's descriptor count once it has settled: some models create descriptors after
    /// printing `listening on` (the supervisor's epoll set, timerfd and eventfd), so a count
    /// taken at once would be too low. Serves one connection (echoing `settle\n`, 7 bytes),
    /// then waits until the count holds still for half a second (10 s at most, then takes the
    /// last count).
    pub fn settled_fds(&self) -> usize {
        let warm = self.connect();
        client::echo_exact(&warm, b"settle\n")
            .unwrap_or_else(|e| panic!("[{}] warm-up echo: {e}", self.label));
        drop(warm);
        let quiet = Duration::from_millis(500);
        let every = Duration::from_millis(50);
        poll_until_steady(Duration::from_secs(10), quiet, every, || self.fd_total())
            .unwrap_or_else(|still_moving| still_moving.last)
    }

    /// Waits up to `within` for the descriptor count to come back within 2 of `baseline` (no
    /// descriptor leaked); panics listing every descriptor of the server otherwise.
    pub fn expect_fds_back_to(&self, baseline: usize, within: Duration) {
        let back = poll_until(within, Duration::from_millis(50), || {
            let n = self.fd_total();
            if n.abs_diff(baseline) <= 2 {
                Ok(())
            } else {
                Err(n)
            }
        });
        if let Err(timeout) = back {
            let targets: Vec<_> = self
                .processes()
                .iter()
                .map(|p| procfs::fd_targets(p.pid))
                .collect();
            panic!(
                "[{}] descriptors: {} now, {baseline} before ({timeout:?}): {targets:?}",
                self.label, timeout.last
            );
        }
    }

    /// The server's resident memory once it has held still (to 64 KiB) for a second: what a
    /// memory bound is checked against.
    pub fn settled_rss(&self) -> u64 {
        let steady = poll_until_steady(
            Duration::from_secs(30),
            Duration::from_secs(1),
            Duration::from_millis(100),
            || self.rss_total() / (64 * 1024),
        );
        self.rss_total()
            .max(steady.unwrap_or_else(|e| e.last) * 64 * 1024)
    }

    /// CPU the server's processes used over `window`, as a fraction of one core.
    pub fn cpu_fraction(&self, window: Duration) -> f64 {
        procfs::cpu_fraction(self.pid(), window)
    }

    fn wait_listening(&mut self) -> SocketAddr {
        let first = poll_until(START_TIMEOUT, Duration::from_millis(5), || {
            match self.stdout_lines().first() {
                Some(line) => Ok(Some(line.clone())),
                None if !self.is_running() => Ok(None),
                None => Err("a `listening on` line"),
            }
        });
        let (first, why) = match first {
            Ok(Some(line)) => (line, String::new()),
            Ok(None) => (String::new(), "server exited".to_string()),
            Err(timeout) => (String::new(), timeout.to_string()),
        };
        if !why.is_empty() {
            std::thread::sleep(Duration::from_millis(100)); // let stderr arrive
            let stderr = self.stderr_tail();
            panic!(
                "[{}] no `listening on` line ({why}); stderr:\n{stderr}",
                self.label
            );
        }
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok());
        addr.unwrap_or_else(|| {
            panic!(
                "[{}] first stdout line is {first:?}, not `listening on <addr>`",
                self.label
            )
        })
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
    for p in &procfs::tree(root) {
        let _ = reactor::process::kill(Pid(p.pid), Signal::Kill);
    }
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
    let exited = poll_until(within, Duration::from_millis(10), || {
        child
            .try_wait()
            .expect("waitpid")
            .ok_or("echo-server to exit")
    });
    if let Err(timeout) = exited {
        kill_tree(child.id() as i32);
        let _ = child.wait();
        panic!("echo-server {args:?}: {timeout}");
    }
    child.wait_with_output().expect("collect output")
}

impl Exit {
    /// Every stats line printed.
    pub fn stats(&self) -> Vec<Stats> {
        self.stdout.iter().filter_map(|l| Stats::parse(l)).collect()
    }

    /// The `final=1` stats lines (one per process that serves; several for `prefork`).
    pub fn final_stats(&self) -> Vec<Stats> {
        let stats = self.stats().into_iter();
        stats
            .filter(|s| s.0.get("final").map(String::as_str) == Some("1"))
            .collect()
    }

    /// The last `final=1` line: the server's total (the only final line, except for `prefork`,
    /// whose children print theirs, labelled `child=<i>`, before the parent's total).
    pub fn last_final(&self) -> Stats {
        let last = self.final_stats().pop();
        last.unwrap_or_else(|| panic!("[{}] no final stats line: {:?}", self.label, self.stdout))
    }

    /// `key` in the server's total: its last `final=1` line (for `prefork`, the parent's sum
    /// of its children, printed after theirs).
    pub fn final_sum(&self, key: &str) -> u64 {
        self.last_final().get(key)
    }

    /// Panics unless the server exited 0, printed at least one final stats line, and no
    /// thread of it panicked.
    pub fn assert_clean(&self) {
        let (label, stderr) = (&self.label, &self.stderr_tail);
        let status = self.status;
        assert!(
            status.success(),
            "[{label}] exit status {status:?}, want 0; stderr:\n{stderr}"
        );
        assert_eq!(self.panics, 0, "[{label}] server panicked:\n{stderr}");
        assert!(
            !self.final_stats().is_empty(),
            "[{label}] no `final=1` stats line; stdout: {:?}",
            self.stdout
        );
    }
}

impl Stats {
    /// Parses `stats k=v k=v ...`; `None` for any other line.
    pub fn parse(line: &str) -> Option<Stats> {
        let rest = line.strip_prefix("stats ")?;
        let pairs = rest.split_whitespace().filter_map(|kv| kv.split_once('='));
        Some(Stats(
            pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ))
    }

    /// A numeric field; panics naming the field if it is missing or not a number.
    pub fn get(&self, key: &str) -> u64 {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("stats line has no `{key}`: {:?}", self.0))
            .parse()
            .unwrap_or_else(|e| panic!("stats field `{key}` is not a number ({e}): {:?}", self.0))
    }

    /// A per-worker field, `n,n,...` (`worker_jobs`, `worker_conns`).
    pub fn list(&self, key: &str) -> Vec<u64> {
        let field = self.0.get(key);
        let field = field.unwrap_or_else(|| panic!("stats line has no `{key}`: {:?}", self.0));
        let numbers = field.split(',').map(|n| n.parse());
        numbers
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("stats field `{key}` is not a list ({e}): {:?}", self.0))
    }

    /// True if the line has `key`.
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

/// Output collected by the reader threads.
#[derive(Default)]
struct Output {
    stdout: Mutex<Vec<String>>,
    stderr: Mutex<VecDeque<String>>,
    panics: AtomicUsize,
    stdout_closed: AtomicBool,
    stderr_closed: AtomicBool,
}

enum Stream {
    Out,
    Err,
}

fn spawn_reader(pipe: impl Read + Send + 'static, output: &Arc<Output>, which: Stream) {
    let output = Arc::clone(output);
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
