//! The backup watcher end to end: Backstop watching the sandbox world exports the backups'
//! state, ages that follow the clock, the SLO ratio, and recovers from dropped watches and 410.
#![cfg(feature = "sandbox")]

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::ManualClock;
use backstop::pxc::PerconaXtraDBClusterBackup;
use backstop::sandbox::s3::{self, Fault, Rule};
use backstop::sandbox::world::{self, WorldOptions};
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams};

mod common;

use common::sandbox::{self, DEADLINE, Running};

struct Watched {
    r: Running,
    clock: ManualClock,
}

async fn start() -> Watched {
    let clock = ManualClock::new("2026-11-24T12:00:30Z".parse::<Timestamp>().unwrap());
    let options = WorldOptions {
        clock: Arc::new(clock.clone()),
        operator_interval: None,
        history: 3,
        retention: 10,
    };
    let r = sandbox::start(options, Arc::new(clock.clone()), |_| {}).await;
    Watched { r, clock }
}

fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

const PRIMARY: &str = "namespace=\"percona\",cluster=\"cluster1\",storage=\"s3-us-west\"";

#[tokio::test]
async fn readiness_waits_for_the_first_lists_and_history_is_exported() {
    let w = start().await;
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

#[tokio::test]
async fn ages_follow_the_clock_and_a_failed_backup_is_counted() {
    let w = start().await;
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

#[tokio::test]
async fn the_watch_survives_a_dropped_connection_and_410_and_sees_deletions() {
    let w = start().await;
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
    r.world.kube.close_watches();
    r.world.kube.compact();
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
