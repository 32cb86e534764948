//! S3 requests per probe cycle on a bucket holding 100,000 backup objects, with the default
//! probe settings, counted by the embedded S3 itself. The baseline, measured in the same run,
//! is what a naive prober pays: one full listing of the prefix per cycle. Goal: at most 2
//! ListObjectsV2 requests per cycle at steady state.
//!
//! `cargo bench --bench list_cost` (`BACKSTOP_BENCH_OBJECTS` sizes it).

use std::time::Duration;

use backstop::config::ProbeConfig;
use backstop::probe::cycle::{CycleOptions, TargetState, run_cycle};
use backstop::probe::target::Target;
use backstop::s3::client::{self as s3client, StaticCredentials, Timeouts};
use backstop_sandbox::s3::{self, RegionConfig, S3Config};
use futures::StreamExt as _;

const ACCESS_KEY: &str = "BENCHACCESSKEY";
const SECRET_KEY: &str = "bench-secret-key";
const BUCKET: &str = "pxc-backups";
const STEADY_CYCLES: u64 = 10;

#[tokio::main]
async fn main() {
    backstop::install_crypto_provider();
    let smoke = !std::env::args().any(|a| a == "--bench");
    let objects: usize = std::env::var("BACKSTOP_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 300 } else { 100_000 });
    let dir = tempfile::tempdir().expect("dir");
    let server = s3::start(S3Config {
        root: dir.path().to_owned(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        regions: vec![RegionConfig {
            name: s3::PRIMARY_REGION.into(),
            buckets: vec![BUCKET.into()],
        }],
    })
    .await
    .expect("s3");
    let endpoint = server.endpoint(s3::PRIMARY_REGION).expect("endpoint");
    let storage: backstop::pxc::Storage = serde_json::from_value(serde_json::json!({
        "type": "s3",
        "s3": {"bucket": format!("{BUCKET}/prod"), "region": s3::PRIMARY_REGION,
               "endpointUrl": endpoint, "forcePathStyle": true, "credentialsSecret": "s3"}
    }))
    .expect("storage");
    let target = Target::from_storage("bench", "cluster1", "s3", &storage).expect("target");
    let client = s3client::client(
        &target.endpoint(),
        &StaticCredentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
        },
        Timeouts {
            connect: Duration::from_secs(5),
            operation: Duration::from_secs(60),
        },
    );
    let seeding = std::time::Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let client = client.clone();
            async move {
                client
                    .put_object()
                    .bucket(BUCKET)
                    .key(format!(
                        "prod/cluster1-2026-11-{:02}-{i:06}-full.xbstream",
                        i % 28 + 1
                    ))
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
                    .send()
                    .await
                    .expect("put");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let seeded_in = seeding.elapsed();
    let measuring = std::time::Instant::now();

    let requests = server.requests();
    let lists = || requests.count(s3::PRIMARY_REGION, BUCKET, "ListObjectsV2");
    let total = || requests.snapshot().values().sum::<u64>();

    // Baseline: one full listing of the prefix, as a prober without a cursor does every cycle.
    let before = lists();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("prod/")
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let full_listing = lists() - before;

    // Backstop with its defaults: catch up, then steady state.
    let options = CycleOptions::from(&ProbeConfig::default());
    let mut state = TargetState::default();
    let mut catch_up_cycles = 0u64;
    let before = lists();
    loop {
        let at = state.resume_after().map(str::to_owned);
        let result = run_cycle(&client, &target, &options, &mut state).await;
        assert!(result.up, "{result:#?}");
        catch_up_cycles += 1;
        if state.resume_after().map(str::to_owned) == at {
            break;
        }
    }
    let catch_up_lists = lists() - before;
    let (lists_before, total_before) = (lists(), total());
    for _ in 0..STEADY_CYCLES {
        let result = run_cycle(&client, &target, &options, &mut state).await;
        assert!(result.up, "{result:#?}");
    }
    let steady_lists = (lists() - lists_before) as f64 / STEADY_CYCLES as f64;
    let steady_total = (total() - total_before) as f64 / STEADY_CYCLES as f64;

    println!(
        "S3 requests per probe cycle, {objects} objects under the prefix{}",
        if smoke {
            " [smoke run: figures not meaningful]"
        } else {
            ""
        }
    );
    println!("| | ListObjectsV2 per cycle | all S3 requests per cycle |");
    println!("|---|---|---|");
    println!("| full listing every cycle (baseline) | {full_listing} | {full_listing} |");
    println!(
        "| Backstop, steady state (defaults; cycles back to back, canary not due) | {steady_lists:.1} | {steady_total:.1} |"
    );
    println!(
        "| ratio Backstop ÷ baseline (lists) | {:.4} | |",
        steady_lists / full_listing.max(1) as f64
    );
    println!(
        "catching up once after a start: {catch_up_lists} lists over {catch_up_cycles} cycles; goal at steady state: ≤ 2 lists per cycle"
    );
    println!(
        "seeded in {:.0} s, measured in {:.0} s",
        seeded_in.as_secs_f64(),
        measuring.elapsed().as_secs_f64()
    );
    assert!(
        steady_lists <= 2.0,
        "steady state lists more than twice per cycle"
    );
    server.shutdown().await;
}
