//! Starting and stopping a server under test (an `echo-server` model or a peer).
//!
//! Every server the lab measures follows one contract: it takes `--bind 127.0.0.1:0` (the
//! kernel picks a free port), prints exactly one line `listening on <addr>` on stdout once its
//! socket is bound, logs to stderr, and exits with status 0 on SIGTERM. The lab starts a fresh
//! server for every run, so no run inherits another's connections, children or heap, and the
//! memory baseline of the idle-memory scenario is a server that has served nothing yet.
//!
//! Every wait is bounded: a server that never prints its line is killed after a timeout, one
//! that ignores SIGTERM is killed with SIGKILL, and dropping a [`RunningServer`] kills it, so a
//! failed run never leaves a server behind.
//!
//! Whatever the server prints on stdout after its first line is kept, and [`RunningServer::stop`]
//! returns it: `echo-server` prints a final `stats ... final=1` line on exit, with
//! `syscalls_per_msg=...` when started with `--syscall-stats`, and the lab keeps that figure.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use reactor::process::{self, Pid};
use reactor::Signal;

use crate::pin::{self, CpuList};
use crate::sys;

/// How long after the server's exit its last stdout lines may take to arrive (a forked worker
/// may still hold the pipe open for a moment).
const STDOUT_LINGER: Duration = Duration::from_secs(2);

/// How to start one server: a program and its arguments, minus the per-run ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// The name the lab reports (`event-loop`, `tokio-mt`...).
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the per-run ones (`--model event-loop` for echo-server).
    pub args: Vec<String>,
    /// The CPUs it may run on (`lab --server-cpus`), `None` for the lab's own mask.
    pub cpus: Option<CpuList>,
}

/// A server process that printed its `listening on` line.
#[derive(Debug)]
pub struct RunningServer {
    child: Child,
    /// Its stdout after the first line, one message per line, until it closes.
    stdout: Receiver<String>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its process id (the root of its process tree).
    pub pid: u32,
}

impl RunningServer {
    /// Starts `spec` with `extra` arguments, on `spec.cpus`, and waits (at most `timeout`) for
    /// its address. Its stderr is appended to `log` when given, else discarded.
    pub fn start(
        spec: &ServerSpec,
        extra: &[String],
        log: Option<&Path>,
        timeout: Duration,
    ) -> Result<RunningServer, String> {
        RunningServer::start_with(spec, extra, log, timeout, |_| {})
    }

    /// Like [`RunningServer::start`], and the server gets SIGKILL when the calling thread
    /// exits ([`sys::kill_with_parent`]), even stopped by SIGSTOP: what the kernel lab uses
    /// inside its namespace. Call it from the main thread; `spec.cpus` must be `None` (pinning
    /// spawns from a helper thread, whose exit would kill the server at once).
    pub fn start_tied(
        spec: &ServerSpec,
        extra: &[String],
        log: Option<&Path>,
        timeout: Duration,
    ) -> Result<RunningServer, String> {
        if spec.cpus.is_some() {
            return Err(format!("{}: a tied server cannot be pinned", spec.name));
        }
        RunningServer::start_with(spec, extra, log, timeout, sys::kill_with_parent)
    }

