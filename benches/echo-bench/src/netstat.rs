//! What the kernel says about a listener's queues: the `TcpExt` counters of `/proc/net/netstat`
//! (what `nstat` prints) and the rows of `/proc/net/tcp` (what `ss -ltn` prints). Both files
//! are per network namespace; we read them under `/proc/thread-self/net/`, which shows the
//! calling thread's namespace (`/proc/self/net` would show the main thread's). Read inside the
//! kernel lab's own namespace, every count belongs to its experiment.
//!
//! - **The accept queue**: on a LISTEN row of `/proc/net/tcp`, the `rx_queue` column is the
//!   number of established connections waiting for `accept(2)` (`ss`'s Recv-Q). Its limit, the
//!   backlog given to `listen(2)` capped by `net.core.somaxconn`, is not in this file (`ss`
//!   asks inet_diag for it); the lab knows it from the server's `--backlog`.
//! - **The SYN queue**: each half-open connection (SYN received, SYN-ACK sent, final ACK not
//!   yet in) is a request socket, listed in the same file with state `03` (SYN_RECV).
//! - **The counters**: `ListenOverflows` (a SYN or a final ACK found the accept queue full),
//!   `ListenDrops` (any drop at a listener, overflows included), `TCPReqQFullDrop` (a SYN
//!   dropped because the SYN queue was full and SYN cookies were off), `TCPReqQFullDoCookies`
//!   (the same, answered with a cookie instead), `SyncookiesSent`, `SyncookiesRecv` (an ACK
//!   that carried a valid cookie became a connection), `SyncookiesFailed`.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

/// The `TcpExt` counters the kernel lab follows, named as the kernel names them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Counter {
    /// A SYN, or the last ACK of a handshake, found the accept queue full.
    ListenOverflows,
    /// A packet for a listener was dropped (overflows, a full SYN queue, no memory...).
    ListenDrops,
    /// A SYN was dropped: the SYN queue was full and `tcp_syncookies` is 0.
    TCPReqQFullDrop,
    /// The SYN queue was full and a cookie answered instead.
    TCPReqQFullDoCookies,
    /// SYN-ACKs that carried a cookie.
    SyncookiesSent,
    /// ACKs with a valid cookie, turned into connections.
    SyncookiesRecv,
    /// ACKs with an invalid cookie.
    SyncookiesFailed,
}

impl Counter {
    /// Every counter, in the order tables show them.
    pub const ALL: [Counter; 7] = [
        Counter::ListenOverflows,
        Counter::ListenDrops,
        Counter::TCPReqQFullDrop,
        Counter::TCPReqQFullDoCookies,
        Counter::SyncookiesSent,
        Counter::SyncookiesRecv,
        Counter::SyncookiesFailed,
    ];

    /// Its name in `/proc/net/netstat` (after the `TcpExt:` prefix).
    pub fn name(self) -> &'static str {
        match self {
            Counter::ListenOverflows => "ListenOverflows",
            Counter::ListenDrops => "ListenDrops",
            Counter::TCPReqQFullDrop => "TCPReqQFullDrop",
            Counter::TCPReqQFullDoCookies => "TCPReqQFullDoCookies",
            Counter::SyncookiesSent => "SyncookiesSent",
            Counter::SyncookiesRecv => "SyncookiesRecv",
            Counter::SyncookiesFailed => "SyncookiesFailed",
        }
    }
}

/// A reading of the counters.
pub type Counters = BTreeMap<Counter, u64>;

/// The counters now, in this thread's network namespace.
pub fn read_counters() -> io::Result<Counters> {
    parse_netstat(&fs::read_to_string("/proc/thread-self/net/netstat")?)
}

/// `after - before`, counter by counter.
pub fn delta(before: &Counters, after: &Counters) -> Counters {
    after
        .iter()
        .map(|(c, v)| (*c, v.saturating_sub(before.get(c).copied().unwrap_or(0))))
        .collect()
}

/// Parses `/proc/net/netstat`: pairs of lines, a header `TcpExt: Name Name...` then the values
/// `TcpExt: 1 2...`. A counter this kernel lacks is an error, not a silent zero.
pub fn parse_netstat(text: &str) -> io::Result<Counters> {
    let field = |name: &str| tcp_ext(text, name);
    Counter::ALL
        .iter()
        .map(|&c| match field(c.name()) {
            Some(v) => Ok((c, v)),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/net/netstat has no TcpExt {}", c.name()),
            )),
        })
        .collect()
}

