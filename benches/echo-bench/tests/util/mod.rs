//! Shared helpers of the integration tests: small echo servers, correct and deliberately broken,
//! on real sockets on 127.0.0.1, and a way to find (or build) the real `echo-server`.
//!
//! The broken servers exist because a verifier that cannot fail is a defect: each one breaks
//! the echo contract (RFC 862) in one specific way, and a test checks that the generator counts
//! that breakage as the right kind of error instead of reporting a fine run.

#![allow(dead_code)] // Each test file uses a different subset of these helpers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use echo_bench::RunConfig;

/// How a test server treats each connection.
#[derive(Copy, Clone, Debug)]
pub enum Behaviour {
    /// A correct byte echo.
    Echo,
    /// A correct line echo that burns the CPU a `WORK <micros>` line asks for.
    Lines,
    /// Echoes, but flips the lowest bit of the byte at this stream offset.
    FlipByteAt(u64),
    /// Echoes this many bytes, then closes the connection.
    CloseAfter(u64),
    /// Echoes this many bytes, then keeps reading and never echoes again.
    SwallowAfter(u64),
    /// Echoes every byte twice from this stream offset on.
    DuplicateFrom(u64),
    /// Echoes this many bytes, then resets the connection (SO_LINGER 0 close sends RST).
    ResetAfter(u64),
    /// Echoes one message of this size, then closes: kills idle connections.
    CloseIdleAfter(u64),
}

/// Starts a test server with `behaviour`; it serves until the test process exits.
pub fn serve(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                match behaviour {
                    Behaviour::Lines => serve_lines(stream),
                    other => serve_bytes(stream, other),
                }
            });
        }
    });
    addr
}

fn serve_bytes(mut stream: TcpStream, behaviour: Behaviour) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset: u64 = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        let (start, end) = (offset, offset + n as u64);
        offset = end;
        let reply: Vec<u8> = match behaviour {
            Behaviour::FlipByteAt(at) if (start..end).contains(&at) => {
                chunk[(at - start) as usize] ^= 1;
                chunk.to_vec()
            }
            Behaviour::CloseAfter(limit) | Behaviour::CloseIdleAfter(limit) if end >= limit => {
                let keep = limit.saturating_sub(start) as usize;
                let _ = stream.write_all(&chunk[..keep]);
                return;
            }
            Behaviour::SwallowAfter(limit) => {
                chunk[..limit.saturating_sub(start).min(n as u64) as usize].to_vec()
            }
            Behaviour::DuplicateFrom(from) if end > from => {
                chunk.iter().flat_map(|&b| [b, b]).collect()
            }
            Behaviour::ResetAfter(limit) if end >= limit => {
                let _ = stream.write_all(&chunk[..limit.saturating_sub(start) as usize]);
                reset(stream);
                return;
            }
            _ => chunk.to_vec(),
        };
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Closes with an RST: SO_LINGER {on, 0} through the reactor's stream type.
fn reset(stream: TcpStream) {
    let stream = reactor::TcpStream::from(std::os::fd::OwnedFd::from(stream));
    let _ = stream.set_linger_zero();
    drop(stream);
}

fn serve_lines(stream: TcpStream) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(rest) = line.strip_prefix(b"WORK ") {
            let digits: String = rest
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| b as char)
                .collect();
            let cost = Duration::from_micros(digits.parse().unwrap_or(0));
            let start = Instant::now();
            while start.elapsed() < cost {
                std::hint::spin_loop();
            }
        }
        if writer.write_all(&line).is_err() {
            return;
        }
    }
}

/// A short run against `addr`: 0.2 s warm-up, 0.5 s window, 2 s grace.
pub fn quick_config(addr: SocketAddr) -> RunConfig {
    RunConfig {
        conns: 8,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(200),
        grace: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(2),
        setup_timeout: Duration::from_secs(10),
        ..RunConfig::new(addr)
    }
}

/// The real `echo-server` binary of this workspace, built (debug) if it is not there yet.
pub fn echo_server_bin() -> PathBuf {
    // The test executable lives in <target>/<profile>/deps/; binaries in <target>/<profile>/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let bin = profile_dir.join("echo-server");
    if !bin.exists() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--bin", "echo-server"])
            .current_dir(root);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cargo.arg("--release");
        }
        let target = profile_dir.parent().unwrap();
        let status = cargo
            .env("CARGO_TARGET_DIR", target)
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build --bin echo-server failed");
    }
    bin
}

/// A running `echo-server`, killed when dropped.
pub struct EchoServer {
    /// The child process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl EchoServer {
    /// Starts `echo-server --model MODEL` with `extra` arguments on a free port.
    pub fn start(model: &str, extra: &[&str]) -> EchoServer {
        let mut child = Command::new(echo_server_bin())
            .args(["--model", model, "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start echo-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = echo_bench::server::parse_listening(&line)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        EchoServer { child, addr }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
