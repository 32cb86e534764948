//! What the API server checks on a new core/v1 Event (kube-apiserver's
//! `ValidateEventCreate` for the legacy group, 1.20 and later): an Event with an `eventTime`
//! is a "new-style" Event and must say who reported it. Clients that send `eventTime`
//! without `reportingController` / `reportingInstance` get 422 from a real server, so the
//! simulator refuses them too.

use serde_json::Value;

/// `reportingInstance`, `action` and `reason` limits, and the message's.
const NAME_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// A required text field `json` (reported as `field`) of at most `limit` bytes.
fn required(
    causes: &mut Vec<(String, String)>,
    event: &Value,
    field: &str,
    json: &str,
    limit: usize,
) {
    let value = event.get(json).and_then(Value::as_str).unwrap_or("");
    if value.is_empty() {
        causes.push((field.to_owned(), "Required value".to_owned()));
    } else if value.len() > limit {
        causes.push((
            field.to_owned(),
            format!("Invalid value: \"\": can have at most {limit} characters"),
        ));
    }
}

/// The fields the server fills on every stored core/v1 Event (they have no `omitempty`):
/// an empty reporting controller and instance, an empty source.
pub fn fill_defaults(event: &mut Value) {
    let Some(map) = event.as_object_mut() else {
        return;
    };
    for field in ["reportingComponent", "reportingInstance"] {
        map.entry(field)
            .or_insert_with(|| Value::String(String::new()));
    }
    map.entry("source").or_insert_with(|| serde_json::json!({}));
}

/// The causes a real server gives for creating `event` (empty: accepted).
pub fn validate_create(event: &Value) -> Vec<(String, String)> {
    let text = |ptr: &str| event.pointer(ptr).and_then(Value::as_str).unwrap_or("");
    let mut causes = Vec::new();
    let namespace = text("/metadata/namespace");
    let involved = text("/involvedObject/namespace");
    if text("/eventTime").is_empty() {
        if (involved.is_empty() && !matches!(namespace, "" | "default"))
            || (!involved.is_empty() && namespace != involved)
        {
            causes.push((
                "involvedObject.namespace".into(),
                format!("Invalid value: {involved:?}: does not match event.namespace"),
            ));
        }
        return causes;
    }
    if involved.is_empty() && namespace != "kube-system" {
        causes.push((
            "involvedObject.namespace".into(),
            "Invalid value: \"\": does not match event.namespace".into(),
        ));
    }
    // The JSON name of `reportingController` is `reportingComponent` (the Go field and the
    // error path keep the old name).
    required(
        &mut causes,
        event,
        "reportingController",
        "reportingComponent",
        usize::MAX,
    );
    if text("/reportingComponent").is_empty() {
        // ... and an empty name is not a qualified name either: two more causes.
        causes.push((
            "reportingController".into(),
            "Invalid value: \"\": name part must be non-empty".into(),
        ));
        causes.push((
            "reportingController".into(),
            "Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' \
             or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
             'my.name',  or '123-abc', regex used for validation is \
             '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                .into(),
        ));
    }
    required(
        &mut causes,
        event,
        "reportingInstance",
        "reportingInstance",
        NAME_LIMIT,
    );
    required(&mut causes, event, "action", "action", NAME_LIMIT);
    required(&mut causes, event, "reason", "reason", NAME_LIMIT);
    if text("/message").len() > NOTE_LIMIT {
        causes.push((
            "message".into(),
            format!("Invalid value: \"\": can have at most {NOTE_LIMIT} characters"),
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"metadata": {"namespace": "percona"}, "involvedObject": {"namespace": "percona"},
            "eventTime": "2026-12-03T10:00:00.000000Z", "reportingComponent": "backstop",
            "reportingInstance": "backstop-1", "action": "Failover", "reason": "FailedOver",
            "message": "m"})
    }

    #[test]
    fn a_complete_new_style_event_passes() {
        assert!(validate_create(&event()).is_empty());
    }

    #[test]
    fn a_new_style_event_without_its_reporter_is_refused_field_by_field() {
        let mut e = event();
        e.as_object_mut().unwrap().remove("reportingInstance");
        e["action"] = json!("");
        assert_eq!(
            validate_create(&e),
            vec![
                ("reportingInstance".to_owned(), "Required value".to_owned()),
                ("action".to_owned(), "Required value".to_owned()),
            ]
        );
        e["reportingComponent"] = json!("");
        let fields: Vec<String> = validate_create(&e).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "reportingController",
                "reportingController",
                "reportingController",
                "reportingInstance",
                "action"
            ]
        );
    }

    #[test]
    fn a_legacy_event_needs_only_matching_namespaces() {
        let legacy = json!({"metadata": {"namespace": "percona"},
            "involvedObject": {"namespace": "percona"}, "reason": "X"});
        assert!(validate_create(&legacy).is_empty());
        let wrong = json!({"metadata": {"namespace": "percona"},
            "involvedObject": {"namespace": "other"}});
        assert_eq!(validate_create(&wrong).len(), 1);
    }
}
