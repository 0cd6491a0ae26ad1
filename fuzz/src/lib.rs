//! Checks shared by rawloop's fuzz targets and by the seed replay test.
//!
//! Each fuzz target in `fuzz_targets/` is one line: it hands libFuzzer's bytes to a plain
//! function of this crate. The same functions run on stable, without libFuzzer, in
//! `tests/replay.rs`, which replays every input committed under `seeds/<target>/`. So an input
//! that once crashed a target stays a regression test forever, and `cargo test` on stable is
//! enough to run it (the layout of smoltcp's `fuzz/`, with rust-analyzer's habit of keeping
//! the check logic in a library so that tests and fuzzers share it).
//!
//! Every check panics on a mismatch, with a message that says which property broke; libFuzzer
//! turns the panic into a crash and saves the input under `fuzz/artifacts/<target>/`.
//!
//! # Layout
//!
//! - [`line_parser`]: the incremental `LineParser` fed in arbitrary pieces, against a
//!   one-shot reference model built on `split` and `classify`.
//! - [`ring_ops`]: push/pop sequences on `pool::Ring` against a bounded `VecDeque`, with drop
//!   accounting.

#![forbid(unsafe_code)]

pub mod line_parser;
pub mod ring_ops;

/// A target's check: returns if the input shows nothing wrong, panics otherwise.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name: the directory names under `seeds/` and `fuzz_targets/`.
pub const TARGETS: [(&str, Check); 2] = [
    ("line_parser", line_parser::check),
    ("ring_ops", ring_ops::check),
];
