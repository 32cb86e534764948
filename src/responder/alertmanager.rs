//! The Alertmanager webhook payload (version 4), parsed strictly enough that a malformed body
//! is refused with a message naming the problem before anything else happens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The only payload version Alertmanager has ever sent (0.x through 0.27).
pub const SUPPORTED_VERSION: &str = "4";

/// One webhook notification: a group of alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Payload format version; only `"4"` is understood.
    pub version: String,
    /// `firing` when at least one alert of the group fires.
    pub status: AlertStatus,
    /// The receiver's name in Alertmanager's configuration.
    #[serde(default)]
    pub receiver: String,
    /// The group's alerts, each with its own status.
    pub alerts: Vec<Alert>,
    /// The group key, for logs.
    #[serde(default)]
    pub group_key: String,
    /// Alerts left out because of `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
}

/// One alert of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// The alert's labels; `alertname` among them.
    pub labels: BTreeMap<String, String>,
    /// Annotations (summary, description, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When this instance of the alert started firing. Together with the fingerprint it
    /// identifies one firing episode: a repeat carries the same value, a new episode a later one.
    pub starts_at: jiff::Timestamp,
    /// Alertmanager's hash of the labels: the same alert across notifications.
    pub fingerprint: String,
}

/// The status of an alert or notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The alert is active.
    Firing,
    /// The alert has stopped.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

impl Alert {
    /// The `alertname` label, or empty.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// Why a body is not a usable notification (answered with 400).
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON of the expected shape; the message names the field.
    #[error("malformed Alertmanager payload: {0}")]
    Malformed(String),
    /// A payload version this receiver does not know.
    #[error("unsupported Alertmanager payload version {0:?}; only \"4\" is supported")]
    Version(String),
    /// An alert without a fingerprint cannot be deduplicated.
    #[error("alert {0} has an empty fingerprint")]
    NoFingerprint(usize),
}

/// Parses a webhook body.
///
/// # Errors
///
/// [`PayloadError`] for anything that is not a version-4 notification with fingerprinted
/// alerts.
pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let notification: Notification = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(n) => n,
        Err(e) => {
            // A payload of another version fails for that reason first: say so, rather than
            // naming the first field that differs.
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
                match value.get("version") {
                    Some(serde_json::Value::String(v)) if v != SUPPORTED_VERSION => {
                        return Err(PayloadError::Version(v.clone()));
                    }
                    Some(v) if !v.is_string() => return Err(PayloadError::Version(v.to_string())),
                    _ => {}
                }
            }
            return Err(PayloadError::Malformed(format!(
                "{}: {}",
                e.path(),
                e.inner()
            )));
        }
    };
    if notification.version != SUPPORTED_VERSION {
        return Err(PayloadError::Version(notification.version));
    }
    if let Some(i) = notification
        .alerts
        .iter()
        .position(|a| a.fingerprint.trim().is_empty())
    {
        return Err(PayloadError::NoFingerprint(i));
    }
    Ok(notification)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRING: &str = r#"{"version":"4","status":"firing","receiver":"b","alerts":[
        {"status":"firing","labels":{"alertname":"A","bucket":"x"},"annotations":{},
         "startsAt":"2026-11-24T03:10:30.32Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f1"}]}"#;

    #[test]
    fn parses_a_notification() {
        let n = parse(FIRING.as_bytes()).unwrap();
        assert_eq!(n.status, AlertStatus::Firing);
        assert_eq!(n.alerts[0].name(), "A");
        assert_eq!(n.alerts[0].fingerprint, "f1");
    }

    #[test]
    fn names_the_problem() {
        let e = parse(br#"{"version":"3","status":"firing","alerts":[]}"#).unwrap_err();
        assert!(e.to_string().contains("\"3\""), "{e}");
        let e = parse(br#"{"status":"firing","alerts":[]}"#).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        let bad = FIRING.replace("\"firing\",\"labels\"", "\"burning\",\"labels\"");
        let e = parse(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("alerts[0].status"), "{e}");
        let e = parse(FIRING.replace("\"f1\"", "\"\"").as_bytes()).unwrap_err();
        assert!(matches!(e, PayloadError::NoFingerprint(0)), "{e}");
        assert!(parse(b"not json").is_err());
    }
}
