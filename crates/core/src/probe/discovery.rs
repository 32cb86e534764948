//! Which targets to probe: every S3 storage of every watched cluster (when `probe.discover`
//! is on), every secondary of every managed cluster's failover policy (opted-in clusters'
//! too) (failover may only go to a
//! target that has been probed), and the configuration's static targets. Identical targets
//! used by several clusters are probed once; storages that are not S3 are skipped.

use std::collections::BTreeMap;

use crate::config::{CaBundleSecret, Config, ManagedCluster, SecondaryTarget};
use crate::managed::{Source, resolve};
use crate::probe::target::{Target, TargetError, dedupe};
use crate::pxc::{S3Storage, Storage};
use crate::watch::index::ClusterMetadata;

/// The targets `config` and the clusters' `storages` call for (and, for clusters that opted
/// in by their `metadata`, their policies' secondaries), and the entries that could not be
/// made into targets (reported, not fatal).
pub fn desired_targets(
    storages: &BTreeMap<(String, String), BTreeMap<String, Storage>>,
    metadata: &BTreeMap<(String, String), ClusterMetadata>,
    config: &Config,
) -> (Vec<Target>, Vec<TargetError>) {
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    if config.probe.discover {
        for ((namespace, cluster), by_name) in storages {
            for (name, storage) in by_name.iter().filter(|(_, s)| s.is_s3()) {
                match Target::from_storage(namespace, cluster, name, storage) {
                    Ok(t) => targets.push(t),
                    Err(e) => problems.push(e),
                }
            }
        }
    }
    let opted_in = metadata
        .iter()
        .filter(|_| config.opt_in.enabled())
        .filter_map(|((namespace, name), m)| {
            let resolved = resolve(config, namespace, name, &m.labels, &m.annotations);
            let managed = resolved.managed()?;
            (managed.source != Source::Config).then(|| managed.cluster.clone())
        });
    let managed: Vec<ManagedCluster> = config.clusters.iter().cloned().chain(opted_in).collect();
    for managed in &managed {
        for secondary in managed.failover.ordered_secondaries() {
            let (name, storage) = secondary_storage(secondary);
            match Target::from_storage(&managed.namespace, &managed.name, &name, &storage) {
                Ok(t) => targets.push(t),
                Err(e) => problems.push(e),
            }
        }
    }
    for entry in &config.targets {
        match Target::from_static(entry) {
            Ok(t) => targets.push(t),
            Err(e) => problems.push(e),
        }
    }
    (dedupe(targets), problems)
}

/// The storage entry a failover policy's secondary becomes on failover, as the operator will
/// see it (so the probe uses exactly the settings and credentials the backup Job will).
pub fn secondary_storage(secondary: &SecondaryTarget) -> (String, Storage) {
    let storage = Storage {
        kind: Some(crate::pxc::STORAGE_S3.to_owned()),
        s3: Some(S3Storage {
            bucket: secondary.bucket.clone(),
            credentials_secret: Some(secondary.credentials_secret.clone()),
            region: Some(secondary.region.clone()),
            endpoint_url: secondary.endpoint_url.clone(),
            force_path_style: Some(secondary.force_path_style),
            ca_bundle: secondary.ca_bundle.as_ref().map(CaBundleSecret::selector),
            ..S3Storage::default()
        }),
        verify_tls: Some(secondary.verify_tls),
        ..Storage::default()
    };
    (secondary.storage_name.clone(), storage)
}
