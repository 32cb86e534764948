//! The alert-route check: the commonest first-outage failure of alert-driven remediation is
//! that Alertmanager never sends the alert (a matcher typo, a missing `continue: true`, a wrong
//! token file). Backstop's own prober sees the outage, so the leader compares: when a protected
//! storage of a managed cluster has failed every probe for longer than
//! `responder.route_check.after` and no notification about the cluster has arrived since, it
//! says so with the gauge `backstop_alert_route_silent`, a Warning Event `AlertNotReceived` on
//! the cluster (repeated every [`REPEAT_EVERY`] while it lasts, so `backstop status` finds one
//! within the API server's Event TTL), and a log line. When it ends, an Event says how:
//! `AlertReceived` (the notification came, late) or `AlertRouteUnproven` (the storage
//! recovered and no notification ever came).
//!
//! A notification "arrived" when the cluster's intent has a firing episode (which a failover by
//! hand has too), or any episode changed after the storage began failing. Paused clusters (the
//! webhook records nothing for them) and clusters not in the informers' cache are not
//! checked; a silence reported before is then dropped without an Event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::api::DynamicObject;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, ManagedCluster};
use crate::k8s::events::{EventSpec, EventType, emit_about};
use crate::probe::health::DownSince;

use super::cluster::{self, ClusterKey, is_paused, read_intent};
use super::intent::Intent;
use super::metrics::ResponderMetrics;
use super::webhook::{ClusterCache, protected_of};

/// How often a continuing silence is said again: well inside the API server's default Event
/// TTL (1h), so the newest Event always describes the present.
pub const REPEAT_EVERY: SignedDuration = SignedDuration::from_mins(30);

/// Event reasons, also read by `backstop status`.
pub mod reasons {
    /// The storage has failed for too long and no notification came.
    pub const NOT_RECEIVED: &str = "AlertNotReceived";
    /// A notification came after the check had said it was missing.
    pub const RECEIVED: &str = "AlertReceived";
    /// The storage recovered and no notification came for the whole outage.
    pub const UNPROVEN: &str = "AlertRouteUnproven";
}

/// What the check concludes about one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The cluster is paused or not (yet) in the cache.
    NotChecked,
    /// No protected storage is failing.
    Healthy,
    /// A notification arrived during the outage, or the cluster is already failing over.
    Notified,
    /// A protected storage is failing, not yet for `after`.
    Waiting,
    /// `storage` has failed since `down_since`, longer than `after`, and nothing arrived.
    Silent {
        /// The protected storage failing longest.
        storage: String,
        /// When its run of failed probes began.
        down_since: Timestamp,
    },
}

/// Judges one cluster from the protected storages that are failing (`down`: name and since
/// when) and its recorded intent.
pub fn judge(
    down: &[(String, Timestamp)],
    intent: &Intent,
    now: Timestamp,
    after: SignedDuration,
) -> Verdict {
    let Some((storage, since)) = down.iter().min_by_key(|(_, since)| *since) else {
        return Verdict::Healthy;
    };
    let arrived =
        intent.wants_failover() || intent.episodes.values().any(|e| e.updated_at >= *since);
    if arrived {
        Verdict::Notified
    } else if now.duration_since(*since) < after {
        Verdict::Waiting
    } else {
        Verdict::Silent {
            storage: storage.clone(),
            down_since: *since,
        }
    }
}

/// What the check needs, shared with the rest of the responder.
pub struct Parts {
    /// For Events.
    pub client: kube::Client,
    /// The clusters as the informers see them.
    pub cache: ClusterCache,
    /// The configuration (managed clusters, the setting, the probe interval).
    pub config: Arc<Config>,
    /// The prober's record of failing storages.
    pub down: Arc<DownSince>,
    /// Where the gauge lives.
    pub metrics: ResponderMetrics,
    /// The responder's clock.
    pub clock: Arc<dyn Clock>,
    /// Whether this replica leads; only the leader checks.
    pub leading: watch::Receiver<bool>,
}

/// A silence the check has reported and not yet seen end.
struct Reported {
    storage: String,
    down_since: Timestamp,
    said_at: Timestamp,
}

/// Runs the check every probe interval until `shutdown`.
pub fn spawn(parts: Parts, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = parts
            .config
            .probe
            .interval
            .get()
            .max(Duration::from_secs(1));
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reported: BTreeMap<ClusterKey, Reported> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if !*parts.leading.borrow() {
                // A follower says nothing; the new leader starts from what it sees.
                for key in std::mem::take(&mut reported).into_keys() {
                    parts
                        .metrics
                        .set_route_silent(&key.namespace, &key.name, false);
                }
                continue;
            }
            let managed = match parts.cache.managed(&parts.client, &parts.config).await {
                Ok(managed) => managed,
                Err(e) => {
                    tracing::warn!(error = %e, "alert-route check: listing the clusters failed; next round");
                    continue;
                }
            };
            for managed in &managed {
                check_one(&parts, managed, &mut reported).await;
            }
        }
    })
}

