//! The fuzz corpus under `cargo test`: every file kept in `fuzz/corpus/<target>/` (seeds and
//! the inputs of crashes found and fixed) goes through the same checks as the `cargo fuzz`
//! targets (`fuzz/checks.rs`), so CI exercises them without libFuzzer. Longer runs:
//! `scripts/fuzz.sh` (docs/reliability.md, "Fuzzing").

use std::path::PathBuf;

#[path = "../../fuzz/checks.rs"]
mod checks;

/// Runs `check` on every file of the target's corpus; how many were accepted and refused.
fn replay(target: &str, check: fn(&[u8]) -> bool) -> (usize, usize) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let (mut accepted, mut refused) = (0, 0);
    for file in &files {
        let data = std::fs::read(file).unwrap();
        // A panic names the input that broke the invariant.
        let result = std::panic::catch_unwind(|| check(&data));
        match result {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("{} breaks an invariant", file.display()),
        }
    }
    (accepted, refused)
}

/// Each corpus reaches both sides: inputs accepted (so the round trips run) and inputs
/// refused (so the error paths run).
fn assert_both_sides(target: &str, check: fn(&[u8]) -> bool) {
    let (accepted, refused) = replay(target, check);
    assert!(accepted >= 2, "{target}: only {accepted} seeds accepted");
    assert!(refused >= 2, "{target}: only {refused} seeds refused");
}

#[test]
fn webhook_payload_corpus_holds_its_invariants() {
    assert_both_sides("webhook_payload", checks::webhook_payload);
}

#[test]
fn config_loader_corpus_holds_its_invariants() {
    assert_both_sides("config_loader", checks::config_loader);
}

#[test]
fn journal_decoder_corpus_holds_its_invariants() {
    assert_both_sides("journal_decoder", checks::journal_decoder);
}
