//! `backstop failover`, `revert` and `status` as an operator runs them: the binary, a
//! kubeconfig, and the sandbox world with its operator running backups.
#![cfg(feature = "sandbox")]

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::SystemClock;
use backstop::config::HumanDuration;
use backstop::responder::engine::{cluster_api, read_journal};
use backstop::responder::journal::Phase;
use backstop::sandbox::world::{self, World, WorldOptions};
use serde_json::Value;

async fn backstop(world: &World, config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_backstop"));
    command
        .args(args)
        .args(["--config", &config.display().to_string()])
        .env("KUBECONFIG", world.kubeconfig_path())
        .env("BACKSTOP_LOG", "warn")
        // A command that never finishes fails the test instead of hanging it, and is
        // killed when its future is dropped.
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("backstop {args:?} did not finish"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn failover_status_and_revert_by_hand() {
    let world = World::start(WorldOptions {
        clock: Arc::new(SystemClock),
        operator_interval: Some(Duration::from_millis(200)),
        history: 1,
        retention: 10,
        ..WorldOptions::default()
    })
    .await
    .unwrap();
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

    let (code, out) = backstop(&world, &path, &["status", "-o", "json"]).await;
    assert_eq!(code, 0, "{out}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["cluster"], world::CLUSTER);
    assert_eq!(rows[0]["wants_failover"], false);
    assert!(rows[0]["journal"].is_null());

    let (code, out) = backstop(
        &world,
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

    let (code, out) = backstop(&world, &path, &[&["failover"][..], &target].concat()).await;
    assert_eq!(code, 0, "{out}");
    let journal = read_journal(&api.get(world::CLUSTER).await.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(journal.phase, Phase::FailedOver);
    // Again, on a cluster already on its secondary: it returns (the watch of the secondary
    // is the leader's), and nothing fails over a second time.
    let (code, out) = backstop(&world, &path, &[&["failover"][..], &target].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        read_journal(&api.get(world::CLUSTER).await.unwrap())
            .unwrap()
            .unwrap(),
        journal
    );

    let (code, out) = backstop(&world, &path, &["status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("FailedOver") && out.contains("secondary:backstop-secondary"),
        "{out}"
    );
    assert!(out.contains(&journal.run_id), "{out}");

    let (code, out) = backstop(&world, &path, &[&["revert"][..], &target].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("succeeded; the revert is verified"), "{out}");
    let after = api.get(world::CLUSTER).await.unwrap();
    assert_eq!(
        read_journal(&after).unwrap().unwrap().phase,
        Phase::Reverted
    );
    assert_eq!(after.data["spec"]["backup"], original);

    let (code, out) = backstop(
        &world,
        &path,
        &["failover", "--namespace", "x", "--cluster", "y"],
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not managed"), "{out}");
    world.shutdown().await;
}
