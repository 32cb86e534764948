//! The invariants each fuzz target checks, in one place: the targets in `fuzz_targets/` call
//! them on libFuzzer's inputs, and `tests/it/fuzz_corpus.rs` calls them on every file of
//! `fuzz/corpus/` under `cargo test`. A violated invariant panics (that is what libFuzzer
//! reports as a crash); an input that is refused must be refused with an error, never a panic.
//! Each returns whether the input was accepted, so the corpus test can check that its seeds
//! reach both sides.
#![allow(dead_code)] // each target uses one check

use backstop::config::{self, ConfigError};
use backstop::responder::alertmanager::{self, MAX_ALERTS, SUPPORTED_VERSION};
use backstop::responder::journal::{Journal, JournalError, ORDERED_JOURNAL_VERSION};

/// The webhook payload parser: an accepted notification is version 4, within the alert cap,
/// every alert fingerprinted; re-encoded, it parses to the same value. A refusal has a message.
pub fn webhook_payload(data: &[u8]) -> bool {
    match alertmanager::parse(data) {
        Ok(notification) => {
            assert_eq!(notification.version, SUPPORTED_VERSION);
            assert!(notification.alerts.len() <= MAX_ALERTS);
            assert!(
                notification
                    .alerts
                    .iter()
                    .all(|a| !a.fingerprint.trim().is_empty())
            );
            let encoded = serde_json::to_vec(&notification).expect("a notification encodes");
            let again = alertmanager::parse(&encoded).unwrap_or_else(|e| {
                panic!(
                    "a parsed notification does not parse again: {e}\n{}",
                    String::from_utf8_lossy(&encoded)
                )
            });
            assert_eq!(
                again, notification,
                "the round trip changed the notification"
            );
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "a refusal says why");
            false
        }
    }
}

/// The configuration loader: a loaded configuration, written back as YAML, loads to the same
/// value (so `config-schema`, defaults and validation agree with what the types write). A
/// refusal lists at least one problem, each with a message.
pub fn config_loader(data: &[u8]) -> bool {
    // Configuration files are text; `load_file` refuses other bytes when reading.
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match config::load_str(text) {
        Ok(loaded) => {
            let written = serde_yaml_ng::to_string(&loaded).expect("a configuration encodes");
            let again = config::load_str(&written).unwrap_or_else(|e| {
                panic!("a loaded configuration does not load again: {e}\n{written}")
            });
            assert_eq!(again, loaded, "the round trip changed the configuration");
            true
        }
        Err(e) => {
            let problems = e.problems();
            assert!(!problems.is_empty(), "a refusal lists its problems");
            assert!(problems.iter().all(|p| !p.trim().is_empty()));
            if let ConfigError::Invalid(errors) = &e {
                assert!(errors.iter().all(|f| !f.message.is_empty()));
            }
            false
        }
    }
}

/// The journal decoder: a decoded journal is of a version this Backstop understands, and
/// re-encoded it decodes to the same value and the same text (a revert restores the values the
/// journal holds, so they must survive being written and read back exactly). A refusal of a
/// newer version names a newer version.
pub fn journal_decoder(data: &[u8]) -> bool {
    // Annotation values are strings.
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match Journal::parse(text) {
        Ok(journal) => {
            assert!(journal.version <= ORDERED_JOURNAL_VERSION);
            let rendered = journal.render();
            assert!(!rendered.is_empty(), "a journal renders");
            let again = Journal::parse(&rendered)
                .unwrap_or_else(|e| panic!("a rendered journal does not decode: {e}\n{rendered}"));
            assert_eq!(again, journal, "the round trip changed the journal");
            assert_eq!(again.render(), rendered, "rendering is stable");
            true
        }
        Err(JournalError::Version(v)) => {
            assert!(v > ORDERED_JOURNAL_VERSION);
            false
        }
        Err(JournalError::Invalid(e)) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}
