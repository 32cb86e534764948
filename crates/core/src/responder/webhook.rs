//! `POST /alertmanager`: authenticates, parses, routes, and records each affected cluster's
//! intent on the cluster, then answers. It never runs a playbook itself: 2xx means "recorded",
//! and the reconciler does the rest. Alertmanager retries 5xx and never 4xx, so 5xx is used
//! only when an intent could not be recorded (the retry is safe: recording is idempotent).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt as _;
use kube::ResourceExt as _;
use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;

use crate::k8s::informer::Informer;

use crate::pxc::PerconaXtraDBCluster;
use serde_json::{Value, json};

use crate::config::{Config, ManagedCluster};

use super::alertmanager::{self, AlertStatus, Notification};
use super::applier::{RecordError, Recorded};
use super::auth::Authenticator;
use super::cluster::{ClusterKey, cluster_api, read_intent, read_journal};
use super::controller::Triggers;
use super::engine::Engine;
use super::intent::Intent;
use super::journal::Phase;
use super::plan;
use super::routing::{self, ProtectedStorage};
use crate::managed::{self as opt_in, Resolution, Source};

/// What the webhook handler needs.
#[derive(Debug)]
pub struct Webhook {
    auth: Authenticator,
    engine: Arc<Engine>,
    triggers: Triggers,
    cache: ClusterCache,
    derived: DerivedMemo,
}

/// What routing and the repeat check read from a cluster object: its protected storages and
/// its recorded intent.
#[derive(Debug)]
struct Derived {
    protected: Vec<ProtectedStorage>,
    intent: Intent,
}

/// Each cluster's [`Derived`] as last read from the cached object, with that object: a
/// repeat notification meets the same object (the watch replaces it on every change), so the
/// journal, storages and intent annotation are parsed once per change, not once per request.
#[derive(Debug, Default)]
struct DerivedMemo(Mutex<HashMap<ClusterKey, Remembered>>);

/// A cached object and what was derived from it.
type Remembered = (Arc<DynamicObject>, Arc<Derived>);

impl DerivedMemo {
    fn of(
        &self,
        key: &ClusterKey,
        object: &Arc<DynamicObject>,
        managed: &ManagedCluster,
    ) -> Arc<Derived> {
        let mut memo = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, derived)) = memo.get(key)
            && Arc::ptr_eq(seen, object)
        {
            return Arc::clone(derived);
        }
        let derived = Arc::new(Derived {
            protected: protected_of(object, managed),
            intent: read_intent(object),
        });
        memo.insert(key.clone(), (Arc::clone(object), Arc::clone(&derived)));
        derived
    }
}

/// The clusters as the informers last saw them, on every replica: routing and the check for
/// repeats read them instead of asking the API server on every notification.
#[derive(Clone, Default)]
pub struct ClusterCache {
    informers: Vec<Informer<DynamicObject>>,
    /// The clusters' resource, built once rather than per lookup (the request path).
    resource: Option<kube::api::ApiResource>,
}

impl std::fmt::Debug for ClusterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCache")
            .field("informers", &self.informers)
            .finish()
    }
}

impl ClusterCache {
    /// Reads the clusters' informers (shared with the index and the reconciler).
    pub fn new(informers: &[Informer<DynamicObject>]) -> Self {
        Self {
            informers: informers.to_vec(),
            resource: Some(kube::api::ApiResource::erase::<PerconaXtraDBCluster>(&())),
        }
    }

    /// Every managed cluster's policy: those in `clusters[]`, and (with opt-in on) every
    /// cluster that opted in, from the cache, or from the API server for a scope whose first
    /// list is not in yet (so an alert at startup is not lost for them).
    ///
    /// # Errors
    ///
    /// The Kubernetes error when a scope must be listed and cannot be.
    pub async fn managed(
        &self,
        client: &kube::Client,
        config: &Config,
    ) -> Result<Vec<ManagedCluster>, kube::Error> {
        let mut all = config.clusters.clone();
        if !config.opt_in.enabled() {
            return Ok(all);
        }
        let mut objects: Vec<Arc<DynamicObject>> = Vec::new();
        for informer in &self.informers {
            let synced = informer.store().filter(|store| {
                store
                    .wait_until_ready()
                    .now_or_never()
                    .is_some_and(|r| r.is_ok())
            });
            match synced {
                Some(store) => objects.extend(store.state()),
                None => {
                    let listed = super::cluster::list_clusters(client, &[informer.scope()]).await?;
                    objects.extend(listed.into_iter().map(Arc::new));
                }
            }
        }
        for object in objects {
            if let Resolution::Managed(m) = opt_in::resolve_object(config, &object)
                && m.source != Source::Config
            {
                all.push(m.cluster);
            }
        }
        Ok(all)
    }

    /// The cached cluster as raw JSON, once its scope's first list is in.
    pub fn get(&self, key: &ClusterKey) -> Option<Arc<DynamicObject>> {
        let store = self
            .informers
            .iter()
            .find(|i| i.covers(&key.namespace))?
            .store()?;
        let resource = self.resource.clone()?;
        store.get(&ObjectRef::new_with(&key.name, resource).within(&key.namespace))
    }
}

