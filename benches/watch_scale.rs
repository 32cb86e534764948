//! The backup watcher at scale: 1,000 clusters × 3 storages × 100 backups (300,000 backup
//! CRs) in the API simulator, watched by a `backstop run` child process. Reports the child's
//! RSS and the `/metrics` scrape time (median and p99 of 50 scrapes, without compression: the
//! render plus a loopback copy; and the median with gzip, as Prometheus scrapes), beside the
//! same figures for an empty cluster measured in the same run (the baseline). Goals: render
//! ≤ 10 ms, RSS ≤ 64 MiB. `index_scale` measures the render alone, in process.
//!
//! `cargo bench --bench watch_scale` (`BACKSTOP_BENCH_CLUSTERS` scales it down).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop_sandbox::crds::install_pxc_crds;
use backstop_sandbox::kube::{KubeSim, SimOptions};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;

mod support;

use support::{Process, rss_kib};

const STORAGES: usize = 3;
const BACKUPS_PER_STORAGE: usize = 100;
const NAMESPACES: usize = 10;

struct Backstop {
    process: Process,
    base: String,
}

async fn start_backstop(sim: &KubeSim) -> Backstop {
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, sim.admin_token())
        .expect("kubeconfig");
    let token = dir.path().join("token");
    std::fs::write(&token, "bench").expect("token");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes: {{leader_election: {{enabled: false}}}}\n\
             probe: {{discover: false}}\n\
             responder: {{auth: {{bearer_token_file: '{}'}}}}\n",
            token.display()
        ),
    )
    .expect("config");
    let (process, base) = support::start_backstop(
        &support::backstop_bin(),
        dir,
        &config,
        &kubeconfig,
        Duration::from_secs(600),
    )
    .await;
    Backstop { process, base }
}

/// Median and p99 time of 50 scrapes, and the body of the last. Without compression the
/// time is the render plus a loopback copy of the body; with gzip (as Prometheus asks) it
/// adds compressing and decompressing.
async fn render(base: &str, gzip: bool) -> (Duration, Duration, String) {
    let client = reqwest::Client::builder()
        .gzip(gzip)
        .build()
        .expect("client");
    let mut times = Vec::new();
    let mut body = String::new();
    for _ in 0..50 {
        let t = Instant::now();
        body = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100], body)
}

