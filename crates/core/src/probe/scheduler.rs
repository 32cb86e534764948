//! Runs the probes: one task per target, cycling every `probe.interval` without ever
//! overlapping itself; a global semaphore caps concurrent cycles at `probe.concurrency`. A
//! hanging target holds only its own task (and one permit, until `probe.timeout` ends the
//! call or the ambient credential chain's lookup), so it never delays another target's
//! results.
//!
//! A reconcile loop follows discovery: the watch-fed index says which storages exist, so a
//! storage added, changed or removed starts, restarts or stops its target's task, and a
//! removed target's series are deleted.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ProbeConfig};
use crate::probe::cycle::{CycleOptions, TargetState};
use crate::probe::discovery::desired_targets;
use crate::probe::health::DownSince;
use crate::probe::metrics::ProbeMetrics;
use crate::probe::once::probe_once;
use crate::probe::target::Target;
use crate::s3::client::Timeouts;
use crate::watch::collector::SharedIndex;

/// How often the reconcile loop compares the index with the running tasks. The comparison is
/// in memory (the index is fed by watches), so this costs no API requests.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// How long the prober thread's runtime waits for blocking work (DNS lookups) when it stops.
const THREAD_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

struct Running {
    target: Target,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the prober on a thread of its own; it stops when `shutdown` is cancelled, and the
/// returned task ends when it has.
///
/// The prober runs on its own single-threaded runtime, for two reasons. Its timings are the
/// product: on the shared runtime, a relist of many backups or a large `/metrics` render
/// running on the same worker delays the wake-up after an S3 answer and inflates the
/// latency recorded for it. And its work is many small, independent waits, which a
/// work-stealing pool of several workers serves at a cost (each wake-up may rouse another
/// thread to steal it), where one thread serves them in turn. Should the thread or its
/// runtime fail to start, the prober runs on the caller's runtime instead.
pub fn spawn(
    client: kube::Client,
    index: SharedIndex,
    config: Arc<Config>,
    metrics: Arc<ProbeMetrics>,
    down: Arc<DownSince>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // The thread stops on `shutdown`, and also when the returned task is aborted or its
    // runtime goes away (the waiter below holds the guard), so it never outlives its caller.
    let thread_shutdown = shutdown.child_token();
    let prober = {
        let (client, index, config, metrics, down, shutdown) = (
            client.clone(),
            index.clone(),
            config.clone(),
            metrics.clone(),
            down.clone(),
            thread_shutdown.clone(),
        );
        move || run(client, index, config, metrics, down, shutdown)
    };
    // Says whether the thread ran the prober (true) or could not build its runtime (false);
    // dropped unsent if the prober panicked.
    let (ran, finished) = tokio::sync::oneshot::channel::<bool>();
    let thread = std::thread::Builder::new()
        .name("backstop-prober".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let outcome = match runtime {
                Ok(runtime) => {
                    runtime.block_on(prober());
                    // A DNS lookup still running on a blocking thread must not hold up the
                    // process's shutdown.
                    runtime.shutdown_timeout(THREAD_SHUTDOWN_GRACE);
                    true
                }
                Err(error) => {
                    tracing::warn!(%error, "prober runtime did not start; probing on the shared one");
                    false
                }
            };
            let _ = ran.send(outcome);
        });
    match thread {
        Ok(_) => {
            // Made here, not in the task, so that a task aborted before its first poll
            // still drops it.
            let stop_thread = thread_shutdown.drop_guard();
            tokio::spawn(async move {
                let _stop_thread = stop_thread;
                match finished.await {
                    Ok(true) => {}
                    Ok(false) => run(client, index, config, metrics, down, shutdown).await,
                    Err(_) => tracing::error!("the prober thread panicked; probing stopped"),
                }
            })
        }
        Err(error) => {
            tracing::warn!(%error, "prober thread did not start; probing on the shared runtime");
            tokio::spawn(run(client, index, config, metrics, down, shutdown))
        }
    }
}

