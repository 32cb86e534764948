//! The backup index and its exposition in process, at the watcher-scale size (1,000 clusters ×
//! 3 storages × 100 backups), without the API simulator: the heap the index holds (counted by a
//! wrapping global allocator), the time to render `/metrics` from it, and the time to gzip that
//! body at the fastest level, as the server does for a scrape asking for gzip. Baseline in the same run: the same registry over an
//! empty index. `watch_scale` measures the whole process; this one says where its figures
//! come from, and runs in seconds.
//!
//! `cargo bench --bench index_scale` (`BACKSTOP_BENCH_CLUSTERS` scales it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use backstop::clock::{Clock, SystemClock};
use backstop::pxc::{PerconaXtraDBCluster, PerconaXtraDBClusterBackup};
use backstop::runtime::metrics::{Format, Metrics};
use backstop::watch::collector::BackupCollector;
use backstop::watch::index::{BackupIndex, Epoch};
use serde_json::json;

/// Counts the bytes currently allocated, so the index's own heap is measured exactly.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const STORAGES: usize = 3;
const BACKUPS_PER_STORAGE: usize = 100;
const NAMESPACES: usize = 10;
const SCRAPES: usize = 50;

fn cluster(c: usize) -> PerconaXtraDBCluster {
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
        .map(|s| json!({"name": format!("daily{s}"), "schedule": format!("{s} 0 * * *"), "storageName": format!("s3-{s}"), "retention": {"type": "count", "count": 100}}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
        "metadata": {"name": name, "namespace": format!("ns{}", c % NAMESPACES)},
        "spec": {"crVersion": "1.20.0", "backup": {"storages": storages, "schedule": schedules}},
    }))
    .expect("cluster")
}

fn backup(c: usize, s: usize, b: usize) -> PerconaXtraDBClusterBackup {
    let completed = jiff::Timestamp::from_second(1_790_000_000 + (b as i64) * 86_400).expect("ts");
    serde_json::from_value(json!({
        "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
        "metadata": {"name": format!("cron-cluster{c}-s{s}-{b}"), "namespace": format!("ns{}", c % NAMESPACES),
            "creationTimestamp": "2026-11-20T00:00:00Z"},
        "spec": {"pxcCluster": format!("cluster{c}"), "storageName": format!("s3-{s}")},
        "status": {"state": "Succeeded", "completed": completed.to_string(), "storageName": format!("s3-{s}")},
    }))
    .expect("backup")
}

struct Figures {
    render: Duration,
    gzip: Duration,
    bytes: usize,
    gzipped: usize,
    series: usize,
}

fn measure(index: &Arc<RwLock<BackupIndex>>) -> Figures {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut metrics = Metrics::new();
    metrics
        .registry_mut()
        .register_collector(Box::new(BackupCollector::new(index.clone(), clock)));
    let mut renders = Vec::with_capacity(SCRAPES);
    let mut gzips = Vec::with_capacity(SCRAPES);
    let mut body = String::new();
    let mut gzipped = 0;
    for _ in 0..SCRAPES {
        let t = Instant::now();
        body = metrics.render(Format::PrometheusText).expect("render");
        renders.push(t.elapsed());
        let t = Instant::now();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).expect("gzip");
        gzipped = std::hint::black_box(gz.finish().expect("gzip")).len();
        gzips.push(t.elapsed());
    }
    renders.sort();
    gzips.sort();
    Figures {
        render: renders[SCRAPES / 2],
        gzip: gzips[SCRAPES / 2],
        bytes: body.len(),
        gzipped,
        series: body.lines().filter(|l| !l.starts_with('#')).count(),
    }
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let clusters: usize = std::env::var("BACKSTOP_BENCH_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 2 } else { 1000 });

    let empty = Arc::new(RwLock::new(BackupIndex::new()));
    let base = measure(&empty);

    let before = LIVE.load(Ordering::Relaxed);
    let index = Arc::new(RwLock::new(BackupIndex::new()));
    for c in 0..clusters {
        let mut guard = index.write().expect("lock");
        guard.upsert_cluster(&cluster(c), Epoch::default());
        for s in 0..STORAGES {
            for b in 0..BACKUPS_PER_STORAGE {
                guard.upsert_backup(&backup(c, s, b), Epoch::default());
            }
        }
    }
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let full = measure(&index);
    let backups = clusters * STORAGES * BACKUPS_PER_STORAGE;

    println!(
        "index scale: {clusters} clusters x {STORAGES} storages x {BACKUPS_PER_STORAGE} backups = {backups} backups, {} series, {} KiB body ({} KiB gzipped)",
        full.series,
        full.bytes / 1024,
        full.gzipped / 1024
    );
    println!("| | empty index (baseline) | at scale | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| render, median | {:.3} ms | {:.2} ms | {:.0}x |",
        base.render.as_secs_f64() * 1e3,
        full.render.as_secs_f64() * 1e3,
        full.render.as_secs_f64() / base.render.as_secs_f64()
    );
    println!(
        "| gzip of the body, median | {:.3} ms | {:.2} ms | {:.0}x |",
        base.gzip.as_secs_f64() * 1e3,
        full.gzip.as_secs_f64() * 1e3,
        full.gzip.as_secs_f64() / base.gzip.as_secs_f64()
    );
    println!(
        "| index heap | 0 | {:.1} MiB ({} bytes per backup) | |",
        held as f64 / 1048576.0,
        held / backups.max(1)
    );
    assert!(
        full.series >= base.series,
        "the full index renders its series"
    );
}
