//! Chain resolution: two image files in one directory (a parent and a child whose
//! references are fuzzed), resolved and read.
#![no_main]

mod harness;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::chain(data));
