//! The safetensors and config loader under libFuzzer: `cargo +nightly fuzz run load` from the
//! repository root (README, "Fuzzing").
#![no_main]

include!("../load_one.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| load_one(data));
