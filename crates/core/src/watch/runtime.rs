//! The watch tasks: kube-runtime watchers on PerconaXtraDBClusters, their backups and the
//! operator's backup Jobs (`percona.com/backup-type=xtrabackup`) feed the index. A (re)list replaces everything the index holds for that watch's scope, so objects
//! deleted while a watch was down disappear; the readiness gate of each watch opens after its
//! first complete list.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup};
use crate::readiness::{Gate, Readiness};
use k8s_openapi::api::batch::v1::Job;

use crate::watch::collector::SharedIndex;
use crate::watch::completions::CompletionRecorder;
use crate::watch::index::{BackupIndex, Epoch};

/// How one kind of object is applied to the index.
trait Indexed: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static {
    const WHAT: &'static str;
    /// A label selector limiting the watch (the operator's backup Jobs only).
    const SELECTOR: Option<&'static str> = None;
    fn upsert(index: &mut BackupIndex, object: &Self, seen: Epoch);
    fn remove(index: &mut BackupIndex, namespace: &str, name: &str);
    /// Forgets objects of `scope` the list of `epoch` did not deliver.
    fn sweep(index: &mut BackupIndex, scope: Option<&str>, epoch: Epoch);
    /// Hook for objects seen (listed or changed); backups offer themselves to the recorder.
    fn seen(_object: &Self, _recorder: Option<&Arc<CompletionRecorder>>) {}
}

impl Indexed for PerconaXtraDBCluster {
    const WHAT: &'static str = "clusters";
    fn upsert(index: &mut BackupIndex, object: &Self, seen: Epoch) {
        index.upsert_cluster(object, seen);
    }
    fn remove(index: &mut BackupIndex, namespace: &str, name: &str) {
        index.remove_cluster(namespace, name);
    }
    fn sweep(index: &mut BackupIndex, scope: Option<&str>, epoch: Epoch) {
        index.sweep_clusters(scope, epoch);
    }
}

impl Indexed for PerconaXtraDBClusterBackup {
    const WHAT: &'static str = "backups";
    fn upsert(index: &mut BackupIndex, object: &Self, seen: Epoch) {
        index.upsert_backup(object, seen);
    }
    fn remove(index: &mut BackupIndex, namespace: &str, name: &str) {
        index.remove_backup(namespace, name);
    }
    fn sweep(index: &mut BackupIndex, scope: Option<&str>, epoch: Epoch) {
        index.sweep_backups(scope, epoch);
    }
    fn seen(object: &Self, recorder: Option<&Arc<CompletionRecorder>>) {
        if let Some(recorder) = recorder {
            recorder.offer(object);
        }
    }
}

impl Indexed for Job {
    const WHAT: &'static str = "jobs";
    const SELECTOR: Option<&'static str> = Some("percona.com/backup-type=xtrabackup");
    fn upsert(index: &mut BackupIndex, object: &Self, seen: Epoch) {
        index.upsert_job(object, seen);
    }
    fn remove(index: &mut BackupIndex, namespace: &str, name: &str) {
        index.remove_job(namespace, name);
    }
    fn sweep(index: &mut BackupIndex, scope: Option<&str>, epoch: Epoch) {
        index.sweep_jobs(scope, epoch);
    }
}

/// Starts the watches for `namespaces` (all namespaces when empty); each registers a closed
/// readiness gate and opens it once its first list is in the index.
pub fn spawn(
    client: &kube::Client,
    namespaces: &[String],
    index: &SharedIndex,
    recorder: Option<Arc<CompletionRecorder>>,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    let mut tasks = Vec::new();
    for scope in scopes {
        tasks.push(watch::<PerconaXtraDBCluster>(
            client,
            scope.clone(),
            index,
            None,
            readiness,
            shutdown,
        ));
        tasks.push(watch::<PerconaXtraDBClusterBackup>(
            client,
            scope.clone(),
            index,
            recorder.clone(),
            readiness,
            shutdown,
        ));
        tasks.push(watch::<Job>(
            client, scope, index, None, readiness, shutdown,
        ));
    }
    tasks
}

fn watch<K>(
    client: &kube::Client,
    scope: Option<String>,
    index: &SharedIndex,
    recorder: Option<Arc<CompletionRecorder>>,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    K: Indexed + Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    let api: Api<K> = match &scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let gate = readiness.gate(&format!(
        "watch:{}:{}",
        scope.as_deref().unwrap_or("*"),
        K::WHAT
    ));
    let index = index.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut config = watcher::Config::default();
        if let Some(selector) = K::SELECTOR {
            config = config.labels(selector);
        }
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let mut epoch = Epoch::default();
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = shutdown.cancelled() => return,
            };
            match event {
                None => return,
                Some(Err(e)) => tracing::warn!(what = K::WHAT, error = %e, "watch error; retrying"),
                Some(Ok(event)) => {
                    if let Event::Apply(object) | Event::InitApply(object) = &event {
                        K::seen(object, recorder.as_ref());
                    }
                    apply(&index, &gate, scope.as_deref(), &mut epoch, event);
                }
            }
        }
    })
}

fn apply<K: Indexed>(
    index: &SharedIndex,
    gate: &Gate,
    scope: Option<&str>,
    epoch: &mut Epoch,
    event: Event<K>,
) {
    let mut index = index
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match event {
        // Objects are applied as they arrive and tagged with the list's epoch; buffering
        // them (or even their names) until InitDone would hold the whole list in memory.
        Event::Init => *epoch = epoch.next(),
        Event::InitApply(object) | Event::Apply(object) => K::upsert(&mut index, &object, *epoch),
        Event::InitDone => {
            K::sweep(&mut index, scope, *epoch);
            gate.open();
        }
        Event::Delete(object) => {
            K::remove(
                &mut index,
                &object.namespace().unwrap_or_default(),
                &object.name_any(),
            );
        }
    }
}