    fn start_with(
        spec: &ServerSpec,
        extra: &[String],
        log: Option<&Path>,
        timeout: Duration,
        prepare: impl FnOnce(&mut Command),
    ) -> Result<RunningServer, String> {
        let stderr = match log {
            Some(path) => File::options()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
            None => Stdio::null(),
        };
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .args(["--bind", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        prepare(&mut command);
        let mut child = pin::spawn_on(spec.cpus.as_ref(), &mut command)
            .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // The reader keeps draining stdout after the first line, so a chatty server can never
        // block on a full pipe; it ends when the server closes stdout (exits).
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let pid = child.id();
        match rx.recv_timeout(timeout) {
            Ok(line) => match parse_listening(&line) {
                Some(addr) => Ok(RunningServer {
                    child,
                    stdout: rx,
                    addr,
                    pid,
                }),
                None => {
                    kill_and_reap(&mut child);
                    Err(format!(
                        "{}: expected `listening on <addr>`, got {line:?}",
                        spec.name
                    ))
                }
            },
            Err(_) => {
                let status = kill_and_reap(&mut child);
                Err(format!(
                    "{}: no `listening on` line ({})",
                    spec.name,
                    describe(status)
                ))
            }
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for exit status 0 (it is killed otherwise);
    /// returns what it printed on stdout after its `listening on` line.
    pub fn stop(mut self, timeout: Duration) -> Result<Vec<String>, String> {
        // An error here means the server is already gone; `try_wait` below tells how.
        let _ = process::kill(Pid(self.pid as i32), Signal::Terminate);
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(self.rest_of_stdout()),
                Ok(Some(status)) => return Err(format!("exited with {status} after SIGTERM")),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    kill_and_reap(&mut self.child);
                    return Err(format!("still running {timeout:?} after SIGTERM: killed"));
                }
                Err(e) => return Err(format!("waitpid: {e}")),
            }
        }
    }
}

impl RunningServer {
    /// Every stdout line until the pipe closes, waiting at most [`STDOUT_LINGER`].
    fn rest_of_stdout(&self) -> Vec<String> {
        let deadline = Instant::now() + STDOUT_LINGER;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => return lines,
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // After a successful `stop` the child is reaped and this does nothing.
        if let Ok(None) = self.child.try_wait() {
            kill_and_reap(&mut self.child);
        }
    }
}

/// The address in a `listening on <addr>` line.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix("listening on ")?
        .trim()
        .parse()
        .ok()
}

/// The `syscalls_per_msg=...` values of the final stats lines (`stats ... final=1`) among a
/// server's stdout lines: `epoll_wait:1.02,epoll_ctl:0.00,...`, one per process that printed one.
pub fn final_syscalls_per_msg(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.starts_with("stats") && line.split_whitespace().any(|w| w == "final=1"))
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix("syscalls_per_msg="))
                .map(str::to_string)
        })
        .collect()
}

/// The sum of the per-kind counts in a `syscalls_per_msg` value (`read:1.00,write:1.00` -> 2).
pub fn syscalls_total(value: &str) -> Option<f64> {
    value
        .split(',')
        .map(|pair| pair.split_once(':')?.1.parse::<f64>().ok())
        .sum()
}

fn kill_and_reap(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.kill();
    child.wait().ok()
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => format!("it exited with {status}"),
        None => "its status is unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_is_parsed_strictly() {
        assert_eq!(
            parse_listening("listening on 127.0.0.1:7007\n"),
            Some("127.0.0.1:7007".parse().unwrap())
        );
        assert_eq!(
            parse_listening("listening on [::1]:80"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_listening("ready"), None);
        assert_eq!(parse_listening("listening on nowhere"), None);
    }

    #[test]
    fn syscalls_per_message_come_from_the_final_line_only() {
        let lines: Vec<String> = [
            "stats conns=1 syscalls_per_msg=read:9.00 final=0",
            "stats conns=0 model=event-loop syscalls_per_msg=epoll_wait:0.50,read:1.00,write:1.00 final=1",
            "stats conns=0 final=1",
        ]
        .map(String::from)
        .to_vec();
        let values = final_syscalls_per_msg(&lines);
        assert_eq!(values, ["epoll_wait:0.50,read:1.00,write:1.00"]);
        assert_eq!(syscalls_total(&values[0]), Some(2.5));
        assert_eq!(syscalls_total("read:x"), None);
    }

    #[test]
    fn a_server_that_never_announces_is_killed_in_time() {
        let spec = ServerSpec {
            name: "sleep".into(),
            program: "sleep".into(),
            args: vec![],
            cpus: None,
        };
        let start = Instant::now();
        // `sleep --bind 127.0.0.1:0 5` fails at once on its arguments: either way, no line.
        let err = RunningServer::start(&spec, &["5".into()], None, Duration::from_millis(300));
        assert!(err.is_err());
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
