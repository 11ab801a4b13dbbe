//! GPT and MBR parsing (logical partitions included) at both sector sizes.
#![no_main]

mod harness;
mod mutate;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::partition(data));
libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate::mutate(data, size, max_size, seed)
});
