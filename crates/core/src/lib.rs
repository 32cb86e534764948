//! Backstop keeps Percona XtraDB Cluster backups landing when their S3 target fails.
//!
//! The crate is laid out by job: [`config`] (the file and its schema), [`server`] (HTTP),
//! [`metrics`] (the registry), [`probe`] (the S3 prober's core), [`readiness`], [`shutdown`] and [`telemetry`] (process
//! lifecycle), [`app`] (wiring), [`cli`] (the command line) and, behind the `sandbox` feature,
//! [`sandbox`] (the embedded world that tests and new users run against).

pub mod app;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod events;
pub mod https;
pub mod identity;
pub mod k8s;
pub mod leader;
pub mod metrics;
pub mod probe;
pub mod pxc;
pub mod readiness;
pub mod responder;
pub mod s3client;
pub mod s3tls;
pub mod schedule;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
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
    Server(#[from] server::ServerError),
    /// Logging could not be set up.
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    /// The HTTPS configuration could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
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
