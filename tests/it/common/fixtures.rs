//! The files in `../shared/fixtures/` (read where they are, never copied in): the operator's
//! real CRD and CRs, and real Alertmanager payloads.

use std::path::PathBuf;

use serde_json::{Value, json};

/// The path of `../shared/fixtures/<relative>`.
pub fn path(relative: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(relative)
}

/// The text of `../shared/fixtures/<relative>`.
pub fn text(relative: &str) -> String {
    let path = path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A real Alertmanager payload, `../shared/fixtures/alertmanager/<name>`.
pub fn alertmanager(name: &str) -> Value {
    serde_json::from_str(&text(&format!("alertmanager/{name}"))).unwrap()
}

/// The real firing payload, with its episode's startsAt and fingerprint.
pub fn firing(fingerprint: &str, starts_at: &str) -> Value {
    episode("webhook-firing.json", fingerprint, starts_at)
}

/// The real resolved payload for the same episode.
pub fn resolved(fingerprint: &str, starts_at: &str) -> Value {
    episode("webhook-resolved.json", fingerprint, starts_at)
}

fn episode(name: &str, fingerprint: &str, starts_at: &str) -> Value {
    let mut body = alertmanager(name);
    body["alerts"][0]["fingerprint"] = json!(fingerprint);
    body["alerts"][0]["startsAt"] = json!(starts_at);
    body
}

/// The operator's real CRD, which the worlds of the two-backend tests install (derived for
/// the server's version: see `backstop_sandbox::crds::derive_for`).
pub fn operator_crd() -> PathBuf {
    path("pxc/crd.yaml")
}