fn backups_exported(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("backstop_backups{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    backstop::install_crypto_provider();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (CI) runs this binary without
    // it, as a quick smoke run that keeps the harness from rotting, with no thresholds.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let clusters: usize = std::env::var("BACKSTOP_BENCH_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 2 } else { 1000 });
    let sim = KubeSim::start(SimOptions::default()).await.expect("sim");
    let client = sim.admin_client().await.expect("client");
    install_pxc_crds(&client).await.expect("crds");

    // Baseline: the same process watching an empty cluster.
    let empty = start_backstop(&sim).await;
    let (base_median, base_p99, _) = render(&empty.base, false).await;
    let (base_gzip, _, _) = render(&empty.base, true).await;
    let base_rss = rss_kib(empty.process.child.id());
    drop(empty);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in 0..NAMESPACES {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": format!("ns{n}")}}))
                    .expect("ns"),
            )
            .await
            .expect("namespace");
    }
    let seeded = Instant::now();
    let cluster_rt = ApiResource::erase::<backstop::pxc::PerconaXtraDBCluster>(&());
    let backup_rt = ApiResource::erase::<backstop::pxc::PerconaXtraDBClusterBackup>(&());
    let client = Arc::new(client);
    futures::stream::iter(0..clusters)
        .for_each_concurrent(16, |c| {
            let (client, cluster_rt, backup_rt) = (client.clone(), cluster_rt.clone(), backup_rt.clone());
            async move {
                let ns = format!("ns{}", c % NAMESPACES);
                let name = format!("cluster{c}");
                let storages: serde_json::Map<String, serde_json::Value> = (0..STORAGES)
                    .map(|s| {
                        (
                            format!("s3-{s}"),
                            json!({"type": "s3", "s3": {"bucket": format!("bucket{s}/{name}"), "region": "us-west-2", "credentialsSecret": "creds"}}),
                        )
                    })
                    .collect();
                let schedules: Vec<_> = (0..STORAGES)
                    .map(|s| json!({"name": format!("daily{s}"), "schedule": format!("{s} 0 * * *"), "storageName": format!("s3-{s}"), "retention": {"type": "count", "count": 100, "deleteFromStorage": true}}))
                    .collect();
                let clusters: Api<DynamicObject> = Api::namespaced_with((*client).clone(), &ns, &cluster_rt);
                let object: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"crVersion": "1.20.0", "backup": {"storages": storages, "schedule": schedules}},
                }))
                .expect("cluster");
                clusters.create(&PostParams::default(), &object).await.expect("create cluster");
                let backups: Api<DynamicObject> = Api::namespaced_with((*client).clone(), &ns, &backup_rt);
                for s in 0..STORAGES {
                    for b in 0..BACKUPS_PER_STORAGE {
                        let backup_name = format!("cron-{name}-s{s}-{b}");
                        let object: DynamicObject = serde_json::from_value(json!({
                            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
                            "metadata": {"name": backup_name, "namespace": ns,
                                "labels": {"percona.com/cluster": name, "percona.com/backup-type": "cron"},
                                "annotations": {"backstop.percona.com/observed": "succeeded"}},
                            "spec": {"pxcCluster": name, "storageName": format!("s3-{s}")},
                        }))
                        .expect("backup");
                        backups.create(&PostParams::default(), &object).await.expect("create backup");
                        let completed = jiff::Timestamp::from_second(1_790_000_000 + (b as i64) * 86_400).expect("ts");
                        backups
                            .patch_status(
                                &backup_name,
                                &PatchParams::default(),
                                &Patch::Merge(json!({"status": {"state": "Succeeded", "completed": completed.to_string(), "storageName": format!("s3-{s}")}})),
                            )
                            .await
                            .expect("status");
                    }
                }
            }
        })
        .await;
    let seeding = seeded.elapsed();

    let loaded = Instant::now();
    let full = start_backstop(&sim).await;
    let synced = loaded.elapsed();
    let expected = (clusters * STORAGES * BACKUPS_PER_STORAGE) as f64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = reqwest::get(format!("{}/metrics", full.base))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        if backups_exported(&text) >= expected {
            break;
        }
        assert!(Instant::now() < deadline, "never saw every backup");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Work still going on after every backup is exported would compete with the scrapes:
    // the child's CPU over a few quiet seconds says whether there is any.
    let ticks = support::clock_ticks();
    let pid = full.process.child.id();
    let quiet = Duration::from_secs(3);
    let before = support::cpu(pid, ticks);
    tokio::time::sleep(quiet).await;
    let idle_cpu = support::cpu(pid, ticks).saturating_sub(before);
    let (median, p99, body) = render(&full.base, false).await;
    let (gzip, _, _) = render(&full.base, true).await;
    let rss = rss_kib(full.process.child.id());
    let series = body.lines().filter(|l| !l.starts_with('#')).count();

    println!(
        "watcher scale: {clusters} clusters x {STORAGES} storages x {BACKUPS_PER_STORAGE} backups = {expected} backup CRs (seeded in {:.0} s, listed and ready in {:.1} s)",
        seeding.as_secs_f64(),
        synced.as_secs_f64()
    );
    println!(
        "child CPU while idle at scale: {:.2} s over {} s",
        idle_cpu.as_secs_f64(),
        quiet.as_secs()
    );
    println!("| | empty cluster (baseline) | at scale | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| `/metrics` scrape, median | {:.2} ms | {:.2} ms | {:.1}x | <= 10 ms |",
        base_median.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        median.as_secs_f64() / base_median.as_secs_f64()
    );
    println!(
        "| `/metrics` scrape, p99 | {:.2} ms | {:.2} ms | {:.1}x | |",
        base_p99.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        p99.as_secs_f64() / base_p99.as_secs_f64()
    );
    println!(
        "| `/metrics` scrape with gzip, median | {:.2} ms | {:.2} ms | {:.1}x | |",
        base_gzip.as_secs_f64() * 1e3,
        gzip.as_secs_f64() * 1e3,
        gzip.as_secs_f64() / base_gzip.as_secs_f64()
    );
    println!(
        "| RSS | {:.1} MiB | {:.1} MiB | {:.1}x | <= 64 MiB |",
        base_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        rss as f64 / base_rss.max(1) as f64
    );
    println!("series exported at scale: {series}");
    drop(full);
    sim.shutdown().await;
}
