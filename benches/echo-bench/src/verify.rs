//! Verifiable payloads: what each message carries and how every echoed byte is checked.
//!
//! An echo server (RFC 862) must send back exactly the bytes it received, in order. A load
//! generator that only counts bytes would praise a server that flips bits, drops a segment and
//! duplicates the next one, or echoes one client's bytes to another. So every byte the generator
//! sends comes from a pseudo-random pattern that depends on the connection and on the byte's
//! position in that connection's stream, and every byte that comes back is compared with the
//! byte that should be there (`memcmp` over slices, so checking costs less than the syscalls).
//!
//! The pattern is a fixed buffer of [`PERIOD`] pseudo-random bytes (SplitMix64, Steele, Lea and
//! Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), stored twice in a row
//! so that any window of up to `PERIOD` bytes is one contiguous slice. Connection `c` starts
//! reading it at its own offset and moves on by the body length of each message, so two
//! connections' streams differ, a shifted or repeated segment differs from the expected one, and
//! a message from an earlier position (a stale buffer) does not match either.
//!
//! The lines protocol needs lines without `\n` inside, so it has its own pattern drawn from the
//! 64 characters of the base64 alphabet. A cheap line is `body + "\n"`, a costly one is
//! `"WORK <micros> " + body + "\n"`; the server echoes both unchanged.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Length of the pattern before it repeats: a little under 1 MiB, and not a power of two, so
/// message boundaries of power-of-two sizes do not line up with it.
pub const PERIOD: usize = (1 << 20) - 3;

/// Distance between two connections' starting offsets in the pattern: a prime, so connections
/// spread over the whole period instead of clustering.
const CONN_STRIDE: u64 = 104_729;

/// How the generator frames its messages (JSON: `"raw"` or `"lines"`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Raw bytes; a message is `size` pattern bytes and the echo is the same byte stream.
    Raw,
    /// `\n`-terminated lines of `size` bytes (`WORK` lines are longer by their prefix).
    Lines,
}

impl Protocol {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Raw => "raw",
            Protocol::Lines => "lines",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Protocol, String> {
        match s {
            "raw" => Ok(Protocol::Raw),
            "lines" => Ok(Protocol::Lines),
            other => Err(format!("unknown protocol {other:?} (raw, lines)")),
        }
    }
}

/// One message a connection sent: where its body sits in the pattern, and its shape.
///
/// It is enough to rebuild every expected byte, so the generator never keeps a copy of what it
/// sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Position of the body in the connection's pattern stream (taken modulo [`PERIOD`]).
    pub body_pos: u64,
    /// Whether this is a costly `WORK` line (lines protocol only).
    pub work: bool,
}

/// The first byte that differed from the expected echo.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset of the byte inside its message.
    pub offset: usize,
    /// What the byte should have been.
    pub expected: u8,
    /// What the server sent.
    pub got: u8,
}

/// Builds and checks the messages of one run: protocol, size and the `WORK` prefix.
#[derive(Clone, Debug)]
pub struct MessageFormat {
    protocol: Protocol,
    body_len: usize,
    /// `WORK <micros> ` for the costly lines of greedy clients.
    work_prefix: Vec<u8>,
}

impl MessageFormat {
    /// A format for messages of `size` bytes; `work_us` is the cost a `WORK` line asks for.
    ///
    /// In the lines protocol `size` counts the final `\n`, so it must be at least 2.
    pub fn new(protocol: Protocol, size: usize, work_us: u64) -> Result<MessageFormat, String> {
        let body_len = match protocol {
            Protocol::Raw => size,
            Protocol::Lines => size.saturating_sub(1),
        };
        if body_len == 0 || body_len > PERIOD {
            return Err(format!(
                "--size must be between {} and {PERIOD} bytes for the {} protocol, got {size}",
                if protocol == Protocol::Raw { 1 } else { 2 },
                protocol.name()
            ));
        }
        Ok(MessageFormat {
            protocol,
            body_len,
            work_prefix: format!("WORK {work_us} ").into_bytes(),
        })
    }

    /// The protocol these messages use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Where connection `global_idx` starts in the pattern.
    pub fn first_body_pos(global_idx: usize) -> u64 {
        (global_idx as u64).wrapping_mul(CONN_STRIDE) % PERIOD as u64
    }

    /// The message after `msg` on the same connection.
    pub fn next_body_pos(&self, body_pos: u64) -> u64 {
        (body_pos + self.body_len as u64) % PERIOD as u64
    }

    /// Length in bytes of `msg` on the wire (and of its echo).
    pub fn len(&self, msg: &Message) -> usize {
        let [a, b, c] = self.segments(msg);
        a.len() + b.len() + c.len()
    }

    /// Appends the bytes of `msg` to a send buffer.
    pub fn append_to(&self, msg: &Message, out: &mut Vec<u8>) {
        for segment in self.segments(msg) {
            out.extend_from_slice(segment);
        }
    }

    /// Checks `received`, which should be the bytes of `msg` starting at `offset`.
    pub fn check(&self, msg: &Message, offset: usize, received: &[u8]) -> Result<(), Mismatch> {
        let mut segment_start = 0;
        let mut done = 0;
        for segment in self.segments(msg) {
            let segment_end = segment_start + segment.len();
            let at = offset + done;
            if done < received.len() && at < segment_end {
                let from = at - segment_start;
                let n = (segment.len() - from).min(received.len() - done);
                let expected = &segment[from..from + n];
                let got = &received[done..done + n];
                // The fast path is one memcmp; only a failure pays for finding the byte.
                if expected != got {
                    let i = expected
                        .iter()
                        .zip(got)
                        .position(|(e, g)| e != g)
                        .unwrap_or(0);
                    return Err(Mismatch {
                        offset: at + i,
                        expected: expected[i],
                        got: got[i],
                    });
                }
                done += n;
            }
            segment_start = segment_end;
        }
        debug_assert_eq!(done, received.len(), "received more than the message holds");
        Ok(())
    }

