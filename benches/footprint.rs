//! Footprint: Backstop probing N S3 targets beside Debian's `prometheus-blackbox-exporter`
//! probing the same N bucket endpoints over HTTP, on the same interval, in the same run.
//!
//! All run as child processes against one embedded S3 (N buckets). The blackbox exporter
//! is driven the way Prometheus drives it: one `GET /probe?module=s3&target=…` per target per
//! interval. Backstop runs its own schedule, three times over: as shipped (HeadBucket and an
//! incremental list per target per interval, and the canary's put/get/delete every fourth
//! interval: 2.75 signed S3 requests on average where the exporter sends one unsigned HEAD),
//! with the canary every cycle (five signed requests), and with the canary off (HeadBucket
//! and the list), which is what read-only credentials allow. Each Backstop's `/metrics` is scraped once
//! per interval, as Prometheus would. After a warm-up, each process's CPU time (utime + stime)
//! over the window is scaled to an hour, and its RSS is read at the end. Goal: Backstop ≤ 1.0×
//! the exporter's RSS and CPU.
//!
//! `cargo bench --bench footprint` (`BACKSTOP_BENCH_TARGETS`, `BACKSTOP_BENCH_WINDOW_SECS`,
//! `BACKSTOP_BENCH_INTERVAL_SECS` size it; `BACKSTOP_BENCH_COMPARE_BIN` names another Backstop
//! build to run beside the others, with `BACKSTOP_BENCH_COMPARE_PROBE` appended to its probe
//! settings). Under `cargo test` it is a few-second
//! smoke run.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backstop_sandbox::crds::install_pxc_crds;
use backstop_sandbox::kube::{KubeSim, SimOptions};
use backstop_sandbox::s3::{self, RegionConfig, S3Config};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ObjectMeta, PostParams};

mod support;

use support::{Process, clock_ticks, cpu, free_port, rss_kib};

const ACCESS_KEY: &str = "BENCHACCESSKEY";
const SECRET_KEY: &str = "bench-secret-key";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A Backstop process of the run.
struct Contender {
    /// Its row in the table.
    label: String,
    /// What it sends per probe.
    requests: String,
    process: Process,
    base: String,
}

/// Starts `bin` probing every bucket every `interval`, with `probe_extra` appended to its
/// `probe` settings.
async fn start_backstop(
    bin: &std::path::Path,
    sim: &KubeSim,
    endpoint: &str,
    buckets: &[String],
    interval: u64,
    probe_extra: &str,
) -> (Process, String) {
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, sim.admin_token())
        .expect("kubeconfig");
    let mut targets = String::new();
    for bucket in buckets {
        targets.push_str(&format!(
            "  - {{name: {bucket}, bucket: {bucket}, region: {region}, endpoint_url: '{endpoint}', \
             force_path_style: true, credentials_secret: {{namespace: bench, name: s3}}}}\n",
            region = s3::PRIMARY_REGION,
        ));
    }
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes: {{leader_election: {{enabled: false}}}}\n\
             responder: {{enabled: false}}\n\
             probe: {{discover: false, sts: false, interval: {interval}s, timeout: 5s{probe_extra}}}\n\
             targets:\n{targets}"
        ),
    )
    .expect("config");
    support::start_backstop(bin, dir, &config, &kubeconfig, Duration::from_secs(120)).await
}

fn start_blackbox() -> (Process, String) {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("blackbox.yml");
    // HEAD on the bucket URL, unsigned: S3 answers 403, which proves the endpoint serves.
    std::fs::write(
        &config,
        "modules:\n  s3:\n    prober: http\n    timeout: 5s\n    http:\n      method: HEAD\n      \
         valid_status_codes: [200, 403]\n      preferred_ip_protocol: ip4\n",
    )
    .expect("config");
    let port = free_port();
    let child = Command::new("prometheus-blackbox-exporter")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-blackbox-exporter (Debian: prometheus-blackbox-exporter)");
    (
        Process { child, _dir: dir },
        format!("http://127.0.0.1:{port}"),
    )
}

