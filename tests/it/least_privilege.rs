//! Least privilege (issue 9, item 5): the RBAC rendered from `deploy/` is exactly what Backstop
//! needs. The permissions are enumerated from the rendered manifests (every single apiGroup,
//! resource and verb the roles bound to the `backstop` ServiceAccount grant), and [`NEEDS`]
//! maps each to the feature that needs it. Then:
//!
//! - with the full rendered RBAC, every feature works ([`every_feature_works_under_the_rendered_rbac`]);
//! - for each permission, with the rendered RBAC minus exactly that permission, Backstop really
//!   makes the request (the simulator records its 403) and the feature that needs it fails
//!   visibly: a closed `/readyz` gate, a metric, an Event missing or empty, a 503 from the
//!   webhook, a journal that does not move ([`removing_any_permission_breaks_its_feature`]).
//!
//! A permission granted with no entry in [`NEEDS`], or an entry no longer granted, fails the
//! test: a new rule needs a feature that proves it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backstop::clock::{ManualClock, SystemClock};
use backstop::config::{Config, HumanDuration};
use backstop::pxc::PerconaXtraDBClusterBackup;
use backstop::responder::cluster::{cluster_api, read_journal};
use backstop::responder::effect::RUN_LABEL;
use backstop::responder::intent::INTENT_ANNOTATION;
use backstop::responder::journal::{JOURNAL_ANNOTATION, Journal, Phase};
use backstop::watch::completions::OBSERVED_ANNOTATION;
use backstop_sandbox::s3::{Fault, Rule};
use backstop_sandbox::world::{self, World, WorldOptions};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::common;

use common::deploy::{deploy_dir, kustomize};
use common::sandbox::{self, DEADLINE, Running, sample};
use common::{Backend, on_both_backends};

/// The ServiceAccount the manifests create, as the API server names it.
const BACKSTOP: &str = "system:serviceaccount:backstop:backstop";
/// A storage added to the sample cluster whose bucket S3 says does not exist: backups to it
/// fail with a real xbcloud-style log, which the failure features need.
const LOST_STORAGE: &str = "s3-lost";
const LOST_BUCKET: &str = "pxc-backups-lost";
/// The backup the failure features run on [`LOST_STORAGE`].
const LOST_BACKUP: &str = "lp-lost";
/// Leader election as configured for the test (kubernetes.leader_election).
const LEASE: &str = "backstop-leader";
const LEASE_NAMESPACE: &str = "backstop";
/// The webhook token the harness writes.
const TOKEN: &str = "t";
/// Cases of the removal test running at once: enough to finish in about a minute, few
/// enough for a 2-core machine.
const CONCURRENT_CASES: usize = 4;

/// What a feature is, for failure messages and the docs table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Feature {
    /// The clusters watch's first list: `/readyz` gate `watch:*:clusters`, target discovery.
    ClusterList,
    /// Cluster changes after the first list reach the index (here: a schedule's retention,
    /// `backstop_backup_retention_window_seconds`).
    ClusterWatch,
    /// The backups watch's first list: `/readyz` gate `watch:*:backups`.
    BackupList,
    /// New backups after the first list reach the index (`backstop_backups{state="New"}`).
    BackupWatch,
    /// The backup Jobs watch's first list: `/readyz` gate `watch:*:jobs`.
    JobList,
    /// New Jobs after the first list reach the index (`backstop_backup_jobs`).
    JobWatch,
    /// Finished backups are claimed with the observed annotation and counted
    /// (`backstop_backup_completions_total`).
    Claim,
    /// The prober reads S3 credentials from the storage's Secret
    /// (`backstop_s3_credentials_valid 1`).
    Credentials,
    /// A failed backup's Job pod log tail reaches its BackupFailed Event.
    LogTail,
    /// Events: BackupFailed on a failed backup, FailedOver on a failover.
    Events,
    /// Acquiring the leader Lease (`backstop_leader 1`).
    Leader,
    /// Renewing the leader Lease (the leader keeps it).
    LeaderRenew,
    /// The webhook records the alert's intent on the cluster (200, intent annotation).
    Intent,
    /// The failover write: spec.backup and the journal in one update.
    Failover,
    /// The on-demand cover backup after a failover.
    CoverBackup,
    /// The revert's test backup is read until it succeeds (journal `Reverted`).
    TestBackup,
}

