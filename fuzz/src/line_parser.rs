//! Differential check of the incremental line parser (`rawloop::protocol::LineParser`).
//!
//! The parser sees a TCP byte stream the way a server does: in reads of any size, a line split
//! across reads, many lines in one read, and a callback that may ask it to stop after any
//! request (the offload model stops at each `WORK` and hands the rest to a worker). The
//! reference model sees the whole stream at once: `split_inclusive(b'\n')`, the same
//! `max_line` rule, and `classify` on each piece. Both must produce the same requests in the
//! same order and the same `LineTooLong` outcome, whatever the split.
//!
//! Input format (every field optional; a short input just uses the defaults):
//!
//! ```text
//! byte 0      max_line: 0..=127 as is (0 tests the parser's clamp to 1), 128..=255 map to
//!             256 + 4 * (b - 128), lines long enough to reach the "free a big buffer" path
//! byte 1      when the callback returns false: bits 0-1 = 0 never, 1 at every WORK request,
//!             2 at every request, 3 at every other request
//! byte 2      n, the number of chunk lengths that follow
//! n bytes     chunk lengths (0 allowed: feeding an empty read is legal)
//! the rest    the stream; what the chunk lengths do not cover is the last chunk
//! ```
//!
//! Besides the requests, every call is checked for the bookkeeping a server relies on: the
//! byte count `feed` returns (all of a read, or exactly up to the `\n` of the request it stopped
//! at), `buffered()` equal to the unterminated tail and never above `max_line`, and no more than
//! a small reusable buffer held between lines.

use std::time::Duration;

use rawloop::protocol::{classify, LineParser, LineTooLong, Request, WorkError, MAX_WORK};

/// Runs one fuzz input; panics if the parser and the model disagree.
pub fn check(input: &[u8]) {
    let plan = Plan::parse(input);
    let (expected, expected_outcome) = reference(plan.stream, plan.effective_max_line());
    let (got, outcome) = drive_parser(&plan);
    assert_eq!(
        outcome, expected_outcome,
        "LineTooLong outcome differs (max_line {}, chunks {:?})",
        plan.max_line, plan.chunk_lens
    );
    assert_eq!(
        got, expected,
        "requests differ (max_line {}, chunks {:?})",
        plan.max_line, plan.chunk_lens
    );
}

/// The most capacity the parser keeps between lines: none. It frees a split line's buffer as
/// soon as the line is complete, so an idle connection holds no parser memory.
const REUSE_KEEP: usize = 0;

/// An owned copy of a [`Request`], so requests from different buffers can be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Line(Vec<u8>),
    Work { micros: u128, line: Vec<u8> },
    Invalid(WorkError),
}

impl Seen {
    fn of(request: Request<'_>) -> Seen {
        match request {
            Request::Line(line) => Seen::Line(line.to_vec()),
            Request::Work { cost, line } => Seen::Work {
                micros: cost.as_micros(),
                line: line.to_vec(),
            },
            Request::Invalid(why) => Seen::Invalid(why),
        }
    }
}

/// When the callback answers `false`, asking `feed` to stop.
#[derive(Clone, Copy, Debug)]
enum StopAt {
    Never,
    Work,
    Every,
    EveryOther,
}

/// The decoded fuzz input.
#[derive(Debug)]
struct Plan<'a> {
    max_line: usize,
    stop_at: StopAt,
    chunk_lens: &'a [u8],
    stream: &'a [u8],
}

