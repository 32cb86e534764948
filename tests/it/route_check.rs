//! The alert-route check against both API backends: the primary fails and no notification
//! comes (a broken Alertmanager route), so Backstop says so with a gauge, an Event and a line
//! in `backstop status`; then the notification arrives late, or the primary recovers without
//! one, and it says how the silence ended.

use std::time::Duration;

use backstop::config::{Config, HumanDuration};
use backstop_sandbox::s3;
use backstop_sandbox::world;

use crate::common::fixtures::firing;
use crate::common::sandbox::Running;
use crate::common::{Backend, on_both_backends};
use crate::responder::{break_region, events, notify, start, wait_event};

fn quick_check(config: &mut Config) {
    config.responder.route_check.after = HumanDuration(Duration::from_secs(1));
}

fn gauge(value: u8) -> String {
    format!(
        "backstop_alert_route_silent{{namespace=\"{}\",cluster=\"{}\"}} {value}",
        world::NAMESPACE,
        world::CLUSTER
    )
}

/// What `backstop status` says about the alert route of the sandbox's cluster.
async fn status_line(r: &Running) -> Option<String> {
    let (rows, table) = r.status().await;
    let line = table
        .lines()
        .find(|l| l.starts_with("ALERT ROUTE"))
        .map(str::to_owned);
    assert_eq!(line.is_some(), rows[0].alert_route.is_some(), "{table}");
    line
}

on_both_backends!(a_broken_route_is_reported_and_a_late_notification_ends_it);
async fn a_broken_route_is_reported_and_a_late_notification_ends_it(backend: Backend) {
    let r = start(backend, quick_check).await;
    // Exported as 0 from the start, so "no silence" is data, not absence.
    r.wait_until("the gauge at 0", |m| m.contains(&gauge(0)))
        .await;
    assert_eq!(status_line(&r).await, None);

    break_region(&r, s3::PRIMARY_REGION).await;
    let said = wait_event(&r, "AlertNotReceived").await;
    let message = said[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("storage s3-us-west has failed every probe since")
            && message.contains("no notification from Alertmanager has arrived"),
        "{message}"
    );
    assert_eq!(said[0].type_.as_deref(), Some("Warning"));
    r.wait_until("the gauge at 1", |m| m.contains(&gauge(1)))
        .await;
    let line = status_line(&r).await.unwrap_or_default();
    assert!(
        line.starts_with(&format!(
            "ALERT ROUTE {}/{}: AlertNotReceived: storage s3-us-west",
            world::NAMESPACE,
            world::CLUSTER
        )),
        "{line}"
    );
    // Said once per silence, not once per check.
    assert_eq!(events(&r, "AlertNotReceived").await.len(), 1);

    // The notification comes after all: the silence ends, and status no longer warns.
    notify(&r.base, &firing("f-late", "2026-11-24T12:00:00Z")).await;
    let ended = wait_event(&r, "AlertReceived").await;
    let message = ended[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("after storage s3-us-west began failing"),
        "{message}"
    );
    r.wait_until("the gauge back at 0", |m| m.contains(&gauge(0)))
        .await;
    assert_eq!(status_line(&r).await, None);
    r.stop().await;
}

on_both_backends!(a_recovery_without_any_notification_leaves_the_route_unproven);
async fn a_recovery_without_any_notification_leaves_the_route_unproven(backend: Backend) {
    let r = start(backend, quick_check).await;
    break_region(&r, s3::PRIMARY_REGION).await;
    wait_event(&r, "AlertNotReceived").await;
    r.world.s3.faults().clear_all().await.unwrap();
    let ended = wait_event(&r, "AlertRouteUnproven").await;
    let message = ended[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("no notification from Alertmanager arrived for the whole outage"),
        "{message}"
    );
    r.wait_until("the gauge back at 0", |m| m.contains(&gauge(0)))
        .await;
    // Status keeps warning: the route has still never been shown to work.
    let line = status_line(&r).await.unwrap_or_default();
    assert!(line.contains("AlertRouteUnproven"), "{line}");
    r.stop().await;
}
