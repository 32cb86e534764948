//! Server-side printing: kubectl asks for `application/json;as=Table;g=meta.k8s.io;v=v1` and
//! prints the columns the server chooses. Custom resources get their CRD's
//! `additionalPrinterColumns` (simple `.a.b.c` JSON paths), dates humanised as ages, as the
//! API server's CRD table convertor does; built-in kinds get Name and Age.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::resources::ResourceType;

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("as=Table"))
}

/// A Table of `items` (a list response's items, or one object).
pub fn table(rt: &ResourceType, items: &[Value], resource_version: &str, now: Timestamp) -> Value {
    let mut columns = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    let mut paths: Vec<(String, String)> = Vec::new();
    let mut has_age = false;
    for c in &rt.printer_columns {
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        let kind = c.get("type").and_then(Value::as_str).unwrap_or("string");
        let path = c
            .get("jsonPath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        has_age |= name == "Age";
        columns.push(json!({"name": name, "type": kind, "format": "",
            "description": c.get("description").cloned().unwrap_or(json!("")),
            "priority": c.get("priority").cloned().unwrap_or(json!(0))}));
        paths.push((path.to_owned(), kind.to_owned()));
    }
    if !has_age {
        columns.push(
            json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}),
        );
        paths.push((".metadata.creationTimestamp".to_owned(), "date".to_owned()));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut cells = vec![item.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            for (path, kind) in &paths {
                let value = item.pointer(&path.replace('.', "/")).cloned();
                cells.push(match (value, kind.as_str()) {
                    (Some(Value::String(t)), "date") => Value::String(age(&t, now)),
                    (Some(v), _) => v,
                    (None, _) => Value::Null,
                });
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1", "metadata": item.get("metadata").cloned().unwrap_or(json!({}))}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns, "rows": rows})
}

/// `5s`, `3m`, `2h`, `4d` (kubectl's short human durations).
fn age(timestamp: &str, now: Timestamp) -> String {
    let Ok(then) = timestamp.parse::<Timestamp>() else {
        return timestamp.to_owned();
    };
    let secs = now.as_second().saturating_sub(then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        assert_eq!(age("2026-11-24T11:59:30Z", now), "30s");
        assert_eq!(age("2026-11-24T11:30:00Z", now), "30m");
        assert_eq!(age("2026-11-24T06:00:00Z", now), "6h");
        assert_eq!(age("2026-11-20T12:00:00Z", now), "4d");
    }
}
