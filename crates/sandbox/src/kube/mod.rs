//! A Kubernetes API server simulator speaking the real REST protocol over HTTP on 127.0.0.1,
//! so that an unmodified kube-rs `Client` (built from the kubeconfig it writes) and `kubectl`
//! both work against it.
//!
//! It is small on purpose and strict where Backstop's correctness depends on the server:
//! resourceVersion and optimistic concurrency, watches with resume and 410, merge and JSON
//! patches, status subresources, finalizers, structural-schema pruning of custom resources,
//! bearer-token authentication and RBAC from stored Roles and bindings. Module by job:
//! [`store`] (objects, versions, history), [`resources`] (served types, CRDs), [`api`] (verbs),
//! [`watch`], [`selector`], [`schema`], [`rbac`], [`discovery`], [`status`] (errors),
//! [`faults`], and the HTTP front that routes requests to them (`http`).

pub mod api;
pub mod discovery;
pub mod events;
pub mod faults;
mod http;
pub mod names;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod status;
pub mod store;
pub mod table;
pub mod watch;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use api::{Change, ListParams, Target};
use faults::{ApiFaults, Injected};
use rbac::{Attributes, User};
use resources::Registry;
use selector::{FieldSelector, LabelSelector};
use status::ApiError;
use store::Store;

use http::handle;

/// Why the simulator could not start or give a client.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding or serving failed.
    #[error("kube simulator I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The generated kubeconfig did not load.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// kube-rs refused the configuration.
    #[error("kube client: {0}")]
    Client(#[from] kube::Error),
    /// The sandbox certificates could not be made.
    #[error(transparent)]
    Certs(#[from] crate::certs::CertError),
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Changes kept for watch resumption; older resourceVersions get 410.
    pub history_limit: usize,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// One request as the simulator received it, for tests that assert on what a client sent
/// (the API-verifier pattern).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body parsed as JSON, if it was JSON.
    pub body: Option<Value>,
}

/// A request RBAC refused, for tests that prove a permission is needed: the 403 shows the
/// client really made the request the permission covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Who asked (`system:serviceaccount:NS:NAME` for ServiceAccounts).
    pub user: String,
    /// The RBAC verb.
    pub verb: String,
    /// API group (`""` for core).
    pub group: String,
    /// Resource, with `/subresource` when there is one.
    pub resource: String,
    /// Namespace; `None` for cluster-wide requests.
    pub namespace: Option<String>,
    /// Object name, for single-object verbs.
    pub name: Option<String>,
}

/// A kubeconfig document for the server at `url`, trusting `ca_pem`, authenticating with
/// `token`: the same shape for the simulator and the real API server.
pub fn kubeconfig_yaml(url: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: backstop-sandbox\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
         users:\n- name: sandbox-user\n  user:\n    token: {token}\n\
         contexts:\n- name: backstop-sandbox\n  context:\n    cluster: backstop-sandbox\n    user: sandbox-user\n    namespace: default\n\
         current-context: backstop-sandbox\npreferences: {{}}\n"
    )
}

