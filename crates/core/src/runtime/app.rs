//! The long-running service, wired: configuration, metrics, readiness and the HTTP server.
//!
//! [`App::bind`] claims the port first and reports the bound address, so callers (tests,
//! the sandbox) can listen on port 0 and learn where the service is before it starts.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::probe::ProbeMetrics;
use crate::responder::{Engine, Webhook};
use crate::runtime::metrics::Metrics;
use crate::runtime::readiness::Readiness;
use crate::runtime::server::{self, AppState};
use crate::watch::collector::BackupCollector;
use crate::watch::completions::{CompletionMetrics, CompletionRecorder};
use crate::watch::index::BackupIndex;

/// A bound, not yet serving, Backstop service.
pub struct App {
    config: Config,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    webhook: Option<Arc<Webhook>>,
    engine: Option<Arc<Engine>>,
    background: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Builds the service for `config` without Kubernetes (HTTP endpoints only) and binds its
    /// listen address.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        Self::bind_with(config, None, Arc::new(SystemClock)).await
    }

    /// Builds the service for `config` and binds its listen address. With a Kubernetes client
    /// the backup watcher starts now, so `/readyz` reports not-ready until its first lists are
    /// in; `clock` gives ages and windows their "now".
    pub async fn bind_with(
        config: Config,
        kube: Option<kube::Client>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let addr = config.listen_addr()?;
        // Certificates are loaded before anything starts, so a bad file fails fast.
        let tls = config
            .server
            .tls
            .as_ref()
            .map(crate::runtime::tls::server_config)
            .transpose()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let readiness = Readiness::new();
        // The configuration is loaded by the time an App exists; the watches register their
        // own gates and open them once synced.
        readiness.gate("config").open();
        let mut metrics = Metrics::new();
        let background = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut webhook = None;
        let mut engine = None;
        if let Some(client) = kube {
            let index = Arc::new(RwLock::new(BackupIndex::new()));
            metrics
                .registry_mut()
                .register_collector(Box::new(BackupCollector::new(index.clone(), clock.clone())));
            let probe_metrics = Arc::new(ProbeMetrics::register(metrics.registry_mut()));
            let recorder = CompletionRecorder::new(
                client.clone(),
                CompletionMetrics::register(metrics.registry_mut()),
            );
            let informers;
            (informers, tasks) = crate::watch::runtime::spawn(
                &client,
                &config.kubernetes.namespaces,
                &index,
                Some(recorder),
                &readiness,
                &background,
            );
            let shared = Arc::new(config.clone());
            let down = Arc::new(crate::probe::health::DownSince::new(clock.clone()));
            metrics.registry_mut().register_collector(Box::new(
                crate::probe::health::BlastCollector::new(down.clone()),
            ));
            tasks.extend(
                crate::probe::aws_health::start(
                    &client,
                    &config.probe,
                    down.clone(),
                    background.clone(),
                )
                .await,
            );
            tasks.push(crate::probe::scheduler::spawn(
                client.clone(),
                index,
                shared.clone(),
                probe_metrics,
                down.clone(),
                background.clone(),
            ));
            if config.responder.enabled {
                let started = crate::responder::start(
                    client,
                    &informers,
                    shared,
                    down,
                    metrics.registry_mut(),
                    clock,
                    &background,
                )?;
                tasks.extend(started.tasks);
                webhook = Some(started.webhook);
                engine = Some(started.engine);
            }
        }
        Ok(Self {
            config,
            listener,
            tls,
            metrics: Arc::new(metrics),
            readiness,
            webhook,
            engine,
            background,
            tasks,
        })
    }

    /// The address the HTTP server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener.local_addr().map_err(Error::Io)
    }

    /// The readiness gates behind `/readyz`.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The playbook engine, when the responder runs.
    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.as_ref()
    }

    /// Serves until `shutdown` is cancelled, then drains within `server.shutdown_timeout`.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), Error> {
        self.serve_with(shutdown, |router| router).await
    }

    /// Like [`App::serve`], with a hook to extend the router (used by tests and the sandbox).
    pub async fn serve_with(
        self,
        shutdown: CancellationToken,
        extend: impl FnOnce(axum::Router) -> axum::Router,
    ) -> Result<(), Error> {
        let state = AppState {
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
            webhook: self.webhook.clone(),
        };
        let router = extend(server::router(state, &self.config.server));
        let addr = self.local_addr()?;
        tracing::info!(%addr, tls = self.tls.is_some(), dry_run = self.config.responder.dry_run, "listening");

        // Report not-ready as soon as shutdown starts, so traffic drains away first.
        let shutting_down = self.readiness.gate("not-shutting-down");
        shutting_down.open();
        let token = shutdown.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            shutting_down.close();
        });

        let grace = self.config.server.shutdown_timeout.get();
        let served = match self.tls {
            None => {
                // Headers get the same bound as a whole request: a client that cannot send
                // them in that time is not one to wait for.
                let headers = self.config.server.request_timeout.get();
                server::serve(self.listener, router, shutdown, grace, headers).await
            }
            Some(tls) => server::serve_tls(self.listener, router, tls, shutdown, grace).await,
        };
        self.background.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        served?;
        tracing::info!("stopped");
        Ok(())
    }
}
