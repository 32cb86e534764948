//! Typed views of the Percona operator's resources, limited to the fields Backstop reads or
//! writes (see `../shared/pxc-operator.md`), plus the operator's naming and labelling rules.
//!
//! Every struct keeps the fields it does not name in a flattened map, and every optional field
//! stays `None` when absent, so an object read, changed and written back differs from the
//! original only where Backstop changed it. That is what makes an exact revert possible.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fields a struct does not name, kept verbatim.
pub type Extra = BTreeMap<String, Value>;

/// `spec` of a PerconaXtraDBCluster.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "pxc.percona.com",
    version = "v1",
    kind = "PerconaXtraDBCluster",
    plural = "perconaxtradbclusters",
    shortname = "pxc",
    namespaced,
    status = "ClusterStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// `spec.backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// Everything else in `spec`.
    #[serde(flatten)]
    pub extra: Extra,
}

impl PerconaXtraDBCluster {
    /// `spec.backup.schedule`, empty when absent.
    pub fn schedules(&self) -> &[Schedule] {
        self.spec
            .backup
            .as_ref()
            .and_then(|b| b.schedule.as_deref())
            .unwrap_or_default()
    }
}

/// `status` of a PerconaXtraDBCluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `ready`, `initializing`, `error`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Everything else in `status`.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `spec.backup`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Storages by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storages: Option<BTreeMap<String, Storage>>,
    /// Scheduled backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Vec<Schedule>>,
    /// Point-in-time recovery (binlog collection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<Pitr>,
    /// Whether backups of one cluster may run in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_parallel: Option<bool>,
    /// Everything else in `spec.backup`.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One storage of `spec.backup.storages`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// `s3`, `azure` or `filesystem`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// S3 settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
    /// Volume of a filesystem storage (`persistentVolumeClaim` is a PVC template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Value>,
    /// Verify the endpoint's TLS certificate.
    #[serde(rename = "verifyTLS", default, skip_serializing_if = "Option::is_none")]
    pub verify_tls: Option<bool>,
    /// Everything else (scheduling, labels, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Storage {
    /// Whether this is an S3 storage.
    pub fn is_s3(&self) -> bool {
        self.kind.as_deref() == Some(STORAGE_S3)
    }
}

/// Storage type `s3`.
pub const STORAGE_S3: &str = "s3";
/// Storage type `filesystem`.
pub const STORAGE_FILESYSTEM: &str = "filesystem";

/// `s3` of a storage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    /// Bucket, optionally followed by `/prefix`.
    #[serde(default)]
    pub bucket: String,
    /// Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// S3-compatible endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Path-style addressing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// The key of a Secret holding the PEM CA bundle the endpoint's certificate is checked
    /// against, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<SecretKeySelector>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A key of a Secret in the storage's namespace (`caBundle`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize, JsonSchema,
)]
pub struct SecretKeySelector {
    /// The Secret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key inside the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl S3Storage {
    /// The bucket name without any prefix.
    pub fn bucket_name(&self) -> &str {
        self.bucket.split('/').next().unwrap_or_default()
    }

    /// The key prefix inside the bucket (`""` or ending in `/`).
    pub fn prefix(&self) -> String {
        match self.bucket.split_once('/') {
            Some((_, p)) if !p.trim_matches('/').is_empty() => {
                format!("{}/", p.trim_matches('/'))
            }
            _ => String::new(),
        }
    }
}

/// One entry of `spec.backup.schedule`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Schedule name.
    pub name: String,
    /// Cron expression (seconds field allowed).
    pub schedule: String,
    /// Storage the backups go to.
    pub storage_name: String,
    /// Deprecated retention count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<i64>,
    /// Retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Schedule {
    /// Backups kept: `retention.count`, else the deprecated `keep`.
    pub fn retention_count(&self) -> Option<i64> {
        self.retention.as_ref().and_then(|r| r.count).or(self.keep)
    }

    /// Whether retention deletes the data from storage too (the operator's default: yes).
    pub fn delete_from_storage(&self) -> bool {
        self.retention
            .as_ref()
            .and_then(|r| r.delete_from_storage)
            .unwrap_or(true)
    }
}

/// `retention` of a schedule.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Always `count`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Backups kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Delete the data from storage with the CR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_from_storage: Option<bool>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `spec.backup.pitr`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pitr {
    /// Whether binlogs are collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Storage the binlogs go to (S3 or Azure only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_name: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `spec` of a PerconaXtraDBClusterBackup.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "pxc.percona.com",
    version = "v1",
    kind = "PerconaXtraDBClusterBackup",
    plural = "perconaxtradbclusterbackups",
    shortname = "pxc-backup",
    namespaced,
    status = "BackupStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct BackupCrSpec {
    /// The cluster backed up.
    pub pxc_cluster: String,
    /// The storage written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_name: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `status` of a PerconaXtraDBClusterBackup.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// `""`, `Suspended`, `Starting`, `Running`, `Failed`, `Succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When the backup completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<String>,
    /// `s3://bucket[/prefix]/name`, `pvc/name`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The storage used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_name: Option<String>,
    /// The storage type used.
    #[serde(
        rename = "storage_type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub storage_type: Option<String>,
    /// A copy of the S3 settings used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
    /// Why the backup failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Backup states.
pub mod state {
    /// Finished successfully.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Finished with an error.
    pub const FAILED: &str = "Failed";
    /// The Job is starting.
    pub const STARTING: &str = "Starting";
    /// The Job is running.
    pub const RUNNING: &str = "Running";
}