impl Feature {
    /// Every feature, in an order in which each one's preconditions come first.
    const ALL: [Feature; 16] = [
        Feature::ClusterList,
        Feature::BackupList,
        Feature::JobList,
        Feature::Credentials,
        Feature::Claim,
        Feature::ClusterWatch,
        Feature::BackupWatch,
        Feature::JobWatch,
        Feature::LogTail,
        Feature::Events,
        Feature::Leader,
        Feature::LeaderRenew,
        Feature::Intent,
        Feature::Failover,
        Feature::CoverBackup,
        Feature::TestBackup,
    ];
}

const PXC: &str = "pxc.percona.com";
const CLUSTERS: &str = "perconaxtradbclusters";
const BACKUPS: &str = "perconaxtradbclusterbackups";
const CORE: &str = "";
const LEASES: &str = "coordination.k8s.io";

/// Which feature needs each permission (group, resource, verb). The permissions themselves
/// come from the rendered manifests; this only says what each is for.
const NEEDS: &[(&str, &str, &str, Feature)] = &[
    (PXC, CLUSTERS, "list", Feature::ClusterList),
    (PXC, CLUSTERS, "watch", Feature::ClusterWatch),
    (PXC, CLUSTERS, "get", Feature::Intent),
    (PXC, CLUSTERS, "patch", Feature::Intent),
    (PXC, CLUSTERS, "update", Feature::Failover),
    (PXC, BACKUPS, "list", Feature::BackupList),
    (PXC, BACKUPS, "watch", Feature::BackupWatch),
    (PXC, BACKUPS, "patch", Feature::Claim),
    (PXC, BACKUPS, "create", Feature::CoverBackup),
    (PXC, BACKUPS, "get", Feature::TestBackup),
    (CORE, "secrets", "get", Feature::Credentials),
    (CORE, "pods", "list", Feature::LogTail),
    (CORE, "pods/log", "get", Feature::LogTail),
    (CORE, "events", "create", Feature::Events),
    ("batch", "jobs", "list", Feature::JobList),
    ("batch", "jobs", "watch", Feature::JobWatch),
    (LEASES, "leases", "get", Feature::Leader),
    (LEASES, "leases", "create", Feature::Leader),
    (LEASES, "leases", "update", Feature::LeaderRenew),
];

/// One apiGroup/resource/verb.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    group: String,
    resource: String,
    verb: String,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{} {}", self.verb, self.resource)
        } else {
            write!(f, "{} {}.{}", self.verb, self.resource, self.group)
        }
    }
}

fn feature_of(p: &Permission) -> Option<Feature> {
    NEEDS
        .iter()
        .find(|(g, r, v, _)| p.group == *g && p.resource == *r && p.verb == *v)
        .map(|(_, _, _, f)| *f)
}

// ---------------------------------------------------------------------------------------
// The rendered RBAC

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Indices of the Roles and ClusterRoles bound to the `backstop` ServiceAccount.
fn backstop_roles(objects: &[Value]) -> Vec<usize> {
    let mut roles = BTreeSet::new();
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
    {
        let binding_ns = binding["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let binds = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == "backstop"
                    && s["namespace"].as_str().unwrap_or(binding_ns) == "backstop"
            });
        if !binds {
            continue;
        }
        let kind = binding["roleRef"]["kind"].as_str().unwrap();
        let name = &binding["roleRef"]["name"];
        let found = objects.iter().position(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == *name
                && (kind == "ClusterRole" || o["metadata"]["namespace"] == binding_ns)
        });
        roles.insert(found.unwrap_or_else(|| panic!("{binding} refers to a missing role")));
    }
    assert!(
        !roles.is_empty(),
        "nothing is bound to the backstop ServiceAccount"
    );
    roles.into_iter().collect()
}

/// A role's rules split into single-permission rules (resourceNames kept with each).
fn split_rules(role: &Value) -> Vec<(Permission, Value)> {
    let mut out = Vec::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "unexpected nonResourceURLs in {rule}"
        );
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    assert!(
                        ![&group, &resource, &verb].contains(&&"*".to_owned()),
                        "a wildcard cannot be least privilege: {rule}"
                    );
                    let mut single = json!({"apiGroups": [group], "resources": [resource],
                        "verbs": [verb]});
                    if let Some(names) = rule.get("resourceNames") {
                        single["resourceNames"] = names.clone();
                    }
                    out.push((
                        Permission {
                            group: group.clone(),
                            resource: resource.clone(),
                            verb,
                        },
                        single,
                    ));
                }
            }
        }
    }
    out
}

