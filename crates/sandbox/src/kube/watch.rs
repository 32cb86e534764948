//! Watches, as in the API concepts page ("Efficient detection of changes"):
//! - no `resourceVersion` (or `0`): synthetic ADDED events for the current objects, then
//!   changes; with `sendInitialEvents=true` a BOOKMARK annotated
//!   `k8s.io/initial-events-end` marks the end of the initial events;
//! - a `resourceVersion`: every change after it, from the retained history; older than the
//!   history → an ERROR event carrying a 410 Expired `Status`, then the stream ends (clients
//!   re-list);
//! - selectors see transitions: an object that starts matching arrives as ADDED, one that
//!   stops matching as DELETED;
//! - `allowWatchBookmarks=true`: periodic BOOKMARK events carrying the newest resourceVersion
//!   the stream has passed;
//! - `timeoutSeconds`: the server ends the stream.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::Sim;
use super::api::{ListParams, Target, for_version};
use super::status::ApiError;
use super::store::{Change, ChangeKind, StoreError};

/// Watch query parameters.
#[derive(Debug, Default)]
pub struct WatchParams {
    /// Selectors (limit/continue are ignored for watches).
    pub list: ListParams,
    /// `resourceVersion`; `None` or `0` means "current state, then changes".
    pub resource_version: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Starts a watch; the body streams newline-delimited JSON events.
pub fn start(sim: &Arc<Sim>, target: &Target, params: WatchParams) -> Body {
    let rt = target.rt.clone();
    let resource = rt.storage_key();
    let of_resource = {
        let resource = resource.clone();
        move |c: &Change| c.key.resource == resource
    };
    let namespace = target.namespace.clone();
    let in_scope = move |c: &Change| {
        c.key.resource == resource && namespace.as_deref().is_none_or(|ns| c.key.namespace == ns)
    };

    let mut initial: Vec<Bytes> = Vec::new();
    let (mut last_rv, backlog, receiver) = match params.resource_version.filter(|rv| *rv > 0) {
        None => {
            let (items, rv, rx) = sim
                .store
                .list_and_watch(&rt.storage_key(), target.namespace.as_deref());
            for item in items.into_iter().filter(|o| selected(&params.list, o)) {
                initial.push(line("ADDED", &for_version(item, &rt)));
            }
            if params.send_initial_events {
                initial.push(line(
                    "BOOKMARK",
                    &bookmark(&rt.kind, &rt.api_version(), rv, true),
                ));
            }
            (rv, Vec::new(), rx)
        }
        Some(rv) => match sim.store.watch_from(rv) {
            Ok((backlog, rx)) => (rv, backlog, rx),
            Err(StoreError::Expired { oldest }) => {
                let status =
                    ApiError::expired(format!("too old resource version: {rv} ({oldest})"))
                        .to_status();
                return Body::from(line("ERROR", &status));
            }
            Err(_) => {
                return Body::from(line(
                    "ERROR",
                    &ApiError::internal("watch failed").to_status(),
                ));
            }
        },
    };

    let sim = sim.clone();
    let stream = async_stream(move |tx| async move {
        for bytes in initial {
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
        let mut receiver = receiver;
        // Bookmarks as the real server's watch cache sends them: with the resourceVersion of
        // the latest change of this resource (any namespace, any labels), and only when that
        // is newer than what this watcher was last sent.
        let mut delivered = last_rv;
        let mut resource_rv = last_rv;
        let mut closed = sim.watch_epoch.subscribe();
        let deadline = params.timeout.map(|t| tokio::time::Instant::now() + t);
        // Like the real server's watch cache, a watch with a timeout also gets a bookmark two
        // seconds before it ends, so a client resumes from as close to now as possible.
        let mut pretimeout = deadline
            .and_then(|d| d.checked_sub(Duration::from_secs(2)))
            .filter(|t| *t > tokio::time::Instant::now() && params.bookmarks);
        let mut ticker = tokio::time::interval(sim.bookmark_interval);
        ticker.tick().await;

        let mut pending: std::collections::VecDeque<Arc<Change>> = backlog.into();
        loop {
            let change = match pending.pop_front() {
                Some(c) => c,
                None => {
                    let timeout = async {
                        match deadline {
                            Some(d) => tokio::time::sleep_until(d).await,
                            None => std::future::pending().await,
                        }
                    };
                    let before_timeout = async {
                        match pretimeout {
                            Some(t) => tokio::time::sleep_until(t).await,
                            None => std::future::pending().await,
                        }
                    };
                    let next = tokio::select! {
                        received = receiver.recv() => match received {
                            Ok(c) => Some(c),
                            Err(RecvError::Lagged(_)) => {
                                // The stream fell behind the broadcast buffer: tell the client
                                // to re-list, as the real server does for a slow watcher.
                                let status = ApiError::expired("watch fell behind; re-list").to_status();
                                let _ = tx.send(line("ERROR", &status)).await;
                                return;
                            }
                            Err(RecvError::Closed) => return,
                        },
                        () = before_timeout => {
                            pretimeout = None;
                            None
                        }
                        _ = ticker.tick(), if params.bookmarks => None,
                        _ = closed.changed() => return,
                        () = tx.closed() => return,
                        () = timeout => return,
                    };
                    let Some(change) = next else {
                        // A bookmark is due (periodic, or just before the timeout).
                        if resource_rv > delivered {
                            delivered = resource_rv;
                            let mark = bookmark(&rt.kind, &rt.api_version(), resource_rv, false);
                            if tx.send(line("BOOKMARK", &mark)).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    };
                    change
                }
            };
            if change.rv <= last_rv {
                continue;
            }
            last_rv = change.rv;
            if of_resource(&change) {
                resource_rv = change.rv;
            }
            if !in_scope(&change) {
                continue;
            }
            if let Some((event_type, object)) = translate(&params.list, &change) {
                delivered = change.rv;
                if tx
                    .send(line(event_type, &for_version(object, &rt)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    Body::from_stream(stream.map(Ok::<Bytes, std::convert::Infallible>))
}

fn selected(params: &ListParams, object: &Value) -> bool {
    params.labels.matches(object) && params.fields.matches(object)
}

/// What a watcher with these selectors sees of a change, if anything.
fn translate(params: &ListParams, change: &Change) -> Option<(&'static str, Value)> {
    let now = selected(params, &change.object);
    match change.kind {
        ChangeKind::Added if now => Some(("ADDED", change.object.clone())),
        ChangeKind::Deleted if now => Some(("DELETED", change.object.clone())),
        ChangeKind::Modified => {
            let before = change
                .previous
                .as_ref()
                .is_some_and(|p| selected(params, p));
            match (before, now) {
                (true, true) => Some(("MODIFIED", change.object.clone())),
                (false, true) => Some(("ADDED", change.object.clone())),
                (true, false) => Some(("DELETED", change.object.clone())),
                (false, false) => None,
            }
        }
        _ => None,
    }
}

fn bookmark(kind: &str, api_version: &str, rv: u64, initial_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": kind, "apiVersion": api_version, "metadata": metadata})
}

/// A stream fed by a producer task through a small channel; the task ends when the client
/// goes away (the receiver is dropped and sends fail).
fn async_stream<F, Fut>(producer: F) -> impl futures::Stream<Item = Bytes>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from(rx: tokio::sync::mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}
