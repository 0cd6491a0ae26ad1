//! The smallest complete epoll echo server (RFC 862) on the `reactor` crate alone: one
//! thread, one `Epoll`, level-triggered, connections in a `HashMap` by `Token`.
//!
//! `cargo run --example minimal_reactor [ADDR] [--once]`: binds `127.0.0.1:0` unless given
//! an address, prints `listening on <addr>`, and with `--once` exits after its first client
//! hangs up. The full server (`src/event_loop.rs`) adds a slab, limits and statistics.

use std::collections::HashMap;
use std::io::{self, ErrorKind};

use reactor::{Epoll, Events, Interest, ListenOptions, TcpListener, TcpStream, Token};

/// The listener's token; connections get 1, 2, 3...
const LISTENER: Token = Token(0);

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|arg| arg == "--once");
    let addr = args.iter().find(|arg| *arg != "--once");
    let addr = addr.map_or("127.0.0.1:0", |arg| arg).parse();
    let addr = addr.map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
    // socket(2) + bind(2) + listen(2); the listener is nonblocking, so accept never sleeps.
    let listener = TcpListener::bind(addr, &ListenOptions::default())?;
    println!("listening on {}", listener.local_addr()?);
    // One epoll(7) instance watches every socket; the kernel tells us which are ready.
    let (epoll, mut events) = (Epoll::new()?, Events::with_capacity(64));
    epoll.add(&listener, LISTENER, Interest::READABLE)?;
    // Each client's socket, with the bytes it sent that it has not yet taken back.
    let mut conns: HashMap<Token, (TcpStream, Vec<u8>)> = HashMap::new();
    let mut next_token = 0;
    loop {
        epoll.wait(&mut events, None)?; // Sleep in epoll_wait(2) until a socket is ready.
        for event in events.iter() {
            if event.token() == LISTENER {
                // Readable listener: accept until its queue is empty (WouldBlock).
                loop {
                    let (stream, _peer) = match listener.accept() {
                        Ok(accepted) => accepted,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e), // src/accept.rs survives EMFILE instead.
                    };
                    next_token += 1;
                    epoll.add(&stream, Token(next_token), Interest::READABLE)?;
                    conns.insert(Token(next_token), (stream, Vec::new()));
                }
            } else if let Some((stream, unsent)) = conns.get_mut(&event.token()) {
                // A client's error (reset, broken pipe) closes that client, never the server.
                if !echo(&epoll, event.token(), stream, unsent).unwrap_or(false) {
                    // Dropping the stream closes it, and close(2) removes it from epoll.
                    conns.remove(&event.token());
                    if once {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Echoes what one ready client sent. Returns `Ok(false)` once the client has hung up.
fn echo(epoll: &Epoll, token: Token, stream: &TcpStream, unsent: &mut Vec<u8>) -> io::Result<bool> {
    // Bytes left over from the last event mean we are registered for WRITABLE (see below).
    let was_writing = !unsent.is_empty();
    if !was_writing {
        // One read per event: level-triggered epoll reports the socket again while data
        // remains, and meanwhile the other clients get their turn.
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => return Ok(false), // EOF: the client is done and has all its bytes back.
            Ok(n) => unsent.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) => return Err(e),
        }
    }
    while !unsent.is_empty() {
        match stream.write(unsent) {
            Ok(n) => drop(unsent.drain(..n)),
            // The client's receive window is full. Wait for WRITABLE and stop reading until
            // then: that is backpressure, a client that never reads cannot make us buffer
            // without limit. We call epoll_ctl(2) only on the switch, not on every event.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !was_writing {
                    epoll.modify(stream, token, Interest::WRITABLE)?;
                }
                return Ok(true);
            }
            Err(e) => return Err(e),
        }
    }
    if was_writing {
        epoll.modify(stream, token, Interest::READABLE)?;
    }
    Ok(true)
}
