//! The sandbox: an embedded world to run Backstop against without a cloud or a cluster.
//!
//! [`world`] starts an embedded S3 with two regions ([`s3`]), a Kubernetes API simulator
//! ([`kube`]) with the operator's CRDs ([`crds`]), a sample cluster with backup history and a
//! simulated Percona operator ([`operator`]); [`run`] adds Backstop itself and a fault control
//! endpoint ([`control`]).
//!
//! A crate of its own: the production build (`backstop` without its default `sandbox`
//! feature) does not depend on it, so it contains none of this by construction.

pub mod apiserver;
pub mod aws_health;
pub mod backend;
pub mod certs;
pub mod control;
pub mod crds;
pub mod drill;
pub mod kube;
pub mod manifests;
pub mod operator;
pub mod s3;
mod serve;
pub mod sts;
pub mod world;

use tokio_util::sync::CancellationToken;

use backstop::runtime::app::App;
use control::Control;
use world::{World, WorldOptions};

/// Why the sandbox could not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The world (S3, API simulator, operator) did not start.
    #[error(transparent)]
    World(#[from] world::WorldError),
    /// The control endpoint or the sandbox's files failed.
    #[error("sandbox: {0}")]
    Io(#[from] std::io::Error),
    /// Backstop itself, run against the world, failed.
    #[error(transparent)]
    Backstop(#[from] backstop::Error),
    /// The shipped RBAC could not be applied.
    #[error("applying the shipped RBAC: {0}")]
    Manifests(#[from] manifests::ManifestError),
    /// The ServiceAccount's token or client could not be had.
    #[error("running as the shipped ServiceAccount: {0}")]
    ServiceAccount(#[from] backend::BackendError),
}

/// A client for the world's API server as the shipped `backstop` ServiceAccount, under the
/// shipped RBAC (applied first): what Backstop runs as in a cluster.
///
/// # Errors
///
/// [`SandboxError`] when the manifests cannot be applied or the token cannot be had.
pub async fn shipped_service_account(world: &World) -> Result<::kube::Client, SandboxError> {
    manifests::apply(&world.client, &manifests::shipped_rbac()?).await?;
    let token = world
        .kube
        .service_account_token(manifests::NAMESPACE, manifests::SERVICE_ACCOUNT)
        .await?;
    Ok(world.kube.client_for(&token).await?)
}

/// Runs the whole sandbox until `shutdown`: the world on the API server `backend`, Backstop
/// against it (listening on `listen`), and the fault control endpoint; prints where
/// everything is.
pub async fn run(
    listen: &str,
    backend: backend::Backend,
    shutdown: CancellationToken,
) -> Result<(), SandboxError> {
    let world = World::start(WorldOptions {
        backend,
        ..WorldOptions::default()
    })
    .await
    .map_err(SandboxError::from)?;
    let webhook_token = uuid::Uuid::new_v4().simple().to_string();
    let token_path = world.dir().join("webhook-token");
    std::fs::write(&token_path, &webhook_token).map_err(SandboxError::from)?;
    let config = world
        .backstop_config(listen, &token_path)
        .map_err(backstop::Error::from)?;
    // As in a cluster: the shipped ServiceAccount under the shipped RBAC, not an
    // administrator, so the sandbox proves the manifests grant enough.
    let client = shipped_service_account(&world).await?;
    let app = App::bind_with(
        config.clone(),
        Some(client),
        std::sync::Arc::new(backstop::clock::SystemClock),
    )
    .await?;
    let addr = app.local_addr()?;
    let control = Control::start(world.s3.faults().clone())
        .await
        .map_err(SandboxError::from)?;

    let kubeconfig = world.kubeconfig_path();
    let primary = world.endpoint(s3::PRIMARY_REGION);
    let secondary = world.endpoint(s3::SECONDARY_REGION);
    println!("Backstop sandbox is running. Stop it with Ctrl-C.");
    println!("  metrics:        http://{addr}/metrics");
    println!("  readiness:      http://{addr}/readyz");
    println!(
        "  webhook:        http://{addr}{}  (Authorization: Bearer {webhook_token})",
        config.server.webhook_path
    );
    println!("  kubernetes:     {}", world.kube.url());
    println!(
        "  runs as:        system:serviceaccount:{}:{} (deploy/rbac.yaml)",
        manifests::NAMESPACE,
        manifests::SERVICE_ACCOUNT
    );
    println!("  kubeconfig:     {}", kubeconfig.display());
    println!(
        "                  kubectl --kubeconfig {} get pxc,pxc-backup -A",
        kubeconfig.display()
    );
    println!(
        "  s3 {}:   {primary}  (bucket {})",
        s3::PRIMARY_REGION,
        world::PRIMARY_BUCKET
    );
    println!(
        "  s3 {}:   {secondary}  (bucket {})",
        s3::SECONDARY_REGION,
        world::SECONDARY_BUCKET
    );
    println!(
        "  s3 keys:        AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}",
        world.credentials.access_key_id, world.credentials.secret_access_key
    );
    println!("  fault control:  {}", control.url());
    println!(
        "                  curl -X POST {}/faults/{}/refuse   # break the primary region",
        control.url(),
        s3::PRIMARY_REGION
    );
    println!(
        "                  curl -X DELETE {}/faults           # repair everything",
        control.url()
    );
    println!(
        "                  faults: {}",
        control::FAULT_NAMES.join(", ")
    );

    let result = app.serve(shutdown).await;
    control.stop().await;
    world.shutdown().await;
    Ok(result?)
}
