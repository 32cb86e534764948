//! Webhook throughput and latency, and time from receipt to the cluster patched.
//!
//! 1. Acknowledgements per second and p99 latency of `POST /alertmanager` with a real
//!    Alertmanager payload (a repeat: the intent is already recorded, the steady state of
//!    `repeat_interval`), against Backstop in the sandbox, as a ratio to a bare axum handler
//!    that reads the same body, measured in the same run with the same client and
//!    concurrency. Goal: ratio ≥ 0.5.
//! 2. Webhook receipt to the cluster patched (journal `FailedOver` written), p50 and p99,
//!    over repeated failover/revert cycles (secondary verification included), as a ratio to
//!    the sum of the round trips no implementation can skip, measured in the same run
//!    between the cycles: one preflight of the secondary (HeadBucket and a canary put, get
//!    and delete, on a fresh client as a verification "just now" needs) plus one read and
//!    one write of the cluster. Goal: ratio ≤ 2.
//! 3. A burst of 1,000 duplicate notifications of a new episode, 32 at a time: how long
//!    until every one is acknowledged, and how many failovers follow (must be exactly one).
//!
//! `cargo bench --bench webhook` (`BACKSTOP_BENCH_REQUESTS`, `BACKSTOP_BENCH_CYCLES` size it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use backstop::clock::SystemClock;
use backstop::config::HumanDuration;
use backstop::responder::cluster::{cluster_api, read_journal};
use backstop::responder::journal::{Journal, Phase};
use backstop::runtime::app::App;
use backstop::s3::client::{self as s3client, Endpoint, Timeouts};
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, World, WorldOptions};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

const CONCURRENCY: usize = 16;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Load {
    per_second: f64,
    p99: Duration,
}

