//! `cargo fuzz run journal_decoder`: the invariants are in `fuzz/checks.rs`, shared with
//! `tests/fuzz_corpus.rs`, which replays the kept corpus under `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::journal_decoder(data);
});
