//! The objects a backup runs as: its Job (with the operator's labels, `backoffLimit` and
//! `activeDeadlineSeconds`) and the Pod of each attempt.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use backstop::pxc;

use super::lifecycle::Limits;

fn job_labels(cluster: &str, backup: &str, job_name: &str) -> serde_json::Value {
    json!({
        pxc::labels::BACKUP_TYPE: "xtrabackup",
        pxc::labels::CLUSTER: cluster,
        pxc::labels::BACKUP_NAME: backup,
        pxc::labels::BACKUP_JOB_NAME: job_name,
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/managed-by": "percona-xtradb-cluster-operator",
    })
}

fn container() -> serde_json::Value {
    json!([{"name": "xtrabackup", "image": "percona/percona-xtradb-cluster-operator:1.20.0-pxc8.4-backup",
        "command": ["bash", "/usr/bin/backup.sh"]}])
}

pub(super) fn job_of(
    ns: &str,
    cluster: &str,
    backup: &str,
    job_name: &str,
    limits: &Limits,
) -> Job {
    let labels = job_labels(cluster, backup, job_name);
    let mut spec = json!({"backoffLimit": limits.backoff.unwrap_or(0),
        "template": {"metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "containers": container()}}});
    if let Some(active) = limits.active {
        spec["activeDeadlineSeconds"] = json!(active);
    }
    serde_json::from_value(json!({
        "metadata": {"name": job_name, "namespace": ns, "labels": labels},
        "spec": spec,
    }))
    .unwrap_or_default()
}

pub(super) fn pod_of(ns: &str, cluster: &str, backup: &str, job_name: &str) -> Pod {
    let suffix: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(5)
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("{job_name}-{suffix}"), "namespace": ns,
            "labels": {pxc::labels::JOB_NAME: job_name, "job-name": job_name,
                pxc::labels::BACKUP_NAME: backup, pxc::labels::CLUSTER: cluster}},
        "spec": {"restartPolicy": "Never", "containers": container()},
    }))
    .unwrap_or_default()
}
