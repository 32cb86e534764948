//! The prober inside Backstop, in the sandbox world: targets discovered from the cluster's
//! storages and the failover policy, failures visible in metrics, a hanging target not
//! delaying another, discovery following cluster changes, and `backstop check`.
#![cfg(feature = "sandbox")]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use backstop::clock::SystemClock;
use backstop::pxc::PerconaXtraDBCluster;
use backstop::sandbox::s3::{self, Fault, Rule};
use backstop::sandbox::world::{self, WorldOptions};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

mod common;

use common::sandbox::{self, Running, sample};

async fn start() -> Running {
    let options = WorldOptions {
        operator_interval: None,
        history: 1,
        ..WorldOptions::default()
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

#[tokio::test]
async fn discovered_targets_are_probed_and_a_refused_primary_shows_up() {
    let r = start().await;
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
    let r = start().await;
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

#[tokio::test]
async fn discovery_follows_cluster_changes_and_removes_stale_series() {
    let r = start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backstop_check_reports_and_exits_by_health() {
    let r = start().await;
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

/// STS GetCallerIdentity runs with the storage's Secret: accepted with the right key, and a
/// wrong key shows as invalid credentials on STS too, so `credentials_valid` drops.
#[tokio::test]
async fn sts_checks_the_credentials_the_backup_job_uses() {
    let r = start().await;
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
