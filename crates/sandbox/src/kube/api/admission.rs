//! What a write must satisfy and what the server does to it on the way in: patch types and
//! patching, Secret data, schema validation, CRD status, server-owned metadata, generation,
//! empty fields, finalizers while deleting, and the served version.

use super::*;

pub(super) fn check_patch_type(rt: &ResourceType, content_type: &str) -> Result<(), ApiError> {
    let base = content_type.split(';').next().unwrap_or_default().trim();
    match base {
        "application/merge-patch+json" | "application/json-patch+json" => Ok(()),
        // Strategic merge patch needs Go struct tags; the real server refuses it for custom
        // resources with 415.
        "application/strategic-merge-patch+json" if !rt.custom => Ok(()),
        "application/strategic-merge-patch+json" => Err(ApiError::unsupported_patch(
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        )),
        _ => Err(ApiError::unsupported_media_type(content_type)),
    }
}

pub(super) fn apply_patch(
    current: &Value,
    content_type: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let base = content_type.split(';').next().unwrap_or_default().trim();
    let mut doc = current.clone();
    match base {
        "application/json-patch+json" => {
            let patch: json_patch::Patch = serde_json::from_value(body.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            // The server answers 422 when a JSON patch fails to apply, `test` included.
            // 1.20's message does not say which operation failed.
            json_patch::patch(&mut doc, &patch).map_err(|_| {
                let mut e = ApiError::unprocessable(
                    "the server rejected our request due to an error in our request",
                );
                e.details = Some(json!({}));
                e
            })?;
        }
        // RFC 7386 merge patch: objects merge, null deletes, arrays replace. Strategic merge
        // patch on built-in kinds is treated the same (lists replace instead of merging by
        // key): a documented simplification; Backstop itself never sends it.
        _ => json_patch::merge(&mut doc, body),
    }
    Ok(doc)
}

/// A Secret's `data` values must be base64, or the server cannot decode the object (400;
/// the real message goes on with the JSON decoder's position, which the simulator leaves out).
pub(super) fn check_secret_data(secret: &Value) -> Result<(), ApiError> {
    use base64::Engine as _;
    let Some(data) = secret.get("data").and_then(Value::as_object) else {
        return Ok(());
    };
    for value in data.values() {
        let text = value.as_str().unwrap_or_default();
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode(text) {
            return Err(ApiError::bad_request(format!(
                "Secret in version \"v1\" cannot be handled as a Secret: decode base64: {e}"
            )));
        }
    }
    Ok(())
}

/// Secrets: `stringData` is a write-only convenience the server merges into base64 `data`
/// (its keys win) and never stores.
pub(super) fn fold_string_data(object: &mut Value) {
    use base64::Engine as _;
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(key, Value::String(encoded));
        }
    }
}

pub(super) fn check_body(body: Value, rt: &ResourceType) -> Result<Value, ApiError> {
    let mut body = body;
    if rt.group.is_empty() && rt.plural == "secrets" {
        fold_string_data(&mut body);
    }
    let map = body
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    match map.get("kind").and_then(Value::as_str) {
        Some(kind) if kind != rt.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind {kind:?} does not match the resource {}",
                rt.qualified()
            )));
        }
        _ => {}
    }
    map.insert("kind".into(), Value::String(rt.kind.clone()));
    map.insert("apiVersion".into(), Value::String(rt.api_version()));
    map.entry("metadata").or_insert_with(|| json!({}));
    Ok(body)
}

pub(super) fn validate(rt: &ResourceType, name: &str, object: &mut Value) -> Result<(), ApiError> {
    if let Some(schema) = &rt.schema {
        let causes = schema::prune_and_validate(schema, object);
        if !causes.is_empty() {
            return Err(ApiError::invalid_in(&rt.group, &rt.kind, name, &causes));
        }
    }
    if rt.storage_key() == "apiextensions.k8s.io/customresourcedefinitions" {
        let probe = super::super::resources::Registry::default();
        probe
            .register_crd(object)
            .map_err(|e| ApiError::invalid(&rt.kind, name, &[(String::from("spec"), e)]))?;
    }
    Ok(())
}