impl<'a> Plan<'a> {
    fn parse(input: &'a [u8]) -> Plan<'a> {
        let byte = |i: usize| input.get(i).copied().unwrap_or(0);
        let max_line = match byte(0) {
            b @ 0..=127 => usize::from(b),
            b => 256 + 4 * usize::from(b - 128),
        };
        let stop_at = match byte(1) & 3 {
            0 => StopAt::Never,
            1 => StopAt::Work,
            2 => StopAt::Every,
            _ => StopAt::EveryOther,
        };
        let header_end = input.len().min(3);
        let lens_end = input.len().min(header_end + usize::from(byte(2)));
        Plan {
            max_line,
            stop_at,
            chunk_lens: &input[header_end..lens_end],
            stream: &input[lens_end..],
        }
    }

    /// `LineParser::new` treats a limit of 0 as 1 (an empty line still has its `\n`).
    fn effective_max_line(&self) -> usize {
        self.max_line.max(1)
    }

    /// The reads a server would see: the listed lengths, then whatever is left.
    fn chunks(&self) -> Vec<&'a [u8]> {
        let mut rest = self.stream;
        let mut chunks = Vec::with_capacity(self.chunk_lens.len() + 1);
        for &len in self.chunk_lens {
            let (chunk, tail) = rest.split_at(usize::from(len).min(rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        chunks.push(rest);
        chunks
    }
}

/// The whole stream at once: every `\n`-terminated piece, then the unterminated tail that
/// `finish` delivers; the first piece longer than `max_line` ends the stream with an error.
fn reference(stream: &[u8], max_line: usize) -> (Vec<Seen>, Result<(), LineTooLong>) {
    let mut requests = Vec::new();
    for piece in stream.split_inclusive(|&b| b == b'\n') {
        if piece.len() > max_line {
            return (requests, Err(LineTooLong));
        }
        let request = Seen::of(classify(piece));
        check_classification(piece, &request);
        requests.push(request);
    }
    (requests, Ok(()))
}

/// Feeds the chunks as a server would, resuming after each early stop, then calls `finish`.
fn drive_parser(plan: &Plan<'_>) -> (Vec<Seen>, Result<(), LineTooLong>) {
    let max_line = plan.effective_max_line();
    let mut parser = LineParser::new(plan.max_line);
    let mut requests = Vec::new();
    // Length of the line in progress, as the stream says: what `buffered()` must report.
    let mut tail_len = 0usize;
    for chunk in plan.chunks() {
        let mut rest = chunk;
        loop {
            let mut calls = 0usize;
            let mut stopped = false;
            let result = parser.feed(rest, |request| {
                let seen = Seen::of(request);
                let keep_going = !wants_stop(plan.stop_at, &seen, requests.len());
                requests.push(seen);
                calls += 1;
                stopped = !keep_going;
                keep_going
            });
            let used = match result {
                Err(LineTooLong) => return (requests, Err(LineTooLong)),
                Ok(used) => used,
            };
            check_consumed(rest, used, calls, stopped);
            match rest[..used].iter().rposition(|&b| b == b'\n') {
                Some(nl) => tail_len = used - nl - 1,
                None => tail_len += used,
            }
            check_buffer(&parser, tail_len, max_line);
            rest = &rest[used..];
            if !stopped {
                break;
            }
        }
    }
    parser.finish(|request| requests.push(Seen::of(request)));
    assert_eq!(parser.buffered(), 0, "finish must leave nothing buffered");
    (requests, Ok(()))
}

fn wants_stop(stop_at: StopAt, seen: &Seen, index: usize) -> bool {
    match stop_at {
        StopAt::Never => false,
        StopAt::Work => matches!(seen, Seen::Work { .. }),
        StopAt::Every => true,
        StopAt::EveryOther => index.is_multiple_of(2),
    }
}

/// `feed` consumed `used` bytes of `input` and called back `calls` times: one call per `\n`
/// consumed, all of the input unless the callback stopped it, and then exactly up to the
/// `\n` of the request that said stop.
fn check_consumed(input: &[u8], used: usize, calls: usize, stopped: bool) {
    assert!(
        used <= input.len(),
        "feed consumed {used} of {} bytes",
        input.len()
    );
    let newlines = input[..used].iter().filter(|&&b| b == b'\n').count();
    assert_eq!(
        calls, newlines,
        "feed reported {calls} requests but consumed {newlines} line ends"
    );
    if stopped {
        assert!(
            used > 0 && input[used - 1] == b'\n',
            "after a stop, feed must have consumed exactly through the line's \\n (used {used})"
        );
    } else {
        assert_eq!(
            used,
            input.len(),
            "without a stop, feed must consume the whole input"
        );
    }
}

fn check_buffer(parser: &LineParser, tail_len: usize, max_line: usize) {
    assert_eq!(
        parser.buffered(),
        tail_len,
        "buffered() must be the unterminated tail of the stream"
    );
    assert!(
        parser.buffered() <= max_line,
        "buffered() {} exceeds max_line {max_line}",
        parser.buffered()
    );
    if parser.buffered() == 0 {
        assert!(
            parser.heap_bytes() <= REUSE_KEEP,
            "between lines the parser holds {} heap bytes (at most {REUSE_KEEP} expected)",
            parser.heap_bytes()
        );
    }
}

/// Restates the line protocol of `rawloop::protocol` independently of `classify`, so that the
/// reference model's oracle is itself checked: `WORK <micros> <payload>` with `micros` a
/// base-10 number (leading zeros allowed; a value past `u64::MAX` is `BadMicros`), at most
/// `MAX_WORK`.
fn check_classification(line: &[u8], got: &Seen) {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let expected = match body.strip_prefix(b"WORK") {
        None => Seen::Line(line.to_vec()),
        Some([]) => Seen::Invalid(WorkError::MissingMicros),
        Some([b' ', args @ ..]) => {
            let micros = args.split(|&b| b == b' ').next().unwrap_or_default();
            work_request(line, micros)
        }
        Some(_) => Seen::Line(line.to_vec()),
    };
    assert_eq!(
        *got,
        expected,
        "classify({:?})",
        String::from_utf8_lossy(line)
    );
}

fn work_request(line: &[u8], micros: &[u8]) -> Seen {
    if micros.is_empty() {
        return Seen::Invalid(WorkError::MissingMicros);
    }
    if !micros.iter().all(u8::is_ascii_digit) {
        return Seen::Invalid(WorkError::BadMicros);
    }
    let value = micros.iter().try_fold(0u128, |acc, &d| {
        acc.checked_mul(10)?
            .checked_add(u128::from(d - b'0'))
            .filter(|&v| v <= u128::from(u64::MAX))
    });
    let Some(value) = value else {
        return Seen::Invalid(WorkError::BadMicros);
    };
    if value > MAX_WORK.as_micros() {
        return Seen::Invalid(WorkError::TooMuchWork);
    }
    debug_assert!(Duration::from_micros(value as u64) <= MAX_WORK);
    Seen::Work {
        micros: value,
        line: line.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_model_splits_classifies_and_stops_at_a_long_line() {
        let (requests, outcome) = reference(b"hi\nWORK 5 x\nWORK\ntoo long!\nlost\n", 12);
        assert_eq!(
            requests,
            vec![
                Seen::Line(b"hi\n".to_vec()),
                Seen::Work {
                    micros: 5,
                    line: b"WORK 5 x\n".to_vec()
                },
                Seen::Invalid(WorkError::MissingMicros),
                Seen::Line(b"too long!\n".to_vec()),
                Seen::Line(b"lost\n".to_vec()),
            ]
        );
        assert_eq!(outcome, Ok(()), "`too long!\\n` is 10 bytes, within 12");
        let (requests, outcome) = reference(b"hi\nthis is too long\nlost\n", 8);
        assert_eq!(requests, vec![Seen::Line(b"hi\n".to_vec())]);
        assert_eq!(outcome, Err(LineTooLong));
    }

    #[test]
    fn the_header_chooses_limit_stops_and_chunks() {
        let plan = Plan::parse(b"\x05\x01\x02\x01\x00abc\ndef");
        assert_eq!(plan.max_line, 5);
        assert!(matches!(plan.stop_at, StopAt::Work));
        assert_eq!(plan.chunks(), vec![&b"a"[..], b"", b"bc\ndef"]);
        assert_eq!(Plan::parse(b"\x80").max_line, 256);
        assert_eq!(Plan::parse(b"").effective_max_line(), 1);
    }

    #[test]
    #[should_panic(expected = "classify")]
    fn a_wrong_classification_is_caught() {
        check_classification(b"WORK 5\n", &Seen::Line(b"WORK 5\n".to_vec()));
    }

    #[test]
    #[should_panic(expected = "without a stop")]
    fn a_short_count_is_caught() {
        check_consumed(b"ab\ncd", 3, 1, false);
    }
}
