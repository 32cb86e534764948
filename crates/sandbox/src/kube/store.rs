//! The object store: every object as JSON, one monotonic resourceVersion counter for the
//! whole store (as etcd's revision), and a bounded history of changes for watches to resume
//! from. A watch asking for a resourceVersion older than the history gets 410 Expired, which
//! is exactly how the real server behaves after etcd compaction.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::broadcast;

/// Where an object lives: its resource's storage key, namespace (empty when cluster-scoped)
/// and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// `group/plural`.
    pub resource: String,
    /// Namespace, or empty.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated (including deletionTimestamp being set).
    Modified,
    /// Removed.
    Deleted,
}

impl ChangeKind {
    /// The watch event type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and sent to watchers.
#[derive(Debug)]
pub struct Change {
    /// The store's resourceVersion after the change.
    pub rv: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// Which object.
    pub key: ObjectKey,
    /// The object after the change (before it, for deletions).
    pub object: Value,
    /// The object before the change, for updates (selectors need both sides).
    pub previous: Option<Value>,
}

/// Changes a watch must replay, and the receiver for every later one.
pub type Backlog = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

/// What follows one page of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest {
    /// Nothing: the list is complete.
    Nothing,
    /// At least one more object (a selector was given, so they are not counted).
    More,
    /// Exactly this many more objects (no selector).
    Count(usize),
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Create of an existing key.
    AlreadyExists,
    /// The key does not exist.
    NotFound,
    /// The caller's expected resourceVersion is not the current one.
    Conflict,
    /// The requested resourceVersion is older than the retained history.
    Expired {
        /// The oldest resourceVersion a watch can still resume from.
        oldest: u64,
    },
}

struct Inner {
    objects: BTreeMap<ObjectKey, Value>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    /// Changes at or below this version are gone from the history.
    compacted: u64,
}

