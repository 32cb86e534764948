//! The prober's Prometheus metrics: what each cycle found, per target and operation.
//!
//! The families are registered once in the process's one registry and shared by every
//! probe task; a [`ProbeMetrics`] is a cheap clone of handles to them. Series are keyed
//! by [`Target::id`], and a target that goes away (its cluster deleted, its storage
//! changed) must take its series with it, or dashboards and alerts would keep showing the
//! last value of a target nobody uses; [`ProbeMetrics::forget`] removes them all. A
//! target's `target_info` series are remembered as they are set, because its users change
//! over time and a forgotten user's series must go too.
//!
//! `probe_success` exists for an operation only while the latest cycle ran it: an
//! operation skipped after `HeadBucket` failed, or a canary disabled by configuration,
//! has no success value rather than a stale or made-up one. The one exception is a canary
//! that was not due (see [`CanaryRun::NotDue`]): its last results still stand, so its
//! series keep them instead of disappearing for three cycles in four.
//! `canary_last_success_timestamp_seconds` says how recent those results are.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::classify::ErrorClass;
use super::cycle::{CanaryRun, CycleResult, Operation};
use super::target::Target;

/// Buckets of `backstop_s3_probe_duration_seconds`: 1 ms (a same-zone HEAD) to 30 s (the
/// longest operation timeout worth configuring), about 2.5x apart.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    target: String,
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    target: String,
    operation: &'static str,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    target: String,
    bucket: String,
    prefix: String,
    region: String,
    endpoint: String,
    namespace: String,
    cluster: String,
    storage: String,
}

/// The canary's operations, whose series stand while it is not due.
const CANARY_OPERATIONS: [Operation; 3] = [
    Operation::PutObject,
    Operation::GetObject,
    Operation::DeleteObject,
];

type DurationFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Handles to the prober's metric families.
#[derive(Debug, Clone)]
pub struct ProbeMetrics {
    duration: DurationFamily,
    success: Family<OperationLabels, Gauge>,
    up: Family<TargetLabels, Gauge>,
    errors: Family<ErrorLabels, Counter>,
    credentials_valid: Family<TargetLabels, Gauge>,
    newest_object: Family<TargetLabels, Gauge<f64, AtomicU64>>,
    canary_success: Family<TargetLabels, Gauge<f64, AtomicU64>>,
    canary_leftovers: Family<TargetLabels, Gauge>,
    info: Family<InfoLabels, Gauge>,
    /// The `target_info` series set per target id, to remove exactly those.
    info_series: Arc<Mutex<HashMap<String, Vec<InfoLabels>>>>,
}

