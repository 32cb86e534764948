//! `backstop failover`, `revert` and `status` as an operator runs them: the binary, a
//! kubeconfig, and the sandbox world with its operator running backups, on both API
//! backends. The kubeconfig is the `backstop` ServiceAccount's under the shipped RBAC, so the
//! manual commands are shown to need nothing more; they run without `POD_NAME` (as from a
//! workstation) and with it (as `kubectl exec` into the pod), and leave Events either way.

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::SystemClock;
use backstop::config::HumanDuration;
use backstop::responder::cluster::{cluster_api, read_journal};
use backstop::responder::journal::Phase;
use backstop_sandbox::world::{self, World, WorldOptions};
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use serde_json::Value;

use crate::common;
use common::{Backend, on_both_backends};

/// `POD_NAME` of the failover command.
const POD: &str = "backstop-7d9c-manual";

/// The kubeconfig the commands run with: the `backstop` ServiceAccount's, under the RBAC
/// rendered from `deploy/`.
async fn service_account_kubeconfig(world: &World) -> std::path::PathBuf {
    let objects = common::deploy::kustomize(&common::deploy::deploy_dir(""));
    common::deploy::apply(&world.client, &objects).await;
    let token = world
        .kube
        .service_account_token("backstop", "backstop")
        .await
        .unwrap();
    let path = world.dir().join("backstop.kubeconfig");
    world.kube.write_kubeconfig(&path, &token).unwrap();
    path
}

/// Runs `backstop ARGS --config CONFIG` with `kubeconfig`, and `POD_NAME` when given.
async fn backstop(
    kubeconfig: &std::path::Path,
    pod_name: Option<&str>,
    config: &std::path::Path,
    args: &[&str],
) -> (i32, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_backstop"));
    command
        .args(args)
        .args(["--config", &config.display().to_string()])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("POD_NAME")
        .env("BACKSTOP_LOG", "warn")
        // A command that never finishes fails the test instead of hanging it, and is
        // killed when its future is dropped.
        .kill_on_drop(true);
    if let Some(name) = pod_name {
        command.env("POD_NAME", name);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("backstop {args:?} did not finish"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

on_both_backends!(failover_status_and_revert_by_hand);
async fn failover_status_and_revert_by_hand(backend: Backend) {
    let world = World::start(WorldOptions {
        clock: Arc::new(SystemClock),
        operator_interval: Some(Duration::from_millis(200)),
        history: 1,
        retention: 10,
        ..common::world_on(backend)
    })
    .await
    .unwrap();
    let kubeconfig = service_account_kubeconfig(&world).await;
    let kubeconfig = kubeconfig.as_path();
    let token = world.dir().join("token");
    std::fs::write(&token, "t").unwrap();
    let mut config = world.backstop_config("127.0.0.1:0", &token).unwrap();
    config.probe.interval = HumanDuration(Duration::from_secs(1));
    config.responder.rate_limits.per_cluster_cooldown = HumanDuration(Duration::ZERO);
    config.responder.revert.hold_down_probes = 2;
    config.responder.revert.test_backup_timeout = HumanDuration(Duration::from_secs(60));
    let path = world.dir().join("backstop.yaml");
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    let api = cluster_api(&world.client, world::NAMESPACE);
    let original = api.get(world::CLUSTER).await.unwrap().data["spec"]["backup"].clone();
    let target = ["--namespace", world::NAMESPACE, "--cluster", world::CLUSTER];

    let (code, out) = backstop(kubeconfig, None, &path, &["status", "-o", "json"]).await;
    assert_eq!(code, 0, "{out}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["cluster"], world::CLUSTER);
    assert_eq!(rows[0]["wants_failover"], false);
    assert!(rows[0]["journal"].is_null());
    // The shipped ServiceAccount may create Events but not list them: status says it cannot
    // know the alert route's state rather than failing.
    assert_eq!(
        rows[0]["alert_route"],
        format!(
            "unknown: these credentials may not list Events in {}",
            world::NAMESPACE
        )
    );

    let (code, out) = backstop(
        kubeconfig,
        None,
        &path,
        &[&["failover", "--dry-run"][..], &target].concat(),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dry run: would fail over"), "{out}");
    assert!(
        read_journal(&api.get(world::CLUSTER).await.unwrap())
            .unwrap()
            .is_none()
    );

    let (code, out) = backstop(
        kubeconfig,
        Some(POD),
        &path,
        &[&["failover"][..], &target].concat(),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let journal = read_journal(&api.get(world::CLUSTER).await.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(journal.phase, Phase::FailedOver);
    // Again, on a cluster already on its secondary: it returns (the watch of the secondary
    // is the leader's), and nothing fails over a second time.
    let (code, out) = backstop(
        kubeconfig,
        None,
        &path,
        &[&["failover"][..], &target].concat(),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        read_journal(&api.get(world::CLUSTER).await.unwrap())
            .unwrap()
            .unwrap(),
        journal
    );

    let (code, out) = backstop(kubeconfig, None, &path, &["status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("FailedOver") && out.contains("secondary:backstop-secondary"),
        "{out}"
    );
    assert!(out.contains(&journal.run_id), "{out}");

    let (code, out) = backstop(
        kubeconfig,
        None,
        &path,
        &[&["revert"][..], &target].concat(),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("succeeded; the revert is verified"), "{out}");
    let after = api.get(world::CLUSTER).await.unwrap();
    assert_eq!(
        read_journal(&after).unwrap().unwrap().phase,
        Phase::Reverted
    );
    assert_eq!(after.data["spec"]["backup"], original);

    // Each command left its audit trail, with a reporting identity with or without a pod:
    // POD_NAME when set (the failover), else the host's name.
    let events: Api<Event> = Api::namespaced(world.client.clone(), world::NAMESPACE);
    let events = events.list(&Default::default()).await.unwrap().items;
    let by_reason = |reason: &str| {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect::<Vec<_>>()
    };
    let failed_over = by_reason("FailedOver");
    let failed_over: Vec<_> = failed_over
        .iter()
        .filter(|e| {
            !e.message
                .as_deref()
                .unwrap_or_default()
                .starts_with("[dry-run]")
        })
        .collect();
    assert_eq!(failed_over.len(), 1, "{events:?}");
    let instance = failed_over[0]
        .reporting_instance
        .clone()
        .unwrap_or_default();
    assert!(instance.starts_with(&format!("{POD}-")), "{instance}");
    let reverted = by_reason("Reverted");
    assert_eq!(reverted.len(), 1, "{events:?}");
    let instance = reverted[0].reporting_instance.clone().unwrap_or_default();
    assert!(
        !instance.is_empty() && !instance.starts_with(POD),
        "{instance}"
    );
    assert_eq!(reverted[0].reporting_component.as_deref(), Some("backstop"));

    let (code, out) = backstop(
        kubeconfig,
        None,
        &path,
        &["failover", "--namespace", "x", "--cluster", "y"],
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not managed"), "{out}");
    world.shutdown().await;
}