/// The store, shared by every request handler.
pub struct Store {
    inner: Mutex<Inner>,
    history_limit: usize,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Store {
    /// An empty store keeping the last `history_limit` changes for watch resumption.
    pub fn new(history_limit: usize) -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                rv: 1,
                history: VecDeque::new(),
                compacted: 1,
            }),
            history_limit: history_limit.max(1),
            changes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation completes under the lock before it is released; a panic in a reader
        // cannot leave a half-written state behind.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// Objects of `resource`, in `namespace` (all when `None`), sorted by namespace and name,
    /// with the resourceVersion they were read at.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = select(&inner, resource, namespace);
        (items, inner.rv)
    }

    /// One page of a list: up to `limit` objects (all when 0) of `resource` in `namespace`
    /// that `keep` accepts (every object when `None`: no selector), in namespace/name
    /// order, starting after `after` (the namespace and name of the last object of the
    /// previous page); also what follows the page, and the resourceVersion. Walks the
    /// ordered map from the page's start and clones only what it returns. With a selector,
    /// the walk stops at the first accepted object past the page, as the real server does
    /// not count what a selector would keep (it leaves `remainingItemCount` out); counting
    /// it made paging through n objects cost O(n²) selector checks.
    pub fn list_page(
        &self,
        resource: &str,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        keep: Option<&dyn Fn(&Value) -> bool>,
        limit: usize,
    ) -> (Vec<Value>, Rest, u64) {
        use std::ops::Bound;
        let inner = self.lock();
        let start = ObjectKey {
            resource: resource.to_owned(),
            namespace: after
                .map(|a| a.0)
                .or(namespace)
                .unwrap_or_default()
                .to_owned(),
            name: after.map(|a| a.1).unwrap_or_default().to_owned(),
        };
        let lower = if after.is_some() {
            Bound::Excluded(start)
        } else {
            Bound::Included(start)
        };
        let mut items = Vec::new();
        let mut rest = Rest::Nothing;
        for (key, object) in inner.objects.range((lower, Bound::Unbounded)) {
            if key.resource != resource {
                break;
            }
            if let Some(ns) = namespace
                && key.namespace != ns
            {
                if key.namespace.as_str() > ns {
                    break;
                }
                continue;
            }
            if keep.is_some_and(|keep| !keep(object)) {
                continue;
            }
            if limit == 0 || items.len() < limit {
                items.push(object.clone());
            } else if keep.is_some() {
                rest = Rest::More;
                break;
            } else {
                rest = match rest {
                    Rest::Count(n) => Rest::Count(n + 1),
                    _ => Rest::Count(1),
                };
            }
        }
        (items, rest, inner.rv)
    }

    /// Inserts a new object; `finish` stamps it with the new resourceVersion.
    pub fn create(
        &self,
        key: ObjectKey,
        object: Value,
        finish: impl FnOnce(&mut Value, u64),
    ) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        if inner.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        let mut object = object;
        let rv = inner.rv + 1;
        finish(&mut object, rv);
        inner.rv = rv;
        inner.objects.insert(key.clone(), object.clone());
        self.record(&mut inner, ChangeKind::Added, key, object.clone(), None);
        Ok(object)
    }

    /// Read-modify-write of one object under the store lock. `update` gets the current object
    /// and returns the new one (or an error it chose); `None` from it means "delete now".
    /// Nothing is written when the new object equals the old one (no new resourceVersion, no
    /// event), as the real server skips no-op updates.
    pub fn update<E>(
        &self,
        key: &ObjectKey,
        update: impl FnOnce(&Value, u64) -> Result<Option<Value>, E>,
    ) -> Result<Result<Value, E>, StoreError> {
        let mut inner = self.lock();
        let current = inner
            .objects
            .get(key)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        let next_rv = inner.rv + 1;
        let next = match update(&current, next_rv) {
            Ok(next) => next,
            Err(e) => return Ok(Err(e)),
        };
        match next {
            None => {
                inner.rv = next_rv;
                inner.objects.remove(key);
                self.record(
                    &mut inner,
                    ChangeKind::Deleted,
                    key.clone(),
                    current.clone(),
                    None,
                );
                Ok(Ok(current))
            }
            Some(next) if without_rv(&next) == without_rv(&current) => Ok(Ok(current)),
            Some(mut next) => {
                set_rv(&mut next, next_rv);
                inner.rv = next_rv;
                inner.objects.insert(key.clone(), next.clone());
                self.record(
                    &mut inner,
                    ChangeKind::Modified,
                    key.clone(),
                    next.clone(),
                    Some(current),
                );
                Ok(Ok(next))
            }
        }
    }

    /// Changes of `resource` after `rv`, and a receiver for every later change, taken under one
    /// lock so that nothing falls between the two.
    pub fn watch_from(&self, rv: u64) -> Result<Backlog, StoreError> {
        let inner = self.lock();
        if rv < inner.compacted {
            return Err(StoreError::Expired {
                oldest: inner.compacted,
            });
        }
        let backlog = inner
            .history
            .iter()
            .filter(|c| c.rv > rv)
            .cloned()
            .collect();
        Ok((backlog, self.changes.subscribe()))
    }

    /// A consistent snapshot of `resource` in `namespace` plus a receiver for every change
    /// after it, taken under one lock (a watch without a resourceVersion starts this way).
    pub fn list_and_watch(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> (Vec<Value>, u64, broadcast::Receiver<Arc<Change>>) {
        let inner = self.lock();
        let items = select(&inner, resource, namespace);
        (items, inner.rv, self.changes.subscribe())
    }

    /// A receiver for every later change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Drops the whole change history, as an etcd compaction would: watches resuming from any
    /// earlier resourceVersion get 410 Expired.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    fn record(
        &self,
        inner: &mut Inner,
        kind: ChangeKind,
        key: ObjectKey,
        object: Value,
        previous: Option<Value>,
    ) {
        let change = Arc::new(Change {
            rv: inner.rv,
            kind,
            key,
            object,
            previous,
        });
        inner.history.push_back(change.clone());
        while inner.history.len() > self.history_limit {
            if let Some(dropped) = inner.history.pop_front() {
                inner.compacted = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }
}

/// Objects of `resource` in `namespace` (all when `None`), in key order.
fn select(inner: &Inner, resource: &str, namespace: Option<&str>) -> Vec<Value> {
    // Keys sort by resource, then namespace: start at the first key of the selection and
    // stop at the first key past it, instead of walking every object of every resource.
    let start = ObjectKey {
        resource: resource.to_owned(),
        namespace: namespace.unwrap_or_default().to_owned(),
        name: String::new(),
    };
    inner
        .objects
        .range(start..)
        .take_while(|(k, _)| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Writes `metadata.resourceVersion`.
pub fn set_rv(object: &mut Value, rv: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".to_owned(), Value::String(rv.to_string()));
    }
}

fn without_rv(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            resource: "/pods".into(),
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name}})
    }

    #[test]
    fn pages_cross_namespaces_in_order_and_stay_within_their_resource() {
        let store = Store::new(10);
        for (resource, ns, name, tier) in [
            ("/configmaps", "a", "x", "keep"),
            ("/pods", "a", "p1", "keep"),
            ("/pods", "a", "p2", "skip"),
            ("/pods", "b", "p1", "keep"),
            ("/pods", "c", "p3", "keep"),
            ("/services", "a", "s", "keep"),
        ] {
            let key = ObjectKey {
                resource: resource.into(),
                namespace: ns.into(),
                name: name.into(),
            };
            let object =
                json!({"metadata": {"namespace": ns, "name": name, "labels": {"tier": tier}}});
            store.create(key, object, |_, _| {}).unwrap();
        }
        let keep = |o: &Value| o.pointer("/metadata/labels/tier") == Some(&json!("keep"));
        let names = |items: &[Value]| -> Vec<String> {
            items
                .iter()
                .map(|o| {
                    format!(
                        "{}/{}",
                        o["metadata"]["namespace"].as_str().unwrap(),
                        o["metadata"]["name"].as_str().unwrap()
                    )
                })
                .collect()
        };
        // All namespaces, two per page: the filtered-out object is skipped, not counted.
        let (first, rest, _) = store.list_page("/pods", None, None, Some(&keep), 2);
        assert_eq!(names(&first), ["a/p1", "b/p1"]);
        assert_eq!(rest, Rest::More);
        let (second, rest, _) = store.list_page("/pods", None, Some(("b", "p1")), Some(&keep), 2);
        assert_eq!(names(&second), ["c/p3"]);
        assert_eq!(rest, Rest::Nothing);
        // Without a selector what follows is counted: p2 of a, then c/p3.
        let (unfiltered, rest, _) = store.list_page("/pods", None, None, None, 2);
        assert_eq!(names(&unfiltered), ["a/p1", "a/p2"]);
        assert_eq!(rest, Rest::Count(2));
        // One namespace, everything: neither the next namespace nor the next resource leaks in.
        let (only_a, rest, _) = store.list_page("/pods", Some("a"), None, None, 0);
        assert_eq!(names(&only_a), ["a/p1", "a/p2"]);
        assert_eq!(rest, Rest::Nothing);
        // A token whose object is gone still resumes after its position.
        let (after_gone, _, _) = store.list_page("/pods", None, Some(("a", "p9")), Some(&keep), 0);
        assert_eq!(names(&after_gone), ["b/p1", "c/p3"]);
    }

    #[test]
    fn every_write_takes_the_next_resource_version() {
        let s = Store::new(10);
        let a = s.create(key("a"), obj("a"), set_rv).unwrap();
        let b = s.create(key("b"), obj("b"), set_rv).unwrap();
        assert_eq!(a["metadata"]["resourceVersion"], "2");
        assert_eq!(b["metadata"]["resourceVersion"], "3");
        assert_eq!(
            s.create(key("a"), obj("a"), set_rv),
            Err(StoreError::AlreadyExists)
        );
    }

    #[test]
    fn no_op_updates_do_not_bump_the_version() {
        let s = Store::new(10);
        s.create(key("a"), obj("a"), set_rv).unwrap();
        let same = s
            .update::<()>(&key("a"), |cur, _| Ok(Some(cur.clone())))
            .unwrap()
            .unwrap();
        assert_eq!(same["metadata"]["resourceVersion"], "2");
        assert_eq!(s.current_rv(), 2);
    }

    #[test]
    fn watch_before_the_history_is_expired() {
        let s = Store::new(2);
        for n in ["a", "b", "c", "d"] {
            s.create(key(n), obj(n), set_rv).unwrap();
        }
        // History keeps rv 4 and 5; resuming from 3 still works (changes after 3 are kept).
        assert_eq!(s.watch_from(3).unwrap().0.len(), 2);
        assert!(matches!(s.watch_from(2), Err(StoreError::Expired { .. })));
        s.compact();
        assert!(matches!(s.watch_from(4), Err(StoreError::Expired { .. })));
        assert!(s.watch_from(5).unwrap().0.is_empty());
    }
}
