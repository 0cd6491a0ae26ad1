//! The two wire protocols: RFC 862 echo (`raw`) and the line protocol (`lines`).
//!
//! `raw` is the Echo Protocol of RFC 862: "once a connection is established any data received is
//! sent back", so it needs no parsing at all and the connection code writes the bytes it read.
//!
//! `lines` models requests of different cost on the same connection, which is what our design
//! notes need to show the "greedy neighbour" and the "listener reads, workers process" model:
//!
//! ```text
//! hello\n                 -> hello\n                 (any line is echoed unchanged)
//! WORK 2000 payload\n     -> WORK 2000 payload\n     (after burning 2000 us of CPU)
//! WORK x y\n              -> ERR bad WORK: ...\n     (the connection carries on)
//! <more than max-line>    -> ERR line too long\n     (and the connection closes)
//! ```
//!
//! The parser is incremental: a line may arrive split across any number of reads and one read may
//! carry many lines. It never allocates for lines that fit in one read; only the unfinished tail
//! of a read is copied into a per-connection buffer, which is freed as soon as it is empty (an idle
//! connection holds no buffer). It is a pure function of its input, fuzzed in `fuzz/`.

use std::fmt;
use std::time::{Duration, Instant};

/// Which protocol a server speaks (`--protocol`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// RFC 862 echo: every byte received is sent back, in order, nothing added.
    Raw,
    /// `\n`-terminated lines, echoed one by one; `WORK <micros> <payload>` costs CPU first.
    Lines,
}

/// The most CPU one `WORK` request may ask for. Without a cap a single line could occupy a
/// worker for hours; a real server would make this a per-tenant budget.
pub const MAX_WORK: Duration = Duration::from_secs(1);

/// One complete unit of input, as the line parser sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// An ordinary line (with its `\n`, or without one if it is the tail at end of stream).
    Line(&'a [u8]),
    /// A `WORK` line: burn `cost` of CPU, then echo `line` unchanged.
    Work {
        /// How much CPU to burn before answering.
        cost: Duration,
        /// The whole line, echoed after the work.
        line: &'a [u8],
    },
    /// A malformed request: answer `ERR <reason>\n` and keep the connection.
    Invalid(WorkError),
}

/// Why a `WORK` line was rejected. The connection stays open.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WorkError {
    /// `WORK` with no number after it.
    MissingMicros,
    /// The number is not a base-10 unsigned integer.
    BadMicros,
    /// More than [`MAX_WORK`].
    TooMuchWork,
}

impl fmt::Display for WorkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkError::MissingMicros => write!(f, "bad WORK: expected WORK <micros> <payload>"),
            WorkError::BadMicros => write!(f, "bad WORK: micros is not an unsigned integer"),
            WorkError::TooMuchWork => {
                write!(f, "bad WORK: at most {} micros", MAX_WORK.as_micros())
            }
        }
    }
}

/// The reply to a line longer than `--max-line`; the connection closes after it.
pub const LINE_TOO_LONG: &[u8] = b"ERR line too long\n";

/// A line exceeded the limit: the caller answers [`LINE_TOO_LONG`] and closes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LineTooLong;

/// Incremental splitter of a byte stream into [`Request`]s.
///
/// Invariant: `partial` holds the bytes of an unfinished line and never contains `\n`; its
/// length never exceeds `max_line`. It is empty (and unallocated) between lines.
#[derive(Debug)]
pub struct LineParser {
    partial: Vec<u8>,
    max_line: usize,
}

impl LineParser {
    /// A parser that rejects lines longer than `max_line` bytes (the `\n` included).
    pub fn new(max_line: usize) -> LineParser {
        LineParser {
            partial: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Bytes of an unfinished line held across reads.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Heap bytes this parser holds (for the memory-per-connection figure).
    pub fn heap_bytes(&self) -> usize {
        self.partial.capacity()
    }

    /// Feeds `input` and calls `on_request` for every complete request, in order.
    ///
    /// Stops early when `on_request` returns `false`, returning how many bytes of `input` were
    /// consumed so the caller can resume later with the rest (the offload model hands the rest
    /// to a worker). Returns `Err(LineTooLong)` as soon as a line passes `max_line`.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_request: impl FnMut(Request<'_>) -> bool,
    ) -> Result<usize, LineTooLong> {
        let mut rest = input;
        while let Some(nl) = memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(nl + 1);
            let keep_going = if self.partial.is_empty() {
                if line.len() > self.max_line {
                    return Err(LineTooLong);
                }
                on_request(classify(line))
            } else {
                self.append(line)?;
                // Take the buffer, freeing it: between lines the parser holds no memory.
                let whole = std::mem::take(&mut self.partial);
                on_request(classify(&whole))
            };
            rest = tail;
            if !keep_going {
                return Ok(input.len() - rest.len());
            }
        }
        self.append(rest)?;
        Ok(input.len())
    }