/// One observation of an alert episode for a cluster.
#[derive(Debug, Clone)]
struct Observation {
    key: String,
    alertname: String,
    starts_at: jiff::Timestamp,
    status: AlertStatus,
}

impl Webhook {
    /// Builds the handler state.
    pub fn new(
        auth: Authenticator,
        engine: Arc<Engine>,
        triggers: Triggers,
        cache: ClusterCache,
    ) -> Self {
        Self {
            auth,
            engine,
            triggers,
            cache,
            derived: DerivedMemo::default(),
        }
    }

    /// Handles one request.
    pub async fn handle(&self, headers: &HeaderMap, body: &Bytes) -> Response {
        let response = self.answer(headers, body).await;
        self.engine
            .metrics()
            .webhook_request(response.status().as_u16());
        response
    }

    async fn answer(&self, headers: &HeaderMap, body: &Bytes) -> Response {
        let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if !self.auth.allows(authorization) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"backstop\"")],
                axum::Json(json!({"error": "missing or wrong credentials"})),
            )
                .into_response();
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return bad_request(format!(
                "content type must be application/json, got {content_type:?}"
            ));
        }
        let notification = match alertmanager::parse(body) {
            Ok(n) => n,
            Err(e) => return bad_request(e.to_string()),
        };
        match self.record(&notification).await {
            Ok(summary) => (StatusCode::OK, axum::Json(summary)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "could not record an intent; Alertmanager will retry");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"error": format!("could not record the intent: {e}")})),
                )
                    .into_response()
            }
        }
    }

    /// Routes the alerts and records each affected cluster's intent.
    async fn record(&self, notification: &Notification) -> Result<Value, RecordError> {
        let routes = &self.engine.config().responder.routes;
        let mut per_cluster: BTreeMap<ClusterKey, Vec<Observation>> = BTreeMap::new();
        let mut unrouted = 0;
        let mut objects = BTreeMap::new();
        // Which clusters are managed, worked out once per notification.
        let mut managed_clusters: Option<Vec<ManagedCluster>> = None;
        for alert in &notification.alerts {
            let routed = routing::route(routes, alert).is_some();
            self.engine
                .metrics()
                .webhook_alert(alert.status.as_str(), routed);
            if !routed {
                unrouted += 1;
                // Label values are arbitrary text: `&str` fields are written escaped (Debug), so
                // a control character cannot forge a log line; `%` would write it raw.
                tracing::info!(
                    alertname = alert.name(),
                    fingerprint = alert.fingerprint.as_str(),
                    "alert matches no route; ignored"
                );
                continue;
            }
            if managed_clusters.is_none() {
                managed_clusters = Some(
                    self.cache
                        .managed(self.engine.client(), self.engine.config())
                        .await?,
                );
            }
            for managed in managed_clusters.iter().flatten() {
                let key = ClusterKey::of_managed(managed);
                if !objects.contains_key(&key) {
                    // The watch-fed cache answers routing; before it has synced, the API does.
                    let object = match self.cache.get(&key) {
                        Some(cached) => Some(cached),
                        None => cluster_api(self.engine.client(), &key.namespace)
                            .get_opt(&key.name)
                            .await?
                            .map(Arc::new),
                    };
                    let derived = object.map(|object| self.derived.of(&key, &object, managed));
                    objects.insert(key.clone(), derived);
                }
                let Some(Some(derived)) = objects.get(&key) else {
                    continue;
                };
                if routing::affects(&alert.labels, &key.namespace, &key.name, &derived.protected) {
                    per_cluster.entry(key).or_default().push(Observation {
                        key: alert.fingerprint.clone(),
                        alertname: alert.name().to_owned(),
                        starts_at: alert.starts_at,
                        status: alert.status,
                    });
                }
            }
        }
        if notification.truncated_alerts > 0 {
            // The alerts left out are not seen here; Alertmanager sends them again with the
            // group's next notification if they still fire.
            tracing::info!(
                truncated = notification.truncated_alerts,
                "Alertmanager truncated the notification (max_alerts)"
            );
        }
        let mut recorded = Vec::new();
        for (key, observations) in &per_cluster {
            let cached = objects
                .get(key)
                .and_then(Option::as_deref)
                .map(|d| &d.intent);
            // Only a change needs the reconciler: an unchanged intent was already seen
            // through the watch, and a poke per repeat would run a reconcile per request
            // under a storm of duplicates.
            if self.record_cluster(key, observations, cached).await? {
                recorded.push(key.to_string());
                self.triggers.poke(key);
            }
        }
        Ok(json!({
            "status": "recorded",
            "alerts": notification.alerts.len(),
            "unrouted": unrouted,
            "truncatedAlerts": notification.truncated_alerts,
            "clusters": per_cluster.keys().map(ToString::to_string).collect::<Vec<_>>(),
            "changed": recorded,
        }))
    }

    /// Merges the observations into one cluster's intent; `true` when it changed.
    async fn record_cluster(
        &self,
        key: &ClusterKey,
        observations: &[Observation],
        cached: Option<&Intent>,
    ) -> Result<bool, RecordError> {
        let now = self.engine.now();
        let merge = |intent: &mut Intent| {
            let mut changed = false;
            for o in observations {
                changed |= intent.observe(&o.key, &o.alertname, o.starts_at, o.status, now);
            }
            if changed {
                intent.prune(now);
            }
            changed
        };
        // A repeat (the common case: repeat_interval, HA Alertmanagers, several replicas)
        // changes nothing; the cached copy proves it without a request. The cache only learns
        // of episodes from writes that happened, so it can lag but never claim too much.
        if let Some(cached) = cached
            && !observations
                .iter()
                .any(|o| cached.would_change(&o.key, o.starts_at, o.status))
        {
            return Ok(false);
        }
        match self.engine.record_intent(key, merge).await? {
            Recorded::Changed => Ok(true),
            Recorded::Paused => {
                tracing::info!(cluster = %key, "paused; intent not recorded");
                Ok(false)
            }
            Recorded::Unchanged | Recorded::Missing => Ok(false),
        }
    }
}

