//! The catalog section's encoding (`strata::catalog`) and the queries run on it.
#![no_main]

mod harness;
mod mutate;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::catalog(data));
libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate::mutate(data, size, max_size, seed)
});
