//! The chaos soak's machinery, shared by `tests/it/chaos_soak.rs` (CI size, crash points) and
//! `benches/chaos_soak.rs` (the long run).
//!
//! The soak drives Backstop's responder at the level where it decides things: two
//! "replicas", each an [`Engine`] (a crash throws one away and builds a fresh one, so all
//! in-memory state is lost), against the sandbox world (the Kubernetes API simulator over
//! real HTTP, the embedded S3, the simulated operator). Alertmanager is modelled as a queue
//! of notifications that the webhook's intent writer (`Applier::record_intent`) records, delivered
//! in random order, duplicated, repeated and late. Simulated time is a [`ManualClock`]: the
//! engine's cool-downs, hold-downs and test-backup timeouts and the operator's schedules all
//! follow it, so hours pass in seconds.
//!
//! Every write to the cluster is audited through the simulator's change feed
//! ([`KubeSim::changes`](backstop_sandbox::kube::KubeSim::changes)), so a failover or a
//! revert is seen however briefly its journal stood, and the invariants are checked after
//! every event.
#![allow(dead_code)] // each including target uses a different part

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use backstop::clock::ManualClock;
use backstop::config::{Config, HumanDuration};
use backstop::pxc::PerconaXtraDBClusterBackup;
use backstop::responder::Engine;
use backstop::responder::ResponderMetrics;
use backstop::responder::alertmanager::AlertStatus;
use backstop::responder::applier::Recorded;
use backstop::responder::cluster::{ClusterKey, cluster_api, read_intent, read_journal};
use backstop::responder::intent::Intent;
use backstop::responder::journal::{JOURNAL_ANNOTATION, Journal, Phase};
use backstop_sandbox::kube::faults::{ApiFault, FaultRule};
use backstop_sandbox::kube::store::Change;
use backstop_sandbox::s3::{self, Fault, Rule, RuleId};
use backstop_sandbox::world::{self, World, WorldOptions};
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DynamicObject};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::broadcast;

/// The alert's name, as the routes expect it.
pub const ALERTNAME: &str = "S3BackupTargetUnavailable";
/// Simulated probe interval (the hold-down's spacing).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// Real S3 timeout of a verification; "too slow" faults exceed it.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// Consecutive fresh checks the primary must pass before a revert.
pub const HOLD_DOWN: u32 = 2;
/// Simulated per-cluster cool-down.
pub const COOLDOWN: Duration = Duration::from_secs(300);
/// Real time a step may take before it counts as hung (and is abandoned).
const STEP_BUDGET: Duration = Duration::from_millis(1500);
/// Steps tried to converge once things are quiet before the intent counts as lost.
const SETTLE_STEPS: usize = 120;

/// A small seeded PRNG (splitmix64): the schedule is a pure function of the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The state of one S3 region, as the soak sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3State {
    /// Answers everything.
    Healthy,
    /// Every request 20 ms late: slow but within the probe timeout.
    Slow,
    /// Every request 503 ServiceUnavailable.
    Unavailable,
    /// HeadBucket answers 503 SlowDown (partial).
    SlowDown,
    /// Writes answer 403 AccessDenied, reads work (partial).
    Denied,
    /// HeadBucket slower than the probe timeout.
    TooSlow,
    /// Connections refused.
    Refused,
}

impl S3State {
    /// Whether a verification of a storage in this region fails.
    pub fn broken(self) -> bool {
        !matches!(self, Self::Healthy | Self::Slow)
    }

    /// A label for the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Slow => "s3_slow",
            Self::Unavailable => "s3_503",
            Self::SlowDown => "s3_503_slowdown_partial",
            Self::Denied => "s3_403_partial",
            Self::TooSlow => "s3_too_slow",
            Self::Refused => "s3_refused",
        }
    }

    fn rules(self, region: &str) -> Vec<Rule> {
        let rule = |f| Rule::new(f).in_region(region);
        match self {
            Self::Healthy => vec![],
            Self::Slow => vec![rule(Fault::Latency(Duration::from_millis(20)))],
            Self::Unavailable => vec![rule(Fault::ServiceUnavailable)],
            Self::SlowDown => vec![rule(Fault::SlowDown).on_operation("HeadBucket")],
            Self::Denied => vec![rule(Fault::AccessDenied).on_operation("PutObject")],
            Self::TooSlow => vec![
                rule(Fault::Latency(PROBE_TIMEOUT + Duration::from_millis(150)))
                    .on_operation("HeadBucket"),
            ],
            Self::Refused => vec![rule(Fault::Refuse)],
        }
    }
}

/// The broken states an outage picks from.
pub const BROKEN: [S3State; 5] = [
    S3State::Unavailable,
    S3State::SlowDown,
    S3State::Denied,
    S3State::TooSlow,
    S3State::Refused,
];

/// One replica of Backstop: an engine and when it (re)started or last gained leadership,
/// in simulated time.
pub struct Replica {
    /// The engine; replaced on a crash.
    pub engine: Arc<Engine>,
    /// Crashes of this replica.
    pub generation: u32,
}

/// What a call of the engine came to.
#[derive(Debug)]
pub enum Called {
    /// The step ran.
    Done(Option<Phase>),
    /// The step failed (a request failed); retried later.
    Failed(String),
    /// The step took longer than its budget and was abandoned part-way.
    Abandoned,
    /// The engine panicked.
    Panicked(String),
}

/// An Alertmanager notification in flight.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The alert fingerprint.
    pub fingerprint: String,
    /// The episode's start.
    pub starts_at: Timestamp,
    /// Firing or resolved.
    pub status: AlertStatus,
}

