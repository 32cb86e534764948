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

/// Applies `objects` through the API as the administrator `client` (either backend): see
/// `backstop_sandbox::manifests::apply`; returns the kinds the server does not serve.
pub async fn apply(client: &kube::Client, objects: &[Value]) -> BTreeSet<String> {
    backstop_sandbox::manifests::apply(client, objects)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}