impl ProbeMetrics {
    /// Registers the prober's families in `registry` (see
    /// [`crate::runtime::metrics::Metrics::registry_mut`]). Call once per registry.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            duration: DurationFamily::new_with_constructor(duration_histogram),
            success: Family::default(),
            up: Family::default(),
            errors: Family::default(),
            credentials_valid: Family::default(),
            newest_object: Family::default(),
            canary_success: Family::default(),
            canary_leftovers: Family::default(),
            info: Family::default(),
            info_series: Arc::default(),
        };
        registry.register(
            "backstop_s3_probe_duration_seconds",
            "Duration of each S3 probe operation, by target and operation",
            metrics.duration.clone(),
        );
        registry.register(
            "backstop_s3_probe_success",
            "Whether the operation succeeded in the target's latest probe cycle (1) or not (0)",
            metrics.success.clone(),
        );
        registry.register(
            "backstop_s3_up",
            "Whether the target's latest probe cycle succeeded: bucket reachable, canary \
             written, read and deleted, listing done (disabled parts excepted)",
            metrics.up.clone(),
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "backstop_s3_probe_errors",
            "Failed S3 probe operations, by target, operation and error class",
            metrics.errors.clone(),
        );
        registry.register(
            "backstop_s3_credentials_valid",
            "0 when S3 rejected the target's credentials in the latest cycle, else 1",
            metrics.credentials_valid.clone(),
        );
        registry.register(
            "backstop_s3_newest_object_timestamp_seconds",
            "LastModified of the newest object under the target's prefix, as a Unix timestamp",
            metrics.newest_object.clone(),
        );
        registry.register(
            "backstop_s3_canary_last_success_timestamp_seconds",
            "When the target's canary last wrote, read back and deleted its object, as a Unix \
             timestamp",
            metrics.canary_success.clone(),
        );
        registry.register(
            "backstop_s3_canary_leftover_objects",
            "Canary objects Backstop wrote to the target and could not delete yet (the \
             credentials may put but not delete, or the delete timed out); later cycles retry",
            metrics.canary_leftovers.clone(),
        );
        registry.register(
            "backstop_s3_target_info",
            "A probed S3 target and one cluster storage that uses it; always 1",
            metrics.info.clone(),
        );
        metrics
    }

    /// Sets how many canary objects of `target` are waiting to be deleted.
    pub fn record_leftovers(&self, target: &Target, leftovers: usize) {
        self.canary_leftovers
            .get_or_create(&TargetLabels {
                target: target.id(),
            })
            .set(i64::try_from(leftovers).unwrap_or(i64::MAX));
    }

    /// Records one cycle of `target`.
    pub fn record(&self, target: &Target, result: &CycleResult) {
        let id = target.id();
        for operation in Operation::ALL {
            let labels = OperationLabels {
                target: id.clone(),
                operation: operation.as_str(),
            };
            let Some(op) = result.operation(operation) else {
                let canary_stands =
                    result.canary == CanaryRun::NotDue && CANARY_OPERATIONS.contains(&operation);
                if !canary_stands {
                    self.success.remove(&labels);
                }
                continue;
            };
            self.duration
                .get_or_create(&labels)
                .observe(op.duration.as_secs_f64());
            self.success
                .get_or_create(&labels)
                .set(i64::from(op.is_ok()));
            if let Some(class) = op.error_class() {
                self.errors
                    .get_or_create(&ErrorLabels {
                        target: id.clone(),
                        operation: operation.as_str(),
                        class: class.as_str(),
                    })
                    .inc();
            }
        }
        let target_labels = TargetLabels { target: id };
        let canary_ok = result.canary == CanaryRun::Ran
            && CANARY_OPERATIONS
                .iter()
                .all(|&o| result.operation(o).is_some_and(|r| r.is_ok()));
        if canary_ok {
            let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
            self.canary_success.get_or_create(&target_labels).set(now);
        }
        self.up
            .get_or_create(&target_labels)
            .set(i64::from(result.up));
        self.credentials_valid
            .get_or_create(&target_labels)
            .set(i64::from(result.credentials_valid()));
        match &result.newest_object {
            Some((_, at)) => {
                // Seconds with the sub-second part, as Prometheus timestamps are floats.
                let seconds = at.as_millisecond() as f64 / 1000.0;
                self.newest_object
                    .get_or_create(&target_labels)
                    .set(seconds);
            }
            None => {
                self.newest_object.remove(&target_labels);
            }
        }
    }

    /// Sets `backstop_s3_target_info` of `target`: one series per user, replacing the
    /// series of users it no longer has.
    pub fn set_info(&self, target: &Target) {
        let id = target.id();
        let wanted: Vec<InfoLabels> = target
            .users
            .iter()
            .map(|user| InfoLabels {
                target: id.clone(),
                bucket: target.bucket().to_owned(),
                prefix: target.prefix().to_owned(),
                region: target.region().to_owned(),
                endpoint: target.endpoint_url().unwrap_or_default().to_owned(),
                namespace: user.namespace().to_owned(),
                cluster: user.cluster().to_owned(),
                storage: user.storage().to_owned(),
            })
            .collect();
        // The map is only ever replaced whole, so a poisoned lock still holds a sound map.
        let mut series = self
            .info_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = series.get(&id) {
            for labels in old.iter().filter(|l| !wanted.contains(l)) {
                self.info.remove(labels);
            }
        }
        for labels in &wanted {
            self.info.get_or_create(labels).set(1);
        }
        series.insert(id, wanted);
    }

    /// Removes every series of `target`, from every family.
    pub fn forget(&self, target: &Target) {
        let id = target.id();
        for operation in Operation::ALL {
            let labels = OperationLabels {
                target: id.clone(),
                operation: operation.as_str(),
            };
            self.duration.remove(&labels);
            self.success.remove(&labels);
            for class in ErrorClass::ALL {
                self.errors.remove(&ErrorLabels {
                    target: id.clone(),
                    operation: operation.as_str(),
                    class: class.as_str(),
                });
            }
        }
        let target_labels = TargetLabels { target: id.clone() };
        self.up.remove(&target_labels);
        self.credentials_valid.remove(&target_labels);
        self.newest_object.remove(&target_labels);
        self.canary_success.remove(&target_labels);
        self.canary_leftovers.remove(&target_labels);
        let mut series = self
            .info_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for labels in series.remove(&id).unwrap_or_default() {
            self.info.remove(&labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::cycle::{OperationResult, Outcome};
    use crate::probe::target::User;

    fn target() -> Target {
        let storage: crate::pxc::Storage = serde_json::from_value(serde_json::json!({
            "type": "s3", "s3": {"bucket": "b/p", "region": "us-west-2"}
        }))
        .unwrap();
        let mut t = Target::from_storage("ns", "c1", "s3", &storage).unwrap();
        t.users.insert(User::Storage {
            namespace: "ns".into(),
            cluster: "c2".into(),
            storage: "s3".into(),
        });
        t
    }

    fn render(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn a_cycle_becomes_series_and_forget_removes_them() {
        let mut registry = Registry::default();
        let metrics = ProbeMetrics::register(&mut registry);
        let t = target();
        metrics.set_info(&t);
        let result = CycleResult {
            target_id: t.id(),
            operations: vec![
                OperationResult {
                    operation: Operation::HeadBucket,
                    duration: Duration::from_millis(3),
                    outcome: Outcome::Ok,
                },
                OperationResult {
                    operation: Operation::ListObjects,
                    duration: Duration::from_millis(7),
                    outcome: Outcome::Err {
                        class: ErrorClass::Throttled,
                        message: "SlowDown".into(),
                    },
                },
            ],
            newest_object: Some((
                "p/x".into(),
                jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            )),
            up: false,
            canary: CanaryRun::NotRun,
        };
        metrics.record(&t, &result);
        let text = render(&registry);
        let id = t.id();
        for line in [
            format!("backstop_s3_up{{target=\"{id}\"}} 0"),
            format!("backstop_s3_probe_success{{target=\"{id}\",operation=\"head_bucket\"}} 1"),
            format!("backstop_s3_probe_success{{target=\"{id}\",operation=\"list_objects\"}} 0"),
            format!(
                "backstop_s3_probe_errors_total{{target=\"{id}\",operation=\"list_objects\",class=\"throttled\"}} 1"
            ),
            format!("backstop_s3_credentials_valid{{target=\"{id}\"}} 1"),
            format!("backstop_s3_newest_object_timestamp_seconds{{target=\"{id}\"}} 1700000000.0"),
            format!(
                "backstop_s3_probe_duration_seconds_count{{target=\"{id}\",operation=\"head_bucket\"}} 1"
            ),
            format!(
                "backstop_s3_target_info{{target=\"{id}\",bucket=\"b\",prefix=\"p/\",region=\"us-west-2\",endpoint=\"\",namespace=\"ns\",cluster=\"c2\",storage=\"s3\"}} 1"
            ),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("operation=\"put_object\""), "{text}");

        // A user that goes away takes its info series along.
        let mut fewer = t.clone();
        fewer.users.retain(|u| u.cluster() == "c1");
        metrics.set_info(&fewer);
        let text = render(&registry);
        assert!(!text.contains("cluster=\"c2\""), "{text}");
        assert!(text.contains("cluster=\"c1\""), "{text}");

        metrics.forget(&t);
        let text = render(&registry);
        assert!(!text.contains(&id), "series left after forget:\n{text}");
    }
}