/// Labels the operator puts on backups and their Jobs (operator 1.16 and later).
pub mod labels {
    /// `cron` on scheduled backups, `xtrabackup` on backup Jobs.
    pub const BACKUP_TYPE: &str = "percona.com/backup-type";
    /// The cluster's name.
    pub const CLUSTER: &str = "percona.com/cluster";
    /// The schedule a backup came from (prefixed schedule name).
    pub const BACKUP_ANCESTOR: &str = "percona.com/backup-ancestor";
    /// The backup CR's name, on Jobs.
    pub const BACKUP_NAME: &str = "percona.com/backup-name";
    /// The Job's name, on Jobs.
    pub const BACKUP_JOB_NAME: &str = "percona.com/backup-job-name";
    /// Kubernetes' label on a Job's pods.
    pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
}

/// Finalizer that deletes a backup's data from storage when its CR is deleted.
pub const DELETE_BACKUP_FINALIZER: &str = "percona.com/delete-backup";

/// The operator's name for a scheduled backup:
/// `cron-<cluster[:16]>-<storage[:16]>-<YYYYMDHms>-<crc32(schedule) in base 32, first 5>`,
/// with the date parts printed without padding (as the operator's `%d%d%d%d%d%d`).
pub fn scheduled_backup_name(
    cluster: &str,
    storage: &str,
    schedule: &str,
    at: jiff::Timestamp,
) -> String {
    let t = at.to_zoned(jiff::tz::TimeZone::UTC);
    let stamp = format!(
        "{}{}{}{}{}{}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let crc = radix32(u64::from(crc32fast::hash(schedule.as_bytes())));
    let crc: String = crc.chars().take(5).collect();
    format!(
        "cron-{}-{}-{stamp}-{crc}",
        truncate(cluster, 16),
        truncate(storage, 16)
    )
}

/// The Job that runs a backup: `xb-<backup>`, trimmed to 63 characters.
pub fn backup_job_name(backup: &str) -> String {
    truncate(&format!("xb-{backup}"), 63).to_owned()
}

/// The S3 destination of a backup:
/// `s3://<bucket[/prefix]>/<cluster>-<YYYY-MM-DD-HH:MM:SS>-full` (creation time, UTC).
pub fn s3_destination(bucket_with_prefix: &str, cluster: &str, created: jiff::Timestamp) -> String {
    format!(
        "s3://{}/{}",
        bucket_with_prefix.trim_end_matches('/'),
        backup_dir_name(cluster, created)
    )
}

/// The directory name of a backup in its storage: `<cluster>-<YYYY-MM-DD-HH:MM:SS>-full`.
pub fn backup_dir_name(cluster: &str, created: jiff::Timestamp) -> String {
    format!("{cluster}-{}-full", created.strftime("%Y-%m-%d-%H:%M:%S"))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `strconv.FormatUint(x, 32)`: digits `0-9a-v`.
fn radix32(mut x: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    if x == 0 {
        return "0".to_owned();
    }
    let mut out = Vec::new();
    while x > 0 {
        out.push(DIGITS[(x % 32) as usize]);
        x /= 32;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_names_follow_the_operator() {
        let at: jiff::Timestamp = "2026-03-04T05:06:07Z".parse().unwrap();
        let name = scheduled_backup_name(
            "a-very-long-cluster-name",
            "s3-us-west-primary-storage",
            "0 0 * * *",
            at,
        );
        let crc = radix32(u64::from(crc32fast::hash(b"0 0 * * *")));
        assert_eq!(
            name,
            format!(
                "cron-a-very-long-clus-s3-us-west-prima-202634567-{}",
                &crc[..5]
            )
        );
    }

    #[test]
    fn radix32_matches_go_strconv() {
        assert_eq!(radix32(31), "v");
        assert_eq!(radix32(32), "10");
        assert_eq!(radix32(1_000_000), "ugi0");
    }

    #[test]
    fn destinations_use_the_creation_time() {
        let at: jiff::Timestamp = "2026-11-24T03:10:30Z".parse().unwrap();
        assert_eq!(
            s3_destination("pxc-backups/prod/", "cluster1", at),
            "s3://pxc-backups/prod/cluster1-2026-11-24-03:10:30-full"
        );
        assert_eq!(backup_job_name(&"b".repeat(80)).len(), 63);
    }

    #[test]
    fn bucket_and_prefix_split() {
        let s3 = S3Storage {
            bucket: "pxc-backups/prod/eu".into(),
            ..S3Storage::default()
        };
        assert_eq!(s3.bucket_name(), "pxc-backups");
        assert_eq!(s3.prefix(), "prod/eu/");
        let plain = S3Storage {
            bucket: "b".into(),
            ..S3Storage::default()
        };
        assert_eq!(plain.prefix(), "");
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = serde_json::json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
            "metadata": {"name": "c1", "namespace": "percona"},
            "spec": {"crVersion": "1.20.0", "pxc": {"size": 3},
                "backup": {"image": "x", "storages": {"s3-us-west": {"type": "s3", "verifyTLS": false,
                    "nodeSelector": {"a": "b"}, "s3": {"bucket": "b/p", "region": "us-west-2", "caBundle": {"key": "ca.crt"}}}},
                    "schedule": [{"name": "daily", "schedule": "0 0 * * *", "storageName": "s3-us-west",
                        "retention": {"type": "count", "count": 3, "deleteFromStorage": true}}],
                    "pitr": {"enabled": false, "storageName": "s3-us-west", "timeBetweenUploads": 60}}},
        });
        let typed: PerconaXtraDBCluster = serde_json::from_value(text.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), text);
    }
}
