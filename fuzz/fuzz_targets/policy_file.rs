//! libFuzzer entry point of `kftenant_fuzz::policy_file` (see fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kftenant_fuzz::policy_file(data));