/// Counts printed at the end of a soak.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Events run.
    pub events: u64,
    /// Simulated time covered.
    pub simulated: Duration,
    /// Outages (alerted) and blips (too short to alert).
    pub outages: u64,
    /// Blips.
    pub blips: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Replicas thrown away and started fresh (crashes and restarts).
    pub crashes: u64,
    /// Steps abandoned part-way (hung request, crash in the middle of a step).
    pub abandoned_steps: u64,
    /// Leadership moving to the other replica.
    pub leader_changes: u64,
    /// Leader changes where the old leader's step overlapped the new leader's.
    pub overlapping_leaders: u64,
    /// Notifications, by kind (delivered, duplicate, repeat, late, reordered, retried).
    pub notifications: BTreeMap<String, u64>,
    /// Engine calls.
    pub reconciles: u64,
    /// Operator steps.
    pub operator_steps: u64,
    /// Failovers (distinct journal run ids written).
    pub failovers: u64,
    /// Of them, to the PVC buffer.
    pub buffer_failovers: u64,
    /// Outages in which the secondary failed too, after the failover to it (its faults are
    /// counted among the others too).
    pub secondary_failed_after_failover: u64,
    /// Runs that moved from a failing secondary to the buffer.
    pub moves_to_buffer: u64,
    /// Reverts (spec restored).
    pub reverts: u64,
    /// Test backups that ended in `VerificationFailed` (a legitimate end, counted).
    pub verification_failed: u64,
    /// Invariant violations, described.
    pub violations: Vec<String>,
}

impl Report {
    fn fault(&mut self, kind: &str) {
        *self.faults.entry(kind.to_owned()).or_default() += 1;
    }

    fn note(&mut self, kind: &str) {
        *self.notifications.entry(kind.to_owned()).or_default() += 1;
    }

    /// The report as printed.
    pub fn render(&self) -> String {
        let faults: u64 = self.faults.values().sum();
        let notes: u64 = self.notifications.values().sum();
        let mut out = format!(
            "chaos soak, seed {seed:#x}\n\
             events: {events}\n\
             simulated time: {hours:.1} h\n\
             outages: {outages} (+{blips} blips too short to alert)\n\
             faults injected: {faults}\n",
            seed = self.seed,
            events = self.events,
            hours = self.simulated.as_secs_f64() / 3600.0,
            outages = self.outages,
            blips = self.blips,
        );
        for (k, v) in &self.faults {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        out.push_str(&format!(
            "crashes/restarts: {}\nsteps abandoned part-way: {}\nleader changes: {} ({} overlapping)\nnotifications: {notes}\n",
            self.crashes, self.abandoned_steps, self.leader_changes, self.overlapping_leaders
        ));
        for (k, v) in &self.notifications {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        out.push_str(&format!(
            "reconciles: {}\noperator steps: {}\nfailovers: {} ({} to the buffer)\nsecondary failing after the failover to it: {} (moved to the buffer: {})\nreverts: {}\nverification failed: {}\ninvariant violations: {}\n",
            self.reconciles,
            self.operator_steps,
            self.failovers,
            self.buffer_failovers,
            self.secondary_failed_after_failover,
            self.moves_to_buffer,
            self.reverts,
            self.verification_failed,
            self.violations.len()
        ));
        for v in self.violations.iter().take(20) {
            out.push_str(&format!("  VIOLATION {v}\n"));
        }
        out
    }
}

/// One primary check the engine made, as seen in S3's request counts.
#[derive(Debug, Clone, Copy)]
struct Check {
    at: Timestamp,
    healthy: bool,
}

/// The world, the replicas, the simulated clock and everything the invariants need.
pub struct Soak {
    /// The sandbox.
    pub world: World,
    /// Simulated time.
    pub clock: ManualClock,
    /// Backstop's configuration.
    pub config: Arc<Config>,
    /// The managed cluster.
    pub key: ClusterKey,
    /// The two replicas.
    pub replicas: [Replica; 2],
    /// Index of the leader.
    pub leader: usize,
    /// `spec.backup` before anything happened.
    pub original: Value,
    /// Counts and violations.
    pub report: Report,
    changes: broadcast::Receiver<Arc<Change>>,
    primary: S3State,
    secondary: S3State,
    rules: BTreeMap<&'static str, Vec<RuleId>>,
    head_buckets: u64,
    checks: Vec<Check>,
    last_journal: Option<Journal>,
    /// Run ids written during the current outage window.
    window_runs: BTreeSet<String>,
    /// Failovers allowed in the current window (1 for an outage, 0 for a blip).
    window_allowed: usize,
    window_label: String,
    started: Timestamp,
}

/// The world's options for the soak: simulated time, no operator task (the soak steps it).
pub fn world_options(clock: &ManualClock) -> WorldOptions {
    WorldOptions {
        clock: Arc::new(clock.clone()),
        operator_interval: None,
        history: 1,
        retention: 5,
        ..WorldOptions::default()
    }
}

/// Backstop's configuration for the soak.
pub fn soak_config(world: &World) -> Config {
    let token = world.dir().join("token");
    std::fs::write(&token, "soak").expect("token file");
    let mut config = world
        .backstop_config("127.0.0.1:0", &token)
        .expect("sandbox configuration");
    config.probe.interval = HumanDuration(PROBE_INTERVAL);
    config.probe.timeout = HumanDuration(PROBE_TIMEOUT);
    config.responder.revert.hold_down_probes = HOLD_DOWN;
    config.responder.revert.test_backup_timeout = HumanDuration(Duration::from_secs(900));
    config.responder.rate_limits.per_cluster_cooldown = HumanDuration(COOLDOWN);
    config
}

fn journal_of(object: &Value) -> Result<Option<Journal>, String> {
    match object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(JOURNAL_ANNOTATION))
        .and_then(Value::as_str)
    {
        None => Ok(None),
        Some(text) => Journal::parse(text).map(Some).map_err(|e| e.to_string()),
    }
}

impl Soak {
    /// Starts the world and two replicas.
    pub async fn start(seed: u64) -> Self {
        let clock = ManualClock::new("2026-11-24T12:00:30Z".parse().expect("start time"));
        let world = World::start(world_options(&clock))
            .await
            .expect("sandbox world");
        let config = Arc::new(soak_config(&world));
        let key = ClusterKey {
            namespace: world::NAMESPACE.into(),
            name: world::CLUSTER.into(),
        };
        let changes = world.kube.simulator().unwrap().changes();
        let object = cluster_api(&world.client, world::NAMESPACE)
            .get(world::CLUSTER)
            .await
            .expect("the sample cluster");
        let original = object.data["spec"]["backup"].clone();
        let replicas = [
            Replica {
                engine: new_engine(&world, &config, &clock),
                generation: 0,
            },
            Replica {
                engine: new_engine(&world, &config, &clock),
                generation: 0,
            },
        ];
        let started = clock_now(&clock);
        Self {
            world,
            clock,
            config,
            key,
            replicas,
            leader: 0,
            original,
            report: Report {
                seed,
                ..Report::default()
            },
            changes,
            primary: S3State::Healthy,
            secondary: S3State::Healthy,
            rules: BTreeMap::new(),
            head_buckets: 0,
            checks: Vec::new(),
            last_journal: None,
            window_runs: BTreeSet::new(),
            window_allowed: 1,
            window_label: String::new(),
            started,
        }
    }

