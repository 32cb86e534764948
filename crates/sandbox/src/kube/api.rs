//! The verbs: get, list, create, update, patch and delete, with the API server's metadata
//! rules. References are to the Kubernetes API conventions document
//! (`community/contributors/devel/sig-architecture/api-conventions.md`) and the API concepts
//! page (`kubernetes.io/docs/reference/using-api/api-concepts/`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::ResourceType;
use super::schema;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{ObjectKey, Rest, StoreError, set_rv};
use super::{Sim, now_rfc3339};

mod admission;
pub use admission::for_version;
use admission::*;

/// Annotation from which the simulator serves a pod's log (the stand-in for a container
/// runtime: whoever creates the pod says what it printed).
pub const POD_LOG_ANNOTATION: &str = "sandbox.backstop.io/log";

/// Where a request points.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource type.
    pub rt: Arc<ResourceType>,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Subresource (`status`, `log`).
    pub sub: Option<String>,
}

impl Target {
    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey {
            resource: self.rt.storage_key(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.to_owned(),
        }
    }
}

/// List parameters.
#[derive(Debug, Default)]
pub struct ListParams {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0 = all).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
}

/// Reads one object, or its `status` view.
pub fn get(sim: &Sim, target: &Target, name: &str) -> Result<Value, ApiError> {
    let object = sim
        .store
        .get(&target.key(name))
        .ok_or_else(|| ApiError::not_found(&target.rt.group, &target.rt.plural, name))?;
    Ok(for_version(object, &target.rt))
}

/// A pod's log, optionally only the last `tail` lines (`kubectl logs --tail`).
pub fn log(
    sim: &Sim,
    target: &Target,
    name: &str,
    tail: Option<usize>,
) -> Result<String, ApiError> {
    let pod = get(sim, target, name)?;
    let text = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(POD_LOG_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = lines[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

/// Lists objects with selectors and `limit`/`continue` paging.
pub fn list(sim: &Sim, target: &Target, params: &ListParams) -> Result<Value, ApiError> {
    // The token is "namespace/name" of the last item returned (namespaces hold no '/').
    let after = match params.continue_token.as_deref() {
        None => None,
        Some(token) => Some(token.split_once('/').ok_or_else(|| {
            ApiError::bad_request("invalid continue token: continue key is not valid")
        })?),
    };
    let selector = |o: &Value| params.labels.matches(o) && params.fields.matches(o);
    let filtered = !(params.labels.is_empty() && params.fields.is_empty());
    let (items, rest, rv) = sim.store.list_page(
        &target.rt.storage_key(),
        target.namespace.as_deref(),
        after,
        filtered.then_some(&selector as &dyn Fn(&Value) -> bool),
        params.limit,
    );
    let selected: Vec<Value> = items
        .into_iter()
        .map(|o| for_version(o, &target.rt))
        .collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if rest != Rest::Nothing
        && let Some(last) = selected.last()
    {
        // The next page starts after the last item returned. The real server pins the
        // snapshot's resourceVersion too; the simulator lists the current state (documented
        // divergence, harmless for clients).
        metadata["continue"] = Value::String(position(last));
        if let Rest::Count(remaining) = rest {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    Ok(json!({
        "kind": format!("{}List", target.rt.kind),
        "apiVersion": target.rt.api_version(),
        "metadata": metadata,
        "items": selected,
    }))
}

fn position(object: &Value) -> String {
    let ns = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{ns}/{name}")
}

/// Creates an object (`generateName`, uid, timestamps, generation; status is ignored when the
/// type has a status subresource).
pub fn create(sim: &Sim, target: &Target, body: Value, dry_run: bool) -> Result<Value, ApiError> {
    let rt = &target.rt;
    let mut object = check_body(body, rt)?;
    let meta = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    if let Some(ns) = &target.namespace {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(given) if given != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), Value::String(ns.clone()));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = match meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        Some(n) => n.to_owned(),
        None => match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) => format!("{prefix}{}", random_suffix()),
            None => {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    &[(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
        },
    };
    meta.insert("name".into(), Value::String(name.clone()));
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "generation",
    ] {
        meta.remove(field);
    }
    if rt.status_subresource {
        // "PUT/POST/PATCH requests to the custom resource ignore changes to the status stanza"
        // (CRD docs, status subresource); built-in kinds behave the same.
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
    }
    if let Some(ns) = &target.namespace
        && sim
            .store
            .get(&ObjectKey {
                resource: "/namespaces".into(),
                namespace: String::new(),
                name: ns.clone(),
            })
            .is_none()
    {
        return Err(ApiError::not_found("", "namespaces", ns));
    }
    if let Some(problem) = super::names::invalid_name(&rt.plural, &name) {
        return Err(ApiError::invalid_in(
            &rt.group,
            &rt.kind,
            &name,
            &[("metadata.name".to_owned(), problem)],
        ));
    }
    if rt.group.is_empty() && rt.plural == "secrets" {
        check_secret_data(&object)?;
    }
    validate(rt, &name, &mut object)?;
    drop_empty_fields(rt, &mut object);
    if rt.storage_key() == "apiextensions.k8s.io/customresourcedefinitions" {
        established(&mut object);
    }
    if rt.group.is_empty() && rt.plural == "events" {
        let causes = super::events::validate_create(&object);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.kind, &name, &causes));
        }
        super::events::fill_defaults(&mut object);
    }
    if dry_run {
        return Ok(for_version(object, rt));
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let rt_for_generation = rt.clone();
    let created = sim
        .store
        .create(target.key(&name), object, |o, rv| {
            if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("uid".into(), Value::String(uid));
                meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
                if keeps_generation(&rt_for_generation) {
                    meta.insert("generation".into(), json!(1));
                }
            }
            set_rv(o, rv);
        })
        .map_err(|_| ApiError::already_exists(&rt.group, &rt.plural, &name))?;
    after_write(sim, rt, &created);
    Ok(for_version(created, rt))
}