async fn check_one(
    parts: &Parts,
    managed: &ManagedCluster,
    reported: &mut BTreeMap<ClusterKey, Reported>,
) {
    let key = ClusterKey::of_managed(managed);
    let now = parts.clock.now();
    let object = parts.cache.get(&key);
    let verdict = match object.as_deref() {
        Some(object) if !is_paused(object) => {
            let down: Vec<(String, Timestamp)> = protected_of(object, managed)
                .into_iter()
                .filter_map(|p| {
                    let since = parts.down.of(&key.namespace, &key.name, &p.name)?;
                    Some((p.name, since))
                })
                .collect();
            judge(
                &down,
                &read_intent(object),
                now,
                SignedDuration::try_from(parts.config.responder.route_check.after.get())
                    .unwrap_or(SignedDuration::MAX),
            )
        }
        _ => Verdict::NotChecked,
    };
    let Some(object) = object.filter(|_| verdict != Verdict::NotChecked) else {
        reported.remove(&key);
        parts
            .metrics
            .set_route_silent(&key.namespace, &key.name, false);
        return;
    };
    match (verdict, reported.get_mut(&key)) {
        (
            Verdict::Silent {
                storage,
                down_since,
            },
            None,
        ) => {
            say_silent(parts, &object, &storage, down_since, now).await;
            parts
                .metrics
                .set_route_silent(&key.namespace, &key.name, true);
            reported.insert(
                key,
                Reported {
                    storage,
                    down_since,
                    said_at: now,
                },
            );
        }
        (
            Verdict::Silent {
                storage,
                down_since,
            },
            Some(earlier),
        ) => {
            if now.duration_since(earlier.said_at) >= REPEAT_EVERY {
                say_silent(parts, &object, &storage, down_since, now).await;
                earlier.said_at = now;
            }
        }
        (verdict, Some(_)) => {
            let Some(earlier) = reported.remove(&key) else {
                return;
            };
            parts
                .metrics
                .set_route_silent(&key.namespace, &key.name, false);
            let waited = now.duration_since(earlier.down_since);
            let (type_, reason, message) = if verdict == Verdict::Notified {
                (
                    EventType::Normal,
                    reasons::RECEIVED,
                    format!(
                        "a notification about the cluster arrived {} after storage {} began \
                         failing its probes; later than responder.route_check.after, so check \
                         the alert's `for`, group_wait and the route",
                        human(waited),
                        earlier.storage
                    ),
                )
            } else {
                (
                    EventType::Warning,
                    reasons::UNPROVEN,
                    format!(
                        "storage {} passes its probes again after {}, and no notification \
                         from Alertmanager arrived for the whole outage: the route to Backstop \
                         is still unproven",
                        earlier.storage,
                        human(waited)
                    ),
                )
            };
            say(parts, &object, type_, reason, message).await;
        }
        (_, None) => parts
            .metrics
            .set_route_silent(&key.namespace, &key.name, false),
    }
}

/// The Warning that a notification is missing (first said, or said again).
async fn say_silent(
    parts: &Parts,
    object: &DynamicObject,
    storage: &str,
    down_since: Timestamp,
    now: Timestamp,
) {
    let message = silent_message(storage, down_since, now, parts);
    say(
        parts,
        object,
        EventType::Warning,
        reasons::NOT_RECEIVED,
        message,
    )
    .await;
}

fn silent_message(storage: &str, down_since: Timestamp, now: Timestamp, parts: &Parts) -> String {
    format!(
        "storage {storage} has failed every probe since {} ({}), longer than \
         responder.route_check.after ({}), and no notification from Alertmanager has arrived: \
         check the route to Backstop (its matchers, `continue: true` on the routes before it), \
         the receiver's URL and its bearer token; docs/runbook.md#backstopalertroutesilent",
        down_since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        human(now.duration_since(down_since)),
        human(
            SignedDuration::try_from(parts.config.responder.route_check.after.get())
                .unwrap_or_default()
        ),
    )
}

/// A duration in whole seconds, as people read it (`4m 10s`).
fn human(d: SignedDuration) -> String {
    let seconds = SignedDuration::from_secs(d.as_secs());
    format!("{seconds:#}")
}

async fn say(
    parts: &Parts,
    object: &DynamicObject,
    type_: EventType,
    reason: &'static str,
    message: String,
) {
    match type_ {
        EventType::Normal => {
            tracing::info!(cluster = %kube::ResourceExt::name_any(object), reason, "{message}")
        }
        EventType::Warning => {
            tracing::warn!(cluster = %kube::ResourceExt::name_any(object), reason, "{message}")
        }
    }
    let spec = EventSpec {
        type_,
        reason,
        action: "CheckAlertRoute",
        message,
    };
    if let Err(e) = emit_about(&parts.client, cluster::reference(object), spec).await {
        tracing::warn!(error = %e, reason, "could not emit an Event");
    }
}

#[cfg(test)]
mod tests;