    /// Stops every server.
    pub async fn stop(self) -> Report {
        let mut report = self.report;
        report.simulated = Duration::try_from(clock_now(&self.clock).duration_since(self.started))
            .unwrap_or_default();
        self.world.shutdown().await;
        report
    }

    /// Now, in simulated time.
    pub fn now(&self) -> Timestamp {
        clock_now(&self.clock)
    }

    /// Moves simulated time forward.
    pub fn advance(&mut self, by: Duration) {
        self.clock
            .advance(SignedDuration::try_from(by).unwrap_or(SignedDuration::ZERO));
    }

    /// The cluster as it is now.
    pub async fn cluster(&self) -> DynamicObject {
        cluster_api(&self.world.client, world::NAMESPACE)
            .get(world::CLUSTER)
            .await
            .expect("the sample cluster")
    }

    /// Its journal.
    pub async fn journal(&self) -> Option<Journal> {
        read_journal(&self.cluster().await).expect("a readable journal")
    }

    /// Its intent.
    pub async fn intent(&self) -> Intent {
        read_intent(&self.cluster().await)
    }

    /// Sets a region's S3 state.
    pub async fn set_s3(&mut self, primary: bool, state: S3State) {
        let (region, slot): (&str, &'static str) = if primary {
            (s3::PRIMARY_REGION, "primary")
        } else {
            (s3::SECONDARY_REGION, "secondary")
        };
        let current = if primary {
            self.primary
        } else {
            self.secondary
        };
        if current == state {
            return;
        }
        let faults = self.world.s3.faults().clone();
        for id in self.rules.remove(slot).unwrap_or_default() {
            faults.clear(id).await.expect("clear an S3 rule");
        }
        let mut ids = Vec::new();
        for rule in state.rules(region) {
            ids.push(faults.set(rule).await.expect("set an S3 rule"));
        }
        self.rules.insert(slot, ids);
        if primary {
            self.primary = state;
        } else {
            self.secondary = state;
        }
        if state != S3State::Healthy {
            self.report.fault(&format!("{slot}_{}", state.name()));
        }
    }

    /// Whether the primary fails its probe now.
    pub fn primary_broken(&self) -> bool {
        self.primary.broken()
    }

    /// Injects an API fault for the next `times` matching requests.
    pub fn inject(&mut self, verb: &str, resource: Option<&str>, fault: ApiFault, times: u32) {
        let kind = match &fault {
            ApiFault::InternalError => "kube_500",
            ApiFault::TooManyRequests(_) => "kube_429",
            ApiFault::Conflict => "kube_409",
            ApiFault::Hang => "kube_hang",
            ApiFault::Timeout => "kube_504",
            ApiFault::AfterCommit(inner) => match **inner {
                ApiFault::Hang => "kube_committed_then_connection_lost",
                ApiFault::Timeout => "kube_committed_then_504",
                _ => "kube_committed_then_500",
            },
        };
        self.report.fault(kind);
        self.world
            .kube
            .simulator()
            .unwrap()
            .faults()
            .inject(FaultRule {
                verb: Some(verb.to_owned()),
                resource: resource.map(str::to_owned),
                remaining: times,
                fault,
            });
    }

    /// Throws replica `i` away and starts it fresh: everything it held in memory is lost.
    pub fn crash(&mut self, i: usize) {
        self.replicas[i].engine = new_engine(&self.world, &self.config, &self.clock);
        self.replicas[i].generation += 1;
        self.report.crashes += 1;
    }

    /// Leadership moves to the other replica; the new leader starts its term with fresh
    /// observations, as the controller makes it do.
    pub fn change_leader(&mut self) {
        self.leader = 1 - self.leader;
        self.replicas[self.leader].engine.leadership_gained();
        self.report.leader_changes += 1;
    }

    /// One reconcile by the leader with the normal budget.
    pub async fn reconcile(&mut self) -> Called {
        let engine = self.replicas[self.leader].engine.clone();
        self.reconcile_with(engine, STEP_BUDGET).await
    }

    /// One reconcile by `engine`, abandoned after `budget` (real time).
    pub async fn reconcile_with(&mut self, engine: Arc<Engine>, budget: Duration) -> Called {
        let called = call(engine, self.key.clone(), budget).await;
        self.after_call(&called).await;
        called
    }

