//! The whole browsing stack over a fuzzed disk: partition table, every filesystem opened,
//! every directory walked, every file and stream read.
#![no_main]

mod harness;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::vfs_walk(data));
