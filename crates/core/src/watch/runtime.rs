//! The watches: [informers](crate::k8s::informer) on PerconaXtraDBClusters, their backups and
//! the operator's backup Jobs (`percona.com/backup-type=xtrabackup`) feed the index, and are
//! handed on to the responder ([`Informers`]), so no kind is watched twice. A (re)list replaces everything the index holds for that watch's scope, so objects
//! deleted while a watch was down disappear; the readiness gate of each watch opens after its
//! first complete list.

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup};
use crate::runtime::readiness::{Gate, Readiness};
use k8s_openapi::api::batch::v1::Job;

use crate::k8s::informer::{Informer, Setup};
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

/// The informers the watches run on, for the other readers of the same kinds (the webhook's
/// cache and the reconciler): one per kind and scope.
#[derive(Debug, Clone, Default)]
pub struct Informers {
    /// PerconaXtraDBClusters, raw (as the responder reads and writes them), with a cache.
    pub clusters: Vec<Informer<DynamicObject>>,
    /// PerconaXtraDBClusterBackups, without a cache (the index keeps what it needs).
    pub backups: Vec<Informer<PerconaXtraDBClusterBackup>>,
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
) -> (Informers, Vec<tokio::task::JoinHandle<()>>) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    let mut informers = Informers::default();
    let mut tasks = Vec::new();
    let resource = ApiResource::erase::<PerconaXtraDBCluster>(&());
    for scope in scopes {
        // Clusters are watched raw, so the responder sees every field exactly; the index
        // reads them typed, converted once per change (clusters change rarely).
        let api: Api<DynamicObject> = match &scope {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let mut apply = indexer::<PerconaXtraDBCluster>(index, None, readiness, scope.as_deref());
        let (informer, task) = Informer::spawn(
            Setup {
                api,
                scope: scope.clone(),
                config: watcher::Config::default(),
                cache: Some(resource.clone()),
                hook: Box::new(move |event| {
                    if let Some(event) = typed_event(event) {
                        apply(&event);
                    }
                }),
            },
            shutdown,
        );
        informers.clusters.push(informer);
        tasks.push(task);
        let (informer, task) = spawn_typed::<PerconaXtraDBClusterBackup>(
            client,
            scope.clone(),
            index,
            recorder.clone(),
            readiness,
            shutdown,
        );
        informers.backups.push(informer);
        tasks.push(task);
        let (_, task) = spawn_typed::<Job>(client, scope, index, None, readiness, shutdown);
        tasks.push(task);
    }
    (informers, tasks)
}

/// The informer of a typed kind, feeding the index.
fn spawn_typed<K>(
    client: &kube::Client,
    scope: Option<String>,
    index: &SharedIndex,
    recorder: Option<Arc<CompletionRecorder>>,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> (Informer<K>, tokio::task::JoinHandle<()>)
where
    K: Indexed + Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    let api: Api<K> = match &scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut config = watcher::Config::default();
    if let Some(selector) = K::SELECTOR {
        config = config.labels(selector);
    }
    let apply = indexer::<K>(index, recorder, readiness, scope.as_deref());
    Informer::spawn(
        Setup {
            api,
            scope,
            config,
            cache: None,
            hook: Box::new(apply),
        },
        shutdown,
    )
}

/// The index's side of a watch: applies each event, and opens the watch's readiness gate
/// after its first complete list.
fn indexer<K: Indexed>(
    index: &SharedIndex,
    recorder: Option<Arc<CompletionRecorder>>,
    readiness: &Readiness,
    scope: Option<&str>,
) -> impl FnMut(&Event<K>) + Send + 'static {
    let gate = readiness.gate(&format!("watch:{}:{}", scope.unwrap_or("*"), K::WHAT));
    let index = index.clone();
    let scope = scope.map(str::to_owned);
    let mut epoch = Epoch::default();
    move |event| {
        if let Event::Apply(object) | Event::InitApply(object) = event {
            K::seen(object, recorder.as_ref());
        }
        apply(&index, &gate, scope.as_deref(), &mut epoch, event);
    }
}

/// A raw cluster's event as the index reads it. An object that does not parse as a cluster
/// is left out (and logged): the index cannot use it, and the watch goes on.
fn typed_event(event: &Event<DynamicObject>) -> Option<Event<PerconaXtraDBCluster>> {
    let typed = |object: &DynamicObject| -> Option<PerconaXtraDBCluster> {
        serde_json::to_value(object)
            .and_then(serde_json::from_value)
            .map_err(|e| {
                tracing::warn!(cluster = %object.name_any(), error = %e, "cluster not indexed: it does not parse");
            })
            .ok()
    };
    Some(match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::InitApply(object) => Event::InitApply(typed(object)?),
        Event::Apply(object) => Event::Apply(typed(object)?),
        Event::Delete(object) => Event::Delete(typed(object)?),
    })
}

fn apply<K: Indexed>(
    index: &SharedIndex,
    gate: &Gate,
    scope: Option<&str>,
    epoch: &mut Epoch,
    event: &Event<K>,
) {
    let mut index = index
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match event {
        // Objects are applied as they arrive and tagged with the list's epoch; buffering
        // them (or even their names) until InitDone would hold the whole list in memory.
        Event::Init => *epoch = epoch.next(),
        Event::InitApply(object) | Event::Apply(object) => K::upsert(&mut index, object, *epoch),
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