/// Every permission the rendered objects grant the `backstop` ServiceAccount.
fn granted(objects: &[Value]) -> BTreeSet<Permission> {
    backstop_roles(objects)
        .into_iter()
        .flat_map(|i| split_rules(&objects[i]))
        .map(|(p, _)| p)
        .collect()
}

/// The rendered objects with `permission` removed from every role bound to Backstop; the
/// other permissions stay, each as a rule of its own.
fn without(objects: &[Value], permission: &Permission) -> Vec<Value> {
    let mut edited = objects.to_vec();
    let mut removed = 0;
    for i in backstop_roles(objects) {
        let rules: Vec<Value> = split_rules(&objects[i])
            .into_iter()
            .filter(|(p, _)| {
                let drop = p == permission;
                removed += usize::from(drop);
                !drop
            })
            .map(|(_, rule)| rule)
            .collect();
        edited[i]["rules"] = Value::Array(rules);
    }
    assert!(removed > 0, "{permission} is not granted");
    assert_eq!(
        granted(&edited),
        granted(objects)
            .into_iter()
            .filter(|p| p != permission)
            .collect(),
        "removing {permission} must remove exactly it"
    );
    edited
}

#[test]
fn every_granted_permission_has_a_feature_and_every_feature_a_permission() {
    let objects = kustomize(&deploy_dir(""));
    let granted = granted(&objects);
    let unexplained: Vec<String> = granted
        .iter()
        .filter(|p| feature_of(p).is_none())
        .map(ToString::to_string)
        .collect();
    assert!(
        unexplained.is_empty(),
        "granted without a feature that needs it (add it to NEEDS with a check, or drop it): {unexplained:?}"
    );
    let stale: Vec<String> = NEEDS
        .iter()
        .map(|(g, r, v, _)| Permission {
            group: (*g).into(),
            resource: (*r).into(),
            verb: (*v).into(),
        })
        .filter(|p| !granted.contains(p))
        .map(|p| p.to_string())
        .collect();
    assert!(stale.is_empty(), "in NEEDS but not granted: {stale:?}");
    let used: BTreeSet<Feature> = NEEDS.iter().map(|n| n.3).collect();
    let all: BTreeSet<Feature> = Feature::ALL.into_iter().collect();
    assert_eq!(used, all, "every feature is needed by some permission");
    // Splitting and removing is exact for each permission.
    for p in &granted {
        let _ = without(&objects, p);
    }
}

// ---------------------------------------------------------------------------------------
// One Backstop under some RBAC, and what the checks observe

struct Case {
    r: Running,
    /// spec.backup as it was when the alert fired: what a revert must restore exactly.
    before_failover: std::sync::Mutex<Option<Value>>,
}

