//! Planning, without I/O: the exact field changes a failover makes to `spec.backup`, and the
//! changes a revert makes to put the saved values back.
//!
//! Plans work on the raw JSON of `spec.backup`, so fields this version of Backstop does not
//! know survive untouched, and a revert restores the original byte for byte.

use serde_json::{Map, Value, json};

use crate::config::{FailoverPolicy, PitrOnBuffer, SecondaryTarget, Strategy};
use crate::probe::discovery::secondary_storage;
use crate::pxc::{STORAGE_FILESYSTEM, STORAGE_S3};

use super::journal::{Change, Field, Journal, TargetKind};

/// Why no failover can be planned for a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The cluster has no `spec.backup`.
    #[error("the cluster has no spec.backup")]
    NoBackupSpec,
    /// No schedule or PITR uses an S3 storage the policy protects.
    #[error("no schedule or PITR uses a protected S3 storage ({0})")]
    NothingProtected(String),
    /// The policy has no secondary (or no buffer) to switch to.
    #[error("the failover policy has no {0}")]
    NoTarget(&'static str),
    /// The policy has fewer secondaries than the rank asked for.
    #[error("the failover policy has no secondary number {}", .0 + 1)]
    NoSuchSecondary(usize),
    /// The secondary's storage name is one of the failing storages.
    #[error("the secondary storage name {0:?} is one of the protected storages")]
    TargetIsProtected(String),
}

/// Where a failover or a move sends backups: a secondary by its rank in the policy's order
/// (0 is the best), or the buffer, which comes after every secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Destination {
    /// The secondary of this rank.
    Secondary(usize),
    /// The PVC buffer.
    Buffer,
}

impl Destination {
    /// Every destination of `policy`, best first: the secondaries in order, the buffer last.
    pub fn all(policy: &FailoverPolicy) -> Vec<Self> {
        (0..policy.ordered_secondaries().count())
            .map(Self::Secondary)
            .chain(policy.buffer.is_some().then_some(Self::Buffer))
            .collect()
    }

    /// The kind of target, as the journal records it.
    pub fn kind(self) -> TargetKind {
        match self {
            Self::Secondary(_) => TargetKind::Secondary,
            Self::Buffer => TargetKind::Buffer,
        }
    }
}

/// Where `journal`'s run sends backups now, by `policy`: the buffer, or the secondary the
/// journal names (a journal from before ordered secondaries names none: its target storage,
/// or in place the first secondary, says which). `None` when the secondary is no longer in
/// the policy: the cluster then only moves when its target fails.
pub fn current_destination(journal: &Journal, policy: &FailoverPolicy) -> Option<Destination> {
    if journal.target_kind == TargetKind::Buffer {
        return Some(Destination::Buffer);
    }
    let rank = match &journal.target_secondary {
        Some(name) => policy.secondary_named(name).map(|(rank, _)| rank),
        None if journal.strategy == Strategy::InPlace.as_str() => {
            policy.ordered_secondaries().next().map(|_| 0)
        }
        None => policy
            .secondary_named(&journal.target_storage)
            .map(|(rank, _)| rank),
    };
    rank.map(Destination::Secondary)
}

/// A failover, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverPlan {
    /// The configured strategy, `repoint` or `in-place` (a move to the buffer points the
    /// schedules at the buffer's storage whichever is configured; the journal records the
    /// configured one).
    pub strategy: &'static str,
    /// Secondary or buffer.
    pub target_kind: TargetKind,
    /// Which one, in the policy's order.
    pub destination: Destination,
    /// The `storage_name` of the policy's secondary backups go to (`None` for the buffer):
    /// how the journal names it, in place too, where the entry written is the primary's.
    pub secondary: Option<String>,
    /// The storage entry backups will use.
    pub target_storage: String,
    /// The storage definition the backup Job will use: what must be verified healthy before
    /// the plan is written (`None` for the buffer, which has nothing to probe).
    pub verify: Option<Value>,
    /// The failing storages.
    pub protected: Vec<String>,
    /// Every field changed.
    pub changes: Vec<Change>,
}

/// A revert, ready to write.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RevertPlan {
    /// Fields to set back, with the value to set (`None` removes the field).
    pub restore: Vec<(Field, Option<Value>)>,
    /// Fields changed by someone else since the failover: left as they are.
    pub kept: Vec<Field>,
}