    /// The old and the new leader step at the same time: a deposed leader that has not
    /// noticed yet finishing its step while the new one starts.
    pub async fn overlapping(&mut self) -> (Called, Called) {
        let old = self.replicas[1 - self.leader].engine.clone();
        let new = self.replicas[self.leader].engine.clone();
        let (a, b) = tokio::join!(
            call(old, self.key.clone(), STEP_BUDGET),
            call(new, self.key.clone(), STEP_BUDGET)
        );
        self.report.overlapping_leaders += 1;
        self.after_call(&a).await;
        self.after_call(&b).await;
        (a, b)
    }

    async fn after_call(&mut self, called: &Called) {
        self.report.reconciles += 1;
        match called {
            Called::Panicked(message) => self
                .report
                .violations
                .push(format!("the engine panicked: {message}")),
            Called::Abandoned => self.report.abandoned_steps += 1,
            Called::Done(_) | Called::Failed(_) => {}
        }
        // Primary checks: every verification starts with a HeadBucket of the primary bucket
        // (nothing else sends one there: routine probing does not run in the soak).
        let heads =
            self.world
                .s3
                .requests()
                .count(s3::PRIMARY_REGION, world::PRIMARY_BUCKET, "HeadBucket");
        if heads > self.head_buckets {
            self.checks.push(Check {
                at: self.now(),
                healthy: !self.primary_broken(),
            });
        }
        self.head_buckets = heads;
        self.audit();
    }

    /// Steps the simulated operator (runs new backups, applies retention).
    pub async fn operator_step(&mut self) {
        self.report.operator_steps += 1;
        let step = self.world.operator.step();
        // A hung API request stalls the operator like Backstop; it is simply abandoned.
        let _ = tokio::time::timeout(STEP_BUDGET * 4, step).await;
        self.audit();
    }

    /// Records a notification through the webhook's intent writer; `false` when it could not
    /// be recorded (Alertmanager retries those).
    pub async fn deliver(&mut self, n: &Notification) -> bool {
        let now = self.now();
        let n2 = n.clone();
        let merge = move |intent: &mut Intent| {
            let changed = intent.observe(&n2.fingerprint, ALERTNAME, n2.starts_at, n2.status, now);
            if changed {
                intent.prune(now);
            }
            changed
        };
        // Any replica's writer will do: intents are written, never kept, outside a dry run.
        let engine = self.replicas[0].engine.clone();
        let key = self.key.clone();
        let recorded = tokio::spawn(async move {
            tokio::time::timeout(STEP_BUDGET, engine.record_intent(&key, merge)).await
        })
        .await;
        let ok = match recorded {
            Err(e) => {
                self.report
                    .violations
                    .push(format!("recording an intent panicked: {e}"));
                false
            }
            Ok(Err(_)) => false,
            Ok(Ok(result)) => matches!(result, Ok(Recorded::Changed | Recorded::Unchanged)),
        };
        self.audit();
        ok
    }

    /// Starts an audit window: from here, at most `allowed` failovers may happen.
    pub fn open_window(&mut self, label: String, allowed: usize) {
        self.window_runs.clear();
        self.window_allowed = allowed;
        self.window_label = label;
    }

    /// Failovers seen in the current window.
    pub fn window_failovers(&self) -> usize {
        self.window_runs.len()
    }

    /// Reads every change since the last audit and checks the invariants that concern
    /// single writes.
    pub fn audit(&mut self) {
        loop {
            let change = match self.changes.try_recv() {
                Ok(change) => change,
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(e) => {
                    self.report
                        .violations
                        .push(format!("the audit fell behind the change feed: {e}"));
                    break;
                }
            };
            if !change.key.resource.ends_with("perconaxtradbclusters")
                || change.key.name != world::CLUSTER
            {
                continue;
            }
            let journal = match journal_of(&change.object) {
                Ok(j) => j,
                Err(e) => {
                    self.report
                        .violations
                        .push(format!("an unreadable journal was written: {e}"));
                    continue;
                }
            };
            self.journal_written(journal);
        }
    }

    fn journal_written(&mut self, journal: Option<Journal>) {
        let Some(j) = journal else {
            self.last_journal = None;
            return;
        };
        let previous = self.last_journal.clone();
        let new_run = previous.as_ref().is_none_or(|p| p.run_id != j.run_id);
        if new_run {
            self.report.failovers += 1;
            if j.target_kind == backstop::responder::journal::TargetKind::Buffer {
                self.report.buffer_failovers += 1;
            }
            if j.phase != Phase::FailedOver {
                self.report.violations.push(format!(
                    "run {} first appeared in phase {:?}",
                    j.run_id, j.phase
                ));
            }
            self.window_runs.insert(j.run_id.clone());
            if self.window_runs.len() > self.window_allowed {
                self.report.violations.push(format!(
                    "{}: {} failovers where at most {} may happen: {:?}",
                    self.window_label,
                    self.window_runs.len(),
                    self.window_allowed,
                    self.window_runs
                ));
            }
        } else if let Some(p) = &previous {
            use backstop::responder::journal::TargetKind;
            if p.target_kind == TargetKind::Secondary && j.target_kind == TargetKind::Buffer {
                self.report.moves_to_buffer += 1;
                if j.phase != Phase::FailedOver || j.moved_to_buffer_at.is_none() {
                    self.report.violations.push(format!(
                        "run {} moved to the buffer in phase {:?} without movedToBufferAt",
                        j.run_id, j.phase
                    ));
                }
                if !self.secondary.broken() {
                    self.report.violations.push(format!(
                        "{}: run {} moved to the buffer while the secondary passes its check ({})",
                        self.window_label,
                        j.run_id,
                        self.secondary.name()
                    ));
                }
            }
            let reverted = p.phase == Phase::FailedOver
                && matches!(j.phase, Phase::Verifying | Phase::Reverted);
            if reverted {
                self.report.reverts += 1;
                self.revert_checked(&j);
            }
            if p.phase == Phase::Verifying && j.phase == Phase::VerificationFailed {
                self.report.verification_failed += 1;
            }
        }
        self.last_journal = Some(j);
    }

