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

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use reactor::process::{self, Pid};
use reactor::Signal;

/// How to start one server: a program and its arguments, minus the per-run ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// The name the lab reports (`event-loop`, `tokio-mt`...).
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the per-run ones (`--model event-loop` for echo-server).
    pub args: Vec<String>,
}

/// A server process that printed its `listening on` line.
#[derive(Debug)]
pub struct RunningServer {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its process id (the root of its process tree).
    pub pid: u32,
}

impl RunningServer {
    /// Starts `spec` with `extra` arguments and waits (at most `timeout`) for its address.
    /// Its stderr is appended to `log` when given, else discarded.
    pub fn start(
        spec: &ServerSpec,
        extra: &[String],
        log: Option<&Path>,
        timeout: Duration,
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
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .args(["--bind", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
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
                Some(addr) => Ok(RunningServer { child, addr, pid }),
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

    /// Sends SIGTERM and waits up to `timeout` for exit status 0; kills it otherwise.
    pub fn stop(mut self, timeout: Duration) -> Result<(), String> {
        // An error here means the server is already gone; `try_wait` below tells how.
        let _ = process::kill(Pid(self.pid as i32), Signal::Terminate);
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
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
    fn a_server_that_never_announces_is_killed_in_time() {
        let spec = ServerSpec {
            name: "sleep".into(),
            program: "sleep".into(),
            args: vec![],
        };
        let start = Instant::now();
        // `sleep --bind 127.0.0.1:0 5` fails at once on its arguments: either way, no line.
        let err = RunningServer::start(&spec, &["5".into()], None, Duration::from_millis(300));
        assert!(err.is_err());
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
