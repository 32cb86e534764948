//! The CRDs the sandbox serves, installed through the Kubernetes API like any other object, so
//! the same call works against the simulator and a real cluster.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;

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
}

/// The embedded CRDs, parsed.
pub fn pxc_crds() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    serde_yaml_ng::Deserializer::from_str(PXC_CRDS_YAML)
        .map(|doc| serde::Deserialize::deserialize(doc).map_err(CrdError::from))
        .collect()
}

/// Creates the PXC CRDs; ones that already exist are left as they are.
pub async fn install_pxc_crds(client: &kube::Client) -> Result<(), CrdError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in pxc_crds()? {
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
