//! The blast radius, against both API backends: with a second bucket probed in the primary's
//! region, a broken region is judged by how far it reaches (on `/metrics`, in the failover's
//! Event and in `backstop status`), and a fault on one bucket is judged `target`. The
//! sandbox serves each region at an endpoint of its own, as S3-compatible stores do, so a
//! broken region is every target at that endpoint: `endpoint` (the unit tests of
//! `probe::blast` cover `region`, for AWS targets without an endpoint).

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::SystemClock;
use backstop::config::{Config, StaticTarget};
use backstop::s3::client::{self as s3client, Endpoint, Timeouts};
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, World};
use serde_json::json;

use crate::common::fixtures::firing;
use crate::common::sandbox::{self, Running};
use crate::common::{Backend, on_both_backends};
use crate::responder::{fast, notify, options, wait_event};

const NEIGHBOUR: &str = "pxc-neighbour";

/// Backstop on a world whose primary region has a second bucket, probed as a static target.
async fn start(backend: Backend) -> Running {
    let world = World::start(options(backend)).await.unwrap();
    let endpoint = world.s3.endpoint(s3::PRIMARY_REGION).unwrap();
    let client = s3client::client(
        &Endpoint {
            region: s3::PRIMARY_REGION.to_owned(),
            endpoint_url: Some(endpoint.clone()),
            force_path_style: true,
        },
        &world.credentials,
        Timeouts {
            connect: Duration::from_secs(2),
            operation: Duration::from_secs(5),
        },
    );
    client
        .create_bucket()
        .bucket(NEIGHBOUR)
        .send()
        .await
        .unwrap();
    let neighbour: StaticTarget = serde_json::from_value(json!({
        "name": "neighbour", "bucket": NEIGHBOUR, "region": s3::PRIMARY_REGION,
        "endpoint_url": endpoint, "force_path_style": true,
        "credentials_secret": {"namespace": world::NAMESPACE, "name": world::CREDENTIALS_SECRET},
    }))
    .unwrap();
    sandbox::start_in(world, Arc::new(SystemClock), move |c: &mut Config| {
        fast(c);
        c.targets.push(neighbour);
    })
    .await
}

fn scope_line(metrics: &str, bucket: &str, scope: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("backstop_s3_blast_radius{")
            && l.contains(&format!("s3://{bucket}/"))
            && l.contains(&format!("scope=\"{scope}\""))
            && l.ends_with(" 1")
    })
}

on_both_backends!(a_broken_region_is_judged_and_said_at_failover);
async fn a_broken_region_is_judged_and_said_at_failover(backend: Backend) {
    let r = start(backend).await;
    r.wait_until("every target healthy", |m| {
        scope_line(m, world::PRIMARY_BUCKET, "healthy") && scope_line(m, NEIGHBOUR, "healthy")
    })
    .await;
    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::Refuse).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    let m = r
        .wait_until("the primary judged endpoint", |m| {
            scope_line(m, world::PRIMARY_BUCKET, "endpoint")
        })
        .await;
    assert!(
        m.contains(&format!(
            "backstop_s3_region_verdict{{region=\"{}\",endpoint=\"{}\",verdict=\"down\"}} 1",
            s3::PRIMARY_REGION,
            r.world.s3.endpoint(s3::PRIMARY_REGION).unwrap()
        )),
        "{m}"
    );
    notify(&r.base, &firing("f-blast", "2026-11-24T12:00:00Z")).await;
    let failed_over = wait_event(&r, "FailedOver").await;
    let message = failed_over[0].message.clone().unwrap_or_default();
    let endpoint = r.world.s3.endpoint(s3::PRIMARY_REGION).unwrap();
    assert!(
        message.contains(&format!(
            "blast radius: s3-us-west: endpoint (every one of the 2 targets at endpoint \
             {endpoint} fails)"
        )),
        "{message}"
    );
    let (_, table) = r.status().await;
    assert!(
        table.contains(&format!(
            "BLAST RADIUS {}/{}: s3-us-west: endpoint",
            world::NAMESPACE,
            world::CLUSTER
        )),
        "{table}"
    );
    r.stop().await;
}

on_both_backends!(a_fault_on_one_bucket_is_judged_that_target);
async fn a_fault_on_one_bucket_is_judged_that_target(backend: Backend) {
    let r = start(backend).await;
    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::AccessDenied).on_bucket(world::PRIMARY_BUCKET))
        .await
        .unwrap();
    r.wait_until("the primary judged target, the neighbour healthy", |m| {
        scope_line(m, world::PRIMARY_BUCKET, "target") && scope_line(m, NEIGHBOUR, "healthy")
    })
    .await;
    r.stop().await;
}
