//! The whole loop with the real programs: Debian's `prometheus` scrapes Backstop running
//! against the sandbox and evaluates the shipped rules (with test `for` durations); the real
//! `prometheus-alertmanager` routes `S3BackupTargetUnavailable` to Backstop's webhook with
//! bearer auth; Backstop fails the cluster over and, once S3 is repaired and the alert
//! resolves, reverts and proves it with a test backup. Backstop runs as the `deploy/`
//! manifests' ServiceAccount under their RBAC, so a missing permission fails this test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop::clock::SystemClock;
use backstop::config::HumanDuration;
use backstop::responder::cluster::{cluster_api, read_journal};
use backstop::responder::journal::{Journal, Phase};
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, WorldOptions};
use serde_json::Value;

use crate::common;
use common::{Backend, on_both_backends};

use common::monitoring::{Alertmanager, Prometheus, root};
use common::sandbox::{self, DEADLINE, Running, sample};

/// The shipped rules with every `for:` shortened: test configuration, not an edit of the
/// shipped file.
fn rules_for_test(dir: &std::path::Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(root().join("alerts/backstop.rules.yaml")).unwrap();
    let mut rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&shipped).unwrap();
    for group in rules["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            if rule.get("for").is_some() {
                rule["for"] = serde_yaml_ng::Value::from("2s");
            }
        }
    }
    let path = dir.join("rules.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&rules).unwrap()).unwrap();
    path
}

fn alertmanager_config(backstop: &str, token_file: &std::path::Path) -> String {
    format!(
        "route:\n  receiver: nobody\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n  routes:\n\
         \x20   - receiver: backstop\n      matchers: ['alertname=\"S3BackupTargetUnavailable\"']\n\
         \x20     group_by: [alertname, namespace, cluster, storage]\n\
         receivers:\n  - name: nobody\n  - name: backstop\n    webhook_configs:\n\
         \x20     - url: {backstop}/alertmanager\n        send_resolved: true\n\
         \x20       http_config:\n          authorization:\n            type: Bearer\n\
         \x20           credentials_file: {}\n",
        token_file.display()
    )
}

async fn journal(r: &Running) -> Option<Journal> {
    let object = cluster_api(&r.world.client, world::NAMESPACE)
        .get(world::CLUSTER)
        .await
        .unwrap();
    read_journal(&object).unwrap()
}

async fn wait_journal(
    r: &Running,
    what: &str,
    check: impl Fn(&Journal) -> bool,
    logs: &dyn Fn() -> String,
) -> Journal {
    let deadline = tokio::time::Instant::now() + DEADLINE * 2;
    loop {
        if let Some(j) = journal(r).await
            && check(&j)
        {
            return j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never: {what}; journal {:?}\n{}",
            journal(r).await,
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn firing_in(alerts: &Value, name: &str) -> bool {
    alerts["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
}

on_both_backends!(prometheus_and_alertmanager_drive_failover_and_revert);
async fn prometheus_and_alertmanager_drive_failover_and_revert(backend: Backend) {
    let options = WorldOptions {
        clock: Arc::new(SystemClock),
        operator_interval: Some(Duration::from_millis(200)),
        history: 1,
        retention: 10,
        ..common::world_on(backend)
    };
    // Backstop runs as the manifests' ServiceAccount under their RBAC, with leader election
    // in its own namespace, as deployed.
    let r = sandbox::start_with_deployed_rbac(options, Arc::new(SystemClock), |c| {
        c.kubernetes.leader_election.enabled = true;
        c.kubernetes.leader_election.lease_namespace = Some("backstop".into());
        c.probe.interval = HumanDuration(Duration::from_secs(1));
        c.probe.timeout = HumanDuration(Duration::from_millis(500));
        c.responder.rate_limits.per_cluster_cooldown = HumanDuration(Duration::ZERO);
        c.responder.revert.hold_down_probes = 2;
        c.responder.revert.test_backup_timeout = HumanDuration(Duration::from_secs(60));
    })
    .await;
    let token = r.world.dir().join("token");
    let am = Alertmanager::start(&alertmanager_config(&r.base, &token)).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_for_test(dir.path());
    let prometheus = Prometheus::start_with_rules(
        r.base.trim_start_matches("http://"),
        Some(&am.address),
        &rules,
        dir,
    )
    .await;
    let logs = || {
        format!(
            "--- prometheus\n{}\n--- alertmanager\n{}",
            prometheus.log(),
            am.log()
        )
    };
    prometheus
        .wait_until("Backstop scraped with the primary up", |p| async move {
            let answer = p.query("backstop_s3_up == 1").await;
            answer["data"]["result"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        })
        .await;

    let fault = Instant::now();
    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::ServiceUnavailable).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    prometheus
        .wait_until("S3BackupTargetUnavailable firing", |p| async move {
            firing_in(&p.get("/api/v1/alerts").await, "S3BackupTargetUnavailable")
        })
        .await;
    let j = wait_journal(&r, "failed over", |j| j.phase == Phase::FailedOver, &logs).await;
    let to_failover = fault.elapsed();
    assert_eq!(j.target_storage, "backstop-secondary");

    let repair = Instant::now();
    r.world.s3.faults().clear_all().await.unwrap();
    let done = wait_journal(
        &r,
        "reverted and verified",
        |j| matches!(j.phase, Phase::Reverted | Phase::VerificationFailed),
        &logs,
    )
    .await;
    let to_verified = repair.elapsed();
    assert_eq!(done.phase, Phase::Reverted, "{done:?}");
    assert_eq!(done.run_id, j.run_id);
    let text = r.metrics().await;
    assert!(
        sample(&text, "backstop_webhook_requests_total", &["code=\"200\""]).unwrap_or(0.0) >= 2.0,
        "Alertmanager delivered firing and resolved:\n{text}"
    );
    println!(
        "fault -> cluster patched: {:.1}s; repair -> revert verified: {:.1}s",
        to_failover.as_secs_f64(),
        to_verified.as_secs_f64()
    );
    drop(prometheus);
    drop(am);
    r.stop().await;
}
