//! `pipeline`: arbitrary bytes as a build file through load → resolve →
//! select → plan, with every diagnostic rendered.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::run(data);
});
