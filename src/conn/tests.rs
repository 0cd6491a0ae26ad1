//! Property tests of the connection core, with no socket at all: the core is driven by a
//! simulated driver that splits the input at arbitrary points and lets the "kernel" take an
//! arbitrary number of bytes per send (zero included), and its output is compared with a
//! reference model of the protocol. Both driver styles are simulated: readiness (replies go
//! straight to `transmit`, the rest is flushed later) and completion (every reply is queued and
//! taken with `take_output`, one send in flight, short sends continued).

use std::time::Instant;

use proptest::prelude::*;

use super::core::{memory_bound, Core, Costly, Limits, Next, Received, Stop, Transmit, Turn};
use crate::protocol::{classify, Protocol, Request, LINE_TOO_LONG};
use crate::stats::Stats;

/// A kernel that takes `pattern[i]` bytes on the i-th send (cycling), appending them to `wire`.
struct Kernel {
    wire: Vec<u8>,
    pattern: Vec<usize>,
    calls: usize,
}

impl Kernel {
    fn new(pattern: Vec<usize>) -> Kernel {
        Kernel {
            wire: Vec::new(),
            pattern,
            calls: 0,
        }
    }

    fn take(&mut self, bytes: &[u8]) -> usize {
        let n = self.pattern[self.calls % self.pattern.len()].min(bytes.len());
        self.calls += 1;
        self.wire.extend_from_slice(&bytes[..n]);
        n
    }
}

impl Transmit for Kernel {
    fn transmit(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        Ok(self.take(bytes))
    }
}

/// How a simulated driver hands replies to the kernel.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Style {
    /// Replies go to `transmit` at once; what the kernel refuses is flushed later.
    Readiness,
    /// Every reply is queued, then taken with `take_output` and sent from the driver's buffer.
    Completion,
}

/// The `Transmit` a simulated driver passes to the core.
struct Tx<'a> {
    kernel: &'a mut Kernel,
    style: Style,
}

impl Transmit for Tx<'_> {
    fn transmit(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.style {
            Style::Readiness => Ok(self.kernel.take(bytes)),
            Style::Completion => Ok(0),
        }
    }
}

/// Drives `core` over `chunks` (then EOF) until it says close, checking the memory bound after
/// every step; what reached the wire is in `kernel.wire`.
fn drive(mut core: Core, chunks: &[Vec<u8>], kernel: &mut Kernel, limits: &Limits, style: Style) {
    let stats = Stats::default();
    let mut out = Vec::new();
    let mut chunks = chunks.iter();
    let mut eof_sent = false;
    let mut in_flight: Option<(Vec<u8>, usize)> = None;
    for _step in 0..1_000_000 {
        if style == Style::Completion {
            complete_send(&mut core, kernel, &mut in_flight);
        }
        let mut tx = Tx { kernel, style };
        let mut turn = Turn::new(&mut out, Costly::Inline, &stats);
        core.flush(&mut tx).unwrap();
        core.resume(limits, &mut turn, &mut tx).unwrap();
        if core.wants_read(limits) {
            match chunks.next() {
                Some(chunk) => drop(core.receive(chunk, limits, &mut turn, &mut tx).unwrap()),
                None if !eof_sent => {
                    eof_sent = true;
                    core.received_eof(&mut turn, &mut tx).unwrap();
                }
                None => {}
            }
        }
        assert!(core.heap_bytes() <= 2 * memory_bound(limits));
        if matches!(core.next(limits), Next::Close(_)) && in_flight.is_none() {
            return;
        }
    }
    panic!("the core never closed");
}

/// The completion driver's send path: one send in flight; a short send continues from what
/// the kernel took; a new send starts only when the previous one is whole.
fn complete_send(core: &mut Core, kernel: &mut Kernel, in_flight: &mut Option<(Vec<u8>, usize)>) {
    if in_flight.is_none() {
        *in_flight = core.take_output().map(|buf| (buf, 0));
    }
    if let Some((buf, done)) = in_flight {
        let n = kernel.take(&buf[*done..]);
        *done += n;
        core.output_sent(n);
        if *done == buf.len() {
            *in_flight = None;
        }
    }
}

/// The line protocol, restated: each complete line answered in order, the unterminated tail
/// answered at EOF, and `ERR line too long` ending everything.
fn reference_lines(input: &[u8], max_line: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        let complete = line.ends_with(b"\n");
        if line.len() > max_line || (!complete && line.len() > max_line) {
            out.extend_from_slice(LINE_TOO_LONG);
            return out;
        }
        match classify(line) {
            Request::Line(l) | Request::Work { line: l, .. } => out.extend_from_slice(l),
            Request::Invalid(reason) => out.extend_from_slice(format!("ERR {reason}\n").as_bytes()),
        }
        rest = tail;
    }
    out
}

fn split(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut at = 0;
    for &cut in cuts {
        let end = (at + cut).min(input.len());
        if end > at {
            chunks.push(input[at..end].to_vec());
        }
        at = end;
    }
    if at < input.len() {
        chunks.push(input[at..].to_vec());
    }
    chunks
}

fn small_limits() -> Limits {
    Limits {
        high_water: 64,
        low_water: 16,
        max_line: 40,
        read_budget: 4,
    }
}