/// Short intervals so the whole loop runs in test time. Leader election on, in Backstop's
/// namespace as deployed, with a short Lease so a leader that cannot renew loses it quickly.
fn tune(c: &mut Config) {
    let le = &mut c.kubernetes.leader_election;
    le.enabled = true;
    le.lease_name = LEASE.into();
    le.lease_namespace = Some(LEASE_NAMESPACE.into());
    le.lease_duration = HumanDuration(Duration::from_secs(1));
    le.renew_interval = HumanDuration(Duration::from_millis(200));
    c.probe.interval = HumanDuration(Duration::from_millis(200));
    c.probe.timeout = HumanDuration(Duration::from_millis(500));
    c.responder.rate_limits.per_cluster_cooldown = HumanDuration(Duration::ZERO);
    c.responder.revert.hold_down_probes = 2;
    c.responder.revert.test_backup_timeout = HumanDuration(Duration::from_secs(60));
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
async fn until<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Case {
    /// A sandbox world (operator stepped by the test, on a clock that never fires the
    /// schedule) with [`LOST_STORAGE`] added, and Backstop as the ServiceAccount under
    /// `objects`' RBAC.
    async fn start(backend: Backend, objects: &[Value]) -> Self {
        let options = WorldOptions {
            clock: Arc::new(ManualClock::new(
                "2026-11-24T12:00:30Z".parse::<jiff::Timestamp>().unwrap(),
            )),
            operator_interval: None,
            history: 1,
            retention: 10,
            ..common::world_on(backend)
        };
        let world = World::start(options).await.unwrap();
        // The embedded S3 takes uploads to any bucket name; the fault makes this one missing.
        world
            .s3
            .faults()
            .set(Rule::new(Fault::NoSuchBucket).on_bucket(LOST_BUCKET))
            .await
            .unwrap();
        let lost = json!({"spec": {"backup": {"storages": {LOST_STORAGE: {"type": "s3", "s3": {
            "bucket": format!("{LOST_BUCKET}/{}", world::CLUSTER),
            "region": backstop_sandbox::s3::PRIMARY_REGION,
            "endpointUrl": world.endpoint(backstop_sandbox::s3::PRIMARY_REGION),
            "forcePathStyle": true, "credentialsSecret": world::CREDENTIALS_SECRET}}}}}});
        let clusters = cluster_api(&world.client, world::NAMESPACE);
        clusters
            .patch(world::CLUSTER, &PatchParams::default(), &Patch::Merge(lost))
            .await
            .unwrap();
        let r =
            sandbox::start_as_service_account(world, objects, Arc::new(SystemClock), tune).await;
        Self {
            r,
            before_failover: std::sync::Mutex::new(None),
        }
    }

    async fn stop(self) {
        self.r.stop().await;
    }

    fn admin(&self) -> kube::Client {
        self.r.world.client.clone()
    }

    async fn readyz(&self) -> (u16, Value) {
        let response = reqwest::get(format!("{}/readyz", self.r.base))
            .await
            .unwrap();
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(Value::Null))
    }

    async fn wait_ready(&self) {
        until("/readyz 200", || async move {
            (self.readyz().await.0 == 200).then_some(())
        })
        .await;
    }

    /// Backstop's requests RBAC refused for `p` (cluster-wide ones only when `cluster_wide`).
    fn denials(&self, p: &Permission, cluster_wide: bool) -> usize {
        self.r
            .world
            .kube
            .denials()
            .iter()
            .filter(|d| {
                d.user == BACKSTOP
                    && d.group == p.group
                    && d.resource == p.resource
                    && d.verb == p.verb
                    && (!cluster_wide || d.namespace.is_none())
            })
            .count()
    }

    /// Waits until Backstop has been refused `p` more than `seen` times: the proof that it
    /// really makes the request the permission covers.
    async fn wait_denied(&self, p: &Permission, cluster_wide: bool, seen: usize) -> usize {
        let what = format!(
            "Backstop asks for {p} (refused){}; no request means no feature needs it",
            if seen > 0 { " again" } else { "" }
        );
        until(&what, || async move {
            let n = self.denials(p, cluster_wide);
            (n > seen).then_some(n)
        })
        .await
    }

    async fn metric(&self, name: &str, needles: &[&str]) -> Option<f64> {
        sample(&self.r.metrics().await, name, needles)
    }

    async fn wait_metric(&self, name: &str, needles: &[&str], want: impl Fn(f64) -> bool) -> f64 {
        let what = format!("{name} {needles:?} as wanted");
        let want = &want;
        until(&what, || async move {
            self.metric(name, needles).await.filter(|v| want(*v))
        })
        .await
    }

    async fn cluster(&self) -> kube::api::DynamicObject {
        cluster_api(&self.admin(), world::NAMESPACE)
            .get(world::CLUSTER)
            .await
            .unwrap()
    }

    async fn journal(&self) -> Option<Journal> {
        read_journal(&self.cluster().await).unwrap()
    }

    async fn wait_phase(&self, phase: Phase) -> Journal {
        until(&format!("journal phase {phase:?}"), || async move {
            self.r.world.operator.step().await.unwrap();
            self.journal().await.filter(|j| j.phase == phase)
        })
        .await
    }

    fn backups(&self) -> Api<PerconaXtraDBClusterBackup> {
        Api::namespaced(self.admin(), world::NAMESPACE)
    }

    async fn backup(&self, name: &str) -> Option<PerconaXtraDBClusterBackup> {
        self.backups().get_opt(name).await.unwrap()
    }

    async fn create_backup(&self, name: &str, storage: &str) {
        let backup: PerconaXtraDBClusterBackup = serde_json::from_value(json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
            "metadata": {"name": name, "namespace": world::NAMESPACE},
            "spec": {"pxcCluster": world::CLUSTER, "storageName": storage},
        }))
        .unwrap();
        self.backups()
            .create(&PostParams::default(), &backup)
            .await
            .unwrap();
    }

    /// Runs [`LOST_BACKUP`] through the operator until it has failed (Job, pod and log in
    /// place).
    async fn fail_a_backup(&self) {
        self.create_backup(LOST_BACKUP, LOST_STORAGE).await;
        self.run_lost_backup().await;
    }

    /// Steps the operator until [`LOST_BACKUP`] has failed.
    async fn run_lost_backup(&self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            self.r.world.operator.step().await.unwrap();
            let status = self.backup(LOST_BACKUP).await.and_then(|b| b.status);
            if status.as_ref().and_then(|s| s.state.as_deref()) == Some("Failed") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the backup on the lost bucket never failed: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Backstop's Events in the sample namespace.
    async fn events(&self) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.admin(), world::NAMESPACE);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reporting_component.as_deref() == Some("backstop"))
            .collect()
    }

    async fn wait_event(&self, reason: &str, about: &str) -> Event {
        until(&format!("{reason} Event about {about}"), || async move {
            self.events().await.into_iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.involved_object.name.as_deref() == Some(about)
            })
        })
        .await
    }

    async fn notify(&self, fixture: &str) -> (u16, Value) {
        let body = common::fixtures::text(&format!("alertmanager/{fixture}"));
        let response = reqwest::Client::new()
            .post(format!("{}/alertmanager", self.r.base))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body)
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(Value::Null))
    }

    /// Posts the firing alert, remembering spec.backup as it was just before.
    async fn fire(&self) {
        let spec = self.backup_spec().await;
        *self.before_failover.lock().unwrap() = Some(spec);
        let (code, answer) = self.notify("webhook-firing.json").await;
        assert_eq!(code, 200, "{answer}");
    }

    async fn backup_spec(&self) -> Value {
        self.cluster().await.data["spec"]["backup"].clone()
    }

    fn spec_before_failover(&self) -> Value {
        self.before_failover.lock().unwrap().clone().unwrap()
    }

    /// The sample schedule's retention window as Backstop exports it.
    async fn retention_window(&self) -> Option<f64> {
        self.metric(
            "backstop_backup_retention_window_seconds",
            &[&format!("schedule=\"{}\"", world::SCHEDULE)],
        )
        .await
    }

    /// Doubles the sample schedule's retention count (10 -> 20): a cluster change whose
    /// effect Backstop exports straight from its index.
    async fn change_retention(&self) {
        let mut spec = self.cluster().await.data["spec"]["backup"]["schedule"].clone();
        spec[0]["retention"]["count"] = json!(20);
        cluster_api(&self.admin(), world::NAMESPACE)
            .patch(
                world::CLUSTER,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"backup": {"schedule": spec}}})),
            )
            .await
            .unwrap();
    }

    async fn lease(&self) -> Option<Lease> {
        let api: Api<Lease> = Api::namespaced(self.admin(), LEASE_NAMESPACE);
        api.get_opt(LEASE).await.unwrap()
    }

    async fn run_backups(&self) -> Vec<PerconaXtraDBClusterBackup> {
        self.backups()
            .list(&ListParams::default().labels(RUN_LABEL))
            .await
            .unwrap()
            .items
    }
}

