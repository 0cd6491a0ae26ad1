//! `scripts/scale-out.sh` end to end: N `echo-server` instances on N ports behind one front
//! address, balanced in user space by HAProxy (`--via haproxy`) or in the kernel by an nftables
//! DNAT rule (`--via nft`), the two layer-4 balancers of `docs/scaling.md`.
//!
//! The tests run the script itself, as a reader would, and check what it promises:
//! - through the DNAT rule every byte comes back exactly (RFC 862), and `numgen inc mod N`
//!   spreads connections over every instance: with no health checks to add connections, each
//!   instance's final `accepted=` is exactly its share;
//! - when an instance dies, the two balancers differ, and the test shows both side by side:
//!   the DNAT rule has no health check, so every third new connection still goes to the dead
//!   port and is refused, while HAProxy retries the refused connect on a survivor (`option
//!   redispatch`) and then takes the dead one out: every client gets its exact echo. In both
//!   cases the script keeps the survivors running and says what happens.
//!
//! The nft path runs in the private network namespace the script creates (`unshare --net`), which
//! the test cannot reach from outside without `setns(2)`. So the client half runs inside: the
//! script's `-- COMMAND` starts this very test binary again, with `--ignored --exact
//! client_inside_the_namespace` and the scenario in `RAWLOOP_SCALE_CLIENT`.
//!
//! Needs root (network namespace, nftables), `nft`, `unshare` and `haproxy`; without them the
//! affected test prints "skipped: <cause>" and returns. CI runs as root with all of them
//! installed (`.ci/run`, `scripts/test.sh`).

use std::env;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes each test connection sends: far more than a socket buffer's first segment, so a
/// balancer that dropped or reordered anything would show.
const PAYLOAD_LEN: usize = 64 * 1024;
/// Instances behind the balancer.
const INSTANCES: usize = 3;
/// Connections each scenario makes: three rounds of the round robin.
const CONNS: usize = 9;
/// Generous: CI machines are slow and loaded; nothing waits this long when it works.
const PATIENCE: Duration = Duration::from_secs(30);
/// Where the outer test tells the client half which scenario to run.
const CLIENT_ENV: &str = "RAWLOOP_SCALE_CLIENT";

#[test]
fn nft_echoes_exact_bytes_and_spreads_connections_over_every_backend() {
    if let Err(cause) = nft_available() {
        eprintln!("skipped: {cause}");
        return;
    }
    let run = run_nft_scenario("spread");
    assert!(run.status.success(), "the client failed:\n{run}");
    // No health checks, no readiness probe through the front: the 9 client connections are
    // the only ones, and `numgen inc mod 3` deals them out like cards.
    assert_eq!(
        run.accepted(),
        vec![Some(3), Some(3), Some(3)],
        "each instance should have accepted exactly 3 of the {CONNS} connections:\n{run}"
    );
}

#[test]
fn a_dead_backend_is_refused_behind_dnat_but_routed_around_by_haproxy() {
    // The kernel balancer: nothing checks health, so the dead port keeps its share.
    match nft_available() {
        Err(cause) => eprintln!("skipped (nft half): {cause}"),
        Ok(()) => {
            let run = run_nft_scenario("dead");
            assert!(run.status.success(), "the client failed:\n{run}");
            assert!(
                run.stderr.contains("echo1 (pid")
                    && run.stderr.contains("was killed by signal 9")
                    && run.stderr.contains("no health check"),
                "the script should say echo1 died and that the rule has no health check:\n{run}"
            );
            // Before the kill nobody connected; after it, 3 of the 9 went to echo1 and failed.
            assert_eq!(
                run.accepted(),
                vec![Some(3), None, Some(3)],
                "the survivors should have accepted 3 connections each, echo1 died without \
                 a final line:\n{run}"
            );
        }
    }
    // The user-space balancer, as docs/scaling.md's failover demo runs it.
    match haproxy_available() {
        Err(cause) => eprintln!("skipped (HAProxy half): {cause}"),
        Ok(()) => haproxy_keeps_every_client_served_after_a_kill(),
    }
}

