//! "Verified healthy just now": a fresh HeadBucket and canary write/read/delete of a storage
//! definition, with the credentials the backup Job would use, right before a playbook
//! switches backups to it; and the same check repeated on the secondary a cluster runs on.

use serde_json::Value;

use crate::config::{ListConfig, ProbeConfig};
use crate::probe::cycle::{CycleOptions, Outcome, TargetState};
use crate::probe::once::probe_once;
use crate::probe::target::Target;
use crate::pxc::Storage;
use crate::s3::client::Timeouts;

/// Probes the storage `storage_name` (raw definition `storage`) of `namespace/cluster` once,
/// canary included.
///
/// # Errors
///
/// A one-line description of every failed operation (or of why the storage cannot be
/// probed at all).
pub async fn verify_storage(
    client: &kube::Client,
    probe: &ProbeConfig,
    namespace: &str,
    cluster: &str,
    storage_name: &str,
    storage: &Value,
) -> Result<(), String> {
    let mut state = TargetState::default();
    check_storage(
        client,
        probe,
        namespace,
        cluster,
        storage_name,
        storage,
        &mut state,
    )
    .await
}

/// Like [`verify_storage`], for a storage checked again and again (the secondary a cluster
/// failed over to): `state` carries over between checks, so the canary follows
/// `probe.canary.interval` as the prober's does (every check once anything failed), and a
/// canary a failing store did not let us delete is deleted by a later check.
///
/// # Errors
///
/// As [`verify_storage`].
pub async fn check_storage(
    client: &kube::Client,
    probe: &ProbeConfig,
    namespace: &str,
    cluster: &str,
    storage_name: &str,
    storage: &Value,
    state: &mut TargetState,
) -> Result<(), String> {
    let storage: Storage =
        serde_json::from_value(storage.clone()).map_err(|e| format!("storage definition: {e}"))?;
    let target = Target::from_storage(namespace, cluster, storage_name, &storage)
        .map_err(|e| e.to_string())?;
    let mut options = CycleOptions::from(probe);
    // The write is what a backup does, so verification always writes, even when routine
    // probing runs read-only; listing says nothing about health.
    options.canary.enabled = true;
    options.list = ListConfig {
        enabled: false,
        ..ListConfig::default()
    };
    // Credentials are proven by the canary write itself; an STS round trip would only add
    // latency between the alert and the switch.
    options.sts = false;
    let timeouts = Timeouts {
        connect: probe.timeout.get(),
        operation: probe.timeout.get(),
    };
    let result = probe_once(&target, Some(client), &options, timeouts, state).await;
    if result.up {
        return Ok(());
    }
    let failures: Vec<String> = result
        .operations
        .iter()
        .filter_map(|o| match &o.outcome {
            Outcome::Ok => None,
            Outcome::Err { class, message } => Some(format!(
                "{}: {} ({message})",
                o.operation.as_str(),
                class.as_str()
            )),
        })
        .collect();
    Err(format!("{}: {}", target.id(), failures.join("; ")))
}
