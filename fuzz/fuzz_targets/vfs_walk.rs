//! The whole browsing stack over a fuzzed disk: partition table, every filesystem opened,
//! every directory walked, every file and stream read.
#![no_main]

mod harness;
mod mutate;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::vfs_walk(data));
libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate::mutate(data, size, max_size, seed)
});
