//! One watch per kind and scope, shared by everyone who reads that kind.
//!
//! An [`Informer`] runs a kube-runtime watcher (with backoff) for one kind in one scope (a
//! namespace, or all of them). Each event goes, in order, to the informer's reflector
//! [`Store`] (when it keeps one), to the hook its owner gave it (the backup index applies
//! lists, changes and deletes there), and, for objects that were listed or changed, to every
//! subscriber ([`Informer::subscribe`]): the reconciler's trigger streams. So each kind costs
//! one watch connection and at most one cache, however many parts of Backstop read it.
//!
//! Subscribers get a bounded channel and must keep up: one that falls behind is told to look
//! at everything again (every cached object is sent to it once more) rather than holding the
//! watch back, so a slow reconciler never delays the index or readiness.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Objects a subscriber may fall behind by before it is sent everything again.
const SUBSCRIBER_BUFFER: usize = 1024;

/// What the informer's owner does with each event, after the store saw it.
pub type Hook<K> = Box<dyn FnMut(&Event<K>) + Send>;

/// One kind in one scope, watched once (see the module doc).
pub struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    scope: Option<String>,
    store: Option<Store<K>>,
    changes: broadcast::Sender<Arc<K>>,
}

impl<K> Clone for Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Self {
            scope: self.scope.clone(),
            store: self.store.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl<K> Debug for Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("scope", &self.scope)
            .field("cached", &self.store.as_ref().map(Store::len))
            .field("subscribers", &self.changes.receiver_count())
            .finish()
    }
}

/// How an informer is set up.
pub struct Setup<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// The API to watch (its namespace is the scope).
    pub api: Api<K>,
    /// The scope, for logs and for finding the informer of a namespace.
    pub scope: Option<String>,
    /// The watch's configuration (a label selector, say).
    pub config: watcher::Config,
    /// Whether to keep a reflector store (`None`: no cache; only the hook and subscribers
    /// see the objects). The type's dynamic type, for the store.
    pub cache: Option<K::DynamicType>,
    /// What the owner does with each event.
    pub hook: Hook<K>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    /// Starts watching; the task ends at `shutdown`.
    pub fn spawn(
        setup: Setup<K>,
        shutdown: &CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let Setup {
            api,
            scope,
            config,
            cache,
            mut hook,
        } = setup;
        let (changes, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let (store, mut writer) = match cache {
            Some(dyntype) => {
                let writer = reflector::store::Writer::new(dyntype);
                (Some(writer.as_reader()), Some(writer))
            }
            None => (None, None),
        };
        let informer = Self {
            scope: scope.clone(),
            store,
            changes: changes.clone(),
        };
        let shutdown = shutdown.clone();
        let what = std::any::type_name::<K>();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, config).default_backoff().boxed();
            loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    () = shutdown.cancelled() => return,
                };
                match event {
                    None => return,
                    Some(Err(e)) => {
                        tracing::warn!(what, scope = ?scope, error = %e, "watch error; retrying");
                    }
                    Some(Ok(event)) => {
                        if let Some(writer) = writer.as_mut() {
                            writer.apply_watcher_event(&event);
                        }
                        hook(&event);
                        // Most of the time nobody subscribes (the reconciler runs only
                        // while leading; Jobs never have subscribers): no allocation then.
                        if changes.receiver_count() > 0
                            && let Event::Apply(object) | Event::InitApply(object) = event
                        {
                            let _ = changes.send(Arc::new(object));
                        }
                    }
                }
            }
        });
        (informer, task)
    }

    /// The scope: a namespace, or `None` for all of them.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Whether this informer sees objects of `namespace`.
    pub fn covers(&self, namespace: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| s == namespace)
    }

    /// The cache, if this informer keeps one.
    pub fn store(&self) -> Option<&Store<K>> {
        self.store.as_ref()
    }

    /// The objects listed or changed from now on. A subscriber that falls more than
    /// [`SUBSCRIBER_BUFFER`] objects behind gets every cached object again instead of the
    /// ones it missed (nothing, without a cache; the loss is logged).
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let receiver = self.changes.subscribe();
        let store = self.store.clone();
        futures::stream::unfold(receiver, move |mut receiver| {
            let store = store.clone();
            async move {
                loop {
                    match receiver.recv().await {
                        Ok(object) => return Some((vec![object], receiver)),
                        Err(broadcast::error::RecvError::Closed) => return None,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(
                                missed,
                                "a subscriber fell behind its informer; replaying the cache"
                            );
                            if let Some(store) = &store {
                                return Some((store.state(), receiver));
                            }
                        }
                    }
                }
            }
        })
        .flat_map(futures::stream::iter)
    }
}
