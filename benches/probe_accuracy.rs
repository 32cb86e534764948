//! Probe accuracy: the HeadBucket latency Backstop records in a probe cycle, divided by the
//! latency of the same request issued directly with the SDK, against the embedded S3 with
//! 0, 5 and 50 ms of injected latency. Both are measured in the same run, interleaved, so the
//! ratio cancels out the machine. Goal: ratio ≤ 1.05.
//!
//! `cargo bench --bench probe_accuracy` (set `BACKSTOP_BENCH_ROUNDS` for more rounds; the
//! default is sized for a 2-core machine to finish in well under a minute).

use std::time::{Duration, Instant};

use backstop::config::{CanaryConfig, ListConfig};
use backstop::probe::cycle::{CycleOptions, Operation, TargetState, run_cycle};
use backstop::probe::target::Target;
use backstop::pxc::{S3Storage, Storage};
use backstop::s3::client::{self as s3client, Endpoint, StaticCredentials, Timeouts};
use backstop_sandbox::s3::{self, Fault, RegionConfig, Rule, S3Config};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One HeadBucket sent straight through the SDK, timed around the call.
async fn direct_head(client: &aws_sdk_s3::Client) -> Duration {
    let started = Instant::now();
    client
        .head_bucket()
        .bucket("bench")
        .send()
        .await
        .expect("direct HeadBucket");
    started.elapsed()
}

/// The HeadBucket latency Backstop records in one probe cycle.
async fn recorded_head(
    client: &aws_sdk_s3::Client,
    target: &Target,
    options: &CycleOptions,
    state: &mut TargetState,
) -> Duration {
    let result = run_cycle(client, target, options, state).await;
    let head = result
        .operation(Operation::HeadBucket)
        .expect("the cycle ran HeadBucket");
    assert!(head.is_ok(), "{head:?}");
    head.duration
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (CI) runs this binary without
    // it, as a quick smoke run that keeps the harness from rotting, with no thresholds.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("BACKSTOP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 5 } else { 60 });
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, secret) = ("benchaccesskey", "benchsecretkey0123456789");
    let server = s3::start(S3Config {
        root: dir.path().to_owned(),
        access_key: key.into(),
        secret_key: secret.into(),
        regions: vec![RegionConfig {
            name: s3::PRIMARY_REGION.into(),
            buckets: vec!["bench".into()],
        }],
    })
    .await
    .expect("embedded S3 starts");
    let endpoint_url = server.endpoint(s3::PRIMARY_REGION).expect("endpoint");
    let storage = Storage {
        kind: Some("s3".into()),
        s3: Some(S3Storage {
            bucket: "bench".into(),
            region: Some(s3::PRIMARY_REGION.into()),
            endpoint_url: Some(endpoint_url.clone()),
            force_path_style: Some(true),
            credentials_secret: Some("bench".into()),
            ..S3Storage::default()
        }),
        ..Storage::default()
    };
    let target = Target::from_storage("bench", "bench", "bench", &storage).expect("target");
    let client = s3client::client(
        &Endpoint {
            region: s3::PRIMARY_REGION.into(),
            endpoint_url: Some(endpoint_url),
            force_path_style: true,
        },
        &StaticCredentials {
            access_key_id: key.into(),
            secret_access_key: secret.into(),
        },
        Timeouts {
            connect: Duration::from_secs(2),
            operation: Duration::from_secs(5),
        },
    );
    // HeadBucket only: the canary and listing are switched off so each cycle is one request.
    let options = CycleOptions {
        canary: CanaryConfig {
            enabled: false,
            ..CanaryConfig::default()
        },
        list: ListConfig {
            enabled: false,
            ..ListConfig::default()
        },
        ..CycleOptions::default()
    };

    println!("| injected latency | direct SDK p50 | Backstop-recorded p50 | ratio |");
    println!("|---|---|---|---|");
    for latency_ms in [0u64, 5, 50] {
        server.faults().clear_all().await.expect("clear faults");
        if latency_ms > 0 {
            server
                .faults()
                .set(
                    Rule::new(Fault::Latency(Duration::from_millis(latency_ms)))
                        .on_operation("HeadBucket"),
                )
                .await
                .expect("set latency");
        }
        let mut state = TargetState::default();
        // Warm the connection pool so neither side pays the connect.
        for _ in 0..5 {
            let _ = client.head_bucket().bucket("bench").send().await;
            let _ = run_cycle(&client, &target, &options, &mut state).await;
        }
        // At 0 ms a sample is a fraction of a millisecond and its median moves with scheduling
        // noise, so that row takes ten times the rounds (still about a second). The two sides
        // take turns going first so neither always runs on the connection the other warmed.
        let samples = if latency_ms == 0 { rounds * 10 } else { rounds };
        let mut direct = Vec::with_capacity(samples);
        let mut recorded = Vec::with_capacity(samples);
        for round in 0..samples {
            if round % 2 == 0 {
                direct.push(direct_head(&client).await);
                recorded.push(recorded_head(&client, &target, &options, &mut state).await);
            } else {
                recorded.push(recorded_head(&client, &target, &options, &mut state).await);
                direct.push(direct_head(&client).await);
            }
        }
        let (d, r) = (median(direct), median(recorded));
        println!(
            "| {latency_ms} ms | {:.3} ms | {:.3} ms | {:.3} |",
            d.as_secs_f64() * 1000.0,
            r.as_secs_f64() * 1000.0,
            r.as_secs_f64() / d.as_secs_f64()
        );
    }
    server.shutdown().await;
}
