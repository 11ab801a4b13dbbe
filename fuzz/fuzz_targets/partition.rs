//! GPT and MBR parsing (logical partitions included) at both sector sizes.
#![no_main]

mod harness;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::partition(data));