/// `InCsumErrors` of the `Tcp:` lines of `/proc/net/snmp`: segments received with a wrong
/// checksum (and dropped).
pub fn tcp_checksum_errors() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/thread-self/net/snmp")?;
    prefixed_field(&text, "Tcp:", "InCsumErrors")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Tcp InCsumErrors"))
}

/// The queues of one listener, from `/proc/net/tcp`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerQueues {
    /// Connections waiting for `accept` (the LISTEN row's `rx_queue`).
    pub accept_queue: u32,
    /// Half-open connections (rows in state SYN_RECV with this local port).
    pub syn_queue: u32,
}

/// The queues of the IPv4 listener on `port`, or `None` when no socket listens there.
pub fn listener_queues(port: u16) -> io::Result<Option<ListenerQueues>> {
    Ok(parse_tcp_table(
        &fs::read_to_string("/proc/thread-self/net/tcp")?,
        port,
    ))
}

/// Parses `/proc/net/tcp`: `sl local rem st tx_queue:rx_queue ...`, addresses and numbers in
/// hexadecimal (`0100007F:1B5F` is 127.0.0.1:7007), state `0A` LISTEN and `03` SYN_RECV.
pub fn parse_tcp_table(text: &str, port: u16) -> Option<ListenerQueues> {
    let mut queues = ListenerQueues::default();
    let mut listening = false;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(queue)) = (fields.get(1), fields.get(3), fields.get(4))
        else {
            continue;
        };
        let local_port = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if local_port != Some(port) {
            continue;
        }
        match *state {
            "0A" => {
                let rx = queue.split_once(':').map_or("0", |(_, rx)| rx);
                queues.accept_queue = u32::from_str_radix(rx, 16).unwrap_or(0);
                listening = true;
            }
            "03" => queues.syn_queue += 1,
            _ => {}
        }
    }
    listening.then_some(queues)
}

fn tcp_ext(text: &str, name: &str) -> Option<u64> {
    prefixed_field(text, "TcpExt:", name)
}

/// In a `/proc/net/{netstat,snmp}` text, the value of `name` in the line pair whose lines
/// start with `prefix`.
fn prefixed_field(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let at = names.split_whitespace().position(|n| n == name);
        if let Some(at) = at {
            return values.split_whitespace().nth(at)?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_name() {
        let text = "\
TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed ListenOverflows ListenDrops TCPReqQFullDoCookies TCPReqQFullDrop
TcpExt: 30 29 1 124 125 30 7
IpExt: InNoRoutes
IpExt: 0
";
        let c = parse_netstat(text).unwrap();
        assert_eq!(c[&Counter::ListenOverflows], 124);
        assert_eq!(c[&Counter::ListenDrops], 125);
        assert_eq!(c[&Counter::TCPReqQFullDrop], 7);
        assert_eq!(c[&Counter::SyncookiesRecv], 29);
        let mut later = c.clone();
        later.insert(Counter::ListenOverflows, 130);
        assert_eq!(delta(&c, &later)[&Counter::ListenOverflows], 6);
        assert!(parse_netstat("TcpExt: ListenDrops\nTcpExt: 1\n").is_err());
    }

    #[test]
    fn a_listener_row_gives_both_queues() {
        // A listener on 127.0.0.1:7007 (0x1B5F) with 17 connections waiting, two half-open
        // requests on it, and an unrelated listener.
        let text = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1B5F 00000000:0000 0A 00000000:00000011 00:00000000 00000000     0        0 1 1
   1: 0100007F:1B5F 0100427F:1092 03 00000000:00000000 01:00000064 00000000     0        0 0 1
   2: 0100007F:1B5F 0200427F:1093 03 00000000:00000000 01:00000064 00000000     0        0 0 1
   3: 0100007F:0050 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 2 1
";
        let q = parse_tcp_table(text, 7007).unwrap();
        assert_eq!(
            q,
            ListenerQueues {
                accept_queue: 17,
                syn_queue: 2
            }
        );
        assert_eq!(parse_tcp_table(text, 80).unwrap().accept_queue, 3);
        assert_eq!(parse_tcp_table(text, 81), None);
    }
}