/// The client half of the nft tests: run by them inside the script's network namespace.
#[test]
#[ignore = "the client half of the nft tests, which run it inside the script's namespace"]
fn client_inside_the_namespace() {
    let scenario = env::var(CLIENT_ENV)
        .expect("run by the nft tests through `scripts/scale-out.sh --via nft -- ...`");
    let front: SocketAddr = env_var("RAWLOOP_FRONT").parse().expect("RAWLOOP_FRONT");
    match scenario.as_str() {
        "spread" => {
            for i in 0..CONNS {
                echo_through(front, i).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            }
        }
        "dead" => {
            let pids: Vec<String> = words(&env_var("RAWLOOP_BACKEND_PIDS"));
            let backends: Vec<SocketAddr> = words(&env_var("RAWLOOP_BACKENDS"))
                .iter()
                .map(|a| a.parse().expect("RAWLOOP_BACKENDS"))
                .collect();
            kill9(&pids[1]);
            wait_until_refused(backends[1]);
            let outcomes: Vec<String> = (0..CONNS).map(|i| outcome(front, i)).collect();
            println!("outcomes after echo1's death: {outcomes:?}");
            // Connection i goes to echo(i mod 3): echo1's turns are refused, the rest echo.
            for (i, got) in outcomes.iter().enumerate() {
                let want = if i % INSTANCES == 1 {
                    "refused"
                } else {
                    "echoed"
                };
                assert_eq!(got, want, "connection {i}; all: {outcomes:?}");
            }
        }
        other => panic!("unknown scenario {other:?}"),
    }
}

/// Starts the script with HAProxy in front of three instances, kills one with SIGKILL, and
/// checks that the next nine clients all get their exact echo from the survivors while the
/// script keeps running and says so.
fn haproxy_keeps_every_client_served_after_a_kill() {
    let front = free_addr();
    let stats = free_addr();
    let mut script = Script::start(&[
        "3",
        "--bin",
        env!("CARGO_BIN_EXE_echo-server"),
        "--front",
        &front.to_string(),
        "--stats",
        &stats.to_string(),
    ]);
    script.wait_for_stdout("Ctrl-C to stop.");
    let pids = script.instance_pids();
    assert_eq!(pids.len(), INSTANCES, "{}", script.output());
    // SIGKILL: a crash, no drain. The connections follow at once, before the health check
    // can notice, so those routed to the dead instance exercise the redispatch.
    kill9(&pids[1]);
    for i in 0..CONNS {
        echo_through(front, 100 + i)
            .unwrap_or_else(|e| panic!("connection {i} after the kill: {e}\n{}", script.output()));
    }
    script.wait_for_stderr("HAProxy keeps serving");
    assert!(
        script.is_running(),
        "the script should keep HAProxy and the survivors running:\n{}",
        script.output()
    );
    let run = script.stop();
    let bytes_in = run.field("bytes_in");
    let survivors = bytes_in[0].unwrap_or(0) + bytes_in[2].unwrap_or(0);
    assert!(
        bytes_in[1].is_none() && survivors >= (CONNS * PAYLOAD_LEN) as u64,
        "the survivors should have read every byte of the {CONNS} connections:\n{run}"
    );
}

/// Runs `scale-out.sh --via nft 3` with this binary's client half as its command.
fn run_nft_scenario(scenario: &str) -> Finished {
    let me = env::current_exe().expect("the test binary's path");
    let mut command = script_command(&[
        "--via",
        "nft",
        "3",
        "--bin",
        env!("CARGO_BIN_EXE_echo-server"),
        "--",
        me.to_str().unwrap(),
        "--ignored",
        "--exact",
        "client_inside_the_namespace",
        "--nocapture",
    ]);
    command.env(CLIENT_ENV, scenario);
    Script::spawn(command).wait(PATIENCE)
}

/// One connection through `front`: sends [`PAYLOAD_LEN`] bytes that depend on `seed`,
/// half-closes, and checks that exactly those bytes come back before the end of the stream.
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

/// "echoed", "refused", or the error: what became of one connection through `front`.
fn outcome(front: SocketAddr, seed: usize) -> String {
    match echo_through(front, seed) {
        Ok(()) => "echoed".to_string(),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => "refused".to_string(),
        Err(e) => format!("failed: {e}"),
    }
}

/// Waits until a direct connect to `addr` is refused: the killed process's listener is gone.
fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts after SIGKILL"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `scripts/scale-out.sh`, in a process group of its own (with its instances and
/// HAProxy), its output in files so that no pipe can fill up. Dropping it kills the group.
struct Script {
    child: Child,
    dir: PathBuf,
}

