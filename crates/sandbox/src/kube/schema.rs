//! Structural-schema pruning and validation of custom resources, driven by the CRD's own
//! `openAPIV3Schema`, following the API server's rules for structural schemas ("Specifying a
//! structural schema" and "Field pruning" in the CustomResourceDefinition docs):
//! - fields not declared in a typed object are pruned silently, unless the object says
//!   `x-kubernetes-preserve-unknown-fields: true` or declares `additionalProperties`;
//! - `null` for a field that is not `nullable` is pruned too;
//! - wrong types, enum violations, `minimum`/`maximum` and missing `required` fields are
//!   collected and rejected together (422 Invalid with one cause per field).
//!
//! `metadata` at the root is the API server's business and is never pruned here.

use serde_json::{Map, Value};

/// Prunes `object` in place against `schema` and returns every violation as
/// `(field path, message)`; empty means valid.
pub fn prune_and_validate(schema: &Value, object: &mut Value) -> Vec<(String, String)> {
    let mut causes = Vec::new();
    if let (Some(props), Some(map)) = (schema.get("properties"), object.as_object_mut()) {
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if key == "metadata" || key == "apiVersion" || key == "kind" {
                continue;
            }
            match props.get(&key) {
                Some(sub) => {
                    if let Some(v) = map.get_mut(&key) {
                        if v.is_null() && !nullable(sub) {
                            map.remove(&key);
                            continue;
                        }
                        walk(sub, v, &key, &mut causes);
                    }
                }
                None if preserves_unknown(schema) => {}
                None => {
                    map.remove(&key);
                }
            }
        }
        apply_defaults(schema, map, "", &mut causes);
        required(schema, map, "", &mut causes);
    }
    causes
}

/// Fills each property the object lacks with the schema's `default`, as the API server does
/// on every write and read (structural schema defaulting, CRD `apiextensions.k8s.io/v1`):
/// only where the enclosing object exists, and after pruning, so a `null` that was pruned is
/// defaulted too.
/// The defaults are then walked like any value (a default object's own properties get their
/// defaults).
fn apply_defaults(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    causes: &mut Vec<(String, String)>,
) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, sub) in props {
        if !map.contains_key(key)
            && let Some(default) = sub.get("default")
        {
            let mut value = default.clone();
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(sub, &mut value, &child, causes);
            map.insert(key.clone(), value);
        }
    }
}

fn walk(schema: &Value, value: &mut Value, path: &str, causes: &mut Vec<(String, String)>) {
    if value.is_null() {
        if !nullable(schema) {
            causes.push((
                path.to_owned(),
                "Invalid value: \"null\": must not be null".into(),
            ));
        }
        return;
    }
    if !type_matches(schema, value) {
        let expected = schema.get("type").and_then(Value::as_str).unwrap_or("?");
        causes.push((
            path.to_owned(),
            format!(
                "Invalid value: \"{}\": {path} in body must be of type {expected}: \"{}\"",
                json_type(value),
                json_type(value)
            ),
        ));
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let supported = options
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        causes.push((
            path.to_owned(),
            format!("Unsupported value: {value}: supported values: {supported}"),
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            causes.push((
                path.to_owned(),
                format!("Invalid value: {value}: {path} in body should be greater than or equal to {min}"),
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            causes.push((
                path.to_owned(),
                format!(
                    "Invalid value: {value}: {path} in body should be less than or equal to {max}"
                ),
            ));
        }
    }
    match value {
        Value::Object(map) => walk_object(schema, map, path, causes),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                // kube-apiserver 1.20 names a list item's field without its index
                // (`spec.items.weight`), and so does the simulator.
                for item in items.iter_mut() {
                    walk(item_schema, item, path, causes);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    causes: &mut Vec<(String, String)>,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let sub = props
            .and_then(|p| p.get(&key))
            .or_else(|| additional.filter(|a| a.is_object()));
        let child_path = format!("{path}.{key}");
        match sub {
            Some(sub) => {
                if let Some(v) = map.get_mut(&key) {
                    if v.is_null() && !nullable(sub) {
                        map.remove(&key);
                        continue;
                    }
                    walk(sub, v, &child_path, causes);
                }
            }
            None if preserves_unknown(schema) || additional == Some(&Value::Bool(true)) => {}
            None if props.is_none() && additional.is_none() && schema.get("type").is_none() => {}
            None => {
                map.remove(&key);
            }
        }
    }
    apply_defaults(schema, map, path, causes);
    required(schema, map, path, causes);
}

fn required(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    causes: &mut Vec<(String, String)>,
) {
    for field in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(field) {
            let p = if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            causes.push((p, "Required value".to_owned()));
        }
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable") == Some(&Value::Bool(true))
}

fn type_matches(schema: &Value, value: &Value) -> bool {
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return value.is_string() || value.is_i64() || value.is_u64();
    }
    match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some(_) => true,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "count": {"type": "integer", "minimum": 0},
                        "kind": {"type": "string", "enum": ["count"]},
                        "storages": {"type": "object", "additionalProperties": {
                            "type": "object",
                            "properties": {"bucket": {"type": "string"}}
                        }},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}}
                    }
                }
            }
        })
    }

    #[test]
    fn unknown_fields_are_pruned_where_the_schema_is_typed() {
        let mut o = json!({"spec": {"name": "x", "claimName": "pvc",
            "storages": {"s3": {"bucket": "b", "claimName": "c"}},
            "free": {"anything": 1}, "list": [{"a": "1", "b": "2"}]}, "extra": 1});
        assert!(prune_and_validate(&schema(), &mut o).is_empty());
        assert_eq!(
            o,
            json!({"spec": {"name": "x", "storages": {"s3": {"bucket": "b"}},
                "free": {"anything": 1}, "list": [{"a": "1"}]}})
        );
    }

    #[test]
    fn violations_are_all_reported_with_paths() {
        let mut o = json!({"spec": {"count": -1, "kind": "weekly",
            "storages": {"s3": {"bucket": 5}}}});
        let causes = prune_and_validate(&schema(), &mut o);
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.count",
                "spec.kind",
                "spec.storages.s3.bucket",
                "spec.name"
            ]
        );
        assert!(causes[1].1.contains("Unsupported value: \"weekly\""));
    }

    #[test]
    fn null_for_a_non_nullable_field_is_dropped() {
        let mut o = json!({"spec": {"name": "x", "count": null}});
        assert!(prune_and_validate(&schema(), &mut o).is_empty());
        assert_eq!(o, json!({"spec": {"name": "x"}}));
    }
}
