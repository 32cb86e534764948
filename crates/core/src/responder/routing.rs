//! Routing, without I/O: which route an alert takes, and which managed clusters it affects.
//!
//! An alert affects a cluster when every one of its routing labels that is present agrees
//! with the cluster: `namespace`, `cluster` (the cluster's name), `storage` (a protected
//! storage's name), `bucket` and `region` (a protected storage's original S3 settings). An
//! alert with none of `namespace`, `cluster` or `bucket` affects nothing: a label-less alert
//! must never fail over every cluster at once.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{Playbook, Route};

use super::alertmanager::Alert;

/// The first route that takes `alert`, if any.
pub fn route<'a>(routes: &'a [Route], alert: &Alert) -> Option<&'a Route> {
    routes.iter().find(|r| {
        r.alertnames.iter().any(|n| n == alert.name())
            && r.matchers
                .iter()
                .all(|(k, v)| alert.labels.get(k) == Some(v))
    })
}

/// What a route's playbook does for an alert of that status. Only one playbook exists:
/// firing fails over, resolved reverts.
pub fn playbook_name(playbook: Playbook) -> &'static str {
    match playbook {
        Playbook::Failover => "failover",
    }
}

/// A protected storage as the alert sees it: its name and original S3 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedStorage {
    /// The storage entry's name.
    pub name: String,
    /// The bucket, without a prefix.
    pub bucket: String,
    /// The region, when set.
    pub region: Option<String>,
}

impl ProtectedStorage {
    /// Reads a storage definition (raw JSON of a `spec.backup.storages` entry).
    pub fn from_definition(name: &str, storage: &Value) -> Self {
        let s3 = storage.get("s3");
        let bucket = s3
            .and_then(|s| s.get("bucket"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        Self {
            name: name.to_owned(),
            bucket: bucket.split('/').next().unwrap_or_default().to_owned(),
            region: s3
                .and_then(|s| s.get("region"))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
        }
    }
}

/// Whether `labels` (an alert's) affect the cluster `namespace/name` whose protected
/// storages are `protected`.
pub fn affects(
    labels: &BTreeMap<String, String>,
    namespace: &str,
    name: &str,
    protected: &[ProtectedStorage],
) -> bool {
    let label = |k: &str| labels.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if label("namespace").is_none() && label("cluster").is_none() && label("bucket").is_none() {
        return false;
    }
    if label("namespace").is_some_and(|v| v != namespace)
        || label("cluster").is_some_and(|v| v != name)
    {
        return false;
    }
    let storage_filters =
        label("storage").is_some() || label("bucket").is_some() || label("region").is_some();
    if !storage_filters {
        return true;
    }
    protected.iter().any(|p| {
        label("storage").is_none_or(|v| v == p.name)
            && label("bucket").is_none_or(|v| v.split('/').next() == Some(p.bucket.as_str()))
            && label("region").is_none_or(|v| p.region.as_deref().is_none_or(|r| r == v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn protected() -> Vec<ProtectedStorage> {
        vec![ProtectedStorage::from_definition(
            "s3-us-west",
            &serde_json::json!({"type": "s3", "s3": {"bucket": "pxc-backups/cluster1", "region": "us-west-2"}}),
        )]
    }

    #[test]
    fn matches_by_bucket_namespace_and_cluster() {
        let p = protected();
        assert_eq!(p[0].bucket, "pxc-backups");
        let yes = [
            labels(&[("bucket", "pxc-backups"), ("namespace", "percona")]),
            labels(&[("bucket", "pxc-backups/cluster1")]),
            labels(&[("namespace", "percona"), ("cluster", "c1")]),
            labels(&[
                ("cluster", "c1"),
                ("storage", "s3-us-west"),
                ("region", "us-west-2"),
            ]),
        ];
        for l in &yes {
            assert!(affects(l, "percona", "c1", &p), "{l:?}");
        }
        let no = [
            labels(&[]),
            labels(&[("region", "us-west-2")]),
            labels(&[("bucket", "other")]),
            labels(&[("bucket", "pxc-backups"), ("namespace", "other")]),
            labels(&[("cluster", "c2")]),
            labels(&[("cluster", "c1"), ("region", "eu-west-1")]),
            labels(&[("cluster", "c1"), ("storage", "fs")]),
        ];
        for l in &no {
            assert!(!affects(l, "percona", "c1", &p), "{l:?}");
        }
    }
}