fn primary() -> String {
    format!("target=\"s3://{}/", world::PRIMARY_BUCKET)
}

// ---------------------------------------------------------------------------------------
// Each feature working

async fn works(c: &Case, feature: Feature) {
    match feature {
        Feature::ClusterList | Feature::BackupList | Feature::JobList => {
            c.wait_ready().await;
            let (_, body) = c.readyz().await;
            assert_eq!(body["waiting_for"], json!(null), "{body}");
            c.wait_metric("backstop_s3_target_info", &[&primary()], |v| v == 1.0)
                .await;
        }
        Feature::Credentials => {
            c.wait_metric("backstop_s3_credentials_valid", &[&primary()], |v| v == 1.0)
                .await;
        }
        Feature::Claim => {
            c.wait_metric(
                "backstop_backup_completions_total",
                &["result=\"succeeded\""],
                |v| v >= 1.0,
            )
            .await;
            let history = c.backups().list(&ListParams::default()).await.unwrap();
            assert!(
                history
                    .items
                    .iter()
                    .any(|b| b.annotations().contains_key(OBSERVED_ANNOTATION)),
                "the counted backup is claimed"
            );
        }
        Feature::ClusterWatch => {
            assert_eq!(c.retention_window().await, Some(600.0));
            c.change_retention().await;
            c.wait_metric(
                "backstop_backup_retention_window_seconds",
                &[&format!("schedule=\"{}\"", world::SCHEDULE)],
                |v| v == 1200.0,
            )
            .await;
        }
        Feature::BackupWatch => {
            c.create_backup(LOST_BACKUP, LOST_STORAGE).await;
            c.wait_metric(
                "backstop_backups",
                &[&format!("storage=\"{LOST_STORAGE}\""), "state=\"New\""],
                |v| v == 1.0,
            )
            .await;
        }
        Feature::JobWatch => {
            if c.backup(LOST_BACKUP).await.is_none() {
                c.create_backup(LOST_BACKUP, LOST_STORAGE).await;
            }
            c.run_lost_backup().await;
            c.wait_metric("backstop_backup_jobs", &["state=\"failed\""], |v| v == 1.0)
                .await;
        }
        Feature::LogTail => {
            let event = c.wait_event("BackupFailed", LOST_BACKUP).await;
            let message = event.message.unwrap_or_default();
            match c.r.world.kube.backend() {
                Backend::Simulator => assert!(
                    message.contains("xbcloud:"),
                    "the Event carries the pod log's tail: {message}"
                ),
                // No kubelet serves logs here: the request is allowed (no denial) but has no
                // log to give, and the Event quotes the backup's status.error.
                Backend::Real => {
                    assert!(message.contains("NoSuchBucket"), "{message}");
                    assert!(
                        !c.r.world
                            .kube
                            .denials()
                            .iter()
                            .any(|d| d.user == BACKSTOP && d.resource == "pods/log"),
                        "the log request was allowed"
                    );
                }
            }
        }
        Feature::Events => {
            c.wait_event("BackupFailed", LOST_BACKUP).await;
            c.wait_metric(
                "backstop_backup_failures_total",
                &[&format!("storage=\"{LOST_STORAGE}\"")],
                |v| v == 1.0,
            )
            .await;
        }
        Feature::Leader => {
            c.wait_metric("backstop_leader", &[], |v| v == 1.0).await;
            let lease = c.lease().await.expect("the Lease exists");
            assert!(lease.spec.unwrap().holder_identity.is_some());
        }
        Feature::LeaderRenew => {
            let first = &c.lease().await.unwrap().spec.unwrap();
            until("the leader renews its Lease", || async move {
                let now = c.lease().await?.spec?;
                (now.renew_time != first.renew_time && now.holder_identity == first.holder_identity)
                    .then_some(())
            })
            .await;
            assert_eq!(c.metric("backstop_leader", &[]).await, Some(1.0));
        }
        Feature::Intent => {
            c.fire().await;
            let cluster = c.cluster().await;
            assert!(
                cluster.annotations().contains_key(INTENT_ANNOTATION),
                "intent recorded"
            );
        }
        Feature::Failover => {
            let j = c.wait_phase(Phase::FailedOver).await;
            assert_eq!(j.target_storage, "backstop-secondary");
            c.wait_event("FailedOver", world::CLUSTER).await;
        }
        Feature::CoverBackup => {
            let name = until("the cover backup is recorded", || async move {
                c.journal().await.and_then(|j| j.cover_backup)
            })
            .await;
            assert!(
                c.backup(&name).await.is_some(),
                "cover backup {name} exists"
            );
        }
        Feature::TestBackup => {
            let (code, answer) = c.notify("webhook-resolved.json").await;
            assert_eq!(code, 200, "{answer}");
            let j = c.wait_phase(Phase::Reverted).await;
            let test = j.test_backup.unwrap();
            let state = c.backup(&test).await.and_then(|b| b.status?.state);
            assert_eq!(state.as_deref(), Some("Succeeded"));
            assert_eq!(
                c.backup_spec().await,
                c.spec_before_failover(),
                "reverted exactly"
            );
        }
    }
}

