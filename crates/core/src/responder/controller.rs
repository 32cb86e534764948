//! The reconciler: a kube-runtime Controller over the clusters' informers (shared with the
//! index and the webhook: no watch of its own) that calls the [`Engine`] whenever a cluster
//! changes (the webhook's intent annotation is such a
//! change), a backup a playbook created changes, the webhook pokes it (dry-run), or a step
//! asked to be looked at again. It runs only while this replica holds the leader Lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt as _, StreamExt as _};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::k8s::informer::Informer;
use crate::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup};
use crate::watch::runtime::Informers;

use super::cluster::ClusterKey;
use super::effect::RUN_LABEL;
use super::engine::{Engine, EngineError};
use crate::managed::Resolution;

/// How long after a failed step it is retried.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// An informer's scope: a namespace, or `None` for all of them.
type Scope = Option<String>;

/// Where the pokes for one scope's controller go.
type Poker = mpsc::UnboundedSender<ObjectRef<DynamicObject>>;

/// Pokes the running controller about a cluster; a no-op while this replica does not lead
/// (the next leader reconciles every cluster when it starts).
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    senders: Arc<Mutex<HashMap<Scope, Poker>>>,
}

impl Triggers {
    /// Asks for `key` to be reconciled soon.
    pub fn poke(&self, key: &ClusterKey) {
        let senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        // The scope of the cluster's namespace, or all namespaces.
        let sender = senders
            .get(&Some(key.namespace.clone()))
            .or_else(|| senders.get(&None));
        if let Some(tx) = sender {
            let _ = tx.unbounded_send(cluster_ref(key));
        }
    }
}

/// The controller's name for a cluster.
fn cluster_ref(key: &ClusterKey) -> ObjectRef<DynamicObject> {
    ObjectRef::new_with(&key.name, ApiResource::erase::<PerconaXtraDBCluster>(&()))
        .within(&key.namespace)
}

/// Runs the controllers while `leader` says so, until `shutdown`.
pub fn spawn(
    engine: Arc<Engine>,
    informers: Informers,
    mut leader: watch::Receiver<bool>,
    triggers: Triggers,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // One controller per informer scope: any cluster may opt in at any time, and one
        // that asks to while opt-in is off must hear so (OptInInvalid), never be skipped.
        let managed: Vec<ClusterKey> = engine
            .config()
            .clusters
            .iter()
            .map(ClusterKey::of_managed)
            .collect();
        let scopes: Vec<(
            Informer<DynamicObject>,
            Informer<PerconaXtraDBClusterBackup>,
        )> = informers
            .clusters
            .iter()
            .zip(&informers.backups)
            .map(|(c, b)| (c.clone(), b.clone()))
            .collect();
        loop {
            // Wait to lead.
            while !*leader.borrow_and_update() {
                tokio::select! {
                    changed = leader.changed() => if changed.is_err() { return },
                    () = shutdown.cancelled() => return,
                }
            }
            engine.metrics().set_leader(true);
            // Observations from an earlier term are stale: another replica led in between.
            engine.leadership_gained();
            tracing::info!("leading: running playbooks");
            let term = shutdown.child_token();
            let mut runs = Vec::new();
            for (clusters, backups) in &scopes {
                let (tx, rx) = mpsc::unbounded();
                // A new leader looks at every managed cluster once: the informers were
                // listed long ago, so nothing else would wake it.
                for key in managed.iter().filter(|k| clusters.covers(&k.namespace)) {
                    let _ = tx.unbounded_send(cluster_ref(key));
                }
                runs.push(tokio::spawn(poke_opted_in(
                    engine.clone(),
                    clusters.clone(),
                    tx.clone(),
                    term.clone(),
                )));
                triggers
                    .senders
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(clusters.scope().map(str::to_owned), tx);
                runs.push(tokio::spawn(run_scope(
                    engine.clone(),
                    clusters.clone(),
                    backups.clone(),
                    rx,
                    term.clone(),
                )));
            }
            // Lead until the Lease is lost or the process stops.
            loop {
                tokio::select! {
                    changed = leader.changed() => {
                        if changed.is_err() || !*leader.borrow() { break }
                    }
                    () = shutdown.cancelled() => break,
                }
            }
            term.cancel();
            triggers
                .senders
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            for run in runs {
                let _ = run.await;
            }
            engine.metrics().set_leader(false);
            tracing::info!("not leading: playbooks stopped");
            if shutdown.is_cancelled() {
                return;
            }
        }
    })
}