/// One interval's worth of scrapes: every blackbox probe (concurrently, as Prometheus
/// scrapes targets independently) and each Backstop's `/metrics` once. Returns how many
/// blackbox probes succeeded and how many targets each Backstop reports up.
async fn scrape_round(
    http: &reqwest::Client,
    blackbox: &str,
    backstops: &[Contender],
    probe_urls: &[String],
) -> (usize, Vec<usize>) {
    let probes = probe_urls.iter().map(|target| {
        let url = format!("{blackbox}/probe?module=s3&target={target}");
        let http = http.clone();
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            text.lines().any(|l| l == "probe_success 1").then_some(())
        }
    });
    let ok = futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .count();
    let mut up = Vec::with_capacity(backstops.len());
    for backstop in backstops {
        let metrics = http
            .get(format!("{}/metrics", backstop.base))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        up.push(backstop_targets_up(&metrics));
    }
    (ok, up)
}

fn backstop_targets_up(metrics: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with("backstop_s3_up{") && l.ends_with(" 1"))
        .count()
}

struct Figures {
    rss_mib: f64,
    cpu_per_hour: f64,
}

impl Figures {
    fn of(pid: u32, cpu_start: Duration, cpu_end: Duration, window: Duration) -> Self {
        Self {
            rss_mib: rss_kib(pid) as f64 / 1024.0,
            cpu_per_hour: (cpu_end - cpu_start).as_secs_f64() * 3600.0 / window.as_secs_f64(),
        }
    }
}

