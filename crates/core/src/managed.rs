//! Which clusters Backstop manages, and with which policy: those in the configuration's
//! `clusters[]`, and those that opt in themselves ([`OptInConfig`]): annotated
//! `backstop.percona.com/managed: "true"`, or matching `opt_in.label_selector`. An opted-in
//! cluster gets `opt_in.defaults`, overridden key by key by its annotations, checked by the
//! same schema and rules as a `clusters[]` entry. Where both speak, the configuration wins
//! and the annotations are reported as ignored. A cluster that asks to be managed but cannot
//! be (a bad annotation, opt-in by annotation turned off) is [`Resolution::Invalid`]: an
//! Event and a metric, never a silent skip.
//!
//! Pure: everything is decided from the configuration and the cluster's metadata, so the
//! reconciler, the webhook, the alert-route check, the prober and `backstop status` agree.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use kube::core::SelectorExt as _;
use serde_json::{Map, Value};

use crate::config::{self, Config, ManagedCluster, OptInConfig};

/// `"true"` opts the cluster in (when `opt_in.annotation` is on); `"false"` keeps it out
/// even when the label selector matches.
pub const MANAGED_ANNOTATION: &str = "backstop.percona.com/managed";
/// Overrides of `opt_in.defaults`, a JSON or YAML mapping of policy keys; each key given
/// replaces the default's whole key.
pub const FAILOVER_ANNOTATION: &str = "backstop.percona.com/failover";
/// Shorthand for the policy's `strategy`.
pub const STRATEGY_ANNOTATION: &str = "backstop.percona.com/strategy";
/// Shorthand for the policy's `storage` (the storage to protect).
pub const STORAGE_ANNOTATION: &str = "backstop.percona.com/storage";

/// The annotations this module reads, with the policy key each shorthand sets.
const SHORTHANDS: [(&str, &str); 2] = [
    (STRATEGY_ANNOTATION, "strategy"),
    (STORAGE_ANNOTATION, "storage"),
];

/// How a cluster came to be managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Listed in `clusters[]`.
    Config,
    /// Annotated `backstop.percona.com/managed: "true"`.
    Annotation,
    /// Matched `opt_in.label_selector`.
    LabelSelector,
}

impl Source {
    /// How `backstop status` and the logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "configuration (clusters[])",
            Self::Annotation => "annotation",
            Self::LabelSelector => "label selector",
        }
    }
}

/// A managed cluster and how it came to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    /// Its policy.
    pub cluster: ManagedCluster,
    /// Where the policy came from.
    pub source: Source,
    /// Opt-in annotations on a cluster the configuration lists: ignored, because the
    /// configuration wins.
    pub ignored: Vec<String>,
}

/// What Backstop makes of one cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Observed only.
    Unmanaged,
    /// Managed, with this policy.
    Managed(Box<Managed>),
    /// It asks to be managed, but cannot be: each problem, for an Event and a metric.
    Invalid(Vec<String>),
}

impl Resolution {
    /// The policy, when managed.
    pub fn managed(&self) -> Option<&Managed> {
        match self {
            Self::Managed(m) => Some(m),
            _ => None,
        }
    }
}

/// What Backstop makes of the cluster `object`.
pub fn resolve_object(config: &Config, object: &DynamicObject) -> Resolution {
    let empty = BTreeMap::new();
    resolve(
        config,
        object.metadata.namespace.as_deref().unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default(),
        object.metadata.labels.as_ref().unwrap_or(&empty),
        object.metadata.annotations.as_ref().unwrap_or(&empty),
    )
}

/// What Backstop makes of the cluster `namespace/name` with these labels and annotations.
pub fn resolve(
    config: &Config,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Resolution {
    if let Some(listed) = config
        .clusters
        .iter()
        .find(|c| c.namespace == namespace && c.name == name)
    {
        let ignored = [MANAGED_ANNOTATION, FAILOVER_ANNOTATION]
            .into_iter()
            .chain(SHORTHANDS.map(|(a, _)| a))
            .filter(|a| annotations.contains_key(*a))
            .map(str::to_owned)
            .collect();
        return Resolution::Managed(Box::new(Managed {
            cluster: listed.clone(),
            source: Source::Config,
            ignored,
        }));
    }
    let opt_in = &config.opt_in;
    let asked = match annotations.get(MANAGED_ANNOTATION).map(|v| v.trim()) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Resolution::Invalid(vec![format!(
                "annotation {MANAGED_ANNOTATION}: {other:?} is neither \"true\" nor \"false\""
            )]);
        }
    };
    let selected = opt_in.selector().is_some_and(|s| s.matches(labels));
    let source = match asked {
        Some(true) if opt_in.annotation => Source::Annotation,
        Some(false) => return Resolution::Unmanaged,
        _ if selected => Source::LabelSelector,
        Some(true) => {
            return Resolution::Invalid(vec![format!(
                "annotation {MANAGED_ANNOTATION}: \"true\", but opt-in by annotation is off in \
                 Backstop's configuration (opt_in.annotation); nothing will change this cluster"
            )]);
        }
        None => return Resolution::Unmanaged,
    };
    match policy(config, opt_in, namespace, name, annotations) {
        Ok(cluster) => Resolution::Managed(Box::new(Managed {
            cluster,
            source,
            ignored: Vec::new(),
        })),
        Err(problems) => Resolution::Invalid(problems),
    }
}

/// The defaults with the annotations' overrides, checked.
fn policy(
    config: &Config,
    opt_in: &OptInConfig,
    namespace: &str,
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<ManagedCluster, Vec<String>> {
    let mut merged = match serde_json::to_value(&opt_in.defaults) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut problems = Vec::new();
    let mut overridden = Vec::new();
    if let Some(text) = annotations.get(FAILOVER_ANNOTATION) {
        // YAML reads JSON too.
        match serde_yaml_ng::from_str::<Value>(text) {
            Ok(Value::Object(overrides)) => {
                for (key, value) in overrides {
                    overridden.push(key.clone());
                    merged.insert(key, value);
                }
            }
            Ok(other) => problems.push(format!(
                "annotation {FAILOVER_ANNOTATION}: expected a mapping of policy keys, got {}",
                kind(&other)
            )),
            Err(e) => problems.push(format!("annotation {FAILOVER_ANNOTATION}: {e}")),
        }
    }
    for (annotation, key) in SHORTHANDS {
        let Some(value) = annotations.get(annotation) else {
            continue;
        };
        if overridden.iter().any(|k| k == key) {
            problems.push(format!(
                "annotation {annotation}: {key:?} is set in {FAILOVER_ANNOTATION} too; set it once"
            ));
        } else {
            merged.insert(key.to_owned(), Value::String(value.trim().to_owned()));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    config::load_opt_in_policy(config, namespace, name, Value::Object(merged)).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("opt-in policy (opt_in.defaults and annotations): {e}"))
            .collect()
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests;