/// How a script run ended, with everything it printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Script {
    fn start(args: &[&str]) -> Script {
        Script::spawn(script_command(args))
    }

    fn spawn(mut command: Command) -> Script {
        let dir = env::temp_dir().join(format!(
            "rawloop-scale-out-{}-{}",
            std::process::id(),
            unique()
        ));
        fs::create_dir_all(&dir).expect("create the output directory");
        let child = command
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("stdout")).unwrap())
            .stderr(fs::File::create(dir.join("stderr")).unwrap())
            .process_group(0)
            .spawn()
            .expect("spawn scripts/scale-out.sh");
        Script { child, dir }
    }

    fn stdout(&self) -> String {
        fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    fn output(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout(), self.stderr())
    }

    fn wait_for_stdout(&mut self, text: &str) {
        self.wait_for(text, Script::stdout);
    }

    fn wait_for_stderr(&mut self, text: &str) {
        self.wait_for(text, Script::stderr);
    }

    fn wait_for(&mut self, text: &str, read: fn(&Script) -> String) {
        let deadline = Instant::now() + PATIENCE;
        while !read(self).contains(text) {
            assert!(self.is_running(), "the script exited:\n{}", self.output());
            assert!(
                Instant::now() < deadline,
                "no {text:?} in time:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The instances' pids, from the `echoI: ... (pid P)` lines, in instance order.
    fn instance_pids(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.contains(": echo-server --model"))
            .filter_map(|l| {
                l.rsplit_once("(pid ")?
                    .1
                    .strip_suffix(')')
                    .map(String::from)
            })
            .collect()
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, as Ctrl-C would from the background, then waits for the teardown.
    fn stop(self) -> Finished {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM the script");
        self.wait(PATIENCE)
    }

    /// Waits for the script to exit; past `within`, kills its whole group and panics.
    fn wait(mut self, within: Duration) -> Finished {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the script") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the script ran longer than {within:?}:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        };
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // The group outlives the script if it was killed by a failing assertion; the instances
        // and HAProxy must not.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Finished {
    /// `key` from each instance's final stats line (`echoI: stats ... key=V ... final=1`),
    /// in instance order; `None` for an instance that died without one.
    fn field(&self, key: &str) -> Vec<Option<u64>> {
        (0..INSTANCES)
            .map(|i| {
                let prefix = format!("echo{i}: stats ");
                let line = self.stdout.lines().find(|l| l.starts_with(&prefix))?;
                let value = line
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=")))?;
                Some(value.parse().expect("a number"))
            })
            .collect()
    }

    fn accepted(&self) -> Vec<Option<u64>> {
        self.field("accepted")
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn script_command(args: &[&str]) -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new("bash");
    command.arg(root.join("scripts/scale-out.sh")).args(args);
    command
}

/// Why the nft path cannot run here, if it cannot.
fn nft_available() -> Result<(), String> {
    let uid = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:").map(|u| words(u)[1].clone()))
    });
    if uid.as_deref() != Some("0") {
        return Err("needs root for a network namespace and nftables".to_string());
    }
    for (tool, args) in [
        ("nft", &["--version"][..]),
        ("unshare", &["--net", "true"][..]),
        ("ip", &["-V"][..]),
    ] {
        let works = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            return Err(format!(
                "`{tool} {}` does not run (packages nftables, util-linux, iproute2)",
                args.join(" ")
            ));
        }
    }
    Ok(())
}

fn haproxy_available() -> Result<(), String> {
    let found = Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|out| out.status.success());
    found
        .then_some(())
        .ok_or_else(|| "haproxy not found (package haproxy)".to_string())
}

fn kill9(pid: &str) {
    let ok = Command::new("kill")
        .args(["-KILL", pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -KILL {pid}");
    // kill(2) returns before the process is dead. Until it is, its listener still accepts, and
    // a connection the balancer sends there is reset when it dies, which no redispatch can
    // save: wait until it is gone or a zombie (its sockets are closed by then).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dead_or_zombie(pid) {
        assert!(
            Instant::now() < deadline,
            "{pid} still alive 10 s after SIGKILL"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Whether process `pid` has exited: no `/proc/<pid>`, or state `Z` in its stat line.
fn dead_or_zombie(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain any.
        Ok(stat) => stat
            .rsplit_once(") ")
            .map_or(true, |(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("{name} is not set; the script sets it"))
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

/// A loopback address nobody listens on right now.
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
