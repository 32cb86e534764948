//! The reconciler: a kube-runtime Controller over the managed clusters' namespaces that calls
//! the [`Engine`] whenever a cluster changes (the webhook's intent annotation is such a
//! change), a backup a playbook created changes, the webhook pokes it (dry-run), or a step
//! asked to be looked at again. It runs only while this replica holds the leader Lease.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt as _, StreamExt as _};
use kube::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup};

use super::cluster::ClusterKey;
use super::effect::RUN_LABEL;
use super::engine::{Engine, EngineError};

/// How long after a failed step it is retried.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// Pokes the running controller about a cluster; a no-op while this replica does not lead
/// (the next leader reconciles every cluster when it starts).
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    senders: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<ObjectRef<PerconaXtraDBCluster>>>>>,
}

impl Triggers {
    /// Asks for `key` to be reconciled soon.
    pub fn poke(&self, key: &ClusterKey) {
        let senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = senders.get(&key.namespace) {
            let _ = tx.unbounded_send(ObjectRef::new(&key.name).within(&key.namespace));
        }
    }
}

/// Runs the controllers while `leader` says so, until `shutdown`.
pub fn spawn(
    engine: Arc<Engine>,
    mut leader: watch::Receiver<bool>,
    triggers: Triggers,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let namespaces: BTreeSet<String> = engine
            .config()
            .clusters
            .iter()
            .map(|c| c.namespace.clone())
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
            for ns in &namespaces {
                let (tx, rx) = mpsc::unbounded();
                triggers
                    .senders
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(ns.clone(), tx);
                runs.push(tokio::spawn(run_namespace(
                    engine.clone(),
                    ns.clone(),
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

async fn run_namespace(
    engine: Arc<Engine>,
    namespace: String,
    pokes: mpsc::UnboundedReceiver<ObjectRef<PerconaXtraDBCluster>>,
    term: CancellationToken,
) {
    let client = engine.client().clone();
    let clusters: Api<PerconaXtraDBCluster> = Api::namespaced(client.clone(), &namespace);
    let backups: Api<PerconaXtraDBClusterBackup> = Api::namespaced(client, &namespace);
    let stop = term.clone();
    let controller = Controller::new(clusters, watcher::Config::default());
    let store = controller.store();
    let run = controller
        .watches(
            backups,
            watcher::Config::default().labels(RUN_LABEL),
            |backup: PerconaXtraDBClusterBackup| {
                let ns = backup.metadata.namespace.clone()?;
                Some(ObjectRef::new(&backup.spec.pxc_cluster).within(&ns))
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
    cluster: Arc<PerconaXtraDBCluster>,
    engine: Arc<Engine>,
) -> Result<Action, EngineError> {
    let key = ClusterKey {
        namespace: cluster.metadata.namespace.clone().unwrap_or_default(),
        name: cluster.metadata.name.clone().unwrap_or_default(),
    };
    if engine.managed(&key).is_none() {
        return Ok(Action::await_change());
    }
    let outcome = engine.reconcile(&key).await?;
    tracing::debug!(cluster = %key, phase = ?outcome.phase, note = %outcome.note, "reconciled");
    Ok(match outcome.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

fn error_policy(
    cluster: Arc<PerconaXtraDBCluster>,
    error: &EngineError,
    _engine: Arc<Engine>,
) -> Action {
    tracing::warn!(
        cluster = %cluster.metadata.name.as_deref().unwrap_or_default(),
        error = %error,
        "playbook step failed; retrying"
    );
    Action::requeue(RETRY_AFTER_ERROR)
}
