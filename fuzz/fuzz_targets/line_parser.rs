//! libFuzzer entry point for `LineParser`: see `rawloop_fuzz::line_parser` for the input
//! format and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rawloop_fuzz::line_parser::check(data));