/// Lines of a small alphabet that hits every request kind: plain, WORK (cheap), bad WORK.
fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z ]{0,12}\n".prop_map(String::into_bytes),
        "WORK [0-2]( [a-z]{0,5})?\n".prop_map(String::into_bytes),
        "WORK( x)?\n".prop_map(String::into_bytes),
        "[a-z]{0,60}\n".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn raw_echo_is_exact_whatever_the_splits_and_short_sends(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(1usize..200, 0..12),
        pattern in proptest::collection::vec(0usize..70, 1..8),
        completion in any::<bool>(),
    ) {
        let mut pattern = pattern;
        pattern.push(7); // the kernel takes something eventually
        let limits = small_limits();
        let style = if completion { Style::Completion } else { Style::Readiness };
        let mut kernel = Kernel::new(pattern);
        let core = Core::new(Protocol::Raw, &limits, Instant::now());
        drive(core, &split(&input, &cuts), &mut kernel, &limits, style);
        prop_assert_eq!(kernel.wire, input);
    }

    #[test]
    fn lines_are_answered_in_order_whatever_the_splits(
        lines in proptest::collection::vec(line_strategy(), 0..30),
        tail in "[a-z]{0,5}",
        cuts in proptest::collection::vec(1usize..90, 0..12),
        pattern in proptest::collection::vec(0usize..90, 1..8),
        completion in any::<bool>(),
    ) {
        let mut input = lines.concat();
        input.extend_from_slice(tail.as_bytes());
        let mut pattern = pattern;
        pattern.push(11);
        let limits = small_limits();
        let style = if completion { Style::Completion } else { Style::Readiness };
        let mut kernel = Kernel::new(pattern);
        let core = Core::new(Protocol::Lines, &limits, Instant::now());
        drive(core, &split(&input, &cuts), &mut kernel, &limits, style);
        prop_assert_eq!(kernel.wire, reference_lines(&input, limits.max_line));
    }

    #[test]
    fn a_client_that_never_reads_cannot_grow_memory_past_the_bound(
        request in prop_oneof![Just(&b"WORK\n"[..]), Just(&b"x\n"[..]), Just(&b"WORK x\n"[..])],
        reads in 1usize..40,
    ) {
        let limits = Limits::default();
        let stats = Stats::default();
        let mut out = Vec::new();
        let mut core = Core::new(Protocol::Lines, &limits, Instant::now());
        let mut kernel = Kernel::new(vec![0]);
        let chunk = request.repeat(super::core::READ_CHUNK / request.len());
        for _ in 0..reads {
            let mut turn = Turn::new(&mut out, Costly::Inline, &stats);
            if core.wants_read(&limits) {
                core.receive(&chunk, &limits, &mut turn, &mut kernel).unwrap();
            }
            core.resume(&limits, &mut turn, &mut kernel).unwrap();
            prop_assert!(core.pending_len() < limits.high_water + limits.max_line);
            prop_assert!(core.heap_bytes() <= memory_bound(&limits) * 2);
        }
        prop_assert!(!core.wants_read(&limits));
    }
}

#[test]
fn a_pipeline_of_work_yields_after_the_turn_budget() {
    let limits = Limits::default();
    let stats = Stats::default();
    let mut out = Vec::new();
    let mut core = Core::new(Protocol::Lines, &limits, Instant::now());
    let mut kernel = Kernel::new(vec![usize::MAX]);
    let input = b"WORK 600 a\n".repeat(5);
    let mut turn = Turn::new(&mut out, Costly::Inline, &stats);
    let received = core
        .receive(&input, &limits, &mut turn, &mut kernel)
        .unwrap();
    assert_eq!(received, Received::Stopped(Stop::Budget));
    assert_eq!(
        kernel.wire,
        b"WORK 600 a\n".repeat(2),
        "two requests fill 1 ms"
    );
    assert_eq!(core.next(&limits), Next::Yield);
    let mut turns = 1;
    while core.next(&limits) == Next::Yield {
        let mut turn = Turn::new(&mut out, Costly::Inline, &stats);
        core.resume(&limits, &mut turn, &mut kernel).unwrap();
        turns += 1;
    }
    assert_eq!(kernel.wire, input, "every request answered, in order");
    assert_eq!(turns, 3);
}

#[test]
fn a_deferred_work_request_resumes_inline_where_it_stopped() {
    let limits = Limits::default();
    let stats = Stats::default();
    let mut out = Vec::new();
    let mut core = Core::new(Protocol::Lines, &limits, Instant::now());
    let mut kernel = Kernel::new(vec![usize::MAX]);
    let input = b"a\nWORK 1 x\nb\n";
    let mut turn = Turn::new(&mut out, Costly::Defer, &stats);
    let received = core
        .receive(input, &limits, &mut turn, &mut kernel)
        .unwrap();
    assert_eq!(received, Received::Stopped(Stop::Offload));
    assert_eq!(kernel.wire, b"a\n");
    let mut turn = Turn::new(&mut out, Costly::Inline, &stats);
    assert_eq!(
        core.resume(&limits, &mut turn, &mut kernel).unwrap(),
        Received::All
    );
    assert_eq!(kernel.wire, input);
}

#[test]
fn lingering_sends_fin_once_flushed_and_closes_at_the_clients_fin() {
    let limits = Limits::default();
    let stats = Stats::default();
    let mut out = Vec::new();
    let mut core = Core::new(Protocol::Raw, &limits, Instant::now());
    let mut kernel = Kernel::new(vec![0]);
    let mut turn = Turn::new(&mut out, Costly::Inline, &stats);
    core.receive(b"hello", &limits, &mut turn, &mut kernel)
        .unwrap();
    core.begin_close(Instant::now() + std::time::Duration::from_secs(5));
    assert!(!core.fin_due(), "five bytes still pending");
    kernel.pattern = vec![usize::MAX];
    core.flush(&mut kernel).unwrap();
    assert!(core.fin_due());
    core.fin_sent();
    core.receive(b"ignored", &limits, &mut turn, &mut kernel)
        .unwrap();
    assert_eq!(kernel.wire, b"hello", "lingering input is dropped");
    core.received_eof(&mut turn, &mut kernel).unwrap();
    assert!(matches!(core.next(&limits), Next::Close(_)));
}