/// The value of `field` in `backup` (`spec.backup`).
pub fn get(backup: &Value, field: &Field) -> Option<Value> {
    match field {
        Field::ScheduleStorage(name) => schedules(backup)
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|s| s.get("storageName").cloned()),
        Field::Pitr => backup.get("pitr").cloned(),
        Field::Storage(name) => backup.get("storages").and_then(|s| s.get(name)).cloned(),
    }
}

/// Sets (or with `None` removes) `field` in `backup`. A schedule that no longer exists is
/// left alone: someone removed it, and re-creating it would undo their change.
pub fn set(backup: &mut Value, field: &Field, value: Option<Value>) {
    let Some(backup) = backup.as_object_mut() else {
        return;
    };
    match field {
        Field::ScheduleStorage(name) => {
            let Some(Value::Array(list)) = backup.get_mut("schedule") else {
                return;
            };
            let Some(Value::Object(entry)) = list
                .iter_mut()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
            else {
                return;
            };
            put(entry, "storageName", value);
        }
        Field::Pitr => put(backup, "pitr", value),
        Field::Storage(name) => {
            let storages = backup
                .entry("storages")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(storages) = storages {
                put(storages, name, value);
            }
        }
    }
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            map.insert(key.to_owned(), v);
        }
        None => {
            map.remove(key);
        }
    }
}

/// Applies every change's `after`.
pub fn apply(backup: &mut Value, changes: &[Change]) {
    for change in changes {
        set(backup, &change.field, change.after.clone());
    }
}