/// How a write changes the stored object.
pub enum Change {
    /// PUT: the whole object.
    Replace(Value),
    /// PATCH with a content type and a body.
    Patch {
        /// The `Content-Type`.
        content_type: String,
        /// The raw patch.
        body: Value,
    },
}

/// Update or patch of the object or its `status`, with optimistic concurrency.
pub fn write(
    sim: &Sim,
    target: &Target,
    name: &str,
    change: Change,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let rt = target.rt.clone();
    let status_only = target.sub.as_deref() == Some("status");
    if target.sub.is_some() && !status_only {
        return Err(ApiError::method_not_allowed("write to this subresource"));
    }
    if let Change::Patch { content_type, .. } = &change {
        check_patch_type(&rt, content_type)?;
    }
    if dry_run {
        // Everything but the write: the same planning on the current object.
        let current = sim
            .store
            .get(&target.key(name))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        let planned = plan_write(&rt, name, status_only, &change, &current)?;
        return Ok(for_version(planned.into_inner(), &rt));
    }
    // A write that removes the last finalizer of an object being deleted completes the
    // deletion; the answer is the object as that write left it, as the real server answers.
    let mut last_state = None;
    let result = sim.store.update(&target.key(name), |current, _| {
        plan_write(&rt, name, status_only, &change, current).map(|planned| match planned {
            Planned::Keep(next) => Some(next),
            Planned::Delete(last) => {
                last_state = Some(last);
                None
            }
        })
    });
    match result {
        Err(StoreError::NotFound) => Err(ApiError::not_found(&rt.group, &rt.plural, name)),
        Err(_) => Err(ApiError::internal("store failure")),
        Ok(Err(e)) => Err(e),
        Ok(Ok(object)) => {
            let object = last_state.unwrap_or(object);
            after_write(sim, &rt, &object);
            Ok(for_version(object, &rt))
        }
    }
}

/// What a write leaves behind.
enum Planned {
    /// The object, stored.
    Keep(Value),
    /// The object's last state: the write removed its last finalizer while it was being
    /// deleted, so it is gone.
    Delete(Value),
}

impl Planned {
    fn into_inner(self) -> Value {
        match self {
            Self::Keep(v) | Self::Delete(v) => v,
        }
    }
}

