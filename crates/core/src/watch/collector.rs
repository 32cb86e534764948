//! Backup metrics rendered from the index at scrape time, so ages are always current and no
//! series outlives the object it describes (a deleted backup or cluster simply stops being
//! rendered).

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::clock::Clock;
use crate::watch::index::{BackupIndex, ScheduleSlo, StorageKey};

/// The index shared by the watch tasks (writers) and the collector (reader).
pub type SharedIndex = Arc<RwLock<BackupIndex>>;

/// Label pairs borrowed from the index: a scrape of 15,000 series copies no label value.
type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

fn schedule_labels<'a>(s: &ScheduleSlo<'a>) -> Labels<'a, 3> {
    [
        ("namespace", s.namespace),
        ("cluster", s.cluster),
        ("schedule", s.schedule),
    ]
}

fn storage_labels(key: &StorageKey) -> Labels<'_, 3> {
    [
        ("namespace", &key.namespace),
        ("cluster", &key.cluster),
        ("storage", &key.storage),
    ]
}

/// Renders the backup metrics from the index.
pub struct BackupCollector {
    index: SharedIndex,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for BackupCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupCollector").finish_non_exhaustive()
    }
}

impl BackupCollector {
    /// A collector reading `index`, computing ages on `clock`.
    pub fn new(index: SharedIndex, clock: Arc<dyn Clock>) -> Self {
        Self { index, clock }
    }
}

pub(crate) fn gauge<L: EncodeLabelSet, V: prometheus_client::encoding::EncodeGaugeValue + Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, V)>,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for BackupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        let secs = |t: jiff::Timestamp| t.as_millisecond() as f64 / 1000.0;
        let storages = index.storage_views();

        gauge(
            &mut encoder,
            "backstop_backups",
            "Current PerconaXtraDBClusterBackup objects by storage and state",
            storages.iter().flat_map(|v| {
                let [ns, cluster, storage] = storage_labels(v.key);
                v.states().map(move |(state, n)| {
                    (
                        [ns, cluster, storage, ("state", state)],
                        i64::try_from(n).unwrap_or(i64::MAX),
                    )
                })
            }),
        )?;
        gauge(
            &mut encoder,
            "backstop_backup_jobs",
            "The operator's backup Jobs (percona.com/backup-type=xtrabackup) by cluster and state",
            index.jobs_by_state().into_iter().map(|j| {
                (
                    [
                        ("namespace", j.namespace),
                        ("cluster", j.cluster),
                        ("state", j.state),
                    ],
                    i64::try_from(j.count).unwrap_or(i64::MAX),
                )
            }),
        )?;
        gauge(
            &mut encoder,
            "backstop_backup_last_success_timestamp_seconds",
            "Completion time of the newest Succeeded backup, per storage",
            storages
                .iter()
                .filter_map(|v| Some((storage_labels(v.key), secs(v.last_success?)))),
        )?;
        gauge(
            &mut encoder,
            "backstop_backup_last_success_age_seconds",
            "Seconds since the newest Succeeded backup completed, per storage (computed at scrape)",
            storages.iter().filter_map(|v| {
                let t = v.last_success?;
                Some((storage_labels(v.key), (secs(now) - secs(t)).max(0.0)))
            }),
        )?;
        gauge(
            &mut encoder,
            "backstop_backup_last_failure_timestamp_seconds",
            "Time of the newest Failed backup, per storage (completion, else creation)",
            storages
                .iter()
                .filter_map(|v| Some((storage_labels(v.key), secs(v.last_failure?)))),
        )?;
        gauge(
            &mut encoder,
            "backstop_backup_oldest_unfinished_age_seconds",
            "Age of the oldest backup not finished yet, per storage and state (New waits to start, \
             Starting and Running hang when old; computed at scrape from creation)",
            index.oldest_unfinished().into_iter().map(|u| {
                let [ns, cluster, storage] = storage_labels(u.key);
                (
                    [ns, cluster, storage, ("state", u.state)],
                    (secs(now) - secs(u.oldest)).max(0.0),
                )
            }),
        )?;
        gauge(
            &mut encoder,
            "backstop_backup_parallel_allowed",
            "Whether the cluster's backups may run side by side (spec.backup.allowParallel, \
             default true); 0 means the operator's lock serialises them",
            index
                .parallel_allowed()
                .map(|(namespace, cluster, allowed)| {
                    (
                        [("namespace", namespace), ("cluster", cluster)],
                        i64::from(allowed),
                    )
                }),
        )?;
        let slos = index.schedule_slos(now);
        gauge(
            &mut encoder,
            "backstop_backup_retention_window_seconds",
            "How far back a schedule's kept backups reach: retention count times the shortest gap between runs",
            slos.iter()
                .filter_map(|s| Some((schedule_labels(s), s.window?.as_secs_f64()))),
        )?;
        gauge(
            &mut encoder,
            "backstop_backup_slo_budget_ratio",
            "Age of the cluster's newest successful backup divided by the schedule's retention window (>= 1: outage outlived the window)",
            slos.iter()
                .filter_map(|s| Some((schedule_labels(s), s.budget_ratio?))),
        )?;
        Ok(())
    }
}