/// The prober's reconcile loop, until `shutdown` is cancelled.
async fn run(
    client: kube::Client,
    index: SharedIndex,
    config: Arc<Config>,
    metrics: Arc<ProbeMetrics>,
    down: Arc<DownSince>,
    shutdown: CancellationToken,
) {
    let semaphore = Arc::new(Semaphore::new(
        usize::try_from(config.probe.concurrency)
            .unwrap_or(1)
            .max(1),
    ));
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut seen_generation = None;
    let mut ticker = tokio::time::interval(RECONCILE_EVERY);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let (generation, desired) = {
            let index = index.read().unwrap_or_else(PoisonError::into_inner);
            let generation = index.storages_generation();
            if seen_generation == Some(generation) {
                continue;
            }
            (
                generation,
                desired_targets(index.storages(), index.cluster_metadata(), &config),
            )
        };
        seen_generation = Some(generation);
        let (targets, problems) = desired;
        for problem in problems {
            tracing::debug!(%problem, "storage not probed");
        }
        reconcile(
            &mut running,
            targets,
            &client,
            &config.probe,
            (&metrics, &down),
            &semaphore,
        );
    }
    for (_, r) in std::mem::take(&mut running) {
        r.cancel.cancel();
        let _ = r.task.await;
    }
}

fn reconcile(
    running: &mut BTreeMap<String, Running>,
    targets: Vec<Target>,
    client: &kube::Client,
    probe: &ProbeConfig,
    (metrics, down): (&Arc<ProbeMetrics>, &Arc<DownSince>),
    semaphore: &Arc<Semaphore>,
) {
    let desired: BTreeMap<String, Target> = targets.into_iter().map(|t| (t.id(), t)).collect();
    let stale: Vec<String> = running
        .iter()
        .filter(|(id, r)| desired.get(*id) != Some(&r.target))
        .map(|(id, _)| id.clone())
        .collect();
    for id in stale {
        if let Some(r) = running.remove(&id) {
            r.cancel.cancel();
            r.task.abort();
            metrics.forget(&r.target);
            down.forget(&r.target);
            tracing::info!(target = %id, "stopped probing");
        }
    }
    for (id, target) in desired {
        if running.contains_key(&id) {
            continue;
        }
        metrics.set_info(&target);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_target(
            target.clone(),
            client.clone(),
            probe.clone(),
            (metrics.clone(), down.clone()),
            semaphore.clone(),
            cancel.clone(),
        ));
        tracing::info!(target = %id, "probing");
        running.insert(
            id,
            Running {
                target,
                cancel,
                task,
            },
        );
    }
}

async fn run_target(
    target: Target,
    client: kube::Client,
    probe: ProbeConfig,
    (metrics, down): (Arc<ProbeMetrics>, Arc<DownSince>),
    semaphore: Arc<Semaphore>,
    cancel: CancellationToken,
) {
    let mut state = TargetState::default();
    let options = CycleOptions::from(&probe);
    let timeouts = Timeouts {
        connect: probe.timeout.get(),
        operation: probe.timeout.get(),
    };
    let mut ticker = tokio::time::interval(probe.interval.get());
    // A slow cycle pushes the next one back instead of bunching cycles up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = cancel.cancelled() => return,
        }
        let Ok(_permit) = semaphore.acquire().await else {
            return;
        };
        let result = tokio::select! {
            result = probe_once(&target, Some(&client), &options, timeouts, &mut state) => result,
            () = cancel.cancelled() => return,
        };
        metrics.record(&target, &result);
        down.record(&target, &result);
        metrics.record_leftovers(&target, state.leftover_canaries().len());
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::watch::index::BackupIndex;

    /// Threads of this process named `backstop-prober`, from `/proc`.
    fn prober_threads() -> usize {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|name| name.trim() == "backstop-prober")
            })
            .count()
    }

    async fn wait_for_threads(count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while prober_threads() != count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {count} prober threads (now {})",
                prober_threads()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The thread must not outlive the task that stands for it: an aborted task (a startup
    /// that failed after the prober started, say) stops the thread, and the caller's
    /// shutdown token is left alone.
    #[tokio::test]
    async fn aborting_the_task_stops_the_prober_thread() {
        let url = "http://127.0.0.1:9".parse().unwrap();
        let client = kube::Client::try_from(kube::Config::new(url)).unwrap();
        let index: SharedIndex = Arc::new(std::sync::RwLock::new(BackupIndex::new()));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(ProbeMetrics::register(&mut registry));
        let shutdown = CancellationToken::new();
        let task = spawn(
            client,
            index,
            Arc::new(Config::default()),
            metrics,
            Arc::new(DownSince::new(Arc::new(crate::clock::SystemClock))),
            shutdown.clone(),
        );
        wait_for_threads(1).await;
        task.abort();
        wait_for_threads(0).await;
        assert!(!shutdown.is_cancelled());
    }
}