    /// A revert was just written: the primary must be passing its probe, and the last
    /// `HOLD_DOWN` primary checks must all have passed, spread over the hold-down.
    fn revert_checked(&mut self, j: &Journal) {
        if self.primary_broken() {
            self.report.violations.push(format!(
                "{}: run {} reverted while the primary fails its probe ({})",
                self.window_label,
                j.run_id,
                self.primary.name()
            ));
        }
        let n = HOLD_DOWN as usize;
        let last = &self.checks[self.checks.len().saturating_sub(n)..];
        let spread = match (last.first(), last.last()) {
            (Some(a), Some(b)) if last.len() == n => {
                Duration::try_from(b.at.duration_since(a.at)).unwrap_or_default()
            }
            _ => Duration::ZERO,
        };
        let needed = PROBE_INTERVAL * (HOLD_DOWN - 1);
        if last.len() < n || last.iter().any(|c| !c.healthy) || spread < needed {
            self.report.violations.push(format!(
                "{}: run {} reverted without {n} passing checks of the primary at least {}s apart (last checks: {:?})",
                self.window_label,
                j.run_id,
                PROBE_INTERVAL.as_secs(),
                last
            ));
        }
    }
}

fn clock_now(clock: &ManualClock) -> Timestamp {
    use backstop::clock::Clock as _;
    clock.now()
}

/// A fresh engine: a new process.
pub fn new_engine(world: &World, config: &Arc<Config>, clock: &ManualClock) -> Arc<Engine> {
    Engine::new(
        world.client.clone(),
        config.clone(),
        ResponderMetrics::register(&mut Registry::default()),
        Arc::new(clock.clone()),
    )
}

/// Runs one reconcile in its own task (a panic is reported, not propagated), abandoning it
/// after `budget`.
pub async fn call(engine: Arc<Engine>, key: ClusterKey, budget: Duration) -> Called {
    let task =
        tokio::spawn(async move { tokio::time::timeout(budget, engine.reconcile(&key)).await });
    match task.await {
        Err(e) => Called::Panicked(e.to_string()),
        Ok(Err(_)) => Called::Abandoned,
        Ok(Ok(Err(e))) => Called::Failed(e.to_string()),
        Ok(Ok(Ok(outcome))) => Called::Done(outcome.phase),
    }
}

/// Backups the playbooks created, by purpose (`cover`, `verify`).
pub async fn run_backups(world: &World, purpose: &str) -> Vec<PerconaXtraDBClusterBackup> {
    let api: Api<PerconaXtraDBClusterBackup> =
        Api::namespaced(world.client.clone(), world::NAMESPACE);
    api.list(
        &kube::api::ListParams::default()
            .labels(&format!("backstop.percona.com/purpose={purpose}")),
    )
    .await
    .expect("list backups")
    .items
}

/// The soak's schedule: outages one after another, each a storm of random events, then a
/// quiet period in which everything must converge.
pub async fn run(seed: u64, events: u64) -> Report {
    let mut soak = Soak::start(seed).await;
    let mut rng = Rng::new(seed);
    let fingerprint = "4b1fd6b4a5c0e2f1".to_owned();
    let mut late: Vec<Notification> = Vec::new();
    let mut episode = 0u64;
    while soak.report.events < events {
        episode += 1;
        outage(&mut soak, &mut rng, &fingerprint, episode, &mut late).await;
    }
    soak.stop().await
}

/// What one event of the storm may be.
#[derive(Debug, Clone, Copy)]
enum Event {
    Deliver,
    Duplicate,
    Repeat,
    Late,
    Reconcile,
    Burst,
    Advance,
    Operator,
    KubeFault,
    CrashBetween,
    CrashWithin,
    LeaderChange,
    SecondaryChange,
    PrimaryChange,
}

const EVENTS: [(Event, u64); 14] = [
    (Event::Deliver, 12),
    (Event::Duplicate, 4),
    (Event::Repeat, 4),
    (Event::Late, 3),
    (Event::Reconcile, 20),
    (Event::Burst, 6),
    (Event::Advance, 14),
    (Event::Operator, 6),
    (Event::KubeFault, 9),
    (Event::CrashBetween, 4),
    (Event::CrashWithin, 4),
    (Event::LeaderChange, 4),
    (Event::SecondaryChange, 4),
    (Event::PrimaryChange, 3),
];

fn pick_event(rng: &mut Rng) -> Event {
    let total: u64 = EVENTS.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(total);
    for (event, weight) in EVENTS {
        if roll < weight {
            return event;
        }
        roll -= weight;
    }
    Event::Reconcile
}

/// One outage: the primary breaks (perhaps too briefly to alert), a storm of events while
/// it is out, recovery and a second storm, then quiet and convergence.
async fn outage(
    soak: &mut Soak,
    rng: &mut Rng,
    fingerprint: &str,
    episode: u64,
    late: &mut Vec<Notification>,
) {
    // Episodes start apart, so each has its own startsAt.
    let gap = Duration::from_secs(rng.range(1, 600));
    soak.advance(gap);
    let blip = rng.chance(10);
    let label = format!("episode {episode}{}", if blip { " (blip)" } else { "" });
    soak.open_window(label.clone(), usize::from(!blip));
    if blip {
        soak.report.blips += 1;
    } else {
        soak.report.outages += 1;
    }
    let state = *rng.pick(&BROKEN);
    soak.set_s3(true, state).await;
    if rng.chance(30) {
        let secondary = *rng.pick(&[S3State::Unavailable, S3State::Denied, S3State::Slow]);
        soak.set_s3(false, secondary).await;
    }
    let starts_at = soak.now();
    let firing = Notification {
        fingerprint: fingerprint.to_owned(),
        starts_at,
        status: AlertStatus::Firing,
    };
    let mut queue: Vec<Notification> = Vec::new();
    if !blip {
        for _ in 0..rng.range(1, 3) {
            queue.push(firing.clone());
        }
    }
    let len = rng_len(rng);
    storm(soak, rng, &mut queue, late, (!blip).then_some(&firing), len).await;

    if !blip {
        // Every firing delivered and the API healthy: a viable target (the buffer, at
        // worst) exists, so the cluster must fail over.
        soak.world.kube.simulator().unwrap().faults().clear();
        queue.push(firing.clone());
        settle(soak, &mut queue, &label, |j, intent| {
            intent.wants_failover()
                && j.is_some_and(|j| j.phase == Phase::FailedOver && j.cover_backup.is_some())
        })
        .await;
        // Sometimes the secondary fails too, after the failover: the run may move to the
        // buffer during the storm (or not, if crashes keep resetting the count); either way
        // it stays one run and reverts exactly.
        let on_secondary = soak
            .journal()
            .await
            .is_some_and(|j| j.target_kind == backstop::responder::journal::TargetKind::Secondary);
        if on_secondary && rng.chance(40) {
            let state = *rng.pick(&[S3State::Unavailable, S3State::Refused, S3State::TooSlow]);
            soak.report.secondary_failed_after_failover += 1;
            soak.set_s3(false, state).await;
        }
        let len = rng_len(rng) / 2;
        storm(soak, rng, &mut queue, late, Some(&firing), len).await;
    }

    // Recovery: the primary answers again; Alertmanager resolves (a late firing repeat may
    // still be on its way).
    soak.set_s3(true, S3State::Healthy).await;
    let resolved = Notification {
        status: AlertStatus::Resolved,
        ..firing.clone()
    };
    if !blip {
        for _ in 0..rng.range(1, 3) {
            queue.push(resolved.clone());
        }
        if rng.chance(40) {
            queue.push(firing.clone());
        }
    }
    let len = rng_len(rng);
    storm(soak, rng, &mut queue, late, None, len).await;

    // Quiet: no faults, everything delivered; the cluster must end where it started.
    soak.world.kube.simulator().unwrap().faults().clear();
    soak.set_s3(true, S3State::Healthy).await;
    if rng.chance(50) {
        soak.set_s3(false, S3State::Healthy).await;
    }
    if !blip {
        queue.push(resolved.clone());
        if rng.chance(50) {
            late.push(firing.clone());
        }
        if rng.chance(50) {
            late.push(resolved.clone());
        }
    }
    let original = soak.original.clone();
    let ended = settle(soak, &mut queue, &label, |j, intent| {
        !intent.wants_failover()
            && j.is_none_or(|j| matches!(j.phase, Phase::Reverted | Phase::VerificationFailed))
    })
    .await;
    if ended {
        let spec = soak.cluster().await.data["spec"]["backup"].clone();
        if spec != original {
            soak.report.violations.push(format!(
                "{label}: spec.backup differs from the original once quiet: {spec} vs {original}"
            ));
        }
        let allowed = usize::from(!blip);
        if soak.window_failovers() != allowed {
            soak.report.violations.push(format!(
                "{label}: {} failovers, expected {allowed}",
                soak.window_failovers()
            ));
        }
    }
    late.truncate(6);
}

fn rng_len(rng: &mut Rng) -> u64 {
    rng.range(8, 30)
}

/// Steps with everything quiet until `done` holds (then `true`), or records that the intent
/// was lost (then `false`).
async fn settle(
    soak: &mut Soak,
    queue: &mut Vec<Notification>,
    label: &str,
    done: impl Fn(Option<&Journal>, &Intent) -> bool,
) -> bool {
    for _ in 0..SETTLE_STEPS {
        while let Some(n) = queue.first().cloned() {
            soak.report.events += 1;
            soak.report.note("delivered");
            if soak.deliver(&n).await {
                queue.remove(0);
            } else {
                soak.report.note("retried");
                break;
            }
        }
        let object = soak.cluster().await;
        let journal = match read_journal(&object) {
            Ok(j) => j,
            Err(e) => {
                soak.report
                    .violations
                    .push(format!("{label}: unreadable journal: {e}"));
                return false;
            }
        };
        if queue.is_empty() && done(journal.as_ref(), &read_intent(&object)) {
            return true;
        }
        soak.report.events += 2;
        soak.advance(Duration::from_secs(20));
        soak.reconcile().await;
        soak.operator_step().await;
    }
    let journal = soak.journal().await;
    let intent = soak.intent().await;
    soak.report.violations.push(format!(
        "{label}: did not converge once quiet (lost intent?): journal {journal:?}, intent {intent:?}"
    ));
    false
}

/// `count` random events. `firing` is the episode's firing notification while the alert
/// fires (for repeats).
async fn storm(
    soak: &mut Soak,
    rng: &mut Rng,
    queue: &mut Vec<Notification>,
    late: &mut [Notification],
    firing: Option<&Notification>,
    count: u64,
) {
    const RESOURCES: [&str; 3] = [
        "perconaxtradbclusters",
        "perconaxtradbclusterbackups",
        "events",
    ];
    for _ in 0..count {
        soak.report.events += 1;
        match pick_event(rng) {
            Event::Deliver | Event::Duplicate if !queue.is_empty() => {
                let i = rng.below(queue.len() as u64) as usize;
                if i != 0 {
                    soak.report.note("reordered");
                }
                let n = queue[i].clone();
                soak.report.note("delivered");
                if soak.deliver(&n).await {
                    if rng.chance(75) {
                        queue.remove(i);
                    } else {
                        // Alertmanager HA: the peer delivers the same notification too.
                        soak.report.note("duplicate");
                    }
                } else {
                    soak.report.note("retried");
                }
            }
            Event::Repeat => {
                if let Some(f) = firing {
                    soak.report.note("repeat_queued");
                    queue.push(f.clone());
                }
            }
            Event::Late if !late.is_empty() => {
                let n = rng.pick(late).clone();
                soak.report.note("late_from_earlier_episode");
                soak.deliver(&n).await;
            }
            Event::Burst => {
                // Several triggers at once (a watch event, a poke, a requeue).
                for _ in 0..rng.range(2, 4) {
                    soak.reconcile().await;
                }
            }
            Event::Advance => {
                let by = Duration::from_secs(rng.range(1, 120));
                soak.advance(by);
            }
            Event::Operator => soak.operator_step().await,
            Event::KubeFault => {
                let resource = (!rng.chance(20)).then(|| *rng.pick(&RESOURCES));
                let verbs: &[&str] = if rng.chance(60) {
                    &["update", "create", "patch"]
                } else {
                    &["get", "list"]
                };
                let verb = *rng.pick(verbs);
                let write = matches!(verb, "update" | "create" | "patch");
                // 429 and 504 are retried inside kube-rs (Retry-After 0 keeps the soak fast).
                let fault = match rng.below(7) {
                    0 => ApiFault::InternalError,
                    1 => ApiFault::TooManyRequests(0),
                    2 => ApiFault::Timeout,
                    3 if write => ApiFault::Conflict,
                    4 if write => ApiFault::AfterCommit(Box::new(ApiFault::Timeout)),
                    5 if write => ApiFault::AfterCommit(Box::new(if rng.chance(30) {
                        ApiFault::Hang
                    } else {
                        ApiFault::InternalError
                    })),
                    6 if rng.chance(40) => ApiFault::Hang,
                    _ => ApiFault::InternalError,
                };
                let times = rng.range(1, 3) as u32;
                soak.inject(verb, resource, fault, times);
            }
            Event::CrashBetween => {
                let i = soak.leader;
                soak.crash(i);
            }
            Event::CrashWithin => {
                // Killed part-way through a step: whatever had been written stays.
                let engine = soak.replicas[soak.leader].engine.clone();
                let budget = Duration::from_millis(rng.range(0, 40));
                soak.reconcile_with(engine, budget).await;
                let i = soak.leader;
                soak.crash(i);
            }
            Event::LeaderChange => {
                soak.change_leader();
                if rng.chance(40) {
                    soak.overlapping().await;
                }
            }
            Event::SecondaryChange => {
                let state = if rng.chance(50) {
                    S3State::Healthy
                } else {
                    *rng.pick(&[
                        S3State::Unavailable,
                        S3State::Denied,
                        S3State::Slow,
                        S3State::SlowDown,
                    ])
                };
                soak.set_s3(false, state).await;
            }
            Event::PrimaryChange => {
                // While the alert fires, the primary stays broken (its kind may change);
                // after it resolved, the primary may flap without a new alert.
                let state = if firing.is_some() || rng.chance(50) {
                    *rng.pick(&BROKEN)
                } else {
                    S3State::Healthy
                };
                if firing.is_some() || soak.primary != state {
                    soak.set_s3(true, state).await;
                }
            }
            _ => {
                soak.reconcile().await;
            }
        }
    }
}

/// A running Backstop process (the whole App: HTTP webhook, watch-fed cache, controller).
struct AppProcess {
    base: String,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), backstop::Error>>,
}

