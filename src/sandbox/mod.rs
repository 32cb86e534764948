//! The sandbox: an embedded world to run Backstop against without a cloud or a cluster.
//!
//! This first version starts Backstop's HTTP server with a built-in configuration and a
//! generated webhook token. The embedded S3 server, the Kubernetes API simulator and the
//! simulated operator join it as they are built.

pub mod certs;
pub mod crds;
pub mod kube;
pub mod operator;
pub mod s3;

use std::io::Write as _;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::app::App;
use crate::config::{self, Config};

/// A running sandbox's built-in configuration and the files it wrote.
pub struct Sandbox {
    /// Backstop's configuration in the sandbox.
    pub config: Config,
    /// The directory holding the sandbox's files (token, later kubeconfig and S3 data).
    pub dir: tempfile::TempDir,
    /// The webhook bearer token.
    pub webhook_token: String,
}

impl Sandbox {
    /// Prepares the sandbox's files and configuration, listening on `listen`.
    pub fn prepare(listen: &str) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("backstop-sandbox-")
            .tempdir()
            .map_err(Error::Io)?;
        let webhook_token = uuid::Uuid::new_v4().simple().to_string();
        let token_path: PathBuf = dir.path().join("webhook-token");
        let mut file = std::fs::File::create(&token_path).map_err(Error::Io)?;
        file.write_all(webhook_token.as_bytes())
            .map_err(Error::Io)?;

        let mut config = config::load_str("")?;
        config.server.listen = listen.to_owned();
        config.responder.auth.bearer_token_file = Some(token_path.display().to_string());
        config.kubernetes.leader_election.enabled = false;
        Ok(Self {
            config,
            dir,
            webhook_token,
        })
    }

    /// Runs Backstop in the sandbox until `shutdown` is cancelled, printing where things are.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let app = App::bind(self.config.clone()).await?;
        let addr = app.local_addr()?;
        println!("Backstop sandbox is running. Stop it with Ctrl-C.");
        println!("  metrics:       http://{addr}/metrics");
        println!("  readiness:     http://{addr}/readyz");
        println!(
            "  webhook:       http://{addr}{}  (Authorization: Bearer {})",
            self.config.server.webhook_path, self.webhook_token
        );
        println!("  sandbox files: {}", self.dir.path().display());
        let result = app.serve(shutdown).await;
        drop(self.dir);
        result
    }
}
