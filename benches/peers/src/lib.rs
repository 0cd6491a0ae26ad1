//! Reference echo servers that the `echo-bench` lab measures next to rawloop's models.
//!
//! rawloop's claims ("the event loop costs fewer CPU microseconds per message than tokio's best",
//! "an idle connection costs N bytes", "a greedy neighbour hurts this much") only mean something
//! next to a yardstick that people already trust. The peers are those yardsticks: plain,
//! idiomatic echo servers (RFC 862) written the way a tokio or `std::net` user would write them,
//! with no tuning that rawloop's models do not also get (both set `TCP_NODELAY` and read into a
//! 64 KiB buffer).
//!
//! They follow the same command-line contract as `echo-server`, so the lab drives all of them
//! the same way: `--bind ADDR`, `--workers N`, `--protocol raw|lines`, one line
//! `listening on <addr>` on stdout once bound, and exit status 0 on SIGTERM or SIGINT.
//!
//! # Layout
//! - this file: the shared command line, the lines protocol (`WORK <micros> <payload>`), the
//!   CPU burner, the signal wait, and the per-connection loops for tokio and for `std::net`.
//! - `src/bin/peer-tokio-mt.rs`: tokio's multi-thread (work-stealing) runtime.
//! - `src/bin/peer-tokio-ct.rs`: N threads, each with its own current-thread runtime.
//! - `src/bin/peer-std-threads.rs`: one OS thread per connection, blocking `std::net` I/O.
//!
//! This crate is its own workspace and is never a dependency of the product: tokio lives here only.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Size of every read buffer: large enough that one `read` drains a full socket receive queue
/// in the streaming scenario, the same size rawloop's connections use.
pub const READ_BUF: usize = 64 * 1024;

/// The command line every peer accepts (the `echo-server` contract, minus the model choice).
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Address to listen on; port 0 lets the kernel pick a free one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7007")]
    pub bind: SocketAddr,
    /// Worker threads (tokio-mt: runtime workers, tokio-ct: runtimes; std-threads ignores it).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Wire protocol: `raw` echoes bytes as they come, `lines` echoes `\n`-terminated lines and
    /// burns CPU for `WORK <micros> <payload>` lines (the greedy-neighbour scenario).
    #[arg(long, value_enum, default_value_t = Protocol::Raw)]
    pub protocol: Protocol,
}

/// The two echo protocols of `echo-server`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Byte stream echo (RFC 862): every byte read is written back.
    Raw,
    /// Line echo; `WORK <micros> <payload>` costs that much CPU before the echo.
    Lines,
}

/// Binds a blocking std listener (tokio peers convert it), prints the contract line.
///
/// `std::net::TcpListener::bind` sets `SO_REUSEADDR` and uses a backlog of 128; the kernel caps
/// the backlog at `net.core.somaxconn` anyway (listen(2)). rawloop's listener asks for 1024, so
/// the accept scenario may show the difference: that is part of what the yardstick measures.
pub fn bind_and_announce(args: &Args) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(args.bind)?;
    let addr = listener.local_addr()?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    // The lab reads this line through a pipe, where stdout is block-buffered: flush it now.
    stdout.flush()?;
    Ok(listener)
}

/// Blocks the calling thread until SIGTERM or SIGINT arrives, then exits the process with status 0.
///
/// signal-hook installs the handlers when `Signals::new` runs, so call this only after binding:
/// a signal sent before then still kills the process with the default action, which is fine.
pub fn exit_on_signal() -> ! {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("cannot install signal handlers: {err}");
            std::process::exit(1);
        }
    };
    // Any of the two ends the server; connections in flight are simply dropped, as the
    // yardstick needs no graceful drain.
    let _ = signals.forever().next();
    std::process::exit(0);
}

/// If `line` is `WORK <micros> ...`, the CPU time it asks for.
pub fn work_request(line: &[u8]) -> Option<Duration> {
    let rest = line.strip_prefix(b"WORK ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let micros: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some(Duration::from_micros(micros))
}

/// Spins on the CPU for `cost`: the greedy request must occupy the thread that serves it, exactly
/// like a request that computes something would (sleeping would free the thread and hide the
/// problem the greedy scenario exists to show).
pub fn burn(cost: Duration) {
    let start = Instant::now();
    while start.elapsed() < cost {
        std::hint::spin_loop();
    }
}

/// Serves one tokio connection until EOF or error.
pub async fn serve_tokio(stream: tokio::net::TcpStream, protocol: Protocol) {
    // Without TCP_NODELAY, Nagle's algorithm (RFC 896) holds small echoes back until the
    // previous segment is acknowledged, and ping-pong latency becomes delayed-ACK latency.
    let _ = stream.set_nodelay(true);
    let _ = match protocol {
        Protocol::Raw => tokio_raw(stream).await,
        Protocol::Lines => tokio_lines(stream).await,
    };
}

/// Serves one blocking `std::net` connection until EOF or error.
pub fn serve_std(stream: std::net::TcpStream, protocol: Protocol) {
    let _ = stream.set_nodelay(true);
    let _ = match protocol {
        Protocol::Raw => std_raw(stream),
        Protocol::Lines => std_lines(stream),
    };
}

async fn tokio_raw(mut stream: tokio::net::TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn tokio_lines(stream: tokio::net::TcpStream) -> io::Result<()> {
    let (read_half, write_half) = stream.into_split();
    let mut reader = tokio::io::BufReader::with_capacity(READ_BUF, read_half);
    let mut writer = tokio::io::BufWriter::with_capacity(READ_BUF, write_half);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return writer.flush().await;
        }
        if let Some(cost) = work_request(&line) {
            burn(cost);
        }
        writer.write_all(&line).await?;
        // Pipelined lines already buffered are answered in one write; flush once the
        // buffered input is used up, so a lone request is never held back.
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}

fn std_raw(mut stream: std::net::TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn std_lines(stream: std::net::TcpStream) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(READ_BUF, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(READ_BUF, stream);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return writer.flush();
        }
        if let Some(cost) = work_request(&line) {
            burn(cost);
        }
        writer.write_all(&line)?;
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_lines_are_recognised() {
        assert_eq!(
            work_request(b"WORK 2000 abc\n"),
            Some(Duration::from_micros(2000))
        );
        assert_eq!(work_request(b"WORK 7\n"), Some(Duration::from_micros(7)));
        assert_eq!(work_request(b"hello\n"), None);
        assert_eq!(work_request(b"WORK x\n"), None);
    }
}
