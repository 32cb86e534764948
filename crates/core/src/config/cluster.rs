//! The clusters Backstop may change, and how: each one's failover policy (strategy, the
//! ordered secondaries to switch to, the PVC buffer last, PITR while on the buffer).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

/// A cluster Backstop may change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagedCluster {
    /// Namespace of the PerconaXtraDBCluster.
    pub namespace: String,
    /// Name of the PerconaXtraDBCluster.
    pub name: String,
    /// What to do when its S3 storage fails.
    pub failover: FailoverPolicy,
}

/// How failover changes the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Point schedules (and PITR) at another storage entry; the failing entry is untouched.
    #[default]
    Repoint,
    /// Rewrite the failing storage's bucket/region/endpoint in place (the runbook's step 2).
    InPlace,
}

impl Strategy {
    /// `repoint` or `in-place`, as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Repoint => "repoint",
            Self::InPlace => "in-place",
        }
    }
}

/// What happens to PITR when backups move to the filesystem buffer, which PITR cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PitrOnBuffer {
    /// Disable PITR while on the buffer; the revert re-enables it exactly as it was.
    #[default]
    Disable,
    /// Leave PITR on its S3 storage (it keeps failing until S3 returns).
    Keep,
}

/// The failover policy of one cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverPolicy {
    /// `repoint` (default) or `in-place`.
    #[serde(default)]
    pub strategy: Strategy,
    /// The storage entry to protect. Default: every S3 storage the schedules use.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// The S3 target to fail over to first (verified healthy just now before each switch).
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondary: Option<SecondaryTarget>,
    /// Further S3 targets, tried in this order after `secondary` (other buckets, regions or
    /// S3-compatible endpoints); the buffer comes last. Each needs its own `storage_name`.
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secondaries: Vec<SecondaryTarget>,
    /// The local PVC buffer used when the secondary is unhealthy or absent.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer: Option<BufferPolicy>,
    /// PITR while on the buffer: `disable` (default) or `keep`.
    #[serde(default)]
    pub pitr_on_buffer: PitrOnBuffer,
}

impl FailoverPolicy {
    /// Every secondary, best first: `secondary`, then `secondaries` in order.
    pub fn ordered_secondaries(&self) -> impl Iterator<Item = &SecondaryTarget> {
        self.secondary.iter().chain(&self.secondaries)
    }

    /// The secondary whose storage entry is named `storage_name`, with its rank (0 is the
    /// best).
    pub fn secondary_named(&self, storage_name: &str) -> Option<(usize, &SecondaryTarget)> {
        self.ordered_secondaries()
            .enumerate()
            .find(|(_, s)| s.storage_name == storage_name)
    }
}

/// A secondary bucket/region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondaryTarget {
    /// Name of the storage entry (created if missing with `repoint`).
    /// Default `backstop-secondary`.
    #[serde(default = "default_secondary_storage")]
    pub storage_name: String,
    /// Bucket, optionally `bucket/prefix`.
    pub bucket: String,
    /// AWS region.
    pub region: String,
    /// S3-compatible endpoint; empty means AWS.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Name of the Secret (in the cluster's namespace) with the backup Job's credentials.
    pub credentials_secret: String,
    /// Path-style addressing. Default `false`.
    #[serde(default)]
    pub force_path_style: bool,
    /// Verify the endpoint's TLS certificate. Default `true`.
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    /// PEM CA bundle the secondary's certificate is checked against (`name`, `key` of a
    /// Secret in the cluster's namespace), written to the storage's `s3.caBundle` on
    /// failover so the backup Job trusts the same CA. Absent: the system roots.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleSecret>,
}

fn default_secondary_storage() -> String {
    "backstop-secondary".to_owned()
}

/// The filesystem storage used as a buffer. Its PVC is a template: the operator creates
/// one PVC per backup from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BufferPolicy {
    /// Name of the storage entry. Default `backstop-buffer`.
    #[serde(default = "default_buffer_storage")]
    pub storage_name: String,
    /// StorageClass of the PVCs (e.g. an EBS class such as `gp3`). Default: the cluster's.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Size of each backup PVC, as a Kubernetes quantity (e.g. `100Gi`).
    pub size: String,
    /// Access modes. Default `[ReadWriteOnce]`.
    #[serde(default = "default_access_modes")]
    pub access_modes: Vec<String>,
}

fn default_buffer_storage() -> String {
    "backstop-buffer".to_owned()
}

fn default_access_modes() -> Vec<String> {
    vec!["ReadWriteOnce".to_owned()]
}
