//! The responder: the Alertmanager webhook and the failover/revert playbooks it drives.
//!
//! Alerts are intents; a reconciler converges. The [`webhook`] records what the alerts say on
//! each affected PerconaXtraDBCluster ([`intent`]) and answers at once; the [`controller`]
//! (leader only) runs the [`engine`], which moves each managed cluster one idempotent step at
//! a time towards its intent, keeping a [`journal`] of every field it changed in the same
//! write as the change.
//!
//! Deciding and doing are apart: the [`playbook`]s turn what was observed into a plan of
//! [`effect`]s, and the [`applier`] alone carries plans out, or records them in a dry run.
//! [`cluster`] is how the cluster object is read and written, [`memory`] what a replica
//! remembers between steps. [`plan`] (the exact `spec.backup` edits), [`routing`] and the
//! playbooks' planning are pure, tested without a server.

pub mod alertmanager;
pub mod applier;
pub mod auth;
pub mod cluster;
pub mod controller;
pub mod effect;
pub mod engine;
pub mod intent;
pub mod journal;
pub mod manual;
pub mod memory;
pub mod metrics;
pub mod plan;
pub mod playbook;
pub mod route_check;
pub mod routing;
pub mod status;
pub mod verify;
pub mod webhook;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::k8s::leader::{self, Election};
use crate::probe::health::DownSince;
use crate::watch::runtime::Informers;

pub use cluster::ClusterKey;
pub use engine::Engine;
pub use metrics::ResponderMetrics;
pub use webhook::Webhook;

/// Why the responder could not start.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// The webhook credentials could not be loaded.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
}

/// The running responder's parts.
pub struct Started {
    /// The webhook handler.
    pub webhook: Arc<Webhook>,
    /// The engine (shared with the controller).
    pub engine: Arc<Engine>,
    /// Background tasks: the election and the controller.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the responder on the watches' `informers`: loads the webhook credentials, registers
/// the metrics, and starts leader election, the controller and the alert-route check (fed by
/// the prober's `down` record).
///
/// # Errors
///
/// [`ResponderError`] when the webhook credentials cannot be loaded.
pub fn start(
    client: kube::Client,
    informers: &Informers,
    config: Arc<Config>,
    down: Arc<DownSince>,
    registry: &mut Registry,
    clock: Arc<dyn Clock>,
    shutdown: &CancellationToken,
) -> Result<Started, ResponderError> {
    let auth = auth::Authenticator::load(&config.responder.auth)?;
    let metrics = ResponderMetrics::register(registry);
    for managed in &config.clusters {
        // Exported from the start, so "not failed over" is a 0 rather than no data.
        metrics.export_cluster(&managed.namespace, &managed.name);
    }
    let client_for_events = client.clone();
    let engine = Engine::new(
        client.clone(),
        config.clone(),
        metrics.clone(),
        clock.clone(),
    );
    engine.set_health(down.clone());
    let triggers = controller::Triggers::default();
    let mut tasks = Vec::new();
    let settings = &config.kubernetes.leader_election;
    let leading = if settings.enabled {
        let namespace = settings
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".to_owned());
        let (rx, task) = leader::spawn(
            client,
            Election {
                namespace,
                name: settings.lease_name.clone(),
                identity: leader::default_identity(),
                lease_duration: settings.lease_duration.get(),
                renew_interval: settings.renew_interval.get(),
            },
            shutdown.clone(),
        );
        tasks.push(task);
        rx
    } else {
        // A single replica leads unconditionally; the sender lives as long as the task.
        let (tx, rx) = watch::channel(true);
        let done = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            done.cancelled().await;
            drop(tx);
        }));
        rx
    };
    tasks.push(controller::spawn(
        engine.clone(),
        informers.clone(),
        leading.clone(),
        triggers.clone(),
        shutdown.clone(),
    ));
    let cache = webhook::ClusterCache::new(&informers.clusters);
    if config.responder.route_check.enabled {
        tasks.push(route_check::spawn(
            route_check::Parts {
                client: client_for_events,
                cache: cache.clone(),
                config: config.clone(),
                down,
                metrics,
                clock,
                leading: leading.clone(),
            },
            shutdown.clone(),
        ));
    }
    let webhook = Arc::new(Webhook::new(auth, engine.clone(), triggers, cache));
    Ok(Started {
        webhook,
        engine,
        tasks,
    })
}
