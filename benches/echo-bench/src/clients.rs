//! Clients that each connect once, send one line, wait for its echo and record what happened
//! and when: the burst of the `backlog` scenario and the legitimate clients of `synflood`.
//!
//! All of them run on one thread, as nonblocking sockets in one epoll set (rawloop's
//! `reactor`), so a burst of thousands starts within a few milliseconds, as a real burst does.
//! A client's connect latency is the time from its `connect(2)` to the moment the socket is
//! writable without error (connect(2): the handshake finished). When the listener dropped its
//! SYN (a full accept queue, a full SYN queue), the kernel retransmits the SYN after 1 s and
//! again later, so connect latencies fall into steps a second or more apart.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reactor::{Epoll, Events, Interest, TcpStream, Token};
use serde::{Deserialize, Serialize};

/// How a client ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Connected, and its line came back exactly.
    Echoed,
    /// Refused or reset by the server (an RST: `ECONNREFUSED`, `ECONNRESET`).
    Reset,
    /// Nothing conclusive before its deadline (still connecting, or no echo).
    TimedOut,
    /// Any other error, or a wrong echo.
    Failed,
}

/// One client's story, times in seconds from the experiment's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// When it called `connect`.
    pub start_s: f64,
    /// How long `connect` took, when the handshake finished.
    pub connect_s: Option<f64>,
    /// From `connect` to the echo, when it came.
    pub echo_s: Option<f64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, for `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Who connects where and when.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The listener.
    pub addr: SocketAddr,
    /// When each client starts, from `epoch`: all zero for a burst.
    pub starts: Vec<Duration>,
    /// How long each client may take, from its own start, before it counts as timed out.
    pub deadline: Duration,
}

enum Phase {
    Waiting,
    Connecting(TcpStream),
    Echoing(TcpStream, Vec<u8>),
    Done,
}

struct Client {
    start: Instant,
    phase: Phase,
    record: ClientRecord,
}

/// Runs every client of `plan` to its end, times measured from `epoch`.
pub fn run(plan: &Plan, epoch: Instant) -> io::Result<Vec<ClientRecord>> {
    let epoll = Epoll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut clients: Vec<Client> = plan
        .starts
        .iter()
        .map(|&at| Client {
            start: epoch + at,
            phase: Phase::Waiting,
            record: ClientRecord {
                start_s: at.as_secs_f64(),
                connect_s: None,
                echo_s: None,
                outcome: Outcome::TimedOut,
                error: None,
            },
        })
        .collect();
    let mut left = clients.len();
    while left > 0 {
        let now = Instant::now();
        for (i, c) in clients.iter_mut().enumerate() {
            if matches!(c.phase, Phase::Waiting) && c.start <= now {
                start(c, i, plan.addr, &epoll);
            }
            if !matches!(c.phase, Phase::Done) && now >= c.start + plan.deadline {
                finish(c, Outcome::TimedOut, None);
            }
        }
        epoll.wait(&mut events, Some(Duration::from_millis(2)))?;
        for event in events.iter() {
            let c = &mut clients[event.token().0 as usize];
            advance(c, event.token(), &epoll);
        }
        left = clients
            .iter()
            .filter(|c| !matches!(c.phase, Phase::Done))
            .count();
    }
    Ok(clients.into_iter().map(|c| c.record).collect())
}

/// The line client `i` sends.
fn line(i: usize) -> Vec<u8> {
    format!("hello from client {i}\n").into_bytes()
}

fn start(c: &mut Client, i: usize, addr: SocketAddr, epoll: &Epoll) {
    c.start = Instant::now();
    let token = Token(i as u64);
    match TcpStream::connect_nonblocking(addr) {
        Ok(stream) => match epoll.add(&stream, token, Interest::READABLE | Interest::WRITABLE) {
            Ok(()) => c.phase = Phase::Connecting(stream),
            Err(e) => finish(c, Outcome::Failed, Some(e)),
        },
        Err(e) => classify(c, e),
    }
}

/// One readiness event: the end of the handshake, or (part of) the echo.
fn advance(c: &mut Client, token: Token, epoll: &Epoll) {
    match std::mem::replace(&mut c.phase, Phase::Done) {
        Phase::Connecting(stream) => {
            if let Ok(Some(e)) | Err(e) = stream.take_error() {
                return classify(c, e);
            }
            c.record.connect_s = Some(c.start.elapsed().as_secs_f64());
            let _ = stream.set_nodelay(true);
            let i = token.0 as usize;
            // One short line always fits in a fresh socket's send buffer.
            if let Err(e) = stream.write(&line(i)) {
                return classify(c, e);
            }
            if let Err(e) = epoll.modify(&stream, token, Interest::READABLE) {
                return finish(c, Outcome::Failed, Some(e));
            }
            c.phase = Phase::Echoing(stream, Vec::new());
        }
        Phase::Echoing(stream, mut got) => {
            let mut buf = [0u8; 256];
            match stream.read(&mut buf) {
                Ok(0) => finish(c, Outcome::Reset, None),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    let want = line(token.0 as usize);
                    if got == want {
                        c.record.echo_s = Some(c.start.elapsed().as_secs_f64());
                        finish(c, Outcome::Echoed, None);
                    } else if want.starts_with(&got) {
                        c.phase = Phase::Echoing(stream, got);
                    } else {
                        let e = io::Error::other(format!("wrong echo {got:?}"));
                        finish(c, Outcome::Failed, Some(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.phase = Phase::Echoing(stream, got);
                }
                Err(e) => classify(c, e),
            }
        }
        other => c.phase = other,
    }
}

/// An error: an RST is a `Reset`, anything else a failure.
fn classify(c: &mut Client, e: io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
            finish(c, Outcome::Reset, None)
        }
        _ => finish(c, Outcome::Failed, Some(e)),
    }
}

/// Ends a client; dropping its stream closes the socket.
fn finish(c: &mut Client, outcome: Outcome, error: Option<io::Error>) {
    c.phase = Phase::Done;
    c.record.outcome = outcome;
    c.record.error = error.map(|e| e.to_string());
}

/// How many clients ended in `outcome`.
pub fn count(records: &[ClientRecord], outcome: Outcome) -> usize {
    records.iter().filter(|r| r.outcome == outcome).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    #[test]
    fn a_burst_against_a_line_echo_and_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(8) {
                let mut stream = stream.unwrap();
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).unwrap();
                stream.write_all(line.as_bytes()).unwrap();
            }
        });
        let plan = Plan {
            addr,
            starts: vec![Duration::ZERO; 8],
            deadline: Duration::from_secs(10),
        };
        let records = run(&plan, Instant::now()).unwrap();
        assert_eq!(count(&records, Outcome::Echoed), 8, "{records:?}");
        assert!(records
            .iter()
            .all(|r| r.connect_s.unwrap() <= r.echo_s.unwrap()));
        // A port nobody listens on answers the SYN with an RST.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let plan = Plan {
            addr: closed,
            starts: vec![Duration::ZERO, Duration::from_millis(20)],
            deadline: Duration::from_secs(10),
        };
        let records = run(&plan, Instant::now()).unwrap();
        assert_eq!(count(&records, Outcome::Reset), 2, "{records:?}");
        assert!((records[1].start_s - 0.02).abs() < 1e-9);
    }
}