/// A kube-rs client from a kubeconfig document, exactly as a user's would be built.
pub async fn client_from_kubeconfig(yaml: &str) -> Result<kube::Client, SimError> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Writes `text` to `path`, readable only by the owner (kubeconfigs, keys and token files hold
/// credentials).
pub fn write_private(path: &Path, text: &str) -> Result<(), std::io::Error> {
    std::fs::write(path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The shared state behind the HTTP handler.
pub struct Sim {
    registry: Registry,
    store: Store,
    faults: ApiFaults,
    watch_epoch: tokio::sync::watch::Sender<u64>,
    bookmark_interval: Duration,
    tokens: Mutex<HashMap<String, User>>,
    requests: Mutex<VecDeque<RecordedRequest>>,
    denials: Mutex<Vec<Denial>>,
}

/// The most requests kept for assertions.
const REQUEST_LOG_LIMIT: usize = 10_000;

/// A running simulator.
pub struct KubeSim {
    sim: Arc<Sim>,
    addr: SocketAddr,
    ca_pem: String,
    admin_token: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl KubeSim {
    /// Starts a simulator on 127.0.0.1 with a free port, seeded with the namespaces every
    /// cluster has (`default`, `kube-system`, `kube-public`).
    pub async fn start(options: SimOptions) -> Result<Self, SimError> {
        backstop::install_crypto_provider();
        let pki = crate::certs::SandboxPki::generate()?;
        let tls = pki.server_config()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (watch_epoch, _) = tokio::sync::watch::channel(0);
        let sim = Arc::new(Sim {
            registry: Registry::with_builtins(),
            store: Store::new(options.history_limit),
            faults: ApiFaults::default(),
            watch_epoch,
            bookmark_interval: options.bookmark_interval,
            tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(VecDeque::new()),
            denials: Mutex::new(Vec::new()),
        });
        let admin_token = uuid::Uuid::new_v4().simple().to_string();
        sim.lock_tokens().insert(
            admin_token.clone(),
            User {
                name: "sandbox-admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            },
        );
        for ns in ["default", "kube-system", "kube-public"] {
            let target = Target {
                rt: sim
                    .registry
                    .find("", "v1", "namespaces")
                    .ok_or_else(|| std::io::Error::other("namespaces type missing"))?,
                namespace: None,
                name: None,
                sub: None,
            };
            api::create(&sim, &target, json!({"metadata": {"name": ns}}), false)
                .map_err(|e| std::io::Error::other(e.message))?;
        }

        let shutdown = CancellationToken::new();
        let router = Router::new().fallback(handle).with_state(sim.clone());
        let token = shutdown.clone();
        // HTTPS like a real API server: client-go (kubectl) never sends a bearer token over
        // plain HTTP.
        let task = tokio::spawn(backstop::runtime::https::serve(
            listener, router, tls, token,
        ));
        Ok(Self {
            sim,
            addr,
            ca_pem: pki.ca_pem,
            admin_token,
            shutdown,
            task: Some(task),
        })
    }

    /// The server URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The PEM CA certificate that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token of the built-in administrator (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Adds a user with a bearer token; everyone but `system:masters` is subject to RBAC.
    pub fn add_user(&self, token: &str, name: &str, groups: &[&str]) {
        let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        groups.push("system:authenticated".into());
        self.sim.lock_tokens().insert(
            token.to_owned(),
            User {
                name: name.to_owned(),
                groups,
            },
        );
    }

    /// A new token authenticating as ServiceAccount `namespace/name`.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.add_user(
            &token,
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
            ],
        );
        token
    }

    /// A kubeconfig document for this server and `token`.
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        kubeconfig_yaml(&self.url(), &self.ca_pem, token)
    }

    /// Writes the kubeconfig for `token` to `path` (readable only by the owner: it holds a
    /// credential).
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> Result<(), SimError> {
        write_private(path, &self.kubeconfig_yaml(token))?;
        Ok(())
    }

    /// A kube-rs client for `token`, built from the kubeconfig exactly as a user's would be.
    pub async fn client_for(&self, token: &str) -> Result<kube::Client, SimError> {
        client_from_kubeconfig(&self.kubeconfig_yaml(token)).await
    }

    /// A kube-rs client authenticated as the administrator.
    pub async fn admin_client(&self) -> Result<kube::Client, SimError> {
        self.client_for(&self.admin_token).await
    }

    /// Creates every object of a multi-document YAML (kustomize output, RBAC rules) as the
    /// administrator, through the same create path as the API; returns `kind/name` of each.
    /// With RBAC objects among them, the simulator enforces them from then on.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<String>, ApiError> {
        let mut created = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(yaml) {
            let object: Value = serde::Deserialize::deserialize(document)
                .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")))?;
            if object.is_null() {
                continue;
            }
            let text = |field: &str| {
                object
                    .get(field)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (api_version, kind) = (text("apiVersion"), text("kind"));
            let (group, version) = api_version
                .rsplit_once('/')
                .unwrap_or(("", api_version.as_str()));
            let rt = self
                .sim
                .registry
                .all()
                .into_iter()
                .find(|t| t.group == group && t.version == version && t.kind == kind)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("no resource serves {api_version} {kind}"))
                })?;
            let namespace = rt.namespaced.then(|| {
                object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_owned()
            });
            let target = Target {
                rt: rt.clone(),
                namespace,
                name: None,
                sub: None,
            };
            let stored = api::create(&self.sim, &target, object, false)?;
            let name = stored
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            created.push(format!("{kind}/{name}"));
        }
        Ok(created)
    }

    /// Fault injection rules.
    pub fn faults(&self) -> &ApiFaults {
        &self.sim.faults
    }

    /// Drops the watch history (as etcd compaction): resuming older watches gets 410.
    pub fn compact(&self) {
        self.sim.store.compact();
    }

    /// Ends every open watch stream (clients see the connection end and re-watch).
    pub fn close_watches(&self) {
        self.sim.watch_epoch.send_modify(|e| *e += 1);
    }

    /// The current resourceVersion of the store.
    pub fn resource_version(&self) -> u64 {
        self.sim.store.current_rv()
    }

    /// Every request received so far (up to the last 10,000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.sim
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Every change to the store from now on, as watches see them but unaffected by
    /// [`KubeSim::compact`] and [`KubeSim::close_watches`]: an audit trail for tests that must
    /// see every write (say, every journal a playbook wrote), however briefly it stood.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<store::Change>> {
        self.sim.store.subscribe()
    }

    /// Every request RBAC refused so far, oldest first (up to the last 10,000).
    pub fn denials(&self) -> Vec<Denial> {
        self.sim
            .denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the server: open watches end first so the graceful shutdown can complete.
    pub async fn shutdown(mut self) {
        self.close_watches();
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.sim.watch_epoch.send_modify(|e| *e += 1);
        self.shutdown.cancel();
    }
}

impl Sim {
    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, User>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        let mut log = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() >= REQUEST_LOG_LIMIT {
            // A deque: a soak sends hundreds of thousands of requests through a full log.
            log.pop_front();
        }
        log.push_back(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(body).ok(),
        });
    }

    fn record_denial(&self, user: &User, attrs: &Attributes<'_>) {
        let mut log = self.denials.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() >= REQUEST_LOG_LIMIT {
            log.remove(0);
        }
        log.push(Denial {
            user: user.name.clone(),
            verb: attrs.verb.to_owned(),
            group: attrs.group.to_owned(),
            resource: attrs.resource.clone(),
            namespace: attrs.namespace.map(str::to_owned),
            name: attrs.name.map(str::to_owned),
        });
    }
}

/// RFC 3339 UTC timestamp with second precision, as Kubernetes writes them.
pub fn now_rfc3339() -> String {
    // Truncated, as the API server writes metav1.Time: rounding would date an object up to
    // half a second after it was made (and after things that happened later).
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
