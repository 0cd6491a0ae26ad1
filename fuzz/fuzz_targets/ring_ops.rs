//! libFuzzer entry point for `pool::Ring`: see `rawloop_fuzz::ring_ops` for the input format
//! and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rawloop_fuzz::ring_ops::check(data));