    /// The message in three parts: prefix, body, suffix (empty parts for raw messages).
    fn segments(&self, msg: &Message) -> [&[u8]; 3] {
        let pattern = match self.protocol {
            Protocol::Raw => raw_pattern(),
            Protocol::Lines => lines_pattern(),
        };
        let body = pattern.window(msg.body_pos, self.body_len);
        match self.protocol {
            Protocol::Raw => [&[], body, &[]],
            Protocol::Lines if msg.work => [&self.work_prefix, body, b"\n"],
            Protocol::Lines => [&[], body, b"\n"],
        }
    }
}

/// A pattern stored twice in a row: `bytes[i] == bytes[i + PERIOD]`.
struct Pattern {
    bytes: Box<[u8]>,
}

impl Pattern {
    /// `len` pattern bytes from stream position `pos`, as one slice.
    fn window(&self, pos: u64, len: usize) -> &[u8] {
        debug_assert!(len <= PERIOD);
        let start = (pos % PERIOD as u64) as usize;
        &self.bytes[start..start + len]
    }

    fn generate(seed: u64, map: impl Fn(u8) -> u8) -> Pattern {
        let mut state = seed;
        let mut bytes = vec![0u8; 2 * PERIOD];
        for chunk in bytes[..PERIOD].chunks_mut(8) {
            let word = splitmix64(&mut state).to_le_bytes();
            for (b, w) in chunk.iter_mut().zip(word) {
                *b = map(w);
            }
        }
        bytes.copy_within(..PERIOD, PERIOD);
        Pattern {
            bytes: bytes.into_boxed_slice(),
        }
    }
}

fn raw_pattern() -> &'static Pattern {
    static RAW: OnceLock<Pattern> = OnceLock::new();
    RAW.get_or_init(|| Pattern::generate(0x7261_776c_6f6f_7021, |b| b))
}

fn lines_pattern() -> &'static Pattern {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static LINES: OnceLock<Pattern> = OnceLock::new();
    LINES.get_or_init(|| Pattern::generate(0x6c69_6e65_7321_2121, |b| ALPHABET[(b & 63) as usize]))
}

/// SplitMix64: one 64-bit state, one add and a few xor-shift-multiplies per output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(fmt: &MessageFormat, msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        fmt.append_to(msg, &mut out);
        out
    }

    #[test]
    fn an_exact_echo_passes_in_any_split() {
        let fmt = MessageFormat::new(Protocol::Lines, 100, 2000).unwrap();
        let msg = Message {
            body_pos: PERIOD as u64 - 10,
            work: true,
        };
        let wire = bytes_of(&fmt, &msg);
        assert_eq!(wire.len(), fmt.len(&msg));
        assert!(wire.starts_with(b"WORK 2000 ") && wire.ends_with(b"\n"));
        for split in 0..wire.len() {
            assert_eq!(fmt.check(&msg, 0, &wire[..split]), Ok(()));
            assert_eq!(fmt.check(&msg, split, &wire[split..]), Ok(()));
        }
    }

    #[test]
    fn a_flipped_byte_is_found_where_it_is() {
        let fmt = MessageFormat::new(Protocol::Raw, 64, 0).unwrap();
        let msg = Message {
            body_pos: 5,
            work: false,
        };
        let mut wire = bytes_of(&fmt, &msg);
        wire[40] ^= 0x01;
        let err = fmt.check(&msg, 0, &wire).unwrap_err();
        assert_eq!(err.offset, 40);
        assert_eq!(err.got, err.expected ^ 0x01);
        assert!(fmt.check(&msg, 32, &wire[32..]).is_err());
    }

    #[test]
    fn a_shifted_or_foreign_stream_does_not_match() {
        let fmt = MessageFormat::new(Protocol::Raw, 64, 0).unwrap();
        let first = Message {
            body_pos: MessageFormat::first_body_pos(3),
            work: false,
        };
        let next = Message {
            body_pos: fmt.next_body_pos(first.body_pos),
            work: false,
        };
        let other_conn = Message {
            body_pos: MessageFormat::first_body_pos(4),
            work: false,
        };
        // A repeated message, a one-byte shift and another connection's bytes all fail.
        assert!(fmt.check(&next, 0, &bytes_of(&fmt, &first)).is_err());
        assert!(fmt.check(&first, 0, &bytes_of(&fmt, &first)[1..]).is_err());
        assert!(fmt.check(&first, 0, &bytes_of(&fmt, &other_conn)).is_err());
    }

    #[test]
    fn lines_never_contain_a_newline_before_the_end() {
        let fmt = MessageFormat::new(Protocol::Lines, 4096, 0).unwrap();
        let msg = Message {
            body_pos: 12_345,
            work: false,
        };
        let wire = bytes_of(&fmt, &msg);
        assert_eq!(wire.iter().position(|&b| b == b'\n'), Some(wire.len() - 1));
        assert_eq!(wire.len(), 4096);
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        assert!(MessageFormat::new(Protocol::Raw, 0, 0).is_err());
        assert!(MessageFormat::new(Protocol::Lines, 1, 0).is_err());
        assert!(MessageFormat::new(Protocol::Raw, PERIOD + 1, 0).is_err());
        assert!(MessageFormat::new(Protocol::Raw, PERIOD, 0).is_ok());
    }
}