async fn start_app(world: &World, config: &Config) -> AppProcess {
    let app = backstop::runtime::app::App::bind_with(
        config.clone(),
        Some(world.client.clone()),
        Arc::new(backstop::clock::SystemClock),
    )
    .await
    .expect("Backstop starts");
    let base = format!("http://{}", app.local_addr().expect("bound"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.serve(shutdown.clone()));
    AppProcess {
        base,
        shutdown,
        task,
    }
}

impl AppProcess {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("Backstop's task")
            .expect("Backstop stops cleanly");
    }
}

/// How long a full-App episode may take to reach a state before it counts as lost.
const APP_DEADLINE: Duration = Duration::from_secs(60);

fn payload(status: AlertStatus, episode: u32) -> Value {
    let name = match status {
        AlertStatus::Firing => "webhook-firing.json",
        AlertStatus::Resolved => "webhook-resolved.json",
    };
    let text = std::fs::read_to_string(format!("../shared/fixtures/alertmanager/{name}"))
        .expect("Alertmanager fixture");
    let mut body: Value = serde_json::from_str(&text).expect("fixture JSON");
    body["alerts"][0]["fingerprint"] = "app-episodes".into();
    body["alerts"][0]["startsAt"] = format!("2026-11-24T{:02}:00:00Z", episode % 24).into();
    body
}