    /// End of stream: an unterminated last line is still echoed (RFC 862 spirit: nothing
    /// received is lost), then the parser is empty.
    pub fn finish(&mut self, on_request: impl FnOnce(Request<'_>)) {
        if !self.partial.is_empty() {
            let whole = std::mem::take(&mut self.partial);
            on_request(classify(&whole));
        }
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        if self.partial.len() + bytes.len() > self.max_line {
            return Err(LineTooLong);
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }
}

/// Classifies one complete line.
pub fn classify(line: &[u8]) -> Request<'_> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let Some(args) = body.strip_prefix(b"WORK") else {
        return Request::Line(line);
    };
    // "WORKER" is an ordinary line; only the word WORK followed by a space or nothing counts.
    let args = match args.first() {
        None => return Request::Invalid(WorkError::MissingMicros),
        Some(b' ') => &args[1..],
        Some(_) => return Request::Line(line),
    };
    let micros = args.split(|&b| b == b' ').next().unwrap_or_default();
    if micros.is_empty() {
        return Request::Invalid(WorkError::MissingMicros);
    }
    match parse_u64(micros) {
        None => Request::Invalid(WorkError::BadMicros),
        Some(us) if us > MAX_WORK.as_micros() as u64 => Request::Invalid(WorkError::TooMuchWork),
        Some(us) => Request::Work {
            cost: Duration::from_micros(us),
            line,
        },
    }
}

/// Spins on this thread for `cost`: the model of a CPU-bound request. It deliberately does not
/// sleep, because a sleeping request would not occupy the core, and occupying the core is the
/// point of the greedy-neighbour experiment.
pub fn burn_cpu(cost: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < cost {
        for _ in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    // Checked arithmetic: leading zeros are fine, a value past u64::MAX is not a number.
    digits.iter().try_fold(0u64, |acc, &d| {
        let digit = d.is_ascii_digit().then(|| u64::from(d - b'0'))?;
        acc.checked_mul(10)?.checked_add(digit)
    })
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(parser: &mut LineParser, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        parser
            .feed(input, |r| {
                out.push(format!("{r:?}"));
                true
            })
            .unwrap();
        out
    }

    #[test]
    fn a_line_split_across_reads_is_one_request() {
        let mut p = LineParser::new(64);
        assert!(lines_of(&mut p, b"hel").is_empty());
        assert_eq!(p.buffered(), 3);
        assert_eq!(
            lines_of(&mut p, b"lo\nab\n"),
            vec![
                format!("{:?}", Request::Line(b"hello\n")),
                format!("{:?}", Request::Line(b"ab\n")),
            ]
        );
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn work_lines_are_classified() {
        let work = |us, line| Request::Work {
            cost: Duration::from_micros(us),
            line,
        };
        let cases: &[(&[u8], Request<'static>)] = &[
            (b"WORK 10 x\n", work(10, b"WORK 10 x\n")),
            (b"WORK 7\n", work(7, b"WORK 7\n")),
            (
                b"WORK 00000000000000000001 x\n",
                work(1, b"WORK 00000000000000000001 x\n"),
            ),
            (b"WORKER 1\n", Request::Line(b"WORKER 1\n")),
            (b"WORK\n", Request::Invalid(WorkError::MissingMicros)),
            (b"WORK  5\n", Request::Invalid(WorkError::MissingMicros)),
            (b"WORK -5 x\n", Request::Invalid(WorkError::BadMicros)),
            (
                b"WORK 99999999999999999999\n",
                Request::Invalid(WorkError::BadMicros),
            ),
            (
                b"WORK 1000001 x\n",
                Request::Invalid(WorkError::TooMuchWork),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                classify(line),
                *expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_long_line_is_rejected_even_when_split() {
        let mut p = LineParser::new(8);
        assert!(p.feed(b"12345", |_| true).is_ok());
        assert_eq!(p.feed(b"6789", |_| true), Err(LineTooLong));
        let mut p = LineParser::new(8);
        assert_eq!(p.feed(b"123456789\n", |_| true), Err(LineTooLong));
        let mut p = LineParser::new(8);
        assert_eq!(
            p.feed(b"1234567\n", |_| true),
            Ok(8),
            "exactly max_line fits"
        );
    }

    #[test]
    fn feed_stops_when_asked_and_reports_consumed_bytes() {
        let mut p = LineParser::new(64);
        let mut seen = 0;
        let used = p
            .feed(b"a\nWORK 1 x\nb\n", |r| {
                seen += 1;
                !matches!(r, Request::Work { .. })
            })
            .unwrap();
        assert_eq!((seen, used), (2, 11));
    }

    #[test]
    fn finish_echoes_the_unterminated_tail() {
        let mut p = LineParser::new(64);
        assert!(lines_of(&mut p, b"tail").is_empty());
        let mut got = None;
        p.finish(|r| got = Some(format!("{r:?}")));
        assert_eq!(got, Some(format!("{:?}", Request::Line(b"tail"))));
        assert_eq!(
            (p.buffered(), p.heap_bytes()),
            (0, 0),
            "finish leaves no buffer behind"
        );
    }
}
