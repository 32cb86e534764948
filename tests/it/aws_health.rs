//! The AWS Health API as an opt-in source, against both API backends: Backstop's SDK client
//! talks to a server speaking the API's wire protocol (`backstop_sandbox::aws_health`). An open
//! S3 event in the failed region is added to the failover's Event; an account without a
//! support plan (`SubscriptionRequiredException`) shows as `backstop_aws_health_up 0`, and the
//! failover goes ahead without it.

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::SystemClock;
use backstop::config::{Config, HumanDuration};
use backstop_sandbox::aws_health::{self, Event, HealthServer};
use backstop_sandbox::s3;
use backstop_sandbox::world::{self, World};
use serde_json::json;

use crate::common::fixtures::firing;
use crate::common::sandbox::{self, Running};
use crate::common::{Backend, on_both_backends};
use crate::responder::{break_region, fast, notify, options, wait_event};

fn event(region: &str, service: &str, code: &str, status: &str) -> Event {
    Event {
        region: region.into(),
        service: service.into(),
        event_type_code: code.into(),
        status_code: status.into(),
    }
}

async fn start(backend: Backend, subscribed: bool) -> (Running, HealthServer) {
    let world = World::start(options(backend)).await.unwrap();
    let health = aws_health::start(&world.credentials.access_key_id)
        .await
        .unwrap();
    health.require_subscription(!subscribed);
    health.set_events(vec![
        event(s3::PRIMARY_REGION, "S3", "AWS_S3_OPERATIONAL_ISSUE", "open"),
        event(
            s3::PRIMARY_REGION,
            "EC2",
            "AWS_EC2_OPERATIONAL_ISSUE",
            "open",
        ),
        event(
            s3::SECONDARY_REGION,
            "S3",
            "AWS_S3_OPERATIONAL_ISSUE",
            "closed",
        ),
    ]);
    let settings = json!({
        "enabled": true, "endpoint_url": health.url(), "interval": "1s",
        "regions": [s3::PRIMARY_REGION, s3::SECONDARY_REGION],
        "credentials_secret": {"namespace": world::NAMESPACE, "name": world::CREDENTIALS_SECRET},
    });
    let r = sandbox::start_in(world, Arc::new(SystemClock), move |c: &mut Config| {
        fast(c);
        c.probe.aws_health = serde_json::from_value(settings).unwrap();
        c.probe.aws_health.interval = HumanDuration(Duration::from_secs(1));
    })
    .await;
    (r, health)
}

/// Breaks the primary region and waits until the prober has judged it (a verdict needs a
/// probed target), so the failover has a blast radius to state.
async fn break_primary(r: &Running) {
    break_region(r, s3::PRIMARY_REGION).await;
    r.wait_until("the primary probed down and judged", |m| {
        m.lines().any(|l| {
            l.starts_with("backstop_s3_blast_radius{")
                && l.contains(&format!("s3://{}/", world::PRIMARY_BUCKET))
                && l.contains("scope=\"healthy\"")
                && l.ends_with(" 0")
        })
    })
    .await;
}

on_both_backends!(an_open_s3_event_in_the_failed_region_is_said_at_failover);
async fn an_open_s3_event_in_the_failed_region_is_said_at_failover(backend: Backend) {
    let (r, health) = start(backend, true).await;
    // Only open S3 events in the regions asked about: one, in the primary's region.
    r.wait_until("the Health API read", |m| {
        m.contains("backstop_aws_health_up{api=\"DescribeEvents\"} 1")
            && m.contains(&format!(
                "backstop_aws_health_open_events{{region=\"{}\"}} 1",
                s3::PRIMARY_REGION
            ))
            && !m.contains(&format!(
                "backstop_aws_health_open_events{{region=\"{}\"}}",
                s3::SECONDARY_REGION
            ))
    })
    .await;
    break_primary(&r).await;
    notify(&r.base, &firing("f-health", "2026-11-24T12:00:00Z")).await;
    let said = wait_event(&r, "FailedOver").await;
    let message = said[0].message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "AWS Health has an open S3 event in {} (AWS_S3_OPERATIONAL_ISSUE)",
            s3::PRIMARY_REGION
        )),
        "{message}"
    );
    assert!(health.requests() > 0);
    r.stop().await;
    health.shutdown().await;
}

on_both_backends!(without_a_support_plan_the_failover_goes_ahead_without_it);
async fn without_a_support_plan_the_failover_goes_ahead_without_it(backend: Backend) {
    let (r, health) = start(backend, false).await;
    r.wait_until("the failed read exported", |m| {
        m.contains("backstop_aws_health_up{api=\"DescribeEvents\"} 0")
    })
    .await;
    break_primary(&r).await;
    notify(&r.base, &firing("f-no-plan", "2026-11-24T12:00:00Z")).await;
    let said = wait_event(&r, "FailedOver").await;
    let message = said[0].message.clone().unwrap_or_default();
    assert!(message.contains("blast radius:"), "{message}");
    assert!(!message.contains("AWS Health"), "{message}");
    r.stop().await;
    health.shutdown().await;
}

/// The SDK's own request, answered by the server: only open S3 events of the regions asked.
#[tokio::test]
async fn the_sdk_reads_open_s3_events_from_the_wire_protocol() {
    let health = aws_health::start("AKIDSANDBOX").await.unwrap();
    health.set_events(vec![
        event("us-west-2", "S3", "AWS_S3_OPERATIONAL_ISSUE", "open"),
        event("us-west-2", "S3", "AWS_S3_OLD_ISSUE", "closed"),
        event("eu-west-1", "S3", "AWS_S3_OPERATIONAL_ISSUE", "open"),
    ]);
    let config: backstop::config::AwsHealthConfig =
        serde_json::from_value(json!({"enabled": true, "endpoint_url": health.url()})).unwrap();
    let credentials = backstop::s3::client::StaticCredentials {
        access_key_id: "AKIDSANDBOX".into(),
        secret_access_key: "sandbox-secret".into(),
    };
    let client =
        backstop::probe::aws_health::client(&config, Some(&credentials), Duration::from_secs(5))
            .await;
    let events = backstop::probe::aws_health::open_s3_events(&client, &["us-west-2".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        events,
        [backstop::probe::aws_health::HealthEvent {
            region: "us-west-2".into(),
            event_type_code: "AWS_S3_OPERATIONAL_ISSUE".into(),
        }]
    );
    health.require_subscription(true);
    let error = backstop::probe::aws_health::open_s3_events(&client, &["us-west-2".to_owned()])
        .await
        .unwrap_err();
    assert!(
        error.starts_with("SubscriptionRequiredException"),
        "{error}"
    );
    health.shutdown().await;
}
