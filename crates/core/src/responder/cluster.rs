//! The PerconaXtraDBCluster as the responder reads and writes it: raw JSON (so fields Backstop
//! does not know survive a replace exactly), its intent and journal annotations, its
//! `spec.backup`, and the kill switch.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::{Resource as _, ResourceExt as _};
use serde_json::{Value, json};

use crate::pxc::PerconaXtraDBCluster;

use super::intent::{INTENT_ANNOTATION, Intent};
use super::journal::{JOURNAL_ANNOTATION, Journal};

/// The annotation that makes Backstop leave a cluster alone (value `"true"`).
pub const PAUSE_ANNOTATION: &str = "backstop.percona.com/paused";

/// A cluster, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ClusterKey {
    /// The key of a managed cluster's policy.
    pub fn of_managed(managed: &crate::config::ManagedCluster) -> Self {
        Self {
            namespace: managed.namespace.clone(),
            name: managed.name.clone(),
        }
    }

    /// The key of a raw cluster object.
    pub fn of(object: &DynamicObject) -> Self {
        Self {
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        }
    }
}

/// The raw API of PerconaXtraDBClusters: the responder edits JSON so that fields it does not
/// know survive exactly.
pub fn cluster_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<PerconaXtraDBCluster>(&()),
    )
}

/// The raw API of PerconaXtraDBClusters in every namespace (listing opted-in clusters).
pub fn cluster_api_all(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &ApiResource::erase::<PerconaXtraDBCluster>(&()),
    )
}

/// Every cluster in `scopes` (each a namespace, or `None` for all of them), listed from the
/// API server as raw objects.
///
/// # Errors
///
/// The Kubernetes error of the first list that fails.
pub async fn list_clusters(
    client: &kube::Client,
    scopes: &[Option<&str>],
) -> Result<Vec<DynamicObject>, kube::Error> {
    let mut objects = Vec::new();
    for scope in scopes {
        let api = match scope {
            Some(ns) => cluster_api(client, ns),
            None => cluster_api_all(client),
        };
        objects.extend(api.list(&Default::default()).await?.items);
    }
    Ok(objects)
}

/// Whether the cluster carries the kill switch ([`PAUSE_ANNOTATION`] = `"true"`).
pub fn is_paused(object: &DynamicObject) -> bool {
    object
        .annotations()
        .get(PAUSE_ANNOTATION)
        .map(String::as_str)
        == Some("true")
}

/// The intent recorded on a raw cluster; an unreadable one counts as empty (and is logged),
/// because the next notification rewrites it.
pub fn read_intent(object: &DynamicObject) -> Intent {
    match object.annotations().get(INTENT_ANNOTATION) {
        None => Intent::default(),
        Some(text) => Intent::parse(text).unwrap_or_else(|e| {
            tracing::warn!(cluster = %object.name_any(), error = %e, "ignoring an unreadable intent annotation");
            Intent::default()
        }),
    }
}

/// The journal recorded on a raw cluster.
///
/// # Errors
///
/// A message when the annotation exists but cannot be read: the responder then refuses to
/// act rather than guess what to restore.
pub fn read_journal(object: &DynamicObject) -> Result<Option<Journal>, String> {
    object
        .annotations()
        .get(JOURNAL_ANNOTATION)
        .map(|text| Journal::parse(text).map_err(|e| e.to_string()))
        .transpose()
}

/// The cluster's `spec.backup` (`null` when it has none).
pub fn backup_spec(object: &DynamicObject) -> Value {
    object
        .data
        .get("spec")
        .and_then(|s| s.get("backup"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Replaces the cluster's `spec.backup`.
pub fn set_backup_spec(object: &mut DynamicObject, backup: Value) {
    if !object.data["spec"].is_object() {
        object.data["spec"] = json!({});
    }
    object.data["spec"]["backup"] = backup;
}

/// Sets (`Some`) or removes (`None`) the journal annotation.
pub fn set_journal(object: &mut DynamicObject, journal: Option<&Journal>) {
    match journal {
        Some(journal) => {
            object
                .annotations_mut()
                .insert(JOURNAL_ANNOTATION.to_owned(), journal.render());
        }
        None => {
            object.annotations_mut().remove(JOURNAL_ANNOTATION);
        }
    }
}

/// Sets (`Some`) or removes (`None`) the intent annotation.
pub fn set_intent(object: &mut DynamicObject, intent: Option<&Intent>) {
    match intent {
        Some(intent) => {
            object
                .annotations_mut()
                .insert(INTENT_ANNOTATION.to_owned(), intent.render());
        }
        None => {
            object.annotations_mut().remove(INTENT_ANNOTATION);
        }
    }
}

/// A reference to the cluster, for the Events about it.
pub fn reference(object: &DynamicObject) -> ObjectReference {
    ObjectReference {
        api_version: Some(PerconaXtraDBCluster::api_version(&()).into_owned()),
        kind: Some(PerconaXtraDBCluster::kind(&()).into_owned()),
        name: Some(object.name_any()),
        namespace: object.namespace(),
        uid: object.uid(),
        resource_version: object.resource_version(),
        ..ObjectReference::default()
    }
}
