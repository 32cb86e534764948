//! A Kubernetes API server simulator speaking the real REST protocol over HTTP on 127.0.0.1,
//! so that an unmodified kube-rs `Client` (built from the kubeconfig it writes) and `kubectl`
//! both work against it.
//!
//! It is small on purpose and strict where Backstop's correctness depends on the server:
//! resourceVersion and optimistic concurrency, watches with resume and 410, merge and JSON
//! patches, status subresources, finalizers, structural-schema pruning of custom resources,
//! bearer-token authentication and RBAC from stored Roles and bindings. Module by job:
//! [`store`] (objects, versions, history), [`resources`] (served types, CRDs), [`api`] (verbs),
//! [`watch`], [`selector`], [`schema`], [`rbac`], [`discovery`], [`status`] (errors) and
//! [`faults`].

pub mod api;
pub mod discovery;
pub mod events;
pub mod faults;
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
        let task = tokio::spawn(backstop::https::serve(listener, router, tls, token));
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
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn handle(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.record(&method, &uri, &headers, &body);
    match serve(&sim, &method, &uri, &query, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    sim: &Arc<Sim>,
    method: &Method,
    uri: &Uri,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = authenticate(sim, headers)?;
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();

    // Discovery is open to every authenticated user (the system:discovery ClusterRole).
    let discovery = match segments.as_slice() {
        ["version"] => Some(discovery::version()),
        ["api"] => Some(discovery::core_versions()),
        ["apis"] => Some(discovery::groups(&sim.registry)),
        ["api", "v1"] => discovery::resources(&sim.registry, "", "v1"),
        ["apis", group] => discovery::group(&sim.registry, group),
        ["apis", group, version] => discovery::resources(&sim.registry, group, version),
        _ => None,
    };
    if let Some(doc) = discovery {
        if *method != Method::GET {
            return Err(ApiError::method_not_allowed(method.as_str()));
        }
        return Ok(axum::Json(doc).into_response());
    }

    let (group, version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route(uri.path())),
    };
    let target = resolve(&sim.registry, group, version, rest)
        .ok_or_else(|| ApiError::no_route(uri.path()))?;

    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method.as_str(), &target.name) {
        ("GET", None) if watch => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", None) => "create",
        ("PUT", Some(_)) => "update",
        ("PATCH", Some(_)) => "patch",
        ("DELETE", Some(_)) => "delete",
        _ => return Err(ApiError::method_not_allowed(method.as_str())),
    };
    let resource = match &target.sub {
        Some(sub) => format!("{}/{sub}", target.rt.plural),
        None => target.rt.plural.clone(),
    };
    // A list or watch selecting one name is authorised under that name, as the API server
    // does, so a Role's resourceNames can allow it. A selector that does not parse names
    // nothing here; the request fails on it later.
    let selected = matches!(verb, "list" | "watch")
        .then(|| query.get("fieldSelector"))
        .flatten()
        .and_then(|text| FieldSelector::parse(text, &target.rt.kind).ok());
    let attrs = Attributes {
        verb,
        group,
        resource: resource.clone(),
        namespace: target.namespace.as_deref(),
        name: target
            .name
            .as_deref()
            .or_else(|| selected.as_ref().and_then(FieldSelector::exact_name)),
    };
    if !rbac::allowed(&sim.store, &user, &attrs) {
        sim.record_denial(&user, &attrs);
        return Err(ApiError::forbidden(
            &user.name,
            verb,
            group,
            &resource,
            target.name.as_deref(),
            target.namespace.as_deref(),
        ));
    }
    match sim
        .faults
        .check(verb, &resource, target.name.as_deref().unwrap_or_default())
    {
        Some(Injected::Fail(e)) => Err(e),
        Some(Injected::Hang) => std::future::pending().await,
        Some(Injected::FailAfter(e)) => {
            // The request takes effect; only its answer is replaced.
            let _ = carry_out(sim, method, uri, query, headers, body, target, verb).await;
            Err(e)
        }
        Some(Injected::HangAfter) => {
            let _ = carry_out(sim, method, uri, query, headers, body, target, verb).await;
            std::future::pending().await
        }
        None => carry_out(sim, method, uri, query, headers, body, target, verb).await,
    }
}

