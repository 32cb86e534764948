//! Who this Backstop process is to the cluster: one identity for the whole process, used as
//! the Lease holder in leader election and as `reportingInstance` on every Event it writes, so
//! an Event can be traced to the replica that wrote it (and the replica that led at the time).
//!
//! In a pod it is `POD_NAME` (the Downward API value the shipped Deployment sets); outside one
//! (`backstop run` on a workstation, the manual `failover` / `revert` commands) the host name,
//! else `backstop`. A random suffix makes two processes on one host (or a restarted pod that
//! kept its name) distinct. The API server requires `reportingInstance` on every Event that
//! carries an `eventTime`, so there is always one.

use std::sync::OnceLock;

/// The most characters the API server takes in `reportingInstance`.
const MAX_LEN: usize = 128;

/// This process's identity, the same on every call.
pub fn instance() -> &'static str {
    static IDENTITY: OnceLock<String> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let base = std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|b| !b.is_empty());
        with_suffix(
            base.as_deref(),
            &uuid::Uuid::new_v4().simple().to_string()[..8],
        )
    })
}

/// `BASE-SUFFIX`, with `backstop` for a missing base, cut so that it fits `reportingInstance`.
fn with_suffix(base: Option<&str>, suffix: &str) -> String {
    let base = base.unwrap_or("backstop");
    let room = MAX_LEN - suffix.len() - 1;
    let cut = base
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|end| *end <= room)
        .last()
        .unwrap_or(0);
    format!("{}-{suffix}", &base[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_stable_within_a_process_and_never_empty() {
        assert_eq!(instance(), instance());
        assert!(!instance().is_empty());
        assert!(instance().len() <= MAX_LEN);
    }

    #[test]
    fn a_missing_base_is_backstop_and_a_long_one_is_cut_to_fit() {
        assert_eq!(with_suffix(None, "abcd1234"), "backstop-abcd1234");
        assert_eq!(with_suffix(Some("pod-7"), "abcd1234"), "pod-7-abcd1234");
        let long = "é".repeat(100);
        let cut = with_suffix(Some(&long), "abcd1234");
        assert!(cut.len() <= MAX_LEN, "{}", cut.len());
        assert!(cut.ends_with("-abcd1234"));
    }
}
