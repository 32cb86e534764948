//! The prober inside Backstop, in the sandbox world: targets discovered from the cluster's
//! storages and the failover policy, failures visible in metrics, a hanging target not
//! delaying another, discovery following cluster changes, `backstop check`, and ambient
//! credentials asked for once per cycle, outside the timed requests.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use backstop::clock::SystemClock;
use backstop::config::StaticTarget;
use backstop::pxc::PerconaXtraDBCluster;
use backstop::s3::client::StaticCredentials;
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, World, WorldOptions};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::common;

use common::sandbox::{self, Running, sample};
use common::{Backend, on_both_backends};

async fn start(backend: Backend) -> Running {
    let options = WorldOptions {
        operator_interval: None,
        history: 1,
        ..common::world_on(backend)
    };
    sandbox::start(options, Arc::new(SystemClock), |config| {
        config.probe.interval = backstop::config::HumanDuration(Duration::from_secs(1));
        config.probe.timeout = backstop::config::HumanDuration(Duration::from_millis(500));
    })
    .await
}

fn primary() -> String {
    format!("bucket=\"{}\"", world::PRIMARY_BUCKET)
}

fn secondary() -> String {
    format!("bucket=\"{}\"", world::SECONDARY_BUCKET)
}

/// The `target` label of the target whose info series has `bucket`.
fn target_of(text: &str, bucket: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with("backstop_s3_target_info{") && l.contains(bucket))
        .unwrap_or_else(|| panic!("no target_info for {bucket}:\n{text}"));
    let start = line.find("target=\"").unwrap() + 8;
    let rest = &line[start..];
    rest[..rest.find('"').unwrap()].to_owned()
}

on_both_backends!(discovered_targets_are_probed_and_a_refused_primary_shows_up);
async fn discovered_targets_are_probed_and_a_refused_primary_shows_up(backend: Backend) {
    let r = start(backend).await;
    let text = r
        .wait_until("both regions up", |t| {
            t.contains("backstop_s3_target_info{")
                && t.contains(&primary())
                && t.contains(&secondary())
                && t.lines()
                    .filter(|l| l.starts_with("backstop_s3_up{") && l.ends_with(" 1"))
                    .count()
                    == 2
        })
        .await;
    // The failover secondary and the cluster's s3-us-east storage are the same target:
    // probed once, with two users in its info series.
    let secondary_infos = text
        .lines()
        .filter(|l| l.starts_with("backstop_s3_target_info{") && l.contains(&secondary()))
        .count();
    assert_eq!(secondary_infos, 2, "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("backstop_s3_up{"))
            .count(),
        2
    );

    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::Refuse).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    let primary_target = target_of(&text, &primary());
    let up = format!("target=\"{primary_target}\"");
    let text = r
        .wait_until("primary down with connect errors", |t| {
            sample(t, "backstop_s3_up{", &[&up]) == Some(0.0)
                && sample(
                    t,
                    "backstop_s3_probe_errors_total{",
                    &[&up, "class=\"connect\""],
                )
                .unwrap_or(0.0)
                    >= 1.0
        })
        .await;
    let secondary_target = target_of(&text, &secondary());
    assert_eq!(
        sample(
            &text,
            "backstop_s3_up{",
            &[&format!("target=\"{secondary_target}\"")]
        ),
        Some(1.0),
        "the other region is unaffected"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_hanging_target_does_not_delay_another() {
    let r = start(Backend::Simulator).await;
    let text = r
        .wait_until("both targets known", |t| {
            t.lines()
                .filter(|l| l.starts_with("backstop_s3_up{") && l.ends_with(" 1"))
                .count()
                == 2
        })
        .await;
    let primary_target = target_of(&text, &primary());
    let secondary_target = target_of(&text, &secondary());
    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::Hang).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    let cycles = |t: &str| {
        sample(
            t,
            "backstop_s3_probe_duration_seconds_count{",
            &[
                &format!("target=\"{secondary_target}\""),
                "operation=\"head_bucket\"",
            ],
        )
        .unwrap_or(0.0)
    };
    let primary_timeouts = |t: &str| {
        sample(
            t,
            "backstop_s3_probe_errors_total{",
            &[&format!("target=\"{primary_target}\""), "class=\"timeout\""],
        )
        .unwrap_or(0.0)
    };
    let start_cycles = cycles(&r.metrics().await);
    // While the primary's cycles hang until they time out, the secondary keeps completing
    // cycles: three more of them before the primary has timed out even twice would be
    // impossible if one target's cycle waited for the other's.
    let text = r
        .wait_until("secondary keeps cycling", |t| {
            cycles(t) >= start_cycles + 3.0
        })
        .await;
    assert_eq!(
        sample(
            &text,
            "backstop_s3_up{",
            &[&format!("target=\"{secondary_target}\"")]
        ),
        Some(1.0)
    );
    r.wait_until("primary times out", |t| primary_timeouts(t) >= 1.0)
        .await;
    r.stop().await;
}

on_both_backends!(discovery_follows_cluster_changes_and_removes_stale_series);
async fn discovery_follows_cluster_changes_and_removes_stale_series(backend: Backend) {
    let r = start(backend).await;
    r.wait_until("both targets up", |t| {
        t.lines()
            .filter(|l| l.starts_with("backstop_s3_up{") && l.ends_with(" 1"))
            .count()
            == 2
    })
    .await;
    let clusters: Api<PerconaXtraDBCluster> =
        Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    // Drop the primary storage (and the schedule and PITR that use it): its target goes away.
    clusters
        .patch(
            world::CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backup": {
                "storages": {world::PRIMARY_STORAGE: null},
                "schedule": [], "pitr": {"enabled": false, "storageName": world::SECONDARY_STORAGE},
            }}})),
        )
        .await
        .unwrap();
    let text = r
        .wait_until("primary series removed", |t| {
            !t.lines()
                .any(|l| l.starts_with("backstop_s3_") && l.contains(&primary()))
                && !t
                    .lines()
                    .any(|l| l.starts_with("backstop_s3_up{") && l.contains("pxc-backups/"))
        })
        .await;
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("backstop_s3_up{"))
            .count(),
        1,
        "{text}"
    );
    r.stop().await;
}