/// A new CRD's status as the real server writes it once the names are free and the schema
/// loaded: `NamesAccepted` and `Established`, with `acceptedNames` copied from the spec.
/// Clients wait for `Established` before creating custom resources; the simulator serves a
/// CRD as soon as it is stored, so both conditions hold at once.
pub(super) fn established(crd: &mut Value) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|versions| {
            versions
                .iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let now = now_rfc3339();
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": "True", "lastTransitionTime": now,
            "reason": reason, "message": message})
    };
    crd["status"] = json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    });
}

/// Server-owned metadata survives every client write.
pub(super) fn keep_server_metadata(current: &Value, next: &mut Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
        "resourceVersion",
    ] {
        let ptr = format!("/metadata/{field}");
        match current.pointer(&ptr) {
            Some(v) => next["metadata"][field] = v.clone(),
            None => {
                if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove(field);
                }
            }
        }
    }
}

/// Whether objects of `rt` carry `metadata.generation`: custom resources and the workload
/// and policy kinds do; ConfigMaps, Secrets, Events, RBAC objects, Namespaces and Pods (in
/// 1.20) do not.
pub(super) fn keeps_generation(rt: &ResourceType) -> bool {
    rt.custom
        || matches!(
            rt.group.as_str(),
            "apps" | "batch" | "apiextensions.k8s.io" | "policy" | "networking.k8s.io"
        )
}

/// Go's `omitempty` on the typed fields: an empty map of labels, annotations or finalizers,
/// and a built-in kind's empty `data` / `binaryData`, are not stored.
pub(super) fn drop_empty_fields(rt: &ResourceType, object: &mut Value) {
    let empty = |v: &Value| {
        v.as_object().is_some_and(|m| m.is_empty()) || v.as_array().is_some_and(|a| a.is_empty())
    };
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["labels", "annotations", "finalizers"] {
            if meta.get(field).is_some_and(empty) {
                meta.remove(field);
            }
        }
    }
    if !rt.custom
        && let Some(map) = object.as_object_mut()
    {
        for field in ["data", "binaryData"] {
            if map.get(field).is_some_and(empty) {
                map.remove(field);
            }
        }
    }
}

/// An object being deleted takes no new finalizers (422, the cause given twice as 1.20's
/// validation runs twice).
pub(super) fn no_new_finalizers_while_deleting(
    rt: &ResourceType,
    name: &str,
    current: &Value,
    next: &Value,
) -> Result<(), ApiError> {
    if current.pointer("/metadata/deletionTimestamp").is_none() {
        return Ok(());
    }
    let before = finalizers(current);
    let added: Vec<String> = finalizers(next)
        .iter()
        .filter(|f| !before.contains(f))
        .filter_map(|f| f.as_str().map(|f| format!("{f:?}")))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let cause = (
        "metadata.finalizers".to_owned(),
        format!(
            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            added.join(", ")
        ),
    );
    Err(ApiError::invalid_in(
        &rt.group,
        &rt.kind,
        name,
        &[cause.clone(), cause],
    ))
}

/// `metadata.generation` counts changes to everything but metadata and status (API
/// conventions: "generation ... incremented on every change to the desired state").
pub(super) fn bump_generation(current: &Value, next: &mut Value) {
    let desired = |o: &Value| {
        let mut o = o.clone();
        if let Some(map) = o.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        o
    };
    if desired(current) != desired(next) {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        next["metadata"]["generation"] = json!(generation + 1);
    }
}

pub(super) fn finalizers(object: &Value) -> Vec<Value> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

pub(super) fn rv_of(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Objects are stored once per group/plural; a read through another served version of a CRD
/// only relabels `apiVersion` (the CRD conversion strategy `None`).
pub fn for_version(mut object: Value, rt: &ResourceType) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(rt.api_version()));
        map.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    object
}

/// Side effects of a successful write: CRDs start or stop being served.
pub(super) fn after_write(sim: &Sim, rt: &ResourceType, object: &Value) {
    if rt.storage_key() == "apiextensions.k8s.io/customresourcedefinitions" {
        // Validated before the write, so registration succeeds.
        let _ = sim.registry.register_crd(object);
    }
}

pub(super) fn random_suffix() -> String {
    // The server's generateName suffix: 5 characters from a reduced alphabet.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}