/// The object a write leaves behind (or its last state, when the write completes a
/// deletion), or why the write is refused.
fn plan_write(
    rt: &ResourceType,
    name: &str,
    status_only: bool,
    change: &Change,
    current: &Value,
) -> Result<Planned, ApiError> {
    let mut next = match change {
        Change::Replace(body) => {
            let body = check_body(body.clone(), rt)?;
            let given = body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            match given {
                Some(v) if Some(v) != rv_of(current).as_deref() => {
                    return Err(ApiError::conflict(&rt.group, &rt.plural, name));
                }
                None if rt.custom => {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        name,
                        &[(
                            "metadata.resourceVersion".into(),
                            "Invalid value: 0x0: must be specified for an update".into(),
                        )],
                    ));
                }
                _ => {}
            }
            if body.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            body
        }
        Change::Patch { content_type, body } => {
            let mut patched = apply_patch(current, content_type, body)?;
            // A patch may carry stringData too; the server folds it like any other write.
            if rt.group.is_empty() && rt.plural == "secrets" {
                fold_string_data(&mut patched);
            }
            // A resourceVersion written by the patch is a precondition (API concepts:
            // "Patch ... if the patch includes metadata.resourceVersion, it must match").
            if rv_of(&patched) != rv_of(current) {
                return Err(ApiError::conflict(&rt.group, &rt.plural, name));
            }
            patched
        }
    };
    // Status and spec are written through separate endpoints when a status subresource
    // exists: the main endpoint keeps the stored status, /status keeps everything else.
    if rt.status_subresource {
        if status_only {
            let status = next.get("status").cloned();
            next = current.clone();
            match status {
                Some(s) => next["status"] = s,
                None => {
                    if let Some(map) = next.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        } else if let Some(map) = next.as_object_mut() {
            match current.get("status") {
                Some(s) => {
                    map.insert("status".into(), s.clone());
                }
                None => {
                    map.remove("status");
                }
            }
        }
    }
    keep_server_metadata(current, &mut next);
    validate(rt, name, &mut next)?;
    no_new_finalizers_while_deleting(rt, name, current, &next)?;
    drop_empty_fields(rt, &mut next);
    if keeps_generation(rt) {
        bump_generation(current, &mut next);
    }
    let deleting = next.pointer("/metadata/deletionTimestamp").is_some();
    if deleting && finalizers(&next).is_empty() {
        // The last finalizer is gone: the deletion completes now.
        return Ok(Planned::Delete(next));
    }
    Ok(Planned::Keep(next))
}

/// Deletes an object, honouring finalizers: with finalizers present the object only gets a
/// `deletionTimestamp` and stays until the last finalizer is removed.
pub fn delete(
    sim: &Sim,
    target: &Target,
    name: &str,
    options: Option<&Value>,
) -> Result<(u16, Value), ApiError> {
    let rt = target.rt.clone();
    let precondition_rv = options
        .and_then(|o| o.pointer("/preconditions/resourceVersion"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let precondition_uid = options
        .and_then(|o| o.pointer("/preconditions/uid"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut pending = false;
    let result = sim.store.update(&target.key(name), |current, _| {
        if precondition_rv
            .as_deref()
            .is_some_and(|v| Some(v) != rv_of(current).as_deref())
            || precondition_uid.as_deref().is_some_and(|u| {
                Some(u) != current.pointer("/metadata/uid").and_then(Value::as_str)
            })
        {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        if finalizers(current).is_empty() {
            return Ok(None);
        }
        pending = true;
        let mut next = current.clone();
        if next.pointer("/metadata/deletionTimestamp").is_none() {
            next["metadata"]["deletionTimestamp"] = Value::String(now_rfc3339());
            next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            // Starting a deletion is a change of the desired state.
            if keeps_generation(&rt) {
                let generation = current
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                next["metadata"]["generation"] = json!(generation + 1);
            }
        }
        Ok(Some(next))
    });
    match result {
        Err(StoreError::NotFound) => Err(ApiError::not_found(&rt.group, &rt.plural, name)),
        Err(_) => Err(ApiError::internal("store failure")),
        Ok(Err(e)) => Err(e),
        Ok(Ok(object)) => {
            if !pending && rt.storage_key() == "apiextensions.k8s.io/customresourcedefinitions" {
                sim.registry.unregister_crd(&object);
            }
            if pending || rt.plural == "pods" {
                // Still there (finalizers), or a kind whose delete returns the object.
                return Ok((200, for_version(object, &rt)));
            }
            // A completed delete is answered with a Success Status.
            let mut details = json!({"name": name, "kind": rt.plural,
                "uid": object.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)});
            if !rt.group.is_empty() {
                details["group"] = json!(rt.group);
            }
            Ok((
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "details": details}),
            ))
        }
    }
}
