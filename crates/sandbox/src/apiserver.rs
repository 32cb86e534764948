//! A real Kubernetes API server for the tests and the sandbox: etcd, kube-apiserver and
//! kube-controller-manager started as child processes on 127.0.0.1, on free ports picked at
//! start, with a CA made for this one server, RBAC authorization, a static admin token,
//! service-account tokens (TokenRequest, signed with a key made here) and the controllers a
//! test relies on (garbage collection, namespace deletion, service accounts and their token
//! Secrets).
//!
//! The binaries come from `scripts/kube-apiserver.sh`, which builds them once per machine
//! into a cache outside the checkout ([`KubeBinaries::locate`]); etcd is Debian's `etcd-server`.
//! Every instance lives in its own temporary directory (etcd's data on `/dev/shm` where there
//! is one: it syncs every write, and a disk makes that the slowest part of a test), so several
//! suites on one machine never share anything. Dropping a [`RealApiServer`] kills its
//! processes; [`RealApiServer::shutdown`] also waits for them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use rcgen::KeyPair;
use tokio::process::{Child, Command};

use crate::certs::{CertError, SandboxPki};
use crate::kube::Denial;

/// The Kubernetes version `scripts/kube-apiserver.sh` builds.
pub const KUBERNETES_VERSION: &str = "1.20.2";

/// The audience of the service-account tokens this server issues and accepts.
const AUDIENCE: &str = "https://kubernetes.default.svc";

/// How long the server may take to become ready: a cold start on a loaded 2-core machine
/// (the RBAC bootstrap and the first CRD discovery) takes 5 to 20 seconds.
const READY_DEADLINE: Duration = Duration::from_secs(120);

/// How many times a start whose port was taken is tried.
const START_ATTEMPTS: u32 = 3;

/// How often to poll for readiness while starting.
const READY_POLL: Duration = Duration::from_millis(100);

