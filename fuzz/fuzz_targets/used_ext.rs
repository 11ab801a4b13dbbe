//! The ext2/3/4 (group bitmaps) used-block map of a fuzzed volume. Damaged metadata must give an
//! error: never a panic, a runaway allocation or a loop.
#![no_main]

mod harness;
mod mutate;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::used_ext(data));
libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate::mutate(data, size, max_size, seed)
});
