//! Backstop keeps Percona XtraDB Cluster backups landing when their S3 target fails.
//!
//! The library is laid out by what each part owns (docs/architecture.md has the picture):
//!
//! - [`config`]: the configuration file, its schema and its checks;
//! - [`k8s`]: Kubernetes access beyond plain requests: the shared informers, Events, the
//!   process identity and leader election; [`pxc`]: the operator's custom resources;
//! - [`s3`]: S3 clients built the way the operator's backup Job reaches a bucket;
//! - [`watch`]: the backup index fed by the informers, exported as metrics;
//! - [`probe`]: the S3 prober (targets, cycles, classification, scheduling);
//! - [`responder`]: the Alertmanager webhook, the intents, the reconciler and its playbooks;
//! - [`runtime`]: the process: wiring ([`runtime::app`]), HTTP, TLS, readiness, metrics
//!   registry, logging and shutdown;
//! - [`cli`] and [`check`]: the command line and `backstop check`;
//! - [`clock`] and [`schedule`]: time and cron, shared by all of the above.
//!
//! The sandbox (an embedded S3, a Kubernetes API simulator and a simulated operator) is the
//! `backstop-sandbox` crate; nothing here depends on it.

pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod k8s;
pub mod managed;
pub mod probe;
pub mod pxc;
pub mod responder;
pub mod runtime;
pub mod s3;
pub mod schedule;
pub mod watch;

use std::net::SocketAddr;

/// Every error the library reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed or did not drain in time.
    #[error(transparent)]
    Server(#[from] runtime::server::ServerError),
    /// Logging could not be set up.
    #[error(transparent)]
    Telemetry(#[from] runtime::telemetry::TelemetryError),
    /// The HTTPS configuration could not be loaded.
    #[error(transparent)]
    Tls(#[from] runtime::tls::TlsError),
    /// The responder could not start.
    #[error(transparent)]
    Responder(#[from] responder::ResponderError),
    /// Another I/O failure.
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
}

impl Error {
    /// A short, bounded label for metrics and structured logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Bind { .. } => "bind",
            Self::Server(_) => "server",
            Self::Telemetry(_) => "telemetry",
            Self::Responder(_) => "responder",
            Self::Tls(_) => "tls",
            Self::Io(_) => "io",
        }
    }
}

/// Installs aws-lc-rs as the process-wide rustls crypto provider. aws-sdk-s3's HTTPS client
/// already requires aws-lc-rs, so every TLS user in the process (kube, the S3 client, the
/// webhook server) shares that one provider. Safe to call more than once.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
