//! Backstop running against a sandbox world on 127.0.0.1:0, with helpers to wait on
//! `/metrics` with a deadline (watches and probes are asynchronous) and to read samples.

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::Clock;
use backstop::config::Config;
use backstop::runtime::app::App;
use backstop_sandbox::world::{World, WorldOptions};
use tokio_util::sync::CancellationToken;

/// How long a condition may take to hold before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Backstop serving against a world.
pub struct Running {
    /// The world it watches.
    pub world: World,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), backstop::Error>>,
}

/// Starts a world with `options`, then Backstop with the world's configuration adjusted by
/// `tune`, on `clock`.
pub async fn start(
    options: WorldOptions,
    clock: Arc<dyn Clock>,
    tune: impl FnOnce(&mut Config),
) -> Running {
    start_in(World::start(options).await.unwrap(), clock, tune).await
}

/// Like [`start`], on a world the caller has already started (and perhaps prepared, say with
/// API faults that must be in place before Backstop's first request).
pub async fn start_in(
    world: World,
    clock: Arc<dyn Clock>,
    tune: impl FnOnce(&mut Config),
) -> Running {
    let client = world.client.clone();
    serve(world, client, clock, tune).await
}

/// Like [`start`], with Backstop running as the `backstop` ServiceAccount of the rendered
/// `deploy/` manifests under their RBAC (enforced by the simulator), not as an admin: a
/// permission the manifests lack fails the test.
pub async fn start_with_deployed_rbac(
    options: WorldOptions,
    clock: Arc<dyn Clock>,
    tune: impl FnOnce(&mut Config),
) -> Running {
    let world = World::start(options).await.unwrap();
    // The rendered base includes the `backstop` Namespace.
    let objects = super::deploy::kustomize(&super::deploy::deploy_dir(""));
    start_as_service_account(world, &objects, clock, tune).await
}

/// Like [`start_in`], with Backstop running as the `backstop` ServiceAccount under the RBAC of
/// `objects` (rendered manifests, perhaps edited: tests/it/least_privilege.rs removes one
/// permission at a time). `objects` must include the `backstop` Namespace.
pub async fn start_as_service_account(
    world: World,
    objects: &[serde_json::Value],
    clock: Arc<dyn Clock>,
    tune: impl FnOnce(&mut Config),
) -> Running {
    super::deploy::apply(&world.client, objects).await;
    let token = world
        .kube
        .service_account_token("backstop", "backstop")
        .await
        .unwrap();
    let client = world.kube.client_for(&token).await.unwrap();
    serve(world, client, clock, tune).await
}

async fn serve(
    world: World,
    client: kube::Client,
    clock: Arc<dyn Clock>,
    tune: impl FnOnce(&mut Config),
) -> Running {
    let token = world.dir().join("token");
    std::fs::write(&token, "t").unwrap();
    let mut config = world.backstop_config("127.0.0.1:0", &token).unwrap();
    tune(&mut config);
    let app = App::bind_with(config, Some(client), clock).await.unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.serve(shutdown.clone()));
    Running {
        world,
        base,
        shutdown,
        task,
    }
}

impl Running {
    /// What `backstop status` says about the world's managed clusters: its rows and its
    /// table, with the configuration Backstop runs with.
    pub async fn status(&self) -> (Vec<backstop::responder::status::StatusRow>, String) {
        let config = self
            .world
            .backstop_config("127.0.0.1:0", &self.world.dir().join("token"))
            .unwrap();
        let rows = backstop::responder::status::status(&self.world.client, &config, None, None)
            .await
            .unwrap();
        let table = backstop::responder::status::render_table(&rows);
        (rows, table)
    }

    /// The current `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls `/metrics` until `check` holds, failing after [`DEADLINE`].
    pub async fn wait_until(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let text = self.metrics().await;
            if check(&text) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never: {what}\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until `line` is one of `/metrics`' lines.
    pub async fn wait_for(&self, line: &str) -> String {
        self.wait_until(line, |t| t.lines().any(|l| l == line))
            .await
    }

    /// Stops Backstop, then the world.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.world.shutdown().await;
    }
}

/// The value of the first sample of `name` whose line contains every needle.
pub fn sample(text: &str, name: &str, needles: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
