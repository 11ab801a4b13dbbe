//! A whole image file: header, trailer, index checks, then every chunk loaded (as `verify`
//! does) and every mapped byte read (as `restore` does).
#![no_main]

mod harness;

libfuzzer_sys::fuzz_target!(init: harness::init(), |data: &[u8]| harness::container(data));