on_both_backends!(
    backstop_check_reports_and_exits_by_health,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn backstop_check_reports_and_exits_by_health(backend: Backend) {
    let r = start(backend).await;
    let dir = r.world.dir().to_owned();
    let config_path = dir.join("check.yaml");
    let token = dir.join("token");
    let config = r.world.backstop_config("127.0.0.1:0", &token).unwrap();
    std::fs::write(&config_path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    let check = |output: &str| {
        Command::new(env!("CARGO_BIN_EXE_backstop"))
            .args(["check", "--config"])
            .arg(&config_path)
            .args(["--output", output])
            .env("KUBECONFIG", r.world.kubeconfig_path())
            .output()
            .unwrap()
    };
    let healthy = tokio::task::block_in_place(|| check("table"));
    let table = String::from_utf8_lossy(&healthy.stdout);
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{table}\n{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    assert!(table.starts_with("TARGET"), "{table}");
    assert!(
        table.contains("head_bucket") && table.contains("put_object"),
        "{table}"
    );
    assert!(
        table.contains("last successful backup of percona/cluster1/s3-us-west"),
        "{table}"
    );
    assert!(table.trim_end().ends_with("healthy"), "{table}");

    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::AccessDenied).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    let unhealthy = tokio::task::block_in_place(|| check("json"));
    assert_eq!(unhealthy.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&unhealthy.stdout).unwrap();
    assert_eq!(report["healthy"], false);
    let down: Vec<&serde_json::Value> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["up"] == false)
        .collect();
    assert_eq!(down.len(), 1, "{report:#}");
    assert!(
        down[0]["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["class"] == "access_denied"),
        "{report:#}"
    );

    let no_cluster = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["check", "--config"])
        .arg(&config_path)
        .env("KUBECONFIG", dir.join("missing"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(no_cluster.status.code(), Some(2));
    r.stop().await;
}

on_both_backends!(sts_checks_the_credentials_the_backup_job_uses);
/// STS GetCallerIdentity runs with the storage's Secret: accepted with the right key, and a
/// wrong key shows as invalid credentials on STS too, so `credentials_valid` drops.
async fn sts_checks_the_credentials_the_backup_job_uses(backend: Backend) {
    let r = start(backend).await;
    let text = r
        .wait_until("STS answered for both targets", |t| {
            t.contains("backstop_s3_target_info{")
                && t.contains(&primary())
                && t.lines()
                    .filter(|l| {
                        l.starts_with("backstop_s3_probe_success{")
                            && l.contains("operation=\"get_caller_identity\"")
                            && l.ends_with(" 1")
                    })
                    .count()
                    == 2
        })
        .await;
    let primary_target = target_of(&text, &primary());
    let valid = format!("backstop_s3_credentials_valid{{target=\"{primary_target}\"}}");
    assert_eq!(sample(&text, &valid, &[]), Some(1.0));

    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    secrets
        .patch(
            world::CREDENTIALS_SECRET,
            &kube::api::PatchParams::default(),
            // "WRONGKEY", base64 as Secret data is.
            &kube::api::Patch::Merge(json!({"data": {"AWS_ACCESS_KEY_ID": "V1JPTkdLRVk="}})),
        )
        .await
        .unwrap();
    let sts_refused = format!(
        "backstop_s3_probe_errors_total{{target=\"{primary_target}\",operation=\"get_caller_identity\",class=\"invalid_credentials\"}}"
    );
    let text = r
        .wait_until("STS refuses the wrong key", |t| {
            sample(t, &sts_refused, &[]).is_some_and(|v| v >= 1.0)
        })
        .await;
    assert_eq!(sample(&text, &valid, &[]), Some(0.0));
    r.stop().await;
}

/// A container credentials endpoint on loopback, the way ECS and EKS Pod Identity serve the
/// ambient chain (`AWS_CONTAINER_CREDENTIALS_FULL_URI`): it answers with `credentials`, with
/// 403, or never, as its [`Answer`] says, and counts every request.
/// What [`CredentialsEndpoint`] answers.
#[derive(Clone, Copy)]
enum Answer {
    Credentials,
    Error,
    Hang,
}

struct CredentialsEndpoint {
    url: String,
    hits: Arc<AtomicUsize>,
    answer: Arc<AtomicU8>,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl CredentialsEndpoint {
    async fn start(credentials: &StaticCredentials) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(AtomicU8::new(Answer::Credentials as u8));
        let body = json!({
            "AccessKeyId": credentials.access_key_id,
            "SecretAccessKey": credentials.secret_access_key,
            "Token": "sandbox-session-token",
            "Expiration": "2099-01-01T00:00:00Z",
        });
        let app = axum::Router::new().route(
            "/credentials",
            axum::routing::get({
                let (hits, answer) = (hits.clone(), answer.clone());
                move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    match answer.load(Ordering::SeqCst) {
                        a if a == Answer::Credentials as u8 => {
                            (axum::http::StatusCode::OK, axum::Json(body))
                        }
                        // A refusal, as the Pod Identity agent gives a token it does not
                        // accept (a 5xx would be retried with backoff by the provider).
                        a if a == Answer::Error as u8 => (
                            axum::http::StatusCode::FORBIDDEN,
                            axum::Json(json!({"message": "token not accepted"})),
                        ),
                        // Hangs until the client goes away.
                        _ => std::future::pending().await,
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/credentials", listener.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await
                    .unwrap();
            }
        });
        Self {
            url,
            hits,
            answer,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// The report of the target `static/NAME` in `backstop check --output json`.
/// A world whose operator runs only when a test steps it, with one day of history.
async fn quiet_world() -> World {
    World::start(WorldOptions {
        operator_interval: None,
        history: 1,
        ..WorldOptions::default()
    })
    .await
    .unwrap()
}

/// `backstop check --output json --config CONFIG` with nothing of the machine's in its
/// environment: no AWS variables, profile files or instance metadata reach the credential
/// chain, only what the test adds (`dir` holds the missing files it points at).
fn isolated_check(config: &std::path::Path, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backstop"));
    command
        .args(["check", "--output", "json", "--config"])
        .arg(config)
        .env_clear()
        .env("HOME", dir)
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

fn static_target<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let used_by = format!("static/{name}");
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["used_by"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u == used_by.as_str())
        })
        .unwrap_or_else(|| panic!("no target used by {used_by}: {report:#}"))
}

/// A target without a Secret signs with the ambient AWS chain. The chain is asked once per
/// cycle, before any timed request, and the S3 and STS calls share what it gave: one fetch
/// per cycle, none inside HeadBucket's latency. A chain that gives nothing is reported as
/// invalid credentials without sending S3 a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambient_credentials_are_resolved_once_per_cycle_before_the_timed_requests() {
    let world = quiet_world().await;
    let endpoint = CredentialsEndpoint::start(&world.credentials).await;
    let dir = world.dir().to_owned();
    let mut config = world
        .backstop_config("127.0.0.1:0", &dir.join("token"))
        .unwrap();
    // Shorter than the container provider's own read timeout (5 s), so a hung endpoint
    // meets the prober's limit first.
    config.probe.timeout = backstop::config::HumanDuration(Duration::from_secs(1));
    config.targets.push(StaticTarget {
        name: "ambient".into(),
        bucket: world::PRIMARY_BUCKET.into(),
        region: s3::PRIMARY_REGION.into(),
        endpoint_url: Some(world.endpoint(s3::PRIMARY_REGION)),
        force_path_style: true,
        verify_tls: true,
        credentials_secret: None,
        ca_bundle: None,
    });
    let config_path = dir.join("ambient.yaml");
    std::fs::write(&config_path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    // Only what this test sets reaches the chain: no AWS variables, profile files or
    // instance metadata from the machine running it.
    // Runs `backstop check` once: its exit code and its JSON report.
    let check = || {
        let output = isolated_check(&config_path, &dir)
            .env("KUBECONFIG", world.kubeconfig_path())
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &endpoint.url)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code(), report)
    };

    let (healthy, report) = tokio::task::block_in_place(check);
    let ambient = static_target(&report, "ambient");
    assert_eq!(ambient["up"], true, "{report:#}");
    let operations = ambient["operations"].as_array().unwrap();
    for name in ["head_bucket", "put_object", "get_caller_identity"] {
        assert!(
            operations
                .iter()
                .any(|o| o["operation"] == name && o["ok"] == true),
            "{name} did not pass with the chain's credentials: {report:#}"
        );
    }
    assert_eq!(healthy, Some(0), "{report:#}");
    assert_eq!(
        endpoint.hits.load(Ordering::SeqCst),
        1,
        "one cycle asks the chain once, for S3 and STS together"
    );

    endpoint.answer.store(Answer::Error as u8, Ordering::SeqCst);
    let (refused, report) = tokio::task::block_in_place(check);
    assert_eq!(refused, Some(1), "{report:#}");
    let ambient = static_target(&report, "ambient");
    assert_eq!(ambient["up"], false, "{report:#}");
    let operations = ambient["operations"].as_array().unwrap();
    assert_eq!(
        operations.len(),
        1,
        "no S3 request without credentials: {report:#}"
    );
    assert_eq!(operations[0]["operation"], "head_bucket");
    assert_eq!(operations[0]["class"], "invalid_credentials", "{report:#}");
    assert_eq!(operations[0]["seconds"], 0.0);
    let message = operations[0]["message"].as_str().unwrap();
    assert!(message.contains("ambient AWS credentials"), "{message}");
    assert!(endpoint.hits.load(Ordering::SeqCst) > 1);

    // A chain that never answers costs the cycle `probe.timeout`, not a hung prober.
    endpoint.answer.store(Answer::Hang as u8, Ordering::SeqCst);
    let (_, report) = tokio::task::block_in_place(check);
    let ambient = static_target(&report, "ambient");
    let operations = ambient["operations"].as_array().unwrap();
    assert_eq!(operations.len(), 1, "{report:#}");
    assert_eq!(operations[0]["class"], "timeout", "{report:#}");
    let message = operations[0]["message"].as_str().unwrap();
    assert!(message.contains("no answer within"), "{message}");

    endpoint.stop().await;
    world.shutdown().await;
}

/// `backstop check` on a workstation with no cluster: the static targets are still checked
/// (with the ambient credentials), the report says discovery was skipped and why, a target
/// whose credentials are in a Secret says it cannot be read; and a canary the credentials may
/// write but not delete is reported by its key. With nothing to check at all it exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backstop_check_runs_without_a_cluster_and_reports_leftover_canaries() {
    let world = quiet_world().await;
    let dir = world.dir().to_owned();
    let mut config = world
        .backstop_config("127.0.0.1:0", &dir.join("token"))
        .unwrap();
    let target = |name: &str, credentials_secret| StaticTarget {
        name: name.into(),
        bucket: world::PRIMARY_BUCKET.into(),
        region: s3::PRIMARY_REGION.into(),
        endpoint_url: Some(world.endpoint(s3::PRIMARY_REGION)),
        force_path_style: true,
        verify_tls: true,
        credentials_secret,
        ca_bundle: None,
    };
    config.targets.push(target("ambient", None));
    config.targets.push(target(
        "from-secret",
        Some(backstop::config::SecretRef {
            namespace: world::NAMESPACE.into(),
            name: world::CREDENTIALS_SECRET.into(),
        }),
    ));
    let config_path = dir.join("static.yaml");
    // Writes `config`, runs the check on it: its exit code, its JSON report (null when it
    // printed none) and its stderr.
    let check = |config: &backstop::config::Config| {
        std::fs::write(&config_path, serde_yaml_ng::to_string(config).unwrap()).unwrap();
        let output = tokio::task::block_in_place(|| {
            isolated_check(&config_path, &dir)
                .env("KUBECONFIG", dir.join("no-kubeconfig"))
                .env("AWS_ACCESS_KEY_ID", &world.credentials.access_key_id)
                .env(
                    "AWS_SECRET_ACCESS_KEY",
                    &world.credentials.secret_access_key,
                )
                .output()
                .unwrap()
        });
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let report: serde_json::Value = if output.status.code() == Some(2) {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&output.stdout))
            })
        };
        (output.status.code(), report, stderr)
    };

    let (code, report, _) = check(&config);
    let ambient = static_target(&report, "ambient");
    assert_eq!(ambient["up"], true, "{report:#}");
    let notes = report["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("no Kubernetes cluster reachable")),
        "{report:#}"
    );
    let from_secret = static_target(&report, "from-secret");
    assert_eq!(from_secret["up"], false, "{report:#}");
    assert!(
        from_secret["operations"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no Kubernetes cluster is reachable to read it"),
        "{report:#}"
    );
    assert_eq!(code, Some(1), "one target is down: {report:#}");

    // Credentials that may put but not delete: the canary stays behind, and the check says
    // where.
    config.targets.truncate(1);
    world
        .s3
        .faults()
        .set(
            Rule::new(Fault::AccessDenied)
                .in_region(s3::PRIMARY_REGION)
                .on_operation("DeleteObject"),
        )
        .await
        .unwrap();
    let (code, report, _) = check(&config);
    assert_eq!(code, Some(1), "{report:#}");
    let ambient = static_target(&report, "ambient");
    let leftovers = ambient["leftover_canaries"].as_array().unwrap();
    assert_eq!(leftovers.len(), 1, "{report:#}");
    let key = leftovers[0].as_str().unwrap();
    // The key names an object that is really there.
    let client = backstop::s3::client::client(
        &backstop::s3::client::Endpoint {
            region: s3::PRIMARY_REGION.into(),
            endpoint_url: Some(world.endpoint(s3::PRIMARY_REGION)),
            force_path_style: true,
        },
        &world.credentials,
        backstop::s3::client::Timeouts::default(),
    );
    let bucket = world::PRIMARY_BUCKET.split('/').next().unwrap();
    client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the reported canary {key:?} is not in {bucket}: {e:?}"));

    // A store that never answers costs the cycle one budget: STS, run after S3, is not
    // attempted once S3 used it up, and the report says which call did.
    world.s3.faults().clear_all().await.unwrap();
    world
        .s3
        .faults()
        .set(Rule::new(Fault::Hang).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    config.probe.timeout = backstop::config::HumanDuration(Duration::from_secs(1));
    let (code, report, _) = check(&config);
    assert_eq!(code, Some(1), "{report:#}");
    let operations = static_target(&report, "ambient")["operations"]
        .as_array()
        .unwrap()
        .clone();
    let head = operations
        .iter()
        .find(|o| o["operation"] == "head_bucket")
        .unwrap();
    assert_eq!(head["class"], "timeout", "{report:#}");
    let sts = operations
        .iter()
        .find(|o| o["operation"] == "get_caller_identity")
        .unwrap();
    assert_eq!(sts["seconds"], 0.0, "{report:#}");
    let message = sts["message"].as_str().unwrap();
    assert!(
        message.contains("not attempted") && message.contains("head_bucket"),
        "{message}"
    );
    world.s3.faults().clear_all().await.unwrap();

    // No cluster and nothing static: nothing to check, a usage error.
    config.targets.clear();
    let (code, _, stderr) = check(&config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("nothing to check"), "{stderr}");
    world.shutdown().await;
}

/// The service counts the canaries it could not delete (the credentials may put but not
/// delete), per target, and a later cycle deletes them once deletion works again.
#[tokio::test]
async fn leftover_canaries_are_counted_and_deleted_once_deletion_works() {
    let r = start(Backend::Simulator).await;
    let text = r
        .wait_until("the primary target is probed", |t| {
            t.contains("backstop_s3_target_info{") && t.contains(&primary())
        })
        .await;
    let target = target_of(&text, &primary());
    let leftovers = |t: &str| {
        sample(
            t,
            "backstop_s3_canary_leftover_objects{",
            &[&format!("target=\"{target}\"")],
        )
    };
    let rule = r
        .world
        .s3
        .faults()
        .set(
            Rule::new(Fault::AccessDenied)
                .in_region(s3::PRIMARY_REGION)
                .on_operation("DeleteObject"),
        )
        .await
        .unwrap();
    r.wait_until("a canary is left behind", |t| {
        leftovers(t).is_some_and(|n| n >= 1.0)
    })
    .await;
    r.world.s3.faults().clear(rule).await.unwrap();
    r.wait_until("the leftovers are deleted", |t| leftovers(t) == Some(0.0))
        .await;
    r.stop().await;
}