/// `requests` POSTs of `body` to `url` from CONCURRENCY workers; every answer must be 200.
async fn load(url: &str, token: &str, body: &Bytes, requests: usize) -> Load {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..CONCURRENCY {
        let (client, url, token, body) = (
            client.clone(),
            url.to_owned(),
            token.to_owned(),
            body.clone(),
        );
        let n = requests / CONCURRENCY + usize::from(w < requests % CONCURRENCY);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            for _ in 0..n {
                let request = hyper::Request::post(url.as_str())
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::new(body.clone()))
                    .expect("request");
                let t = Instant::now();
                let response = client.request(request).await.expect("answer");
                let status = response.status();
                let _ = response.into_body().collect().await.expect("body");
                assert_eq!(status, 200);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    all.sort();
    Load {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p99: percentile(&all, 0.99),
    }
}

/// Polls the sample cluster's journal every `every_ms` until `done` holds for it.
async fn wait_journal(
    api: &kube::Api<kube::api::DynamicObject>,
    every_ms: u64,
    done: impl Fn(Option<&Journal>) -> bool,
) {
    loop {
        let object = api.get(world::CLUSTER).await.expect("cluster");
        if done(read_journal(&object).ok().flatten().as_ref()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
}

/// Failed over by a run that started after `since` (an RFC 3339 timestamp).
fn failed_over_since(journal: Option<&Journal>, since: &str) -> bool {
    journal.is_some_and(|j| {
        j.phase == Phase::FailedOver && j.failed_over_at.to_string().as_str() > since
    })
}

/// One sample of the round trips a failover cannot avoid: a fresh preflight of the
/// secondary (HeadBucket, canary put, get, delete) and one read and one write of the cluster.
async fn round_trips(world: &World) -> Duration {
    let endpoint = Endpoint {
        region: s3::SECONDARY_REGION.into(),
        endpoint_url: world.s3.endpoint(s3::SECONDARY_REGION),
        force_path_style: true,
    };
    let api = cluster_api(&world.client, world::NAMESPACE);
    let t = Instant::now();
    let s3 = s3client::client(&endpoint, &world.credentials, Timeouts::default());
    s3.head_bucket()
        .bucket(world::SECONDARY_BUCKET)
        .send()
        .await
        .expect("head");
    let key = ".backstop-bench-canary";
    s3.put_object()
        .bucket(world::SECONDARY_BUCKET)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"canary"))
        .send()
        .await
        .expect("put");
    let got = s3
        .get_object()
        .bucket(world::SECONDARY_BUCKET)
        .key(key)
        .send()
        .await
        .expect("get");
    let _ = got.body.collect().await.expect("body");
    s3.delete_object()
        .bucket(world::SECONDARY_BUCKET)
        .key(key)
        .send()
        .await
        .expect("delete");
    let object = api.get(world::CLUSTER).await.expect("read");
    api.replace(world::CLUSTER, &Default::default(), &object)
        .await
        .expect("write");
    t.elapsed()
}

/// Succeeded failover runs so far, from Backstop's own counter.
async fn failovers(metrics_url: &str) -> f64 {
    let text = reqwest::get(metrics_url)
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| {
            l.starts_with("backstop_playbook_runs_total{")
                && l.contains("playbook=\"failover\"")
                && l.contains("result=\"succeeded\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn bare_handler(body: Bytes) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "recorded", "bytes": body.len()}))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    backstop::install_crypto_provider();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (CI) runs this binary without
    // it, as a quick smoke run that keeps the harness from rotting, with no thresholds.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let requests = env("BACKSTOP_BENCH_REQUESTS", if smoke { 160 } else { 20000 });
    let cycles = env("BACKSTOP_BENCH_CYCLES", if smoke { 2 } else { 30 });
    let body = Bytes::from(
        std::fs::read("../shared/fixtures/alertmanager/webhook-firing.json")
            .expect("the Alertmanager fixture (run from the repository root)"),
    );

    // The baseline: a bare axum handler that reads the same body.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bare = format!(
        "http://{}/alertmanager",
        listener.local_addr().expect("addr")
    );
    let stop_bare = CancellationToken::new();
    let router = Router::new().route("/alertmanager", post(bare_handler));
    let token = stop_bare.clone();
    let bare_task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
    });

    // Backstop against the sandbox.
    let world = World::start(WorldOptions {
        clock: Arc::new(SystemClock),
        operator_interval: None,
        history: 1,
        retention: 10,
        ..WorldOptions::default()
    })
    .await
    .expect("world");
    let token_path = world.dir().join("token");
    std::fs::write(&token_path, "bench").expect("token");
    let mut config = world
        .backstop_config("127.0.0.1:0", &token_path)
        .expect("config");
    config.probe.interval = HumanDuration(Duration::from_secs(1));
    config.responder.rate_limits.per_cluster_cooldown = HumanDuration(Duration::ZERO);
    config.responder.rate_limits.global_max_failovers = u32::MAX;
    config.responder.revert.hold_down_probes = 1;
    config.responder.revert.test_backup = false;
    config.responder.failover.on_demand_backup = false;
    let app = App::bind_with(config, Some(world.client.clone()), Arc::new(SystemClock))
        .await
        .expect("app");
    let url = format!("http://{}/alertmanager", app.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let app_task = tokio::spawn(app.serve(stop.clone()));

    // Record the intent once, so the measured requests are repeats.
    load(&url, "bench", &body, 1).await;
    // Warm both, then measure them interleaved in halves.
    load(&bare, "bench", &body, requests / 10).await;
    load(&url, "bench", &body, requests / 10).await;
    let mut bare_runs = Vec::new();
    let mut backstop_runs = Vec::new();
    for _ in 0..2 {
        bare_runs.push(load(&bare, "bench", &body, requests / 2).await);
        backstop_runs.push(load(&url, "bench", &body, requests / 2).await);
    }
    let rate = |runs: &[Load]| runs.iter().map(|l| l.per_second).sum::<f64>() / runs.len() as f64;
    let p99 = |runs: &[Load]| runs.iter().map(|l| l.p99).max().unwrap_or_default();
    let (bare_rate, backstop_rate) = (rate(&bare_runs), rate(&backstop_runs));

    // The repeats above asked for a failover: resolve that episode and wait for the revert,
    // so every measured cycle below starts from the primary.
    let api = cluster_api(&world.client, world::NAMESPACE);
    let mut resolved_fixture: serde_json::Value = serde_json::from_slice(&body).expect("json");
    resolved_fixture["status"] = "resolved".into();
    resolved_fixture["alerts"][0]["status"] = "resolved".into();
    load(&url, "bench", &Bytes::from(resolved_fixture.to_string()), 1).await;
    wait_journal(&api, 10, |j| j.is_none_or(|j| j.phase == Phase::Reverted)).await;

    // Receipt to patched: fresh episodes, each failed over and then reverted, with one
    // sample of the unavoidable round trips after each.
    let mut patched = Vec::new();
    let mut floor = Vec::new();
    for i in 0..cycles {
        let sent = jiff::Timestamp::now();
        let starts_at = sent.to_string();
        let mut firing: serde_json::Value = serde_json::from_slice(&body).expect("json");
        firing["alerts"][0]["startsAt"] = starts_at.clone().into();
        firing["alerts"][0]["fingerprint"] = format!("bench{i}").into();
        let mut resolved = firing.clone();
        resolved["status"] = "resolved".into();
        resolved["alerts"][0]["status"] = "resolved".into();
        world
            .s3
            .faults()
            .set(Rule::new(Fault::ServiceUnavailable).in_region(s3::PRIMARY_REGION))
            .await
            .expect("fault");
        let t = Instant::now();
        load(&url, "bench", &Bytes::from(firing.to_string()), 1).await;
        wait_journal(&api, 2, |j| failed_over_since(j, &starts_at)).await;
        patched.push(t.elapsed());
        world.s3.faults().clear_all().await.expect("clear");
        load(&url, "bench", &Bytes::from(resolved.to_string()), 1).await;
        wait_journal(&api, 10, |j| j.is_some_and(|j| j.phase == Phase::Reverted)).await;
        floor.push(round_trips(&world).await);
    }
    patched.sort();
    floor.sort();

    // A burst of duplicates of one new episode.
    let metrics_url = url.replace("/alertmanager", "/metrics");
    let failovers_before = failovers(&metrics_url).await;
    let mut burst: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let burst_starts = jiff::Timestamp::now().to_string();
    burst["alerts"][0]["startsAt"] = burst_starts.clone().into();
    burst["alerts"][0]["fingerprint"] = "burst".into();
    world
        .s3
        .faults()
        .set(Rule::new(Fault::ServiceUnavailable).in_region(s3::PRIMARY_REGION))
        .await
        .expect("fault");
    let burst_load = load(&url, "bench", &Bytes::from(burst.to_string()), 1000).await;
    wait_journal(&api, 5, |j| failed_over_since(j, &burst_starts)).await;
    let burst_failovers = failovers(&metrics_url).await - failovers_before;

    println!(
        "webhook acknowledgements ({requests} requests per side, {CONCURRENCY} concurrent, repeats of a recorded intent)"
    );
    println!("| handler | ack/s | p99 |");
    println!("|---|---|---|");
    println!(
        "| bare axum, reads the body | {bare_rate:.0} | {:.2} ms |",
        p99(&bare_runs).as_secs_f64() * 1e3
    );
    println!(
        "| Backstop `/alertmanager` | {backstop_rate:.0} | {:.2} ms |",
        p99(&backstop_runs).as_secs_f64() * 1e3
    );
    println!(
        "ratio (Backstop / bare): {:.2} (goal >= 0.5)",
        backstop_rate / bare_rate
    );
    println!(
        "receipt -> cluster patched over {cycles} failovers: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&patched, 0.5).as_secs_f64() * 1e3,
        percentile(&patched, 0.99).as_secs_f64() * 1e3
    );

    println!(
        "unavoidable round trips (preflight + cluster read + write) over {cycles} samples: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&floor, 0.5).as_secs_f64() * 1e3,
        percentile(&floor, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "ratio (receipt -> patched / round trips), p50: {:.2}, p99: {:.2} (goal <= 2)",
        percentile(&patched, 0.5).as_secs_f64() / percentile(&floor, 0.5).as_secs_f64(),
        percentile(&patched, 0.99).as_secs_f64() / percentile(&floor, 0.99).as_secs_f64()
    );
    println!(
        "burst of 1000 duplicates ({CONCURRENCY} concurrent): {:.0} ack/s, p99 {:.2} ms, failovers: {burst_failovers} (must be 1)",
        burst_load.per_second,
        burst_load.p99.as_secs_f64() * 1e3
    );
    assert_eq!(
        burst_failovers, 1.0,
        "a burst of duplicates must fail over exactly once"
    );

    stop.cancel();
    let _ = app_task.await;
    stop_bare.cancel();
    let _ = bare_task.await;
    world.shutdown().await;
}
