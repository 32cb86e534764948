//! The shipped manifests, applied to the sandbox's API server: so `backstop sandbox` runs
//! Backstop as the `backstop` ServiceAccount under exactly the RBAC a cluster gets from
//! `deploy/`, and a permission the manifests lack shows here first.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::{Discovery, Scope};
use serde_json::Value;

/// The namespace the shipped manifests install into (`deploy/base/kustomization.yaml`).
pub const NAMESPACE: &str = "backstop";

/// The ServiceAccount Backstop runs as.
pub const SERVICE_ACCOUNT: &str = "backstop";

/// The shipped files the sandbox applies: the namespace, the ServiceAccount, and the
/// ClusterRole with its binding (`kubernetes.namespaces: []`, as the sandbox runs).
const SHIPPED_RBAC: [(&str, &str); 3] = [
    (
        "deploy/base/namespace.yaml",
        include_str!("../../../deploy/base/namespace.yaml"),
    ),
    (
        "deploy/base/serviceaccount.yaml",
        include_str!("../../../deploy/base/serviceaccount.yaml"),
    ),
    (
        "deploy/rbac.yaml",
        include_str!("../../../deploy/rbac.yaml"),
    ),
];

/// Why manifests could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A shipped file is not valid YAML for a Kubernetes object.
    #[error("{file}: {source}")]
    Parse {
        /// The file.
        file: &'static str,
        /// Why.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// An object has no `apiVersion` or `kind`.
    #[error("an object has no apiVersion or kind: {0}")]
    Untyped(String),
    /// The API server refused a request.
    #[error("applying {what}: {source}")]
    Kube {
        /// The object, as `Kind/name`.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// The shipped RBAC as objects, namespaced ones in [`NAMESPACE`] (as kustomize puts them).
///
/// # Errors
///
/// [`ManifestError::Parse`] when a shipped file does not parse (a broken checkout).
pub fn shipped_rbac() -> Result<Vec<Value>, ManifestError> {
    let mut objects = Vec::new();
    for (file, text) in SHIPPED_RBAC {
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let mut object: Value = serde::Deserialize::deserialize(document)
                .map_err(|source| ManifestError::Parse { file, source })?;
            if object.is_null() {
                continue;
            }
            if object["kind"] == "ServiceAccount" && object["metadata"]["namespace"].is_null() {
                object["metadata"]["namespace"] = Value::String(NAMESPACE.to_owned());
            }
            objects.push(object);
        }
    }
    Ok(objects)
}

/// `Kind/name` of an object, for messages.
pub fn id(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Creates `objects` through the API as the administrator `client` (either backend), in
/// the order given (Namespaces first); one that exists already is left as it is. Returns
/// the objects whose kind the server does not serve (say, a ServiceMonitor without the
/// Prometheus operator's CRDs), which are skipped.
///
/// # Errors
///
/// [`ManifestError`] when discovery or a create fails, or an object has no type.
pub async fn apply(
    client: &kube::Client,
    objects: &[Value],
) -> Result<BTreeSet<String>, ManifestError> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|source| ManifestError::Kube {
            what: "discovery".into(),
            source,
        })?;
    let mut skipped = BTreeSet::new();
    for object in objects {
        let (Some(api_version), Some(kind)) =
            (object["apiVersion"].as_str(), object["kind"].as_str())
        else {
            return Err(ManifestError::Untyped(id(object)));
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let Some((resource, capabilities)) = discovery.resolve_gvk(&gvk) else {
            skipped.insert(id(object));
            continue;
        };
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default"),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let dynamic: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|e| ManifestError::Kube {
                what: id(object),
                source: kube::Error::SerdeError(e),
            })?;
        match api.create(&PostParams::default(), &dynamic).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(source) => {
                return Err(ManifestError::Kube {
                    what: id(object),
                    source,
                });
            }
        }
    }
    Ok(skipped)
}
