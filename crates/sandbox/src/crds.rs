//! The CRDs the sandbox serves, installed through the Kubernetes API like any other object, so
//! the same call works against the simulator and a real cluster.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;
use std::path::Path;

/// The Percona operator's CRDs as the sandbox serves them (see the file's header).
pub const PXC_CRDS_YAML: &str = include_str!("crds/pxc.yaml");

/// Why the CRDs could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The embedded YAML did not parse (a build defect; the agreement test catches it).
    #[error("embedded CRD YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// The API server refused a CRD.
    #[error("creating CRD: {0}")]
    Api(#[from] kube::Error),
    /// A CRD file could not be read.
    #[error("reading CRD file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A document of a CRD file is not a CRD.
    #[error("CRD file: {0}")]
    Json(#[from] serde_json::Error),
    /// The server never reported the CRD as Established.
    #[error("CRD {0} not Established after {ESTABLISH_DEADLINE:?}")]
    NotEstablished(String),
}

/// How long a new CRD may take to be served (a real server establishes it within a second or
/// two; the simulator at once).
const ESTABLISH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// The embedded CRDs, parsed.
pub fn pxc_crds() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    serde_yaml_ng::Deserializer::from_str(PXC_CRDS_YAML)
        .map(|doc| serde::Deserialize::deserialize(doc).map_err(CrdError::from))
        .collect()
}

/// Creates the PXC CRDs; ones that already exist are left as they are.
pub async fn install_pxc_crds(client: &kube::Client) -> Result<(), CrdError> {
    install(client, pxc_crds()?).await
}

/// Creates the CRDs of a CRD file (such as the operator's `deploy/crd.yaml`), derived for the
/// server's version with [`derive_for`]; ones that already exist are left as they are.
pub async fn install_crd_file(client: &kube::Client, path: &Path) -> Result<(), CrdError> {
    let text = std::fs::read_to_string(path).map_err(|source| CrdError::Read {
        path: path.to_owned(),
        source,
    })?;
    let minor = server_minor(client).await?;
    let mut crds = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut value: Value = serde::Deserialize::deserialize(document)?;
        if value.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            continue;
        }
        derive_for(minor, &mut value);
        crds.push(serde_json::from_value(value)?);
    }
    install(client, crds).await
}

/// The server's minor version (`20` for v1.20.2); a `minor` such as `"20+"` counts as 20.
async fn server_minor(client: &kube::Client) -> Result<u32, CrdError> {
    let info = client.apiserver_version().await?;
    let digits: String = info
        .minor
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(digits.parse().unwrap_or(u32::MAX))
}

/// Rewrites a CRD so that a server of minor version `minor` loads it, dropping what that
/// version does not know. For servers before 1.25 (the one this project's tests build is
/// 1.20), two things go, and nothing else:
///
/// - every `x-kubernetes-validations` (CEL rules: alpha in 1.23, beta in 1.25; an older
///   server rejects the unknown field). The operator's rules check relations between fields
///   (for example that a storage of type `s3` has an `s3` block); the operator checks them
///   again itself, so only the API server's early 422 is lost.
/// - every `default: ""` (an empty-string default, which 1.20's defaulting validation refuses
///   where the schema also says `minLength` or an enum, and which the operator treats like an
///   absent field anyway).
///
/// Later servers get the CRD unchanged.
pub fn derive_for(minor: u32, crd: &mut Value) {
    if minor >= 25 {
        return;
    }
    strip(crd);
}

fn strip(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("x-kubernetes-validations");
            if map.get("default").is_some_and(|d| d == "") {
                map.remove("default");
            }
            map.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

/// Creates `crds` (409s are fine: already there), then waits until each is Established.
async fn install(
    client: &kube::Client,
    crds: Vec<CustomResourceDefinition>,
) -> Result<(), CrdError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for crd in crds {
        names.push(crd.metadata.name.clone().unwrap_or_default());
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for name in names {
        let deadline = tokio::time::Instant::now() + ESTABLISH_DEADLINE;
        loop {
            let crd = api.get(&name).await?;
            let established = crd.status.and_then(|s| s.conditions).is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CrdError::NotEstablished(name));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