fn schedules(backup: &Value) -> &[Value] {
    backup
        .get("schedule")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn storage_is_s3(backup: &Value, name: &str) -> bool {
    backup
        .get("storages")
        .and_then(|s| s.get(name))
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        == Some(STORAGE_S3)
}

fn pitr_storage(backup: &Value) -> Option<&str> {
    let pitr = backup.get("pitr")?;
    if pitr.get("enabled").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    pitr.get("storageName").and_then(Value::as_str)
}

/// The storages a failover moves backups away from: the policy's `storage`, else every S3
/// storage a schedule or an enabled PITR uses. Sorted, without repeats.
pub fn protected_storages(backup: &Value, policy: &FailoverPolicy) -> Vec<String> {
    let mut names: Vec<String> = match &policy.storage {
        Some(name) => vec![name.clone()],
        None => schedules(backup)
            .iter()
            .filter_map(|s| s.get("storageName").and_then(Value::as_str))
            .chain(pitr_storage(backup))
            .filter(|name| storage_is_s3(backup, name))
            .map(str::to_owned)
            .collect(),
    };
    names.sort();
    names.dedup();
    names
}

/// Plans a failover of `backup` to `to` under `policy`.
///
/// # Errors
///
/// [`PlanError`] when the cluster has nothing to protect or the policy nothing to go to.
pub fn plan_failover(
    backup: &Value,
    policy: &FailoverPolicy,
    to: Destination,
) -> Result<FailoverPlan, PlanError> {
    let kind = to.kind();
    let chosen = match to {
        Destination::Secondary(rank) => {
            Some(policy.ordered_secondaries().nth(rank).ok_or(if rank == 0 {
                PlanError::NoTarget("secondary")
            } else {
                PlanError::NoSuchSecondary(rank)
            })?)
        }
        Destination::Buffer => None,
    };
    let secondary_name = chosen.map(|s| s.storage_name.clone());
    if !backup.is_object() {
        return Err(PlanError::NoBackupSpec);
    }
    let protected = protected_storages(backup, policy);
    let uses_protected =
        |name: Option<&str>| name.is_some_and(|n| protected.iter().any(|p| p == n));
    let scheduled: Vec<String> = schedules(backup)
        .iter()
        .filter(|s| uses_protected(s.get("storageName").and_then(Value::as_str)))
        .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let pitr_protected = uses_protected(pitr_storage(backup));
    if scheduled.is_empty() && !pitr_protected {
        return Err(PlanError::NothingProtected(protected.join(", ")));
    }
    let mut changes = Vec::new();
    let mut change = |field: Field, after: Option<Value>| {
        let before = get(backup, &field);
        if before != after {
            changes.push(Change {
                field,
                before,
                after,
            });
        }
    };
    match (kind, policy.strategy) {
        (TargetKind::Secondary, Strategy::Repoint) => {
            let secondary = chosen.ok_or(PlanError::NoTarget("secondary"))?;
            let (name, from_policy) = policy_secondary(secondary)?;
            if protected.contains(&name) {
                return Err(PlanError::TargetIsProtected(name));
            }
            // An entry a human already made under that name is used as it is (with its pod
            // settings); otherwise the policy's definition is added.
            let storage = get(backup, &Field::Storage(name.clone())).unwrap_or(from_policy);
            change(Field::Storage(name.clone()), Some(storage.clone()));
            for schedule in &scheduled {
                change(
                    Field::ScheduleStorage(schedule.clone()),
                    Some(Value::String(name.clone())),
                );
            }
            if pitr_protected && let Some(mut pitr) = get(backup, &Field::Pitr) {
                pitr["storageName"] = Value::String(name.clone());
                change(Field::Pitr, Some(pitr));
            }
            Ok(FailoverPlan {
                strategy: policy.strategy.as_str(),
                target_kind: kind,
                destination: to,
                secondary: secondary_name.clone(),
                target_storage: name,
                verify: Some(storage),
                protected,
                changes,
            })
        }
        (TargetKind::Secondary, Strategy::InPlace) => {
            let secondary = chosen.ok_or(PlanError::NoTarget("secondary"))?;
            let mut verify = None;
            for name in &protected {
                let mut storage = get(backup, &Field::Storage(name.clone()))
                    .unwrap_or_else(|| json!({"type": STORAGE_S3}));
                let s3 = &mut storage["s3"];
                if !s3.is_object() {
                    *s3 = json!({});
                }
                s3["bucket"] = json!(secondary.bucket);
                s3["region"] = json!(secondary.region);
                s3["credentialsSecret"] = json!(secondary.credentials_secret);
                s3["forcePathStyle"] = json!(secondary.force_path_style);
                match &secondary.endpoint_url {
                    Some(url) => s3["endpointUrl"] = json!(url),
                    None => {
                        if let Some(map) = s3.as_object_mut() {
                            map.remove("endpointUrl");
                        }
                    }
                }
                // The primary's CA bundle is about the primary's endpoint: the secondary is
                // trusted by its own bundle, or by the system roots.
                match &secondary.ca_bundle {
                    Some(ca) => s3["caBundle"] = json!(ca.selector()),
                    None => {
                        if let Some(map) = s3.as_object_mut() {
                            map.remove("caBundle");
                        }
                    }
                }
                storage["verifyTLS"] = json!(secondary.verify_tls);
                verify.get_or_insert_with(|| storage.clone());
                change(Field::Storage(name.clone()), Some(storage));
            }
            Ok(FailoverPlan {
                strategy: policy.strategy.as_str(),
                target_kind: kind,
                destination: to,
                secondary: secondary_name.clone(),
                target_storage: protected.first().cloned().unwrap_or_default(),
                verify,
                protected,
                changes,
            })
        }
        (TargetKind::Buffer, _) => {
            let buffer = policy
                .buffer
                .as_ref()
                .ok_or(PlanError::NoTarget("buffer"))?;
            let mut claim = json!({
                "accessModes": buffer.access_modes,
                "resources": {"requests": {"storage": buffer.size}},
            });
            if let Some(class) = &buffer.storage_class_name {
                claim["storageClassName"] = json!(class);
            }
            let storage = json!({
                "type": STORAGE_FILESYSTEM,
                "volume": {"persistentVolumeClaim": claim},
            });
            let name = buffer.storage_name.clone();
            change(Field::Storage(name.clone()), Some(storage));
            for schedule in &scheduled {
                change(
                    Field::ScheduleStorage(schedule.clone()),
                    Some(Value::String(name.clone())),
                );
            }
            // The binlog collector cannot write to a filesystem storage.
            if pitr_protected
                && policy.pitr_on_buffer == PitrOnBuffer::Disable
                && let Some(mut pitr) = get(backup, &Field::Pitr)
            {
                pitr["enabled"] = Value::Bool(false);
                change(Field::Pitr, Some(pitr));
            }
            Ok(FailoverPlan {
                strategy: policy.strategy.as_str(),
                target_kind: kind,
                destination: to,
                secondary: secondary_name.clone(),
                target_storage: name,
                verify: None,
                protected,
                changes,
            })
        }
    }
}

impl FailoverPlan {
    /// Records in `journal` where this plan sends backups and what it changes (strategy,
    /// target, protected storages, changes), leaving the run's other fields as they are.
    pub fn record_in(&self, journal: &mut Journal) {
        journal.strategy = self.strategy.to_owned();
        journal.target_kind = self.target_kind;
        journal.target_storage = self.target_storage.clone();
        journal.target_secondary = self.secondary.clone();
        journal.protected = self.protected.clone();
        journal.changes = self.changes.clone();
    }

    /// Where backups go, in words for Events and notes: the storage entry, and for a
    /// secondary its bucket and region; in place, the secondary is named as what the entry
    /// now holds, never as the entry's (the primary's) name alone.
    pub fn target(&self) -> String {
        describe_target(
            self.target_kind,
            self.strategy,
            &self.target_storage,
            self.verify.as_ref(),
        )
    }
}

/// Where backups go after a failover of kind `kind` with `strategy`, to the storage entry
/// `storage` defined as `definition` (as written on the cluster; `None` when unknown).
pub fn describe_target(
    kind: TargetKind,
    strategy: &str,
    storage: &str,
    definition: Option<&Value>,
) -> String {
    let bucket = |d: &Value| {
        let text = |ptr: &str| d.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
        match (text("/s3/bucket"), text("/s3/region")) {
            (Some(b), Some(r)) => format!("bucket {b} in {r}"),
            (Some(b), None) => format!("bucket {b}"),
            _ => String::from("its bucket"),
        }
    };
    match kind {
        TargetKind::Buffer => format!("the PVC buffer (storage {storage:?})"),
        TargetKind::Secondary if strategy == Strategy::InPlace.as_str() => format!(
            "the secondary {} (storage {storage:?} rewritten in place)",
            definition.map_or_else(|| String::from("bucket"), bucket)
        ),
        TargetKind::Secondary => format!(
            "the secondary {} (storage {storage:?})",
            definition.map_or_else(|| String::from("bucket"), bucket)
        ),
    }
}

fn policy_secondary(secondary: &SecondaryTarget) -> Result<(String, Value), PlanError> {
    let (name, storage) = secondary_storage(secondary);
    let value = serde_json::to_value(storage).map_err(|_| PlanError::NoTarget("secondary"))?;
    Ok((name, value))
}

/// Plans the revert of `journal` against the current `backup`: every field still holding
/// what the failover wrote gets its original back; a field someone changed since is kept.
pub fn plan_revert(backup: &Value, journal: &Journal) -> RevertPlan {
    let mut plan = RevertPlan::default();
    for change in &journal.changes {
        let current = get(backup, &change.field);
        if current == change.after {
            plan.restore
                .push((change.field.clone(), change.before.clone()));
        } else if current != change.before {
            plan.kept.push(change.field.clone());
        }
    }
    plan
}

/// Applies a revert plan.
pub fn apply_revert(backup: &mut Value, plan: &RevertPlan) {
    for (field, value) in &plan.restore {
        set(backup, field, value.clone());
    }
}

/// Why a failed-over cluster cannot move to another target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// Someone changed fields the failover wrote: the originals can no longer be derived
    /// exactly, and a human's edit must not be overwritten.
    #[error("fields the failover wrote were changed since: {0}")]
    EditedSince(String),
    /// No failover to the destination can be planned (not in the policy, nothing
    /// protected).
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Plans moving a cluster that `journal` failed over on to `to`, from its current `backup`:
/// the failover undone in memory gives the original settings, and `to` is planned against
/// those. Returns the `spec.backup` to write and the plan, whose changes hold the original
/// values as `before`, so the journal written with it reverts to the original exactly, as
/// if the cluster had failed over to `to` directly, however many moves came before.
///
/// # Errors
///
/// [`MoveError`] when fields were edited since the failover, or `to` cannot be planned.
pub fn plan_move(
    backup: &Value,
    journal: &Journal,
    policy: &FailoverPolicy,
    to: Destination,
) -> Result<(Value, FailoverPlan), MoveError> {
    let revert = plan_revert(backup, journal);
    if !revert.kept.is_empty() {
        let fields: Vec<String> = revert.kept.iter().map(|f| format!("{f:?}")).collect();
        return Err(MoveError::EditedSince(fields.join(", ")));
    }
    let mut original = backup.clone();
    apply_revert(&mut original, &revert);
    let plan = plan_failover(&original, policy, to)?;
    let mut moved = original;
    apply(&mut moved, &plan.changes);
    Ok((moved, plan))
}

#[cfg(test)]
mod tests;