/// The storages an alert about the cluster may name: the ones a failover protects, with their
/// original S3 settings (from the journal while failed over, since `in-place` rewrote them).
pub fn protected_of(
    object: &kube::api::DynamicObject,
    managed: &ManagedCluster,
) -> Vec<ProtectedStorage> {
    const NULL: Value = Value::Null;
    let backup = object
        .data
        .get("spec")
        .and_then(|s| s.get("backup"))
        .unwrap_or(&NULL);
    // Only a failed-over journal changes the answer; most notifications meet a cluster on its
    // primary, so the journal is parsed only when it can matter.
    let failed_over = object
        .annotations()
        .get(super::journal::JOURNAL_ANNOTATION)
        .is_some_and(|text| text.contains(Phase::FailedOver.as_str()));
    let journal = failed_over
        .then(|| read_journal(object).ok().flatten())
        .flatten()
        .filter(|j| j.phase.is_failed_over());
    let names = match &journal {
        Some(j) => j.protected.clone(),
        None => plan::protected_storages(backup, &managed.failover),
    };
    names
        .iter()
        .map(|name| {
            let original = journal.as_ref().and_then(|j| j.original_storage(name));
            let current = backup.get("storages").and_then(|s| s.get(name));
            ProtectedStorage::from_definition(name, original.or(current).unwrap_or(&NULL))
        })
        .collect()
}

fn bad_request(message: String) -> Response {
    // The message can quote the body (serde names the unexpected value): log it escaped, in
    // a field not called `message` (that one is written raw).
    tracing::info!(reason = message.as_str(), "webhook request refused");
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": message})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responder::intent::INTENT_ANNOTATION;

    fn cluster(intent: &str) -> Arc<DynamicObject> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "pxc.percona.com/v1",
                "kind": "PerconaXtraDBCluster",
                "metadata": {
                    "name": "c",
                    "namespace": "ns",
                    "annotations": {INTENT_ANNOTATION: intent},
                },
                "spec": {"backup": {
                    "schedule": [{"name": "daily", "schedule": "0 0 * * *", "storageName": "s3-main"}],
                    "storages": {"s3-main": {"type": "s3", "s3": {"bucket": "pxc-backups/x", "region": "eu-west-1"}}},
                }},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn the_memo_reads_each_object_once_and_follows_replacements() {
        let managed: ManagedCluster = serde_json::from_value(json!({
            "namespace": "ns", "name": "c", "failover": {},
        }))
        .unwrap();
        let key = ClusterKey {
            namespace: "ns".into(),
            name: "c".into(),
        };
        let mut firing = Intent::default();
        let start = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        firing.observe(
            "f1",
            "S3BackupTargetUnavailable",
            start,
            AlertStatus::Firing,
            start,
        );

        let memo = DerivedMemo::default();
        let first = cluster(&Intent::default().render());
        let derived = memo.of(&key, &first, &managed);
        assert_eq!(derived.protected.len(), 1);
        assert_eq!(derived.protected[0].bucket, "pxc-backups");
        assert!(
            derived
                .intent
                .would_change("f1", start, AlertStatus::Firing)
        );
        // The same object again: the same reading, not a new parse.
        assert!(Arc::ptr_eq(&derived, &memo.of(&key, &first, &managed)));

        // The watch replaced the object (the intent was recorded): read afresh.
        let second = cluster(&firing.render());
        let derived = memo.of(&key, &second, &managed);
        assert!(
            !derived
                .intent
                .would_change("f1", start, AlertStatus::Firing)
        );
        assert!(
            derived
                .intent
                .would_change("f1", start, AlertStatus::Resolved)
        );
    }
}
