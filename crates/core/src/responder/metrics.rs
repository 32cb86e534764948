//! The responder's metrics: webhook traffic, playbook runs and steps, and which clusters are
//! failed over.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::journal::TargetKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    status: String,
    routed: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    playbook: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    playbook: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActiveLabels {
    namespace: String,
    cluster: String,
    target_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    cluster: String,
}

/// The responder's metric families.
#[derive(Clone, Debug)]
pub struct ResponderMetrics {
    webhook_requests: Family<CodeLabels, Counter>,
    webhook_alerts: Family<AlertLabels, Counter>,
    runs: Family<RunLabels, Counter>,
    steps: Family<StepLabels, Histogram>,
    active: Family<ActiveLabels, Gauge>,
    verification_failed: Family<ClusterLabels, Gauge>,
    route_silent: Family<ClusterLabels, Gauge>,
    opt_in_invalid: Family<ClusterLabels, Gauge>,
    cancelled: Family<CancelLabels, Counter>,
    leader: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CancelLabels {
    namespace: String,
    cluster: String,
    result: String,
}

impl ResponderMetrics {
    /// Registers the families.
    pub fn register(registry: &mut Registry) -> Self {
        let this = Self {
            webhook_requests: Family::default(),
            webhook_alerts: Family::default(),
            runs: Family::default(),
            steps: Family::new_with_constructor(|| {
                // 10 ms to about 80 s: API writes, S3 verification, backup creation.
                Histogram::new(exponential_buckets(0.01, 2.0, 14))
            }),
            active: Family::default(),
            verification_failed: Family::default(),
            route_silent: Family::default(),
            opt_in_invalid: Family::default(),
            cancelled: Family::default(),
            leader: Gauge::default(),
        };
        registry.register(
            "backstop_backups_cancelled",
            "Hung backups to a failed storage, deleted while failed over to free the operator's \
             backup lock (result: cancelled, dry_run, or refused when the storage passed a fresh \
             check)",
            this.cancelled.clone(),
        );
        registry.register(
            "backstop_alert_route_silent",
            "1 while a protected storage of the cluster has failed every probe for longer than \
             responder.route_check.after and no Alertmanager notification about it has arrived \
             (set by the leader)",
            this.route_silent.clone(),
        );
        registry.register(
            "backstop_cluster_opt_in_invalid",
            "1 while a cluster asks to be managed (annotation or label selector) but its opt-in \
             cannot be used: a bad annotation, or opt-in by annotation turned off; the Event \
             OptInInvalid on the cluster says why (set by the leader)",
            this.opt_in_invalid.clone(),
        );
        registry.register(
            "backstop_webhook_requests",
            "Alertmanager webhook requests by HTTP status code",
            this.webhook_requests.clone(),
        );
        registry.register(
            "backstop_webhook_alerts",
            "Alerts received, by status and whether a route took them",
            this.webhook_alerts.clone(),
        );
        registry.register(
            "backstop_playbook_runs",
            "Playbook runs by playbook (failover, revert, move_to_buffer) and result",
            this.runs.clone(),
        );
        registry.register(
            "backstop_playbook_step_duration_seconds",
            "Duration of each playbook step",
            this.steps.clone(),
        );
        registry.register(
            "backstop_failover_active",
            "1 while a managed cluster's backups go to its secondary or buffer",
            this.active.clone(),
        );
        registry.register(
            "backstop_revert_verification_failed",
            "1 when the test backup after a cluster's last revert failed or timed out",
            this.verification_failed.clone(),
        );
        registry.register(
            "backstop_leader",
            "1 while this replica holds the leader Lease and runs playbooks",
            this.leader.clone(),
        );
        this
    }

    /// Counts a webhook answer.
    pub fn webhook_request(&self, code: u16) {
        self.webhook_requests
            .get_or_create(&CodeLabels {
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts an alert.
    pub fn webhook_alert(&self, status: &str, routed: bool) {
        self.webhook_alerts
            .get_or_create(&AlertLabels {
                status: status.to_owned(),
                routed: routed.to_string(),
            })
            .inc();
    }

    /// Counts a playbook run's result.
    pub fn run(&self, playbook: &str, result: &str) {
        self.runs
            .get_or_create(&RunLabels {
                playbook: playbook.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Observes a step's duration.
    pub fn step(&self, playbook: &str, step: &str, seconds: f64) {
        self.steps
            .get_or_create(&StepLabels {
                playbook: playbook.to_owned(),
                step: step.to_owned(),
            })
            .observe(seconds);
    }

    /// Sets which target a cluster runs on (`None`: its primary).
    pub fn set_active(&self, namespace: &str, cluster: &str, kind: Option<TargetKind>) {
        for candidate in [TargetKind::Secondary, TargetKind::Buffer] {
            let labels = ActiveLabels {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
                target_kind: candidate.as_str().to_owned(),
            };
            self.active
                .get_or_create(&labels)
                .set(i64::from(kind == Some(candidate)));
        }
    }

    /// Sets whether the cluster's last revert failed its verification.
    pub fn set_verification_failed(&self, namespace: &str, cluster: &str, failed: bool) {
        self.verification_failed
            .get_or_create(&ClusterLabels {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
            })
            .set(i64::from(failed));
    }

    /// Sets whether the cluster's alert route looks broken (see `responder::route_check`).
    pub fn set_route_silent(&self, namespace: &str, cluster: &str, silent: bool) {
        self.route_silent
            .get_or_create(&ClusterLabels {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
            })
            .set(i64::from(silent));
    }

    /// Exports every per-cluster gauge of a cluster listed in `clusters[]` from the start, so
    /// "not failed over", "verified", "route fine" and "opt-in fine" are a 0, not no data.
    pub fn export_cluster(&self, namespace: &str, cluster: &str) {
        self.set_active(namespace, cluster, None);
        self.set_verification_failed(namespace, cluster, false);
        self.set_route_silent(namespace, cluster, false);
        self.opt_in_invalid
            .get_or_create(&ClusterLabels {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
            })
            .set(0);
    }

    /// Sets whether the cluster's opt-in cannot be used (see `responder::opt_in`). A cluster
    /// never invalid gets no series; one that was keeps a 0.
    pub fn set_opt_in_invalid(&self, namespace: &str, cluster: &str, invalid: bool) {
        let labels = ClusterLabels {
            namespace: namespace.to_owned(),
            cluster: cluster.to_owned(),
        };
        if invalid {
            self.opt_in_invalid.get_or_create(&labels).set(1);
        } else if let Some(gauge) = self.opt_in_invalid.get(&labels) {
            gauge.set(0);
        }
    }

    /// Counts one hung backup's cancellation, or its refusal.
    pub fn cancelled(&self, namespace: &str, cluster: &str, result: &str) {
        self.cancelled
            .get_or_create(&CancelLabels {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Sets whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}
