//! The responder end to end in the sandbox: Alertmanager payloads over real HTTP, intents on
//! the cluster, failover and revert with both strategies and the buffer, refusals, dry-run,
//! duplicates and reordering, a concurrent human edit, restarts between steps, and two
//! replicas.

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::{ManualClock, SystemClock};
use backstop::config::{Config, HumanDuration, Strategy};
use backstop::responder::Engine;
use backstop::responder::cluster::{ClusterKey, cluster_api, read_journal};
use backstop::responder::journal::{Journal, Phase, TargetKind};
use backstop::responder::{ResponderMetrics, intent};
use backstop_sandbox::kube::faults::{ApiFault, FaultRule};
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, World, WorldOptions};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::common;

use common::sandbox::{self, DEADLINE, Running, sample};
use common::{Backend, on_both_backends};

const TOKEN: &str = "t";

pub(crate) fn options(backend: Backend) -> WorldOptions {
    WorldOptions {
        clock: Arc::new(ManualClock::new(
            "2026-11-24T12:00:30Z".parse::<jiff::Timestamp>().unwrap(),
        )),
        operator_interval: None,
        history: 1,
        retention: 10,
        ..common::world_on(backend)
    }
}

/// Short intervals so the playbooks run in test time; no cool-down.
pub(crate) fn fast(config: &mut Config) {
    config.probe.interval = HumanDuration(Duration::from_millis(200));
    config.probe.timeout = HumanDuration(Duration::from_millis(500));
    config.responder.rate_limits.per_cluster_cooldown = HumanDuration(Duration::ZERO);
    config.responder.revert.hold_down_probes = 2;
    config.responder.revert.test_backup_timeout = HumanDuration(Duration::from_secs(60));
}

pub(crate) async fn start(backend: Backend, tune: impl FnOnce(&mut Config)) -> Running {
    sandbox::start(options(backend), Arc::new(SystemClock), |c| {
        fast(c);
        tune(c);
    })
    .await
}

use common::fixtures::{alertmanager as fixture, firing, resolved};

