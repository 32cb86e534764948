//! The kustomize manifests, rendered with `kubectl kustomize` and applied to the API
//! simulator, for tests that run Backstop as the ServiceAccount the manifests create.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `deploy/SUB` in the repository.
pub fn deploy_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(sub)
}

/// `kubectl kustomize DIR`, one JSON value per object.
pub fn kustomize(dir: &Path) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// `KIND/NAME` of a rendered object.
pub fn id(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap(),
        object["metadata"]["name"].as_str().unwrap()
    )
}

/// Applies `objects` through the API as the administrator `client` (either backend), in the
/// order given (kustomize puts Namespaces first); returns the ones whose kind the server does
/// not serve (say, a ServiceMonitor without the Prometheus operator's CRDs).
pub async fn apply(client: &kube::Client, objects: &[Value]) -> BTreeSet<String> {
    use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
    use kube::discovery::{Discovery, Scope};
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut skipped = BTreeSet::new();
    for object in objects {
        let api_version = object["apiVersion"].as_str().unwrap();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
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
        let dynamic: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        if let Err(e) = api.create(&PostParams::default(), &dynamic).await {
            panic!("applying {}: {e}", id(object));
        }
    }
    skipped
}