/// Once the scope's first list is in, pokes every cluster in it that opted in (or asks to
/// and cannot): like the clusters in `clusters[]`, a new leader looks at each once.
async fn poke_opted_in(
    engine: Arc<Engine>,
    clusters: Informer<DynamicObject>,
    tx: Poker,
    term: CancellationToken,
) {
    let Some(store) = clusters.store().cloned() else {
        return;
    };
    tokio::select! {
        ready = store.wait_until_ready() => if ready.is_err() { return },
        () = term.cancelled() => return,
    }
    for object in store.state() {
        if engine.resolution(&object) != Resolution::Unmanaged {
            let _ = tx.unbounded_send(cluster_ref(&ClusterKey::of(&object)));
        }
    }
}

async fn run_scope(
    engine: Arc<Engine>,
    clusters: Informer<DynamicObject>,
    backups: Informer<PerconaXtraDBClusterBackup>,
    pokes: mpsc::UnboundedReceiver<ObjectRef<DynamicObject>>,
    term: CancellationToken,
) {
    let Some(store) = clusters.store().cloned() else {
        tracing::error!("the clusters' informer keeps no cache; the reconciler cannot run");
        return;
    };
    let stop = term.clone();
    let resource = ApiResource::erase::<PerconaXtraDBCluster>(&());
    let run = Controller::for_shared_stream_with(clusters.subscribe(), store.clone(), resource)
        .watches_shared_stream(
            backups.subscribe(),
            |backup: Arc<PerconaXtraDBClusterBackup>| {
                // Only the backups a playbook created wake the reconciler.
                let ours = backup
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(RUN_LABEL));
                let ns = backup.metadata.namespace.as_deref().filter(|_| ours)?;
                Some(cluster_ref(&ClusterKey {
                    namespace: ns.to_owned(),
                    name: backup.spec.pxc_cluster.clone(),
                }))
            },
        )
        .reconcile_on(pokes)
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, engine)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile round ended with an error");
            }
        });
    let mut run = std::pin::pin!(run);
    tokio::select! {
        () = &mut run => return,
        () = term.cancelled() => {}
    }
    // A graceful shutdown lets a running step finish its write. But kube-runtime's runner
    // holds its queue until the first list is in, and never ends if shutdown comes first:
    // with no list there can be no step in flight, so there is nothing to wait for.
    if store.wait_until_ready().now_or_never().is_some() {
        run.await;
    }
}

async fn reconcile(
    cluster: Arc<DynamicObject>,
    engine: Arc<Engine>,
) -> Result<Action, EngineError> {
    let key = ClusterKey::of(&cluster);
    // Decided from the cached object first, so clusters nobody manages cost no request.
    if engine.resolution(&cluster) == Resolution::Unmanaged {
        engine
            .metrics()
            .set_opt_in_invalid(&key.namespace, &key.name, false);
        engine.report_unmanaged((*cluster).clone()).await?;
        return Ok(Action::await_change());
    }
    let outcome = engine.reconcile(&key).await?;
    tracing::debug!(cluster = %key, phase = ?outcome.phase, note = %outcome.note, "reconciled");
    Ok(match outcome.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

fn error_policy(cluster: Arc<DynamicObject>, error: &EngineError, _engine: Arc<Engine>) -> Action {
    tracing::warn!(
        cluster = %cluster.metadata.name.as_deref().unwrap_or_default(),
        error = %error,
        "playbook step failed; retrying"
    );
    Action::requeue(RETRY_AFTER_ERROR)
}