/// Serves an authenticated, authorized request for `target`.
#[allow(clippy::too_many_arguments)] // the parts of one request, as `serve` split them
async fn carry_out(
    sim: &Arc<Sim>,
    method: &Method,
    uri: &Uri,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
    target: Target,
    verb: &str,
) -> Result<Response, ApiError> {
    // Only JSON bodies are understood. A client sending protobuf (kubectl does for built-in
    // kinds) gets 415, and client-go then retries with JSON, as against a server without
    // protobuf support.
    if matches!(verb, "create" | "update") {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        if !content_type.starts_with("application/json") {
            return Err(ApiError::unsupported_media_type(content_type));
        }
    }
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let name = target.name.clone().unwrap_or_default();
    match verb {
        "get" if table::wants_table(accept) && target.sub.is_none() => {
            let object = api::get(sim, &target, &name)?;
            let rv = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Ok(axum::Json(table::table(
                &target.rt,
                &[object],
                &rv,
                jiff::Timestamp::now(),
            ))
            .into_response())
        }
        "list" if table::wants_table(accept) => {
            let list = api::list(sim, &target, &list_params(query, &target)?)?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let rv = list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            Ok(
                axum::Json(table::table(&target.rt, &items, rv, jiff::Timestamp::now()))
                    .into_response(),
            )
        }
        "get" => match target.sub.as_deref() {
            None | Some("status") => Ok(axum::Json(api::get(sim, &target, &name)?).into_response()),
            Some("log") if target.rt.log_subresource => {
                let tail = query.get("tailLines").and_then(|t| t.parse().ok());
                let text = api::log(sim, &target, &name, tail)?;
                Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
            }
            Some(_) => Err(ApiError::no_route(uri.path())),
        },
        "list" => {
            Ok(axum::Json(api::list(sim, &target, &list_params(query, &target)?)?).into_response())
        }
        "watch" => {
            let params = watch::WatchParams {
                list: list_params(query, &target)?,
                resource_version: match query.get("resourceVersion").map(String::as_str) {
                    None | Some("") => None,
                    Some(v) => Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid resourceVersion {v:?}"))
                    })?),
                },
                bookmarks: query
                    .get("allowWatchBookmarks")
                    .is_some_and(|v| v == "true"),
                send_initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .map(Duration::from_secs),
            };
            let body = watch::start(sim, &target, params);
            Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        "create" => {
            let object = parse_json(&body)?;
            let created = api::create(sim, &target, object, dry_run)?;
            Ok((axum::http::StatusCode::CREATED, axum::Json(created)).into_response())
        }
        "update" => {
            let object = parse_json(&body)?;
            Ok(axum::Json(api::write(
                sim,
                &target,
                &name,
                Change::Replace(object),
                dry_run,
            )?)
            .into_response())
        }
        "patch" => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let patch = parse_json(&body)?;
            let change = Change::Patch {
                content_type,
                body: patch,
            };
            Ok(axum::Json(api::write(sim, &target, &name, change, dry_run)?).into_response())
        }
        "delete" => {
            let options = if body.is_empty() {
                None
            } else {
                Some(parse_json(&body)?)
            };
            let (code, object) = api::delete(sim, &target, &name, options.as_ref())?;
            let code = axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK);
            Ok((code, axum::Json(object)).into_response())
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

fn authenticate(sim: &Sim, headers: &HeaderMap) -> Result<User, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    sim.lock_tokens()
        .get(token.trim())
        .cloned()
        .ok_or_else(ApiError::unauthorized)
}

/// Maps the path after `/api/v1` or `/apis/G/V` to a target. `namespaces/X/...` is a namespaced
/// path when the next segment is a namespaced resource of this group/version; otherwise it
/// addresses the Namespace `X` itself (and its subresources).
fn resolve(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let namespaced = |plural: &str| {
        registry
            .find(group, version, plural)
            .filter(|t| t.namespaced)
    };
    let target = |rt, namespace: Option<&str>, name: Option<&&str>, sub: Option<&&str>| Target {
        rt,
        namespace: namespace.map(str::to_owned),
        name: name.map(|n| (*n).to_owned()),
        sub: sub.map(|s| (*s).to_owned()),
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if namespaced(plural).is_some() && tail.len() <= 2 =>
        {
            Some(target(
                namespaced(plural)?,
                Some(ns),
                tail.first(),
                tail.get(1),
            ))
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let rt = registry.find(group, version, plural)?;
            // Namespaced resources may be listed/watched across namespaces, never addressed
            // by name without one.
            if rt.namespaced && !tail.is_empty() {
                return None;
            }
            Some(target(rt, None, tail.first(), tail.get(1)))
        }
        _ => None,
    }
}

fn list_params(query: &HashMap<String, String>, target: &Target) -> Result<ListParams, ApiError> {
    Ok(ListParams {
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(
            query.get("fieldSelector").map_or("", String::as_str),
            &target.rt.kind,
        )
        .map_err(ApiError::bad_request)?,
        limit: query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
        continue_token: query.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