async fn post(base: &str, auth: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/alertmanager"))
        .header("content-type", content_type)
        .body(body);
    if let Some(a) = auth {
        request = request.header("authorization", a);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

pub(crate) async fn notify(base: &str, body: &Value) -> Value {
    let (status, answer) = post(
        base,
        Some(&format!("Bearer {TOKEN}")),
        "application/json",
        serde_json::to_vec(body).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

pub(crate) async fn cluster(r: &Running) -> kube::api::DynamicObject {
    cluster_api(&r.world.client, world::NAMESPACE)
        .get(world::CLUSTER)
        .await
        .unwrap()
}

pub(crate) fn backup_spec(object: &kube::api::DynamicObject) -> Value {
    object.data["spec"]["backup"].clone()
}

pub(crate) async fn journal(r: &Running) -> Option<Journal> {
    read_journal(&cluster(r).await).unwrap()
}

/// Steps the simulated operator and polls the journal until `phase`, failing after the
/// deadline.
async fn wait_phase(r: &Running, phase: Phase) -> Journal {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        r.world.operator.step().await.unwrap();
        if let Some(j) = journal(r).await
            && j.phase == phase
        {
            return j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached {phase:?}; journal {:?}",
            journal(r).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn events(r: &Running, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// Every Event in the sandbox's namespace as (reason, message), for failure messages.
pub(crate) async fn all_events(r: &Running) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

pub(crate) async fn wait_event(r: &Running, reason: &str) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = events(r, reason).await;
        if !found.is_empty() {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {reason} Event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn break_region(r: &Running, region: &str) {
    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::ServiceUnavailable).in_region(region))
        .await
        .unwrap();
}

async fn backup_state(r: &Running, name: &str) -> Option<String> {
    let api: Api<backstop::pxc::PerconaXtraDBClusterBackup> =
        Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    api.get_opt(name)
        .await
        .unwrap()
        .and_then(|b| b.status)
        .and_then(|s| s.state)
}

/// Fails over on the real firing payload, lands the cover backup on the secondary, reverts on
/// the resolved payload after the hold-down, proves it with a test backup, and restores
/// `spec.backup` exactly.
async fn failover_and_revert(backend: Backend, strategy: Strategy) {
    let r = start(backend, |c| c.clusters[0].failover.strategy = strategy).await;
    let original = backup_spec(&cluster(&r).await);
    break_region(&r, s3::PRIMARY_REGION).await;
    let answer = notify(&r.base, &fixture("webhook-firing.json")).await;
    assert_eq!(answer["clusters"], json!(["percona/cluster1"]), "{answer}");

    let j = wait_phase(&r, Phase::FailedOver).await;
    assert_eq!(j.target_kind, TargetKind::Secondary);
    assert_eq!(j.protected, vec![world::PRIMARY_STORAGE]);
    let spec = backup_spec(&cluster(&r).await);
    match strategy {
        Strategy::Repoint => {
            assert_eq!(spec["schedule"][0]["storageName"], "backstop-secondary");
            assert_eq!(spec["pitr"]["storageName"], "backstop-secondary");
            assert_eq!(
                spec["storages"]["backstop-secondary"]["s3"]["bucket"],
                format!("{}/{}", world::SECONDARY_BUCKET, world::CLUSTER)
            );
            assert_eq!(
                spec["storages"][world::PRIMARY_STORAGE],
                original["storages"][world::PRIMARY_STORAGE]
            );
        }
        Strategy::InPlace => {
            let s = &spec["storages"][world::PRIMARY_STORAGE]["s3"];
            assert_eq!(
                s["bucket"],
                format!("{}/{}", world::SECONDARY_BUCKET, world::CLUSTER)
            );
            assert_eq!(s["region"], s3::SECONDARY_REGION);
            assert_eq!(spec["schedule"][0]["storageName"], world::PRIMARY_STORAGE);
        }
    }
    // The cover backup lands in the secondary bucket.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let cover = loop {
        r.world.operator.step().await.unwrap();
        if let Some(name) = journal(&r).await.and_then(|j| j.cover_backup)
            && backup_state(&r, &name).await.as_deref() == Some("Succeeded")
        {
            break name;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cover backup never succeeded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(cover.starts_with("backstop-cover-cluster1-"));
    let failed_over = wait_event(&r, "FailedOver").await;
    assert_eq!(failed_over.len(), 1);
    // The journal records the configured strategy, and the Event names the secondary by its
    // bucket and region: in place, the storage entry keeps the primary's name, and saying only
    // that name would point the reader at the failed bucket.
    assert_eq!(j.strategy, strategy.as_str());
    let note = failed_over[0].message.clone().unwrap_or_default();
    let secondary = format!(
        "the secondary bucket {}/{} in {}",
        world::SECONDARY_BUCKET,
        world::CLUSTER,
        s3::SECONDARY_REGION
    );
    let expected = match strategy {
        Strategy::Repoint => format!(
            "backups of {} now go to {secondary} (storage \"backstop-secondary\") (strategy repoint)",
            world::PRIMARY_STORAGE
        ),
        Strategy::InPlace => format!(
            "backups of {0} now go to {secondary} (storage \"{0}\" rewritten in place) \
             (strategy in-place)",
            world::PRIMARY_STORAGE
        ),
    };
    assert!(note.starts_with(&expected), "{note}\nwanted: {expected}");
    r.wait_for(
        "backstop_failover_active{namespace=\"percona\",cluster=\"cluster1\",target_kind=\"secondary\"} 1",
    )
    .await;

    // Resolved while the primary still fails: stays failed over and says why.
    notify(&r.base, &fixture("webhook-resolved.json")).await;
    wait_event(&r, "RevertWaiting").await;
    assert_eq!(journal(&r).await.unwrap().phase, Phase::FailedOver);

    r.world.s3.faults().clear_all().await.unwrap();
    let j = wait_phase(&r, Phase::Reverted).await;
    let test = j.test_backup.clone().unwrap();
    assert_eq!(backup_state(&r, &test).await.as_deref(), Some("Succeeded"));
    assert_eq!(
        backup_spec(&cluster(&r).await),
        original,
        "the revert restores spec.backup field for field"
    );
    assert_eq!(wait_event(&r, "RevertVerified").await.len(), 1);
    let text = r
        .wait_for(
            "backstop_failover_active{namespace=\"percona\",cluster=\"cluster1\",target_kind=\"secondary\"} 0",
        )
        .await;
    assert_eq!(
        sample(
            &text,
            "backstop_playbook_runs_total",
            &["playbook=\"failover\"", "result=\"succeeded\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "backstop_playbook_runs_total",
            &["playbook=\"revert\"", "result=\"succeeded\""]
        ),
        Some(1.0)
    );
    r.stop().await;
}

on_both_backends!(repoint_failover_and_exact_revert);
async fn repoint_failover_and_exact_revert(backend: Backend) {
    failover_and_revert(backend, Strategy::Repoint).await;
}

on_both_backends!(in_place_failover_and_exact_revert);
async fn in_place_failover_and_exact_revert(backend: Backend) {
    failover_and_revert(backend, Strategy::InPlace).await;
}

on_both_backends!(an_unhealthy_secondary_falls_back_to_the_buffer);
async fn an_unhealthy_secondary_falls_back_to_the_buffer(backend: Backend) {
    let r = start(backend, |_| {}).await;
    let original = backup_spec(&cluster(&r).await);
    break_region(&r, s3::PRIMARY_REGION).await;
    break_region(&r, s3::SECONDARY_REGION).await;
    notify(&r.base, &firing("f-buffer", "2026-11-24T03:10:30Z")).await;
    let j = wait_phase(&r, Phase::FailedOver).await;
    assert_eq!(j.target_kind, TargetKind::Buffer);
    assert_eq!(
        j.strategy, "repoint",
        "the configured strategy, not the target"
    );
    assert!(j.message.unwrap().contains("secondary unhealthy"));
    let note = wait_event(&r, "FailedOver").await[0]
        .message
        .clone()
        .unwrap_or_default();
    assert!(
        note.starts_with(
            "backups of s3-us-west now go to the PVC buffer (storage \"backstop-buffer\") \
             (strategy repoint)"
        ),
        "{note}"
    );
    let spec = backup_spec(&cluster(&r).await);
    let buffer = &spec["storages"]["backstop-buffer"];
    assert_eq!(buffer["type"], "filesystem");
    let claim = &buffer["volume"]["persistentVolumeClaim"];
    assert_eq!(claim["resources"]["requests"]["storage"], "10Gi");
    assert_eq!(claim["storageClassName"], "standard");
    assert!(claim.get("claimName").is_none());
    assert_eq!(spec["schedule"][0]["storageName"], "backstop-buffer");
    // PITR cannot use a filesystem storage: disabled, to be restored by the revert.
    assert_eq!(spec["pitr"]["enabled"], false);
    wait_event(&r, "FailoverToBuffer").await;
    r.wait_for(
        "backstop_failover_active{namespace=\"percona\",cluster=\"cluster1\",target_kind=\"buffer\"} 1",
    )
    .await;

    r.world.s3.faults().clear_all().await.unwrap();
    notify(&r.base, &resolved("f-buffer", "2026-11-24T03:10:30Z")).await;
    wait_phase(&r, Phase::Reverted).await;
    assert_eq!(backup_spec(&cluster(&r).await), original);
    r.stop().await;
}

on_both_backends!(nothing_viable_changes_nothing_and_says_so);
async fn nothing_viable_changes_nothing_and_says_so(backend: Backend) {
    let r = start(backend, |c| c.clusters[0].failover.buffer = None).await;
    let before = cluster(&r).await;
    break_region(&r, s3::PRIMARY_REGION).await;
    break_region(&r, s3::SECONDARY_REGION).await;
    notify(&r.base, &firing("f-none", "2026-11-24T03:10:30Z")).await;
    let refused = wait_event(&r, "FailoverRefused").await;
    assert!(
        refused[0]
            .message
            .as_deref()
            .unwrap()
            .contains("no viable failover target"),
        "{refused:?}"
    );
    r.wait_until("no_viable_target counted", |t| {
        sample(
            t,
            "backstop_playbook_runs_total",
            &["result=\"no_viable_target\""],
        )
        .is_some()
    })
    .await;
    let after = cluster(&r).await;
    assert_eq!(backup_spec(&after), backup_spec(&before));
    assert!(read_journal(&after).unwrap().is_none());
    r.stop().await;
}

on_both_backends!(the_webhook_records_intents_by_the_engines_clock);
/// The webhook records intents by the same clock as the engine (here a test clock a day
/// ahead of the machine's), so intent times, pruning and the journal agree.
async fn the_webhook_records_intents_by_the_engines_clock(backend: Backend) {
    let engine_now = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let r = sandbox::start(
        options(backend),
        Arc::new(ManualClock::new(engine_now)),
        fast,
    )
    .await;
    notify(&r.base, &firing("f-clock", "2026-11-24T04:00:00Z")).await;
    let object = cluster(&r).await;
    let recorded = intent::Intent::parse(
        &object.metadata.annotations.as_ref().unwrap()[intent::INTENT_ANNOTATION],
    )
    .unwrap();
    let episode = recorded
        .episodes
        .values()
        .next()
        .expect("the firing episode is recorded");
    assert_eq!(episode.updated_at, engine_now);
    r.stop().await;
}

on_both_backends!(duplicates_repeats_and_reordering_fail_over_once_and_revert_once);
async fn duplicates_repeats_and_reordering_fail_over_once_and_revert_once(backend: Backend) {
    let r = start(backend, |c| c.responder.failover.on_demand_backup = false).await;
    let original = backup_spec(&cluster(&r).await);
    let t0 = "2026-11-24T03:10:30Z";
    // A resolved that overtook its firing: the late firing changes nothing.
    notify(&r.base, &resolved("f-old", t0)).await;
    notify(&r.base, &firing("f-old", t0)).await;
    let object = cluster(&r).await;
    let recorded = intent::Intent::parse(
        &object.metadata.annotations.as_ref().unwrap()[intent::INTENT_ANNOTATION],
    )
    .unwrap();
    assert!(!recorded.wants_failover());

    break_region(&r, s3::PRIMARY_REGION).await;
    let t1 = "2026-11-24T04:00:00Z";
    // Duplicates (two replicas of Alertmanager) and repeats (repeat_interval).
    for _ in 0..3 {
        notify(&r.base, &firing("f-new", t1)).await;
    }
    let j = wait_phase(&r, Phase::FailedOver).await;
    for _ in 0..3 {
        notify(&r.base, &firing("f-new", t1)).await;
    }
    r.world.s3.faults().clear_all().await.unwrap();
    notify(&r.base, &resolved("f-new", t1)).await;
    notify(&r.base, &firing("f-new", t1)).await; // a repeat delivered late
    notify(&r.base, &resolved("f-new", t1)).await;
    let done = wait_phase(&r, Phase::Reverted).await;
    assert_eq!(done.run_id, j.run_id, "one run from failover to revert");
    assert_eq!(wait_event(&r, "FailedOver").await.len(), 1);
    assert_eq!(wait_event(&r, "Reverted").await.len(), 1);
    assert_eq!(backup_spec(&cluster(&r).await), original);
    r.stop().await;
}

on_both_backends!(
    a_burst_of_a_thousand_duplicates_fails_over_once,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn a_burst_of_a_thousand_duplicates_fails_over_once(backend: Backend) {
    let r = start(backend, |c| c.responder.failover.on_demand_backup = false).await;
    break_region(&r, s3::PRIMARY_REGION).await;
    let body = serde_json::to_vec(&firing("f-burst", "2026-11-24T04:00:00Z")).unwrap();
    // 1,000 copies at once from 32 senders: Alertmanager replicas and retries piling up.
    let mut senders = Vec::new();
    for _ in 0..32 {
        let (base, body) = (r.base.clone(), body.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut statuses = Vec::new();
            for _ in 0..1000 / 32 + 1 {
                let response = client
                    .post(format!("{base}/alertmanager"))
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for sender in senders {
        statuses.extend(sender.await.unwrap());
    }
    assert!(statuses.len() >= 1000);
    // Every copy is acknowledged: none needs Alertmanager to retry.
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let j = wait_phase(&r, Phase::FailedOver).await;
    let text = r
        .wait_until("the failover counted", |t| {
            sample(
                t,
                "backstop_playbook_runs_total",
                &["playbook=\"failover\"", "result=\"succeeded\""],
            )
            .is_some()
        })
        .await;
    assert_eq!(
        sample(
            &text,
            "backstop_playbook_runs_total",
            &["playbook=\"failover\"", "result=\"succeeded\""],
        ),
        Some(1.0)
    );
    // One episode recorded once, and the journal still belongs to the first run.
    let object = cluster(&r).await;
    let recorded = intent::Intent::parse(
        &object.metadata.annotations.as_ref().unwrap()[intent::INTENT_ANNOTATION],
    )
    .unwrap();
    assert!(recorded.wants_failover());
    assert_eq!(recorded.episodes.len(), 1, "{recorded:?}");
    assert_eq!(journal(&r).await.unwrap().run_id, j.run_id);
    r.stop().await;
}

on_both_backends!(a_concurrent_human_edit_is_kept);
async fn a_concurrent_human_edit_is_kept(backend: Backend) {
    let r = start(backend, |c| {
        c.responder.failover.on_demand_backup = false;
        c.probe.timeout = HumanDuration(Duration::from_secs(10));
        // One routine probe cycle per target, at start: the only HeadBucket on the secondary
        // after it is the failover's verification, which the test waits for.
        c.probe.interval = HumanDuration(Duration::from_secs(3600));
    })
    .await;
    r.wait_until("the first probe cycles are done", |t| {
        t.lines()
            .filter(|l| {
                l.starts_with("backstop_s3_probe_success{")
                    && l.contains("operation=\"delete_object\"")
            })
            .count()
            == 2
    })
    .await;
    break_region(&r, s3::PRIMARY_REGION).await;
    // Slow the secondary's canary write so a human edit lands between the engine's read and
    // its write: the write then gets a real 409 and the engine re-reads and re-plans.
    r.world
        .s3
        .faults()
        .set(
            Rule::new(Fault::Latency(Duration::from_millis(1500)))
                .in_region(s3::SECONDARY_REGION)
                .on_operation("PutObject"),
        )
        .await
        .unwrap();
    let heads = || {
        r.world
            .s3
            .requests()
            .count(s3::SECONDARY_REGION, world::SECONDARY_BUCKET, "HeadBucket")
    };
    let before_heads = heads();
    notify(&r.base, &firing("f-edit", "2026-11-24T03:10:30Z")).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while heads() == before_heads {
        assert!(
            tokio::time::Instant::now() < deadline,
            "verification never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let api = cluster_api(&r.world.client, world::NAMESPACE);
    api.patch(
        world::CLUSTER,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"edited-by": "human"}},
            "spec": {"backup": {"allowParallel": false}}})),
    )
    .await
    .unwrap();
    wait_phase(&r, Phase::FailedOver).await;
    let object = cluster(&r).await;
    assert_eq!(
        object.metadata.labels.as_ref().unwrap()["edited-by"],
        "human"
    );
    assert_eq!(backup_spec(&object)["allowParallel"], false);
    assert_eq!(
        backup_spec(&object)["schedule"][0]["storageName"],
        "backstop-secondary"
    );
    // Two writes: the first, planned before the edit, was refused with 409; the second was
    // re-planned on the edited object. (The simulator's request log shows it; the outcome
    // above is what both servers show.)
    if let Some(sim) = r.world.kube.simulator() {
        let puts = sim
            .requests()
            .iter()
            .filter(|q| q.method == "PUT" && q.path.ends_with("/perconaxtradbclusters/cluster1"))
            .count();
        assert_eq!(puts, 2);
    }
    r.stop().await;
}

on_both_backends!(dry_run_writes_nothing_but_says_what_it_would_do);
async fn dry_run_writes_nothing_but_says_what_it_would_do(backend: Backend) {
    let r = start(backend, |c| c.responder.dry_run = true).await;
    let before = cluster(&r).await;
    break_region(&r, s3::PRIMARY_REGION).await;
    notify(&r.base, &firing("f-dry", "2026-11-24T03:10:30Z")).await;
    let said = wait_event(&r, "FailedOver").await;
    assert!(
        said[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("[dry-run] would fail over")
    );
    wait_event(&r, "CoverBackup").await;
    let after = cluster(&r).await;
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the cluster was not written"
    );
    let api: Api<backstop::pxc::PerconaXtraDBClusterBackup> =
        Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|b| !b
                .metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with("backstop-")),
        "no backup was created"
    );
    r.wait_until("dry_run counted", |t| {
        sample(t, "backstop_playbook_runs_total", &["result=\"dry_run\""]) == Some(1.0)
    })
    .await;
    r.stop().await;
}

on_both_backends!(bad_requests_are_refused_and_change_nothing);
async fn bad_requests_are_refused_and_change_nothing(backend: Backend) {
    let r = start(backend, |_| {}).await;
    let before = cluster(&r).await;
    let body = serde_json::to_vec(&fixture("webhook-firing.json")).unwrap();
    let bearer = format!("Bearer {TOKEN}");
    let (code, _) = post(&r.base, None, "application/json", body.clone()).await;
    assert_eq!(code, 401);
    let (code, _) = post(
        &r.base,
        Some("Bearer wrong"),
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(code, 401);
    let (code, answer) = post(&r.base, Some(&bearer), "text/plain", body.clone()).await;
    assert_eq!(code, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("content type"),
        "{answer}"
    );
    let (code, answer) = post(
        &r.base,
        Some(&bearer),
        "application/json",
        b"{\"version\":\"4\"".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("malformed"),
        "{answer}"
    );
    let mut v5 = fixture("webhook-firing.json");
    v5["version"] = json!("5");
    let (code, answer) = post(
        &r.base,
        Some(&bearer),
        "application/json",
        serde_json::to_vec(&v5).unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("\"5\""),
        "{answer}"
    );
    let mut unrouted = fixture("webhook-firing.json");
    unrouted["alerts"][0]["labels"]["alertname"] = json!("SomethingElse");
    let answer = notify(&r.base, &unrouted).await;
    assert_eq!(answer["unrouted"], 1);
    let text = r
        .wait_until("webhook metrics", |t| {
            sample(t, "backstop_webhook_requests_total", &["code=\"401\""]) == Some(2.0)
                && sample(t, "backstop_webhook_requests_total", &["code=\"400\""]) == Some(3.0)
        })
        .await;
    assert_eq!(
        sample(
            &text,
            "backstop_webhook_alerts_total",
            &["status=\"firing\"", "routed=\"false\""]
        ),
        Some(1.0)
    );
    let after = cluster(&r).await;
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    r.stop().await;
}

/// The sample cluster.
pub(crate) fn sample_key() -> ClusterKey {
    ClusterKey {
        namespace: world::NAMESPACE.into(),
        name: world::CLUSTER.into(),
    }
}

/// Records one alert episode on the sample cluster, firing or resolved, as the webhook
/// would, for tests that drive an engine by hand.
pub(crate) async fn write_intent(r: &Running, firing: bool) {
    let mut i = intent::Intent::default();
    let at = "2026-11-24T03:10:30Z".parse().unwrap();
    i.observe(
        "f",
        "S3BackupTargetUnavailable",
        at,
        backstop::responder::alertmanager::AlertStatus::Firing,
        at,
    );
    if !firing {
        i.resolve_all(at);
    }
    cluster_api(&r.world.client, world::NAMESPACE)
        .patch(
            world::CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {intent::INTENT_ANNOTATION: i.render()}}}),
            ),
        )
        .await
        .unwrap();
}

/// The configuration of an engine driven by hand: short intervals, one good probe of the
/// primary before switching back.
pub(crate) fn hand_driven_config(r: &Running) -> Config {
    let mut config = r
        .world
        .backstop_config("127.0.0.1:0", &r.world.dir().join("token"))
        .unwrap();
    fast(&mut config);
    config.responder.revert.hold_down_probes = 1;
    config
}

/// Reconciles the sample cluster with `engine` one step at a time, stepping the simulated
/// operator between steps, until `done` holds for the journal.
pub(crate) async fn step_until(
    engine: &Engine,
    r: &Running,
    what: &'static str,
    done: fn(&Journal) -> bool,
) -> Journal {
    let key = sample_key();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never {what}");
        engine.reconcile(&key).await.unwrap();
        if let Some(j) = journal(r).await
            && done(&j)
        {
            return j;
        }
        r.world.operator.step().await.unwrap();
    }
}

/// Failed over to the secondary, which then fails too: after
/// `buffer_after_secondary_failures` checks a probe interval apart, backups move to the
/// buffer in the same run, a cover backup lands there, and the revert restores the original
/// `spec.backup` exactly.
async fn a_failing_secondary_moves_to_the_buffer(backend: Backend, strategy: Strategy) {
    let r = start(backend, |c| {
        c.responder.enabled = false;
        c.clusters[0].failover.strategy = strategy;
    })
    .await;
    let mut config = hand_driven_config(&r);
    config.clusters[0].failover.strategy = strategy;
    let needed = config.responder.failover.buffer_after_secondary_failures;
    assert_eq!(needed, 3, "the default");
    let interval = jiff::SignedDuration::try_from(config.probe.interval.get()).unwrap();
    let policy = config.clusters[0].failover.clone();
    let clock = Arc::new(ManualClock::new(jiff::Timestamp::now()));
    let engine = Engine::new(
        r.world.client.clone(),
        Arc::new(config),
        ResponderMetrics::register(&mut Registry::default()),
        clock.clone(),
    );
    let key = sample_key();
    let original = backup_spec(&cluster(&r).await);
    break_region(&r, s3::PRIMARY_REGION).await;
    write_intent(&r, true).await;
    let on_secondary = step_until(&engine, &r, "failed over with a cover backup", |j| {
        j.phase == Phase::FailedOver && j.cover_backup.is_some()
    })
    .await;
    assert_eq!(on_secondary.target_kind, TargetKind::Secondary);
    let healthy = engine.reconcile(&key).await.unwrap();
    assert_eq!(healthy.note, "secondary healthy");
    assert!(healthy.requeue.is_some(), "the secondary stays watched");

    break_region(&r, s3::SECONDARY_REGION).await;
    let fail_checks = async |checks: u32| {
        for failed in 1..=checks {
            clock.advance(interval);
            let outcome = engine.reconcile(&key).await.unwrap();
            assert!(
                outcome
                    .note
                    .starts_with(&format!("secondary unhealthy ({failed} of {needed})")),
                "{outcome:?}"
            );
            // Reconciles sooner than a probe interval neither check nor count.
            let early = engine.reconcile(&key).await.unwrap();
            assert!(early.note.contains("not due"), "{early:?}");
            assert_eq!(journal(&r).await.unwrap(), on_secondary);
        }
    };
    fail_checks(needed - 1).await;
    // The alert resolves (the primary still fails, so the revert waits), then fires again:
    // the checks before do not count towards a move.
    write_intent(&r, false).await;
    engine.reconcile(&key).await.unwrap();
    write_intent(&r, true).await;
    fail_checks(needed - 1).await;
    assert!(!events(&r, "SecondaryUnhealthy").await.is_empty());
    clock.advance(interval);
    engine.reconcile(&key).await.unwrap();

    let moved = journal(&r).await.unwrap();
    assert_eq!(moved.target_kind, TargetKind::Buffer, "{moved:?}");
    assert_eq!(moved.phase, Phase::FailedOver);
    assert_eq!(moved.run_id, on_secondary.run_id, "the same run");
    assert_eq!(moved.failed_over_at, on_secondary.failed_over_at);
    assert!(moved.moved_to_buffer_at.is_some());
    assert_eq!(
        moved.version,
        backstop::responder::journal::MOVED_JOURNAL_VERSION
    );
    assert_eq!(moved.cover_backup, None);
    // Exactly what a failover straight to the buffer would have written.
    let direct = backstop::responder::plan::plan_failover(
        &original,
        &policy,
        backstop::responder::plan::Destination::Buffer,
    )
    .unwrap();
    assert_eq!(moved.changes, direct.changes);
    let mut expected = original.clone();
    backstop::responder::plan::apply(&mut expected, &direct.changes);
    assert_eq!(backup_spec(&cluster(&r).await), expected, "{strategy:?}");
    assert_eq!(moved.strategy, strategy.as_str(), "the configured strategy");
    let moved_events = wait_event(&r, "MovedToBuffer").await;
    assert_eq!(moved_events.len(), 1);
    // The notes name the secondary by its bucket, never by the primary's storage name alone
    // (in place, the entry that held the secondary is the primary's).
    let secondary = format!(
        "the secondary bucket {}/{} in {}",
        world::SECONDARY_BUCKET,
        world::CLUSTER,
        s3::SECONDARY_REGION
    );
    let note = moved_events[0].message.clone().unwrap_or_default();
    assert!(
        note.starts_with(&format!(
            "backups of s3-us-west moved to the PVC buffer (storage \"backstop-buffer\"): {secondary}"
        )),
        "{strategy:?}: {note}"
    );
    let unhealthy = events(&r, "SecondaryUnhealthy").await;
    let note = unhealthy[0].message.clone().unwrap_or_default();
    assert!(note.starts_with(&secondary), "{strategy:?}: {note}");

    let covered = step_until(&engine, &r, "covered on the buffer", |j| {
        j.cover_backup.is_some()
    })
    .await;
    let cover = covered.cover_backup.unwrap();
    assert!(
        cover.starts_with("backstop-cover-buffer-cluster1-"),
        "{cover}"
    );
    let backups: Api<backstop::pxc::PerconaXtraDBClusterBackup> =
        Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    assert_eq!(
        backups.get(&cover).await.unwrap().spec.storage_name,
        Some(direct.target_storage)
    );
    // On the buffer the secondary is watched for its recovery (it still fails).
    clock.advance(interval);
    assert_eq!(
        engine.reconcile(&key).await.unwrap().note,
        "on the buffer; no better target has recovered for long enough"
    );

    r.world.s3.faults().clear_all().await.unwrap();
    write_intent(&r, false).await;
    let reverted = step_until(&engine, &r, "reverted", |j| j.phase != Phase::FailedOver).await;
    assert_eq!(reverted.run_id, on_secondary.run_id);
    assert_eq!(
        backup_spec(&cluster(&r).await),
        original,
        "{strategy:?}: the revert restores spec.backup field for field"
    );
    r.stop().await;
}

on_both_backends!(a_failing_secondary_moves_to_the_buffer_repoint);
async fn a_failing_secondary_moves_to_the_buffer_repoint(backend: Backend) {
    a_failing_secondary_moves_to_the_buffer(backend, Strategy::Repoint).await;
}

on_both_backends!(a_failing_secondary_moves_to_the_buffer_in_place);
async fn a_failing_secondary_moves_to_the_buffer_in_place(backend: Backend) {
    a_failing_secondary_moves_to_the_buffer(backend, Strategy::InPlace).await;
}

on_both_backends!(a_failing_secondary_without_a_buffer_stays_and_says_so);
/// No other target to move to: the cluster stays on its failing secondary, and an Event
/// says so.
async fn a_failing_secondary_without_a_buffer_stays_and_says_so(backend: Backend) {
    let r = start(backend, |c| c.responder.enabled = false).await;
    let mut config = hand_driven_config(&r);
    config.clusters[0].failover.buffer = None;
    config.responder.failover.buffer_after_secondary_failures = 1;
    let interval = jiff::SignedDuration::try_from(config.probe.interval.get()).unwrap();
    let clock = Arc::new(ManualClock::new(jiff::Timestamp::now()));
    let engine = Engine::new(
        r.world.client.clone(),
        Arc::new(config),
        ResponderMetrics::register(&mut Registry::default()),
        clock.clone(),
    );
    break_region(&r, s3::PRIMARY_REGION).await;
    write_intent(&r, true).await;
    let on_secondary = step_until(&engine, &r, "failed over with a cover backup", |j| {
        j.phase == Phase::FailedOver && j.cover_backup.is_some()
    })
    .await;
    let spec = backup_spec(&cluster(&r).await);
    break_region(&r, s3::SECONDARY_REGION).await;
    for _ in 0..2 {
        clock.advance(interval);
        let outcome = engine.reconcile(&sample_key()).await.unwrap();
        assert!(
            outcome.note == "cannot move: no other target in the policy",
            "{outcome:?}"
        );
    }
    assert_eq!(journal(&r).await.unwrap(), on_secondary);
    assert_eq!(backup_spec(&cluster(&r).await), spec);
    let refused = events(&r, "MoveRefused").await;
    assert_eq!(
        refused.len(),
        1,
        "said once, not on every check: {refused:#?}"
    );
    assert!(
        refused[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("no other target")),
        "{refused:?}"
    );
    r.stop().await;
}

on_both_backends!(restarts_between_and_within_steps_never_fail_over_twice);
/// A fresh engine (a restarted process) for every step, and steps aborted part-way at
/// increasing points: the cluster still fails over exactly once and reverts exactly.
async fn restarts_between_and_within_steps_never_fail_over_twice(backend: Backend) {
    let r = start(backend, |c| {
        c.responder.enabled = false;
        c.responder.revert.hold_down_probes = 1;
    })
    .await;
    let config = Arc::new(hand_driven_config(&r));
    let key = sample_key();
    let original = backup_spec(&cluster(&r).await);
    break_region(&r, s3::PRIMARY_REGION).await;
    write_intent(&r, true).await;

    let mut runs = std::collections::BTreeSet::new();
    let mut abort_after_ms = 0u64;
    let deadline = tokio::time::Instant::now() + DEADLINE * 2;
    let mut reverted = false;
    while !reverted {
        assert!(tokio::time::Instant::now() < deadline, "never converged");
        // A new process: nothing remembered in memory.
        let engine = Engine::new(
            r.world.client.clone(),
            config.clone(),
            ResponderMetrics::register(&mut Registry::default()),
            Arc::new(SystemClock),
        );
        abort_after_ms = (abort_after_ms + 7) % 120;
        // Every other step is killed part-way through.
        let budget = if abort_after_ms.is_multiple_of(2) {
            Duration::from_secs(30)
        } else {
            Duration::from_millis(abort_after_ms)
        };
        let _ = tokio::time::timeout(budget, engine.reconcile(&key)).await;
        r.world.operator.step().await.unwrap();
        if let Some(j) = journal(&r).await {
            runs.insert(j.run_id.clone());
            if j.phase == Phase::FailedOver && j.cover_backup.is_some() {
                r.world.s3.faults().clear_all().await.unwrap();
                write_intent(&r, false).await;
            }
            reverted = j.phase == Phase::Reverted;
        }
    }
    assert_eq!(runs.len(), 1, "exactly one failover run: {runs:?}");
    assert_eq!(backup_spec(&cluster(&r).await), original);
    let covers = {
        let backups: Api<backstop::pxc::PerconaXtraDBClusterBackup> =
            Api::namespaced(r.world.client.clone(), world::NAMESPACE);
        backups
            .list(&ListParams::default().labels("backstop.percona.com/purpose=cover"))
            .await
            .unwrap()
            .items
            .len()
    };
    assert_eq!(covers, 1, "one cover backup");
    r.stop().await;
}

on_both_backends!(a_long_outage_before_the_test_backup_does_not_fail_the_verification);
/// Backstop down between restoring the primary and starting the test backup, for longer
/// than `test_backup_timeout`: the timeout counts from the backup's start, so the revert is
/// still verified by the backup instead of failing at once.
async fn a_long_outage_before_the_test_backup_does_not_fail_the_verification(backend: Backend) {
    let r = start(backend, |c| {
        c.responder.enabled = false;
        c.responder.revert.hold_down_probes = 1;
    })
    .await;
    let config = hand_driven_config(&r);
    let timeout = config.responder.revert.test_backup_timeout.get();
    let clock = Arc::new(ManualClock::new(jiff::Timestamp::now()));
    let engine = Engine::new(
        r.world.client.clone(),
        Arc::new(config),
        ResponderMetrics::register(&mut Registry::default()),
        clock.clone(),
    );
    let key = sample_key();
    break_region(&r, s3::PRIMARY_REGION).await;
    write_intent(&r, true).await;
    let step_until = |what, done| step_until(&engine, &r, what, done);
    step_until("failed over with a cover backup", |j| {
        j.phase == Phase::FailedOver && j.cover_backup.is_some()
    })
    .await;
    r.world.s3.faults().clear_all().await.unwrap();
    write_intent(&r, false).await;
    let restored = step_until("restored", |j| j.phase == Phase::Verifying).await;
    let test_backup = restored
        .test_backup
        .clone()
        .expect("a test backup is named");
    let backups: Api<backstop::pxc::PerconaXtraDBClusterBackup> =
        Api::namespaced(r.world.client.clone(), world::NAMESPACE);
    assert!(
        backups.get_opt(&test_backup).await.unwrap().is_none(),
        "the test backup must not exist yet for this scenario"
    );

    // The outage: longer than the whole timeout.
    clock.advance(jiff::SignedDuration::try_from(timeout * 2).unwrap());
    engine.reconcile(&key).await.unwrap();
    let j = journal(&r).await.unwrap();
    assert_eq!(j.phase, Phase::Verifying, "{:?}", j.message);
    let verified = step_until("verified", |j| j.phase != Phase::Verifying).await;
    assert_eq!(verified.phase, Phase::Reverted, "{:?}", verified.message);
    r.stop().await;
}

on_both_backends!(two_replicas_one_acts);
async fn two_replicas_one_acts(backend: Backend) {
    let r = start(backend, |c| {
        c.kubernetes.leader_election.enabled = true;
        c.kubernetes.leader_election.lease_namespace = Some(world::NAMESPACE.into());
        c.kubernetes.leader_election.lease_duration = HumanDuration(Duration::from_secs(3));
        c.kubernetes.leader_election.renew_interval = HumanDuration(Duration::from_millis(200));
        c.responder.failover.on_demand_backup = false;
    })
    .await;
    // The second replica: same configuration, same cluster, its own identity.
    let token = r.world.dir().join("token");
    let mut config = r.world.backstop_config("127.0.0.1:0", &token).unwrap();
    fast(&mut config);
    config.kubernetes.leader_election.enabled = true;
    config.kubernetes.leader_election.lease_namespace = Some(world::NAMESPACE.into());
    config.kubernetes.leader_election.lease_duration = HumanDuration(Duration::from_secs(3));
    config.kubernetes.leader_election.renew_interval = HumanDuration(Duration::from_millis(200));
    config.responder.failover.on_demand_backup = false;
    let app = backstop::runtime::app::App::bind_with(
        config,
        Some(r.world.client.clone()),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let second = format!("http://{}", app.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.serve(stop.clone()));

    let leader = |t: &str| sample(t, "backstop_leader", &[]).unwrap_or(0.0);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let a = leader(&r.metrics().await);
        let b = leader(
            &reqwest::get(format!("{second}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        if a + b == 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no single leader: {a} {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    break_region(&r, s3::PRIMARY_REGION).await;
    // Alertmanager's HA peers both deliver, to both replicas.
    let body = firing("f-ha", "2026-11-24T03:10:30Z");
    notify(&r.base, &body).await;
    notify(&second, &body).await;
    wait_phase(&r, Phase::FailedOver).await;
    assert_eq!(wait_event(&r, "FailedOver").await.len(), 1);
    stop.cancel();
    task.await.unwrap().unwrap();
    r.stop().await;
}

on_both_backends!(the_kill_switch_leaves_a_cluster_alone);
async fn the_kill_switch_leaves_a_cluster_alone(backend: Backend) {
    let r = start(backend, |_| {}).await;
    let api = cluster_api(&r.world.client, world::NAMESPACE);
    api.patch(
        world::CLUSTER,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"backstop.percona.com/paused": "true"}}}),
        ),
    )
    .await
    .unwrap();
    let before = cluster(&r).await;
    break_region(&r, s3::PRIMARY_REGION).await;
    let answer = notify(&r.base, &firing("f-paused", "2026-11-24T03:10:30Z")).await;
    assert_eq!(answer["changed"], json!([]), "{answer}");
    let after = cluster(&r).await;
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert!(events(&r, "FailedOver").await.is_empty());
    r.stop().await;
}

#[tokio::test]
async fn stopping_before_the_first_list_still_stops() {
    // kube-runtime's controller never finishes a graceful shutdown that starts before its
    // first list is in; Backstop must stop anyway (this hung the test suite once).
    let world = World::start(options(Backend::Simulator)).await.unwrap();
    world.kube.simulator().unwrap().faults().inject(FaultRule {
        verb: Some("list".to_owned()),
        resource: Some("perconaxtradbclusters".to_owned()),
        remaining: u32::MAX,
        fault: ApiFault::Hang,
    });
    let r = sandbox::start_in(world, Arc::new(SystemClock), fast).await;
    // Leading means the controller runs, and its list of clusters hangs.
    r.wait_for("backstop_leader 1").await;
    tokio::time::timeout(DEADLINE, r.stop())
        .await
        .expect("Backstop did not stop while its first list was hanging");
}

on_both_backends!(rate_limits_refuse_and_say_so);
async fn rate_limits_refuse_and_say_so(backend: Backend) {
    let r = start(backend, |c| {
        c.responder.failover.on_demand_backup = false;
        c.responder.rate_limits.global_max_failovers = 1;
    })
    .await;
    break_region(&r, s3::PRIMARY_REGION).await;
    notify(&r.base, &firing("f-1", "2026-11-24T03:10:30Z")).await;
    let first = wait_phase(&r, Phase::FailedOver).await;
    r.world.s3.faults().clear_all().await.unwrap();
    notify(&r.base, &resolved("f-1", "2026-11-24T03:10:30Z")).await;
    wait_phase(&r, Phase::Reverted).await;
    // A second episode within the global window: refused, nothing changes.
    break_region(&r, s3::PRIMARY_REGION).await;
    let before = backup_spec(&cluster(&r).await);
    notify(&r.base, &firing("f-2", "2026-11-24T05:00:00Z")).await;
    let refused = wait_event(&r, "FailoverRateLimited").await;
    assert!(
        refused[0]
            .message
            .as_deref()
            .unwrap()
            .contains("global limit is 1"),
        "{refused:?}"
    );
    let j = journal(&r).await.unwrap();
    assert_eq!((j.phase, j.run_id), (Phase::Reverted, first.run_id));
    assert_eq!(backup_spec(&cluster(&r).await), before);
    r.wait_until("rate_limited counted", |t| {
        sample(
            t,
            "backstop_playbook_runs_total",
            &["result=\"rate_limited\""],
        )
        .is_some()
    })
    .await;
    r.stop().await;
}

/// One watch per kind: the index, the webhook's cache and the reconciler read clusters and
/// backups through the same informers. Before they were shared, a responder opened three
/// watches on clusters (the index, the webhook's cache, the reconciler) and two on backups
/// (the index, the reconciler); docs/architecture.md has the count.
#[tokio::test]
async fn each_kind_is_watched_once_however_many_parts_read_it() {
    let r = start(Backend::Simulator, |_| {}).await;
    // A whole failover, so every reader has run: the webhook routed through its cache, the
    // reconciler woke on the intent and on its cover backup.
    break_region(&r, s3::PRIMARY_REGION).await;
    notify(&r.base, &firing("f-watches", "2026-11-24T03:10:30Z")).await;
    wait_phase(&r, Phase::FailedOver).await;
    wait_event(&r, "CoverBackup").await;
    let sim = r
        .world
        .kube
        .simulator()
        .expect("the simulator records requests");
    let watches = |resource: &str| {
        sim.requests()
            .iter()
            .filter(|q| q.method == "GET" && q.path.ends_with(resource))
            .filter(|q| {
                q.query
                    .split('&')
                    .any(|p| p == "watch=true" || p == "watch=1")
            })
            .count()
    };
    assert_eq!(watches("/perconaxtradbclusters"), 1, "watches of clusters");
    assert_eq!(
        watches("/perconaxtradbclusterbackups"),
        1,
        "watches of backups"
    );
    assert_eq!(watches("/jobs"), 1, "watches of backup Jobs");
    r.stop().await;
}
