//! `kdl_diff`: differential fuzzing of the hand-written KDL parser
//! (`src/load/kdl.rs`) against knuffel 3.2, the reference it replaces on the
//! fast path: same accept/reject verdict, same tree (nodes, values, spans,
//! property order), and the same declarations and diagnostics from
//! `load::decode_file` (fast path) as from `load::decode_file_knuffel`.
//! `load::check_against_knuffel` panics on any difference.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        mybake::load::check_against_knuffel(text);
    }
});
