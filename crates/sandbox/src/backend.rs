//! Which Kubernetes API server a sandbox world runs on: the project's simulator ([`kube`],
//! fast, with fault injection and a request log) or a real kube-apiserver with etcd
//! ([`apiserver`]). Both are reached only through the REST protocol by everything else in the
//! world (the simulated operator, Backstop, the tests' clients), so one test body runs on
//! either; [`ApiServer::simulator`] is the way to the simulator's extras, and a test that needs
//! them is a simulator-only test by construction.
//!
//! [`kube`]: crate::kube
//! [`apiserver`]: crate::apiserver

use std::path::Path;

use crate::apiserver::{ApiServerError, RealApiServer};
use crate::kube::{KubeSim, SimError, SimOptions};

/// How long the controller manager may take to make a new namespace's ServiceAccount token.
const NAMESPACE_READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// The kind of API server to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The project's API simulator, in process.
    #[default]
    Simulator,
    /// kube-apiserver with etcd and kube-controller-manager, as child processes.
    Real,
}

/// Why the API server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The simulator failed.
    #[error(transparent)]
    Simulator(#[from] SimError),
    /// The real server failed.
    #[error(transparent)]
    Real(#[from] ApiServerError),
}

/// A running API server of either kind.
pub enum ApiServer {
    /// The simulator.
    Simulator(KubeSim),
    /// A real kube-apiserver.
    Real(Box<RealApiServer>),
}

impl ApiServer {
    /// Starts a server of kind `backend` (the simulator with its default options).
    pub async fn start(backend: Backend) -> Result<Self, BackendError> {
        Ok(match backend {
            Backend::Simulator => Self::Simulator(KubeSim::start(SimOptions::default()).await?),
            Backend::Real => Self::Real(Box::new(RealApiServer::start().await?)),
        })
    }

    /// Which kind this is.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Simulator(_) => Backend::Simulator,
            Self::Real(_) => Backend::Real,
        }
    }

    /// The simulator, when this is the simulator: fault injection, the request log, RBAC
    /// denials, compaction.
    pub fn simulator(&self) -> Option<&KubeSim> {
        match self {
            Self::Simulator(sim) => Some(sim),
            Self::Real(_) => None,
        }
    }

    /// The server URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        match self {
            Self::Simulator(sim) => sim.url(),
            Self::Real(real) => real.url().to_owned(),
        }
    }

    /// The PEM CA certificate that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        match self {
            Self::Simulator(sim) => sim.ca_pem(),
            Self::Real(real) => real.ca_pem(),
        }
    }

    /// The administrator's bearer token.
    pub fn admin_token(&self) -> &str {
        match self {
            Self::Simulator(sim) => sim.admin_token(),
            Self::Real(real) => real.admin_token(),
        }
    }

    /// A kube-rs client for `token`, built from a kubeconfig as a user's would be.
    pub async fn client_for(&self, token: &str) -> Result<kube::Client, BackendError> {
        Ok(match self {
            Self::Simulator(sim) => sim.client_for(token).await?,
            Self::Real(real) => real.client_for(token).await?,
        })
    }

    /// A kube-rs client authenticated as the administrator.
    pub async fn admin_client(&self) -> Result<kube::Client, BackendError> {
        self.client_for(self.admin_token()).await
    }

    /// A token authenticating as ServiceAccount `namespace/name`. On the real server the
    /// ServiceAccount must exist (TokenRequest); the simulator makes one up either way.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, BackendError> {
        Ok(match self {
            Self::Simulator(sim) => sim.service_account_token(namespace, name),
            Self::Real(real) => real.service_account_token(namespace, name).await?,
        })
    }

    /// Forgets the history older than now, so a watch resumed from an older resourceVersion
    /// gets 410 Expired: the simulator's compaction, or etcd's on the real server (there,
    /// for kinds the watch cache does not serve: see [`RealApiServer::compact`]).
    pub async fn compact(&self) -> Result<(), BackendError> {
        match self {
            Self::Simulator(sim) => sim.compact(),
            Self::Real(real) => real.compact().await?,
        }
        Ok(())
    }

    /// Every request RBAC refused so far: the simulator's record, or the real server's audit
    /// log.
    pub fn denials(&self) -> Vec<crate::kube::Denial> {
        match self {
            Self::Simulator(sim) => sim.denials(),
            Self::Real(real) => real.denials(),
        }
    }

    /// Waits until namespace `namespace` takes Pods: on a real server, until the controller
    /// manager has made its `default` ServiceAccount and that account's token (before then
    /// the ServiceAccount admission plugin refuses Pods with a 500 "No API token found"); the
    /// simulator has no such admission, so there it returns at once.
    pub async fn wait_namespace_ready(
        &self,
        client: &kube::Client,
        namespace: &str,
    ) -> Result<(), BackendError> {
        if self.backend() == Backend::Simulator {
            return Ok(());
        }
        let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client.clone(), namespace);
        let deadline = tokio::time::Instant::now() + NAMESPACE_READY_DEADLINE;
        loop {
            let ready = accounts
                .get_opt("default")
                .await
                .map_err(ApiServerError::from)?
                .is_some_and(|sa| sa.secrets.is_some_and(|s| !s.is_empty()));
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiServerError::Start(format!(
                    "namespace {namespace}: the default ServiceAccount never got its token"
                ))
                .into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Writes a kubeconfig for `token` to `path` (readable only by the owner).
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> Result<(), BackendError> {
        match self {
            Self::Simulator(sim) => sim.write_kubeconfig(path, token)?,
            Self::Real(real) => real.write_kubeconfig(path, token)?,
        }
        Ok(())
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        match self {
            Self::Simulator(sim) => sim.shutdown().await,
            Self::Real(real) => real.shutdown().await,
        }
    }
}
