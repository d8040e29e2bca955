//! libFuzzer entry point of `kftenant_fuzz::tenant_file` (see fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kftenant_fuzz::tenant_file(data));
