//! `cat` of every file and stream on a fuzzed disk, each read twice in different pieces
//! (the reads must agree, and match the size the metadata gives).
#![no_main]

mod harness;
mod mutate;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::vfs_cat(data));
libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate::mutate(data, size, max_size, seed)
});