/// Posts like Alertmanager: retried until 200 (it retries 5xx), within the deadline.
async fn post(app: &AppProcess, body: &Value, report: &mut Report) {
    let deadline = tokio::time::Instant::now() + APP_DEADLINE;
    loop {
        report.note("http_posted");
        let answer = reqwest::Client::new()
            .post(format!("{}/alertmanager", app.base))
            .bearer_auth("soak")
            .json(body)
            .send()
            .await;
        match answer {
            Ok(a) if a.status().as_u16() == 200 => return,
            Ok(a) => assert!(
                a.status().is_server_error(),
                "Alertmanager never retries {}",
                a.status()
            ),
            Err(_) => {}
        }
        report.note("http_retried");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook never recorded the notification"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Full-App episodes: Backstop as a process, notifications over HTTP, its watches dropped
/// and expired (410 on resume), API faults under its controller, and restarts (graceful
/// stops at random moments, then a fresh process). Each episode must fail over once and
/// restore the original spec exactly.
pub async fn app_episodes(seed: u64, episodes: u32) -> Report {
    let mut rng = Rng::new(seed);
    let clock = ManualClock::new("2026-11-24T12:00:30Z".parse().expect("start time"));
    let world = World::start(world_options(&clock))
        .await
        .expect("sandbox world");
    let mut config = soak_config(&world);
    config.probe.interval = HumanDuration(Duration::from_millis(300));
    config.probe.timeout = HumanDuration(PROBE_TIMEOUT);
    config.responder.rate_limits.per_cluster_cooldown = HumanDuration(Duration::ZERO);
    config.responder.revert.test_backup_timeout = HumanDuration(Duration::from_secs(60));
    let mut report = Report {
        seed,
        ..Report::default()
    };
    let mut changes = world.kube.simulator().unwrap().changes();
    let api = cluster_api(&world.client, world::NAMESPACE);
    let original = api.get(world::CLUSTER).await.expect("cluster").data["spec"]["backup"].clone();
    let mut app = start_app(&world, &config).await;
    for episode in 1..=episodes {
        report.outages += 1;
        let mut runs = BTreeSet::new();
        // Changes from the previous episode's tail (its final journal) are not this one's.
        while changes.try_recv().is_ok() {}
        let state = *rng.pick(&BROKEN);
        report.fault(&format!("primary_{}", state.name()));
        let mut ids = Vec::new();
        for rule in state.rules(s3::PRIMARY_REGION) {
            ids.push(world.s3.faults().set(rule).await.expect("S3 rule"));
        }
        for _ in 0..rng.range(1, 3) {
            post(&app, &payload(AlertStatus::Firing, episode), &mut report).await;
        }
        app = app_chaos(&world, &config, app, &mut rng, &mut report).await;
        wait_journal(&world, &mut changes, &mut runs, &mut report, |j| {
            j.is_some_and(|j| j.phase == Phase::FailedOver && j.cover_backup.is_some())
        })
        .await;
        for id in ids {
            world.s3.faults().clear(id).await.expect("clear S3 rule");
        }
        for _ in 0..rng.range(1, 3) {
            post(&app, &payload(AlertStatus::Resolved, episode), &mut report).await;
        }
        if rng.chance(50) {
            // A firing repeat that lost the race with its resolved.
            report.note("http_late_firing");
            post(&app, &payload(AlertStatus::Firing, episode), &mut report).await;
        }
        app = app_chaos(&world, &config, app, &mut rng, &mut report).await;
        wait_journal(&world, &mut changes, &mut runs, &mut report, |j| {
            j.is_some_and(|j| matches!(j.phase, Phase::Reverted | Phase::VerificationFailed))
        })
        .await;
        report.reverts += 1;
        world.kube.simulator().unwrap().faults().clear();
        let spec = api.get(world::CLUSTER).await.expect("cluster").data["spec"]["backup"].clone();
        if spec != original {
            report.violations.push(format!(
                "app episode {episode}: spec.backup is not the original"
            ));
        }
        if runs.len() != 1 {
            report.violations.push(format!(
                "app episode {episode}: {} failover runs: {runs:?}",
                runs.len()
            ));
        }
        report.failovers += runs.len() as u64;
    }
    app.stop().await;
    world.shutdown().await;
    report
}

/// A few random disruptions of a running Backstop; returns the process now running.
async fn app_chaos(
    world: &World,
    config: &Config,
    mut app: AppProcess,
    rng: &mut Rng,
    report: &mut Report,
) -> AppProcess {
    for _ in 0..rng.range(2, 5) {
        report.events += 1;
        match rng.below(5) {
            0 => {
                report.fault("kube_watches_dropped");
                world.kube.simulator().unwrap().close_watches();
            }
            1 => {
                // etcd compaction: every watch resuming from its last resourceVersion gets
                // 410 Gone and must list again.
                report.fault("kube_410_gone");
                world.kube.simulator().unwrap().compact();
                world.kube.simulator().unwrap().close_watches();
            }
            2 => {
                let (verb, fault, kind) = rng
                    .pick(&[
                        ("update", ApiFault::InternalError, "kube_500"),
                        ("update", ApiFault::Conflict, "kube_409"),
                        ("patch", ApiFault::Conflict, "kube_409"),
                        ("list", ApiFault::InternalError, "kube_500"),
                        ("create", ApiFault::TooManyRequests(0), "kube_429"),
                    ])
                    .clone();
                report.fault(kind);
                world.kube.simulator().unwrap().faults().inject(FaultRule {
                    verb: Some(verb.to_owned()),
                    resource: Some("perconaxtradbclusters".to_owned()),
                    remaining: 1,
                    fault,
                });
            }
            3 => {
                report.crashes += 1;
                app.stop().await;
                app = start_app(world, config).await;
            }
            _ => {
                // Let it run a little before the next disruption.
                let _ = world.operator.step().await;
                tokio::time::sleep(Duration::from_millis(rng.range(10, 200))).await;
            }
        }
    }
    app
}

/// Steps the operator and polls the cluster until `done` holds for its journal, noting the
/// failover run ids written meanwhile.
async fn wait_journal(
    world: &World,
    changes: &mut broadcast::Receiver<Arc<Change>>,
    runs: &mut BTreeSet<String>,
    report: &mut Report,
    done: impl Fn(Option<&Journal>) -> bool,
) {
    let api = cluster_api(&world.client, world::NAMESPACE);
    let deadline = tokio::time::Instant::now() + APP_DEADLINE;
    loop {
        report.events += 1;
        while let Ok(change) = changes.try_recv() {
            if change.key.resource.ends_with("perconaxtradbclusters")
                && let Ok(Some(j)) = journal_of(&change.object)
                && j.phase == Phase::FailedOver
            {
                runs.insert(j.run_id);
            }
        }
        let _ = world.operator.step().await;
        if let Ok(object) = api.get(world::CLUSTER).await
            && done(read_journal(&object).ok().flatten().as_ref())
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a full-App episode never converged (lost intent?)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