#[tokio::main]
async fn main() {
    backstop::install_crypto_provider();
    let smoke = !std::env::args().any(|a| a == "--bench");
    let targets = env("BACKSTOP_BENCH_TARGETS", if smoke { 5 } else { 100 }) as usize;
    let interval = env("BACKSTOP_BENCH_INTERVAL_SECS", if smoke { 1 } else { 5 });
    let window = Duration::from_secs(env(
        "BACKSTOP_BENCH_WINDOW_SECS",
        if smoke { 2 } else { 120 },
    ));
    let ticks = clock_ticks();

    let root = tempfile::tempdir().expect("dir");
    let buckets: Vec<String> = (0..targets).map(|i| format!("bench-{i:03}")).collect();
    let s3 = s3::start(S3Config {
        root: root.path().to_owned(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        regions: vec![RegionConfig {
            name: s3::PRIMARY_REGION.into(),
            buckets: buckets.clone(),
        }],
    })
    .await
    .expect("s3");
    let endpoint = s3.endpoint(s3::PRIMARY_REGION).expect("endpoint");

    let sim = KubeSim::start(SimOptions::default()).await.expect("sim");
    let client = sim.admin_client().await.expect("client");
    install_pxc_crds(&client).await.expect("crds");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("bench".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("namespace");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "bench");
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("s3".into()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([
                    ("AWS_ACCESS_KEY_ID".into(), ByteString(ACCESS_KEY.into())),
                    (
                        "AWS_SECRET_ACCESS_KEY".into(),
                        ByteString(SECRET_KEY.into()),
                    ),
                ])),
                ..Default::default()
            },
        )
        .await
        .expect("secret");

    // Backstop as shipped, with the canary every cycle (the default before 0.1's canary
    // interval), and with the canary off (what read-only credentials allow: still a signed
    // HeadBucket and an incremental listing per probe, with every error classified). The
    // bench's interval is shorter than the default, so the shipped canary interval is scaled
    // with it: the same share of cycles runs the canary.
    // A build named by BACKSTOP_BENCH_COMPARE_BIN probes beside them, with the probe settings
    // in BACKSTOP_BENCH_COMPARE_PROBE (appended to its `probe:` map, e.g. `, canary: {interval:
    // 20s}`; empty by default, for builds that predate a setting): what a change bought,
    // measured under the same conditions (docs/performance.md).
    let shipped = backstop::config::ProbeConfig::default();
    let canary_every = (shipped.canary.interval.get().as_secs_f64()
        / shipped.interval.get().as_secs_f64())
    .round()
    .max(1.0) as u64;
    let scaled = format!(", canary: {{interval: {}s}}", interval * canary_every);
    let bin = support::backstop_bin();
    let mut backstops = Vec::new();
    for (label, requests, bin, extra) in [
        (
            format!("backstop (defaults: canary every {canary_every}th cycle)"),
            format!(
                "{} (HeadBucket and list every cycle; canary put, get, delete every {canary_every}th)",
                2.0 + 3.0 / canary_every as f64
            ),
            bin.clone(),
            scaled,
        ),
        (
            "backstop, canary every cycle".to_owned(),
            "5 (HeadBucket, canary put, get, delete, list)".to_owned(),
            bin.clone(),
            ", canary: {interval: 0s}".to_owned(),
        ),
        (
            "backstop, canary off".to_owned(),
            "2 (HeadBucket, list)".to_owned(),
            bin,
            ", canary: {enabled: false}".to_owned(),
        ),
    ]
    .into_iter()
    .chain(
        std::env::var_os("BACKSTOP_BENCH_COMPARE_BIN")
            .map(std::path::PathBuf::from)
            .map(|bin| {
                (
                    format!("compare: {}", bin.display()),
                    "?".to_owned(),
                    bin,
                    std::env::var("BACKSTOP_BENCH_COMPARE_PROBE").unwrap_or_default(),
                )
            }),
    ) {
        let (process, base) =
            start_backstop(&bin, &sim, &endpoint, &buckets, interval, &extra).await;
        backstops.push(Contender {
            label,
            requests,
            process,
            base,
        });
    }
    let (blackbox, blackbox_base) = start_blackbox();
    support::wait_http_ok(
        &format!("{blackbox_base}/metrics"),
        Duration::from_secs(120),
    )
    .await;
    let probe_urls: Vec<String> = buckets.iter().map(|b| format!("{endpoint}/{b}")).collect();
    let http = reqwest::Client::new();

    // Warm-up: every process must see every target healthy before anything is measured.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ok, up) = scrape_round(&http, &blackbox_base, &backstops, &probe_urls).await;
        if ok == targets && up.iter().all(|&u| u == targets) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "warm-up: blackbox {ok}/{targets}, backstops {up:?} of {targets} up"
        );
        tokio::time::sleep(Duration::from_secs(interval)).await;
    }

    let bb_pid = blackbox.child.id();
    let bb_start = cpu(bb_pid, ticks);
    let starts: Vec<Duration> = backstops
        .iter()
        .map(|b| cpu(b.process.child.id(), ticks))
        .collect();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(interval));
    let mut rounds = 0u32;
    let mut failed_probes = 0usize;
    while started.elapsed() < window {
        ticker.tick().await;
        let (ok, _) = scrape_round(&http, &blackbox_base, &backstops, &probe_urls).await;
        failed_probes += targets - ok;
        rounds += 1;
    }
    let elapsed = started.elapsed();
    let bb = Figures::of(bb_pid, bb_start, cpu(bb_pid, ticks), elapsed);
    let figures: Vec<Figures> = backstops
        .iter()
        .zip(&starts)
        .map(|(b, start)| {
            let pid = b.process.child.id();
            Figures::of(pid, *start, cpu(pid, ticks), elapsed)
        })
        .collect();
    let (_, up) = scrape_round(&http, &blackbox_base, &backstops, &probe_urls).await;

    println!(
        "footprint: {targets} targets, every {interval} s, window {:.0} s ({rounds} rounds){}",
        elapsed.as_secs_f64(),
        if smoke {
            " [smoke run: figures not meaningful]"
        } else {
            ""
        }
    );
    println!(
        "| process | S3 requests per probe | RSS (MiB) | CPU s per hour | RSS ÷ exporter | CPU ÷ exporter (goal ≤ 1.0) |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| prometheus-blackbox-exporter (baseline) | 1 (unsigned HEAD) | {:.1} | {:.1} | 1 | 1 |",
        bb.rss_mib, bb.cpu_per_hour
    );
    for (backstop, f) in backstops.iter().zip(&figures) {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2} | {:.2} |",
            backstop.label,
            backstop.requests,
            f.rss_mib,
            f.cpu_per_hour,
            f.rss_mib / bb.rss_mib.max(f64::MIN_POSITIVE),
            f.cpu_per_hour / bb.cpu_per_hour.max(f64::MIN_POSITIVE)
        );
    }
    println!(
        "blackbox failed probes in window: {failed_probes}; backstop targets up at the end: {up:?} of {targets}"
    );
    assert!(
        up.iter().all(|&u| u == targets),
        "a Backstop lost targets during the window"
    );

    drop(backstops);
    drop(blackbox);
    s3.shutdown().await;
    sim.shutdown().await;
}
