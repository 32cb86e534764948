//! The backup watcher end to end: Backstop watching the sandbox world exports the backups'
//! state, ages that follow the clock, the SLO ratio, and recovers from dropped watches and 410.

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::ManualClock;
use backstop::pxc::PerconaXtraDBClusterBackup;
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, WorldOptions};
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams};

use crate::common;

use common::sandbox::{self, DEADLINE, Running};
use common::{Backend, on_both_backends};

struct Watched {
    r: Running,
    clock: ManualClock,
}

async fn start(backend: Backend) -> Watched {
    let clock = ManualClock::new("2026-11-24T12:00:30Z".parse::<Timestamp>().unwrap());
    let options = WorldOptions {
        clock: Arc::new(clock.clone()),
        operator_interval: None,
        history: 3,
        retention: 10,
        ..common::world_on(backend)
    };
    let r = sandbox::start(options, Arc::new(clock.clone()), |_| {}).await;
    Watched { r, clock }
}

fn value(text: &str, prefix: &str) -> f64 {
    sandbox::sample(text, prefix, &[]).unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

const PRIMARY: &str = "namespace=\"percona\",cluster=\"cluster1\",storage=\"s3-us-west\"";

on_both_backends!(readiness_waits_for_the_first_lists_and_history_is_exported);
async fn readiness_waits_for_the_first_lists_and_history_is_exported(backend: Backend) {
    let w = start(backend).await;
    let r = &w.r;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let resp = reqwest::get(format!("{}/readyz", r.base)).await.unwrap();
        if resp.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = r
        .wait_for(&format!(
            "backstop_backups{{{PRIMARY},state=\"Succeeded\"}} 3"
        ))
        .await;
    // The newest seeded backup completed 6 h − 4 min before the clock's now.
    let age = value(
        &text,
        &format!("backstop_backup_last_success_age_seconds{{{PRIMARY}}}"),
    );
    assert_eq!(age, (6.0 * 3600.0) - 240.0);
    let window = value(
        &text,
        "backstop_backup_retention_window_seconds{namespace=\"percona\",cluster=\"cluster1\",schedule=\"every-minute\"}",
    );
    assert_eq!(window, 600.0, "10 backups, one a minute");
    w.r.stop().await;
}

on_both_backends!(ages_follow_the_clock_and_a_failed_backup_is_counted);
async fn ages_follow_the_clock_and_a_failed_backup_is_counted(backend: Backend) {
    let w = start(backend).await;
    let r = &w.r;
    r.wait_for(&format!(
        "backstop_backups{{{PRIMARY},state=\"Succeeded\"}} 3"
    ))
    .await;
    let before = value(
        &r.metrics().await,
        &format!("backstop_backup_last_success_age_seconds{{{PRIMARY}}}"),
    );
    w.clock.advance(SignedDuration::from_hours(1));
    let after = value(
        &r.metrics().await,
        &format!("backstop_backup_last_success_age_seconds{{{PRIMARY}}}"),
    );
    assert_eq!(after - before, 3600.0, "age is computed at scrape time");

    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::AccessDenied).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    r.world.operator.step().await.unwrap();
    w.clock.advance(SignedDuration::from_secs(60));
    let report = r.world.operator.step().await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let text = r
        .wait_for(&format!("backstop_backups{{{PRIMARY},state=\"Failed\"}} 1"))
        .await;
    // The backup's Job, from the Jobs watch.
    r.wait_for(
        "backstop_backup_jobs{namespace=\"percona\",cluster=\"cluster1\",state=\"failed\"} 1",
    )
    .await;
    let failed_at = value(
        &text,
        &format!("backstop_backup_last_failure_timestamp_seconds{{{PRIMARY}}}"),
    );
    assert!(failed_at > 0.0);
    let ratio = value(
        &text,
        "backstop_backup_slo_budget_ratio{namespace=\"percona\",cluster=\"cluster1\",schedule=\"every-minute\"}",
    );
    assert!(
        ratio > 1.0,
        "7 h without a good backup outlives a 10-minute window: {ratio}"
    );
    w.r.stop().await;
}