on_both_backends!(
    every_feature_works_under_the_rendered_rbac,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn every_feature_works_under_the_rendered_rbac(backend: Backend) {
    let objects = kustomize(&deploy_dir(""));
    let c = Case::start(backend, &objects).await;
    for feature in Feature::ALL {
        works(&c, feature).await;
    }
    assert!(
        c.r.world.kube.denials().iter().all(|d| d.user != BACKSTOP),
        "nothing Backstop asked for was refused: {:?}",
        c.r.world.kube.denials()
    );
    c.stop().await;
}

// ---------------------------------------------------------------------------------------
// Each feature failing without its permission

/// Waits until `/readyz` says it waits for exactly `gate`: every other watch listed, this
/// one cannot.
async fn only_gate_closed(c: &Case, gate: &str) {
    let body = until(&format!("/readyz waiting only for {gate}"), || async move {
        let (code, body) = c.readyz().await;
        (code == 503 && body["waiting_for"] == json!([gate])).then_some(body)
    })
    .await;
    assert_eq!(body["ready"], json!(false));
}

async fn broken(c: &Case, feature: Feature, p: &Permission) {
    match feature {
        Feature::ClusterList => {
            c.wait_denied(p, true, 0).await;
            only_gate_closed(c, "watch:*:clusters").await;
            assert_eq!(
                c.metric("backstop_s3_target_info", &[&primary()]).await,
                None,
                "no cluster listed, no target discovered"
            );
        }
        Feature::BackupList => {
            c.wait_denied(p, true, 0).await;
            only_gate_closed(c, "watch:*:backups").await;
        }
        Feature::JobList => {
            c.wait_denied(p, true, 0).await;
            only_gate_closed(c, "watch:*:jobs").await;
        }
        Feature::ClusterWatch => {
            c.wait_ready().await;
            let seen = c.wait_denied(p, true, 0).await;
            assert_eq!(c.retention_window().await, Some(600.0));
            c.change_retention().await;
            // Refused again after the change: no watch has been open since.
            c.wait_denied(p, true, seen).await;
            assert_eq!(
                c.retention_window().await,
                Some(600.0),
                "the change never reaches Backstop"
            );
        }
        Feature::BackupWatch => {
            c.wait_ready().await;
            let seen = c.wait_denied(p, true, 0).await;
            c.create_backup(LOST_BACKUP, LOST_STORAGE).await;
            c.wait_denied(p, true, seen).await;
            assert_eq!(
                c.metric("backstop_backups", &["state=\"New\""]).await,
                None,
                "the new backup never reaches Backstop"
            );
        }
        Feature::JobWatch => {
            c.wait_ready().await;
            let seen = c.wait_denied(p, true, 0).await;
            c.fail_a_backup().await;
            c.wait_denied(p, true, seen).await;
            let text = c.r.metrics().await;
            assert!(
                !text
                    .lines()
                    .any(|l| l.starts_with("backstop_backup_jobs{") && !l.ends_with(" 0")),
                "the new Job never reaches Backstop:\n{text}"
            );
        }
        Feature::Claim => {
            c.wait_ready().await;
            c.wait_denied(p, false, 0).await;
            assert_eq!(
                c.metric("backstop_backup_completions_total", &[]).await,
                None,
                "nothing counted without a claim"
            );
            let history = c.backups().list(&ListParams::default()).await.unwrap();
            assert!(
                history
                    .items
                    .iter()
                    .all(|b| !b.annotations().contains_key(OBSERVED_ANNOTATION))
            );
        }
        Feature::Credentials => {
            c.wait_denied(p, false, 0).await;
            c.wait_metric("backstop_s3_credentials_valid", &[&primary()], |v| v == 0.0)
                .await;
            let errors = c
                .metric(
                    "backstop_s3_probe_errors_total",
                    &[&primary(), "class=\"invalid_credentials\""],
                )
                .await;
            assert!(errors.is_some_and(|v| v >= 1.0), "{errors:?}");
        }
        Feature::LogTail => {
            c.wait_ready().await;
            c.fail_a_backup().await;
            let event = c.wait_event("BackupFailed", LOST_BACKUP).await;
            assert!(c.denials(p, false) > 0, "Backstop never asked for {p}");
            let message = event.message.unwrap_or_default();
            assert!(
                !message.contains("xbcloud:"),
                "without {p} the Event has no log tail: {message}"
            );
        }
        Feature::Events => {
            c.wait_ready().await;
            c.fail_a_backup().await;
            c.wait_denied(p, false, 0).await;
            // The failure was seen and counted; it just cannot be told as an Event.
            assert_eq!(
                c.metric(
                    "backstop_backup_failures_total",
                    &[&format!("storage=\"{LOST_STORAGE}\"")]
                )
                .await,
                Some(1.0)
            );
            assert!(c.events().await.is_empty(), "{:?}", c.events().await);
        }
        Feature::Leader => {
            c.wait_ready().await;
            c.wait_denied(p, false, 0).await;
            assert_eq!(c.metric("backstop_leader", &[]).await, Some(0.0));
            assert!(c.lease().await.is_none(), "no Lease was taken");
        }
        Feature::LeaderRenew => {
            // Created, so acquired; every renewal after that is refused.
            c.wait_metric("backstop_leader", &[], |v| v == 1.0).await;
            let created = c.lease().await.unwrap().spec.unwrap().renew_time;
            c.wait_denied(p, false, 0).await;
            // A leader that cannot renew gives up once the Lease duration has passed.
            c.wait_metric("backstop_leader", &[], |v| v == 0.0).await;
            let spec = c.lease().await.unwrap().spec.unwrap();
            assert_eq!(spec.renew_time, created, "never renewed");
        }
        Feature::Intent => {
            c.wait_ready().await;
            let (code, answer) = c.notify("webhook-firing.json").await;
            assert_eq!(code, 503, "Alertmanager is told to retry: {answer}");
            assert!(c.denials(p, false) > 0, "Backstop never asked for {p}");
            assert!(
                !c.cluster()
                    .await
                    .annotations()
                    .contains_key(INTENT_ANNOTATION),
                "no intent recorded"
            );
            c.wait_metric("backstop_webhook_requests_total", &["code=\"503\""], |v| {
                v == 1.0
            })
            .await;
        }
        Feature::Failover => {
            c.wait_ready().await;
            c.fire().await;
            c.wait_denied(p, false, 0).await;
            let cluster = c.cluster().await;
            assert!(!cluster.annotations().contains_key(JOURNAL_ANNOTATION));
            assert_eq!(
                cluster.data["spec"]["backup"],
                c.spec_before_failover(),
                "nothing failed over"
            );
            assert!(
                !c.events()
                    .await
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("FailedOver"))
            );
        }
        Feature::CoverBackup => {
            c.wait_ready().await;
            c.fire().await;
            c.wait_phase(Phase::FailedOver).await;
            c.wait_denied(p, false, 0).await;
            assert!(c.run_backups().await.is_empty(), "no cover backup");
            assert_eq!(c.journal().await.unwrap().cover_backup, None);
        }
        Feature::TestBackup => {
            c.wait_ready().await;
            c.fire().await;
            c.wait_phase(Phase::FailedOver).await;
            until("the cover backup is recorded", || async move {
                c.journal().await.and_then(|j| j.cover_backup)
            })
            .await;
            let (code, answer) = c.notify("webhook-resolved.json").await;
            assert_eq!(code, 200, "{answer}");
            let j = c.wait_phase(Phase::Verifying).await;
            c.wait_denied(p, false, 0).await;
            let test = j.test_backup.unwrap();
            assert!(c.backup(&test).await.is_none(), "no test backup started");
            assert_eq!(
                c.journal().await.unwrap().phase,
                Phase::Verifying,
                "the revert is never verified"
            );
        }
    }
}

/// The message of a case that panicked.
fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".into()),
        Err(e) => e.to_string(),
    }
}

on_both_backends!(
    removing_any_permission_breaks_its_feature,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn removing_any_permission_breaks_its_feature(backend: Backend) {
    let objects = kustomize(&deploy_dir(""));
    let permissions = granted(&objects);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CASES));
    let mut cases = Vec::new();
    for p in permissions {
        let feature = feature_of(&p).unwrap_or_else(|| panic!("{p} has no feature in NEEDS"));
        let edited = without(&objects, &p);
        let slots = slots.clone();
        let name = format!("without {p} ({feature:?})");
        cases.push((
            name,
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                let c = Case::start(backend, &edited).await;
                broken(&c, feature, &p).await;
                c.stop().await;
            }),
        ));
    }
    let total = cases.len();
    let mut failures = Vec::new();
    for (name, case) in cases {
        if let Err(e) = case.await {
            failures.push(format!("{name}: {}", panic_message(e)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} permissions not shown to be needed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
