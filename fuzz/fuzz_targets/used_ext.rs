//! The ext2/3/4 (group bitmaps) used-block map of a fuzzed volume. Damaged metadata must give an
//! error: never a panic, a runaway allocation or a loop.
#![no_main]

mod harness;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::used_ext(data));