/// Why the real API server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// The built binaries are not where they should be.
    #[error(
        "no kube-apiserver {KUBERNETES_VERSION} at {0}: run `bash scripts/kube-apiserver.sh` \
         (or `bash scripts/test.sh`, which runs it) to build it once, or set \
         BACKSTOP_KUBE_BIN_DIR to a directory holding kube-apiserver and kube-controller-manager"
    )]
    NotBuilt(PathBuf),
    /// Files, ports or processes failed.
    #[error("real API server: {0}")]
    Io(#[from] std::io::Error),
    /// The certificates could not be made.
    #[error("real API server certificates: {0}")]
    Certs(#[from] CertError),
    /// The service-account key could not be made.
    #[error("real API server service-account key: {0}")]
    Key(#[from] rcgen::Error),
    /// A process exited or the server never became ready.
    #[error("real API server did not start: {0}")]
    Start(String),
    /// kube-rs refused the configuration or a request failed.
    #[error("real API server client: {0}")]
    Client(#[from] kube::Error),
    /// The generated kubeconfig did not give a client.
    #[error(transparent)]
    Kubeconfig(#[from] crate::kube::SimError),
}

/// Where the real server's binaries are.
#[derive(Debug, Clone)]
pub struct KubeBinaries {
    /// `kube-apiserver`.
    pub apiserver: PathBuf,
    /// `kube-controller-manager`.
    pub controller_manager: PathBuf,
    /// `etcd` (Debian's `etcd-server`; `BACKSTOP_ETCD` overrides the one on `PATH`).
    pub etcd: PathBuf,
}

impl KubeBinaries {
    /// `$BACKSTOP_KUBE_BIN_DIR`, else the cache `scripts/kube-apiserver.sh` builds into:
    /// `$BACKSTOP_KUBE_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/backstop`, then
    /// `kubernetes-VERSION/bin`.
    pub fn locate() -> Result<Self, ApiServerError> {
        let dir = match std::env::var_os("BACKSTOP_KUBE_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => default_cache()?
                .join(format!("kubernetes-{KUBERNETES_VERSION}"))
                .join("bin"),
        };
        let apiserver = dir.join("kube-apiserver");
        let controller_manager = dir.join("kube-controller-manager");
        if !apiserver.is_file() || !controller_manager.is_file() {
            return Err(ApiServerError::NotBuilt(dir));
        }
        let etcd =
            std::env::var_os("BACKSTOP_ETCD").map_or_else(|| PathBuf::from("etcd"), PathBuf::from);
        Ok(Self {
            apiserver,
            controller_manager,
            etcd,
        })
    }
}

fn default_cache() -> Result<PathBuf, ApiServerError> {
    if let Some(dir) = std::env::var_os("BACKSTOP_KUBE_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cache"))
            .ok_or_else(|| ApiServerError::NotBuilt(PathBuf::from("$HOME/.cache")))?,
    };
    Ok(base.join("backstop"))
}

/// A running etcd, kube-apiserver and kube-controller-manager.
pub struct RealApiServer {
    dir: tempfile::TempDir,
    /// etcd's data, removed with the server (kept apart from `dir` to sit on `/dev/shm`).
    _etcd_dir: tempfile::TempDir,
    url: String,
    /// etcd's client URL (`http://127.0.0.1:PORT`), for compaction.
    etcd_url: String,
    ca_pem: String,
    admin_token: String,
    etcd: Child,
    apiserver: Child,
    /// Started once the API server is ready.
    controller_manager: Option<Child>,
}

impl RealApiServer {
    /// Starts a new server from the cached binaries ([`KubeBinaries::locate`]).
    pub async fn start() -> Result<Self, ApiServerError> {
        Self::start_with(&KubeBinaries::locate()?).await
    }

    /// Starts a new server from `binaries`, and waits until it is ready. A port picked free
    /// can be taken by another process before etcd or the API server binds it (many suites
    /// start servers at once): such a start is tried again, up to [`START_ATTEMPTS`] times.
    pub async fn start_with(binaries: &KubeBinaries) -> Result<Self, ApiServerError> {
        let mut attempt = 1;
        loop {
            match Self::start_once(binaries).await {
                Err(ApiServerError::Start(why))
                    if why.contains("address already in use") && attempt < START_ATTEMPTS =>
                {
                    tracing::warn!(attempt, %why, "a port was taken; starting again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once(binaries: &KubeBinaries) -> Result<Self, ApiServerError> {
        backstop::install_crypto_provider();
        let dir = tempfile::Builder::new()
            .prefix("backstop-apiserver-")
            .tempdir()?;
        let shm = Path::new("/dev/shm");
        let etcd_dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("backstop-etcd-")
                .tempdir_in(shm)
                .or_else(|_| tempfile::Builder::new().prefix("backstop-etcd-").tempdir())?
        } else {
            tempfile::Builder::new()
                .prefix("backstop-etcd-")
                .tempdir()?
        };
        let files = Files::write(dir.path())?;
        let admin_token = files.admin_token.clone();

        // Ports are picked free just before each process binds them; a collision with another
        // process in that instant fails the start with a clear error rather than a hang.
        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let etcd = spawn(
            Command::new(&binaries.etcd)
                .arg("--name=backstop")
                .arg(format!(
                    "--data-dir={}",
                    etcd_dir.path().join("data").display()
                ))
                .arg(format!("--listen-client-urls={etcd_url}"))
                .arg(format!("--advertise-client-urls={etcd_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=backstop={peer_url}"))
                .arg("--log-level=warn"),
            &dir.path().join("etcd.log"),
        )?;

        let port = free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let d = dir.path();
        let root = d.to_owned();
        let file = |flag: &str, name: &str| format!("--{flag}={}", root.join(name).display());
        let apiserver = spawn(
            Command::new(&binaries.apiserver)
                .arg(format!("--etcd-servers={etcd_url}"))
                .arg("--bind-address=127.0.0.1")
                .arg("--advertise-address=127.0.0.1")
                .arg(format!("--secure-port={port}"))
                .arg("--insecure-port=0")
                .arg(format!("--cert-dir={}", d.display()))
                .arg(file("tls-cert-file", "serving.crt"))
                .arg(file("tls-private-key-file", "serving.key"))
                .arg(file("token-auth-file", "tokens.csv"))
                .arg("--authorization-mode=RBAC")
                .arg(format!("--service-account-issuer={AUDIENCE}"))
                .arg(format!("--api-audiences={AUDIENCE}"))
                .arg(file("service-account-key-file", "sa.pub"))
                .arg(file("service-account-signing-key-file", "sa.key"))
                .arg("--service-cluster-ip-range=10.0.0.0/24")
                // No Endpoints for the `kubernetes` Service: nothing here routes to it.
                .arg("--endpoint-reconciler-type=none")
                .arg("--profiling=false")
                // PodTemplates are watched straight from etcd, past the watch cache (which
                // keeps recent history whatever etcd compacts): the conformance suite
                // compacts etcd and resumes a PodTemplate watch to see the server's 410.
                .arg("--watch-cache-sizes=podtemplates#0")
                // Every request's outcome, so tests can see what RBAC refused (the
                // simulator's `denials`), as a cluster's audit log shows an administrator.
                .arg(file("audit-policy-file", "audit-policy.yaml"))
                .arg(file("audit-log-path", "audit.log"))
                .arg("--audit-log-format=json")
                .arg("--audit-log-mode=blocking")
                .arg("--v=1"),
            &d.join("kube-apiserver.log"),
        )?;

        let mut server = Self {
            dir,
            _etcd_dir: etcd_dir,
            url,
            etcd_url: etcd_url.clone(),
            ca_pem: files.ca_pem,
            admin_token,
            etcd,
            apiserver,
            controller_manager: None,
        };
        server.wait_ready().await?;

        let kubeconfig = server.dir.path().join("admin.kubeconfig");
        server.write_kubeconfig(&kubeconfig, &server.admin_token.clone())?;
        let d = server.dir.path().to_owned();
        server.controller_manager = Some(spawn(
            Command::new(&binaries.controller_manager)
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .arg("--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token")
                .arg(file("service-account-private-key-file", "sa.key"))
                .arg(file("root-ca-file", "ca.crt"))
                .arg("--use-service-account-credentials=false")
                .arg("--leader-elect=false")
                .arg("--port=0")
                .arg("--secure-port=0")
                .arg("--v=1"),
            &d.join("kube-controller-manager.log"),
        )?);
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), ApiServerError> {
        let client = self.admin_client().await?;
        let deadline = tokio::time::Instant::now() + READY_DEADLINE;
        loop {
            for (name, child) in [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ] {
                if let Some(status) = child.try_wait()? {
                    return Err(ApiServerError::Start(format!(
                        "{name} exited ({status}); its log: {}",
                        tail(&self.dir.path().join(format!("{name}.log")))
                    )));
                }
            }
            let request = axum::http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| ApiServerError::Start(e.to_string()))?;
            if let Ok(text) = client.request_text(request).await
                && text.trim() == "ok"
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiServerError::Start(format!(
                    "not ready after {READY_DEADLINE:?}; kube-apiserver's log: {}",
                    tail(&self.dir.path().join("kube-apiserver.log"))
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The server URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The PEM CA certificate that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token of the administrator (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A kubeconfig document for this server and `token`.
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        crate::kube::kubeconfig_yaml(&self.url, &self.ca_pem, token)
    }

    /// Writes the kubeconfig for `token` to `path` (readable only by the owner).
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> Result<(), ApiServerError> {
        crate::kube::write_private(path, &self.kubeconfig_yaml(token))?;
        Ok(())
    }

    /// A kube-rs client for `token`, built from the kubeconfig as a user's would be.
    pub async fn client_for(&self, token: &str) -> Result<kube::Client, ApiServerError> {
        Ok(crate::kube::client_from_kubeconfig(&self.kubeconfig_yaml(token)).await?)
    }

    /// A kube-rs client authenticated as the administrator.
    pub async fn admin_client(&self) -> Result<kube::Client, ApiServerError> {
        self.client_for(&self.admin_token.clone()).await
    }

    /// A token for ServiceAccount `namespace/name` (which must exist), from the TokenRequest
    /// API as the kubelet gets a pod's: valid for an hour.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, ApiServerError> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin_client().await?, namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![AUDIENCE.to_owned()]),
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let answer = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?;
        answer
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| ApiServerError::Start("TokenRequest answered without a token".into()))
    }

    /// Compacts etcd's history up to now, as the API server itself does every five minutes:
    /// a watch (of a kind the watch cache does not serve, such as PodTemplates here) resumed
    /// from an older resourceVersion then gets 410 Expired. The simulator's `compact` is the
    /// same fault.
    pub async fn compact(&self) -> Result<(), ApiServerError> {
        let status = etcd_post(&self.etcd_url, "/v3/kv/range", r#"{"key":"AA=="}"#).await?;
        let revision = status
            .pointer("/header/revision")
            .and_then(|r| {
                r.as_str()
                    .and_then(|t| t.parse::<u64>().ok())
                    .or(r.as_u64())
            })
            .ok_or_else(|| ApiServerError::Start(format!("etcd gave no revision: {status}")))?;
        etcd_post(
            &self.etcd_url,
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )
        .await?;
        Ok(())
    }

    /// Every request RBAC refused (403) so far, from the server's audit log, oldest first.
    pub fn denials(&self) -> Vec<Denial> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        text.lines().filter_map(denial).collect()
    }

    /// The directory holding the server's files and logs (`kube-apiserver.log`, ...).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the processes and waits for them, then removes the files.
    pub async fn shutdown(mut self) {
        let children = self
            .controller_manager
            .iter_mut()
            .chain([&mut self.apiserver, &mut self.etcd]);
        for child in children {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

impl Drop for RealApiServer {
    fn drop(&mut self) {
        let children = self
            .controller_manager
            .iter_mut()
            .chain([&mut self.apiserver, &mut self.etcd]);
        for child in children {
            let _ = child.start_kill();
        }
    }
}

/// The files the processes read: PKI, the token file, the service-account key.
struct Files {
    ca_pem: String,
    admin_token: String,
}

impl Files {
    fn write(dir: &Path) -> Result<Self, ApiServerError> {
        let pki = SandboxPki::generate_for("kube-apiserver", &["kubernetes.default.svc"])?;
        let sa_key = KeyPair::generate()?;
        let admin_token = uuid::Uuid::new_v4().simple().to_string();

        std::fs::write(dir.join("ca.crt"), &pki.ca_pem)?;
        std::fs::write(dir.join("serving.crt"), &pki.server_cert_pem)?;
        crate::kube::write_private(&dir.join("serving.key"), &pki.server_key_pem)?;
        crate::kube::write_private(&dir.join("sa.key"), &sa_key.serialize_pem())?;
        std::fs::write(dir.join("sa.pub"), sa_key.public_key_pem())?;
        std::fs::write(
            dir.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n\
             rules:\n- level: Metadata\n",
        )?;
        // token,user,uid,"group,..."
        crate::kube::write_private(
            &dir.join("tokens.csv"),
            &format!("{admin_token},backstop-admin,backstop-admin,\"system:masters\"\n"),
        )?;
        Ok(Self {
            ca_pem: pki.ca_pem,
            admin_token,
        })
    }
}

/// POSTs `body` to etcd's JSON gateway at `path`; the answer as JSON.
async fn etcd_post(
    base: &str,
    path: &str,
    body: &str,
) -> Result<serde_json::Value, ApiServerError> {
    use http_body_util::{BodyExt as _, Full};
    use hyper::body::Bytes;
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let request = axum::http::Request::post(format!("{base}{path}"))
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| ApiServerError::Start(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| ApiServerError::Start(format!("etcd {path}: {e}")))?;
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiServerError::Start(format!("etcd {path}: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiServerError::Start(format!("etcd {path} answered no JSON: {e}")))
}

/// A port free on 127.0.0.1 at this moment.
fn free_port() -> Result<u16, std::io::Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Spawns `command` with its output in `log`, killed when its handle is dropped.
fn spawn(command: &mut Command, log: &Path) -> Result<Child, std::io::Error> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{}: {e}", command.as_std().get_program().to_string_lossy()),
            )
        })
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The denial an audit log line records, if it records one: a request answered 403 by the
/// authorizer (a final stage, so each request counts once).
fn denial(line: &str) -> Option<Denial> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = |ptr: &str| event.pointer(ptr).and_then(serde_json::Value::as_str);
    if event
        .pointer("/responseStatus/code")
        .and_then(serde_json::Value::as_u64)
        != Some(403)
        || !matches!(text("/stage"), Some("ResponseComplete" | "Panic"))
    {
        return None;
    }
    let resource = text("/objectRef/resource")?;
    let resource = match text("/objectRef/subresource") {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    Some(Denial {
        user: text("/user/username")?.to_owned(),
        verb: text("/verb")?.to_owned(),
        group: text("/objectRef/apiGroup").unwrap_or_default().to_owned(),
        resource,
        namespace: text("/objectRef/namespace").map(str::to_owned),
        name: text("/objectRef/name").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_line_of_a_refused_request_is_a_denial_and_others_are_not() {
        let line = r#"{"kind":"Event","level":"Metadata","stage":"ResponseComplete","verb":"get","user":{"username":"system:serviceaccount:backstop:backstop"},"objectRef":{"resource":"pods","subresource":"log","namespace":"percona","name":"p","apiVersion":"v1"},"responseStatus":{"code":403}}"#;
        assert_eq!(
            denial(line),
            Some(Denial {
                user: "system:serviceaccount:backstop:backstop".into(),
                verb: "get".into(),
                group: String::new(),
                resource: "pods/log".into(),
                namespace: Some("percona".into()),
                name: Some("p".into()),
            })
        );
        assert_eq!(denial(&line.replace("403", "200")), None);
        assert_eq!(
            denial(&line.replace("ResponseComplete", "ResponseStarted")),
            None
        );
        assert_eq!(denial("not json"), None);
    }
}