// Simulator only: dropping every watch and compacting the history on demand are its fault
// injection; a real server offers neither.
#[tokio::test]
async fn the_watch_survives_a_dropped_connection_and_410_and_sees_deletions() {
    let w = start(Backend::Simulator).await;
    let r = &w.r;
    r.wait_for(&format!(
        "backstop_backups{{{PRIMARY},state=\"Succeeded\"}} 3"
    ))
    .await;
    let backups: Api<PerconaXtraDBClusterBackup> =
        Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    let victim = backups.list(&Default::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();

    // Drop every watch and compact the history: resuming gets 410 and the watcher re-lists.
    r.world.kube.simulator().unwrap().close_watches();
    r.world.kube.simulator().unwrap().compact();
    backups
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    // The delete-backup finalizer holds it until the operator purges the data.
    r.world.operator.step().await.unwrap();
    r.wait_for(&format!(
        "backstop_backups{{{PRIMARY},state=\"Succeeded\"}} 2"
    ))
    .await;
    w.r.stop().await;
}

fn sum_of(text: &str, name: &str, needles: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

on_both_backends!(completions_are_counted_once_and_failures_by_cause_with_an_event);
async fn completions_are_counted_once_and_failures_by_cause_with_an_event(backend: Backend) {
    use k8s_openapi::api::core::v1::Event;
    let w = start(backend).await;
    let r = &w.r;
    // History that finished before any Backstop ran is counted, not skipped.
    r.wait_for(&format!(
        "backstop_backup_completions_total{{{PRIMARY},result=\"succeeded\"}} 3"
    ))
    .await;
    let backups: Api<PerconaXtraDBClusterBackup> =
        Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    for b in backups.list(&Default::default()).await.unwrap().items {
        assert_eq!(
            b.metadata.annotations.unwrap_or_default()["backstop.percona.com/observed"],
            "succeeded"
        );
    }

    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::AccessDenied).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    r.world.operator.step().await.unwrap();
    w.clock.advance(SignedDuration::from_secs(60));
    let failed = r.world.operator.step().await.unwrap().failed.remove(0);
    r.wait_for(&format!(
        "backstop_backup_failures_total{{{PRIMARY},cause=\"s3_access_denied\"}} 1"
    ))
    .await;
    r.wait_for(&format!(
        "backstop_backup_completions_total{{{PRIMARY},result=\"failed\"}} 1"
    ))
    .await;
    let events: Api<Event> = Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    let event = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.involved_object.name.as_deref() == Some(failed.as_str()))
        .expect("a BackupFailed Event on the failed backup");
    assert_eq!(event.reason.as_deref(), Some("BackupFailed"));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let message = event.message.unwrap();
    assert!(message.starts_with("cause=s3_access_denied"), "{message}");
    match backend {
        // The simulator serves the backup pod's log; its tail is quoted.
        Backend::Simulator => assert!(
            message.contains("Upload failed"),
            "the log tail is quoted: {message}"
        ),
        // A real API server has no kubelet to ask for a log: the Event quotes the backup's
        // status.error alone.
        Backend::Real => assert!(
            message.contains("upload failed: AccessDenied"),
            "the status error is quoted: {message}"
        ),
    }

    // A second Backstop (a restart, or another replica) sees everything claimed: it counts
    // nothing old, and a new completion is counted by exactly one of the two.
    let token = r.world.dir().join("token");
    let config = r.world.backstop_config("127.0.0.1:0", &token).unwrap();
    let second = backstop::runtime::app::App::bind_with(
        config,
        Some(r.world.client.clone()),
        Arc::new(w.clock.clone()),
    )
    .await
    .unwrap();
    let second_base = format!("http://{}", second.local_addr().unwrap());
    let stop_second = tokio_util::sync::CancellationToken::new();
    let second_task = tokio::spawn(second.serve(stop_second.clone()));
    let second_metrics = || async {
        reqwest::get(format!("{second_base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while reqwest::get(format!("{second_base}/readyz"))
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(tokio::time::Instant::now() < deadline, "second never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.world.s3.faults().clear_all().await.unwrap();
    w.clock.advance(SignedDuration::from_secs(60));
    let succeeded = r.world.operator.step().await.unwrap().succeeded;
    assert_eq!(succeeded.len(), 1);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (a, b) = (r.metrics().await, second_metrics().await);
        let total = |t: &str| {
            sum_of(
                t,
                "backstop_backup_completions_total{",
                &["result=\"succeeded\""],
            )
        };
        if total(&a) + total(&b) == 4.0 {
            assert_eq!(
                sum_of(&b, "backstop_backup_failures_total{", &[]),
                0.0,
                "the second instance does not count the old failure again"
            );
            break;
        }
        assert!(
            total(&a) + total(&b) < 4.0 && tokio::time::Instant::now() < deadline,
            "completions across both instances: {} + {}",
            total(&a),
            total(&b)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_second.cancel();
    second_task.await.unwrap().unwrap();
    w.r.stop().await;
}

on_both_backends!(every_s3_failure_is_classified_into_its_cause);
/// Each S3 failure the operator's backup Job meets, injected into the embedded S3, is
/// classified from the Job pod's log into its cause.
async fn every_s3_failure_is_classified_into_its_cause(backend: Backend) {
    let w = start(backend).await;
    let r = &w.r;
    r.wait_for(&format!(
        "backstop_backups{{{PRIMARY},state=\"Succeeded\"}} 3"
    ))
    .await;
    r.world.operator.step().await.unwrap();
    let cases = [
        (Fault::AccessDenied, "s3_access_denied"),
        (Fault::NoSuchBucket, "s3_no_such_bucket"),
        (Fault::InvalidCredentials, "s3_credentials"),
        (Fault::Refuse, "s3_unreachable"),
        // Not `Hang`: xbcloud waits on a store that never answers, so the backup stays
        // Running (tests/it/operator_lock.rs) and has no failure to classify.
    ];
    for (fault, cause) in cases {
        r.world.s3.faults().clear_all().await.unwrap();
        r.world
            .s3
            .faults()
            .set(Rule::new(fault).in_region(s3::PRIMARY_REGION))
            .await
            .unwrap();
        w.clock.advance(SignedDuration::from_secs(60));
        let report = r.world.operator.step().await.unwrap();
        assert_eq!(report.failed.len(), 1, "{cause}: {report:?}");
        r.wait_for(&format!(
            "backstop_backup_failures_total{{{PRIMARY},cause=\"{cause}\"}} 1"
        ))
        .await;
    }
    w.r.stop().await;
}
