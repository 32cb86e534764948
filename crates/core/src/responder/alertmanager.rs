//! The Alertmanager webhook payload (version 4), parsed strictly enough that a malformed body
//! is refused with a message naming the problem before anything else happens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The only payload version Alertmanager has ever sent (0.x through 0.27).
pub const SUPPORTED_VERSION: &str = "4";

/// The most alerts one notification may carry. A group of the S3 alerts has one alert per
/// target and user, tens at most; every alert that affects a cluster becomes an entry of its
/// intent annotation, and Kubernetes caps an object's annotations at 256 KiB in total, so a
/// flood of alerts would make every later write of the intent fail. Refusing it up front
/// (400: Alertmanager does not retry it) keeps the annotation writable; configure
/// `max_alerts` on the receiver to stay under this.
pub const MAX_ALERTS: usize = 1000;

/// The deepest nesting of arrays and objects accepted. A real notification nests four levels
/// (`alerts[].labels{}`); serde_json's recursion limit does not cover fields it skips (it
/// skips them without recursing), so without this a body nested a million levels deep in an
/// unknown field would be accepted, and the fallback parse for the error message would walk it.
pub const MAX_DEPTH: usize = 32;

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
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("malformed Alertmanager payload: nested deeper than {0} levels")]
    TooDeep(usize),
    /// More alerts than [`MAX_ALERTS`].
    #[error(
        "the notification carries {count} alerts, more than the {max} accepted; set max_alerts on the Alertmanager receiver"
    )]
    TooManyAlerts {
        /// How many alerts the notification carries.
        count: usize,
        /// [`MAX_ALERTS`].
        max: usize,
    },
}

/// Parses a webhook body.
///
/// # Errors
///
/// [`PayloadError`] for anything that is not a version-4 notification with fingerprinted
/// alerts.
pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
    if nested_deeper_than(body, MAX_DEPTH) {
        return Err(PayloadError::TooDeep(MAX_DEPTH));
    }
    // The plain parse is the hot path (every repeat notification); the path-tracking one
    // runs again only to name where a bad payload went wrong.
    let notification: Notification = match serde_json::from_slice(body) {
        Ok(n) => n,
        Err(_) => {
            let mut deserializer = serde_json::Deserializer::from_slice(body);
            let e = match serde_path_to_error::deserialize::<_, Notification>(&mut deserializer) {
                Err(e) => e,
                // Cannot happen (the same input just failed); treat it as the first error.
                Ok(n) => return validate(n),
            };
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
    validate(notification)
}

/// The checks a payload that parsed must still pass.
fn validate(notification: Notification) -> Result<Notification, PayloadError> {
    if notification.version != SUPPORTED_VERSION {
        return Err(PayloadError::Version(notification.version));
    }
    if notification.alerts.len() > MAX_ALERTS {
        return Err(PayloadError::TooManyAlerts {
            count: notification.alerts.len(),
            max: MAX_ALERTS,
        });
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

/// Whether the JSON text `body` nests arrays and objects deeper than `max`: one pass over the
/// bytes, brackets inside strings (and escaped quotes) not counted. Not a validator: whatever
/// else is wrong with the text is left to the parser.
fn nested_deeper_than(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
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

    fn with_alerts(n: usize) -> String {
        let alert = r#"{"status":"firing","labels":{},"startsAt":"2026-11-24T03:10:30Z","fingerprint":"f"}"#;
        let alerts = vec![alert; n].join(",");
        format!(r#"{{"version":"4","status":"firing","alerts":[{alerts}],"truncatedAlerts":7}}"#)
    }

    #[test]
    fn alert_count_is_bounded() {
        let n = parse(with_alerts(MAX_ALERTS).as_bytes()).unwrap();
        assert_eq!(n.alerts.len(), MAX_ALERTS);
        assert_eq!(n.truncated_alerts, 7);
        let e = parse(with_alerts(MAX_ALERTS + 1).as_bytes()).unwrap_err();
        assert!(
            matches!(e, PayloadError::TooManyAlerts { count, max } if count == MAX_ALERTS + 1 && max == MAX_ALERTS),
            "{e}"
        );
        assert!(e.to_string().contains("max_alerts"), "{e}");
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        // {alerts:[{labels:{...}}]}: four levels.
        assert!(!nested_deeper_than(FIRING.as_bytes(), 4));
        assert!(nested_deeper_than(FIRING.as_bytes(), 3));
        assert!(!nested_deeper_than(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        assert!(nested_deeper_than(br#"{"a":"\\",  "b":[[]]}"#, 2));
        assert!(!nested_deeper_than(b"]]]]{}", 1));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(PayloadError::TooDeep(MAX_DEPTH))
        ));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(matches!(
            parse(ok.as_bytes()),
            Err(PayloadError::Malformed(_))
        ));
    }

    #[test]
    fn hostile_bodies_are_errors_not_panics() {
        // Nesting far past serde_json's recursion limit, in a field the parser ignores.
        let deep = format!(
            r#"{{"version":"4","status":"firing","alerts":[],"x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = parse(deep.as_bytes()).unwrap_err();
        assert!(matches!(e, PayloadError::TooDeep(_)), "{e}");
        // Invalid UTF-8 inside a string.
        let e = parse(b"{\"version\":\"4\",\"receiver\":\"\xff\xfe\"}").unwrap_err();
        assert!(matches!(e, PayloadError::Malformed(_)), "{e}");
        // Counts that do not fit.
        let e = parse(br#"{"version":"4","status":"firing","alerts":[],"truncatedAlerts":-1}"#)
            .unwrap_err();
        assert!(e.to_string().contains("truncatedAlerts"), "{e}");
    }
}
