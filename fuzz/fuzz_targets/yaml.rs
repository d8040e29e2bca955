//! libFuzzer entry point of `kftenant_fuzz::yaml` (see fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kftenant_fuzz::yaml(data));
