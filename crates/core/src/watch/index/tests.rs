use super::*;
use serde_json::json;

const E: Epoch = Epoch(0);

fn backup(
    name: &str,
    storage: &str,
    state: &str,
    completed: Option<&str>,
) -> PerconaXtraDBClusterBackup {
    serde_json::from_value(json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
            "metadata": {"name": name, "namespace": "percona", "creationTimestamp": "2026-11-20T00:00:00Z"},
            "spec": {"pxcCluster": "cluster1", "storageName": storage},
            "status": {"state": state, "storageName": storage, "completed": completed},
        }))
        .unwrap()
}

fn cluster(schedule: &str, count: i64) -> PerconaXtraDBCluster {
    serde_json::from_value(json!({
        "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
        "metadata": {"name": "cluster1", "namespace": "percona"},
        "spec": {"backup": {"schedule": [{"name": "daily", "schedule": schedule,
            "storageName": "s3-us-west", "retention": {"type": "count", "count": count}}]}},
    }))
    .unwrap()
}

fn key(storage: &str) -> StorageKey {
    StorageKey {
        namespace: "percona".into(),
        cluster: "cluster1".into(),
        storage: storage.into(),
    }
}

#[test]
fn last_success_and_failure_per_storage() {
    let mut index = BackupIndex::new();
    index.upsert_backup(
        &backup("a", "s3-us-west", "Succeeded", Some("2026-11-22T04:00:00Z")),
        E,
    );
    index.upsert_backup(
        &backup("b", "s3-us-west", "Succeeded", Some("2026-11-23T04:00:00Z")),
        E,
    );
    index.upsert_backup(&backup("c", "s3-us-west", "Failed", None), E);
    index.upsert_backup(
        &backup(
            "d",
            "backstop-secondary",
            "Succeeded",
            Some("2026-11-24T04:00:00Z"),
        ),
        E,
    );
    let success = index.last_success();
    assert_eq!(
        success[&key("s3-us-west")].to_string(),
        "2026-11-23T04:00:00Z"
    );
    assert_eq!(
        success[&key("backstop-secondary")].to_string(),
        "2026-11-24T04:00:00Z"
    );
    assert_eq!(
        index.last_failure()[&key("s3-us-west")].to_string(),
        "2026-11-20T00:00:00Z",
        "a failure without completion time counts at creation"
    );
    let counts = index.count_by_state();
    assert_eq!(counts[&(key("s3-us-west"), "Succeeded".to_owned())], 2);
    assert_eq!(counts[&(key("s3-us-west"), "Failed".to_owned())], 1);

    index.remove_backup("percona", "b");
    assert_eq!(
        index.last_success()[&key("s3-us-west")].to_string(),
        "2026-11-22T04:00:00Z"
    );
}

#[test]
fn budget_ratio_is_the_newest_good_backups_age_over_the_window() {
    let mut index = BackupIndex::new();
    index.upsert_cluster(&cluster("0 4 * * *", 7), E);
    index.upsert_backup(
        &backup("a", "s3-us-west", "Succeeded", Some("2026-11-20T04:00:00Z")),
        E,
    );
    // A failover backup on the secondary is a good backup too.
    index.upsert_backup(
        &backup(
            "b",
            "backstop-secondary",
            "Succeeded",
            Some("2026-11-21T04:00:00Z"),
        ),
        E,
    );
    let now: Timestamp = "2026-11-24T16:00:00Z".parse().unwrap();
    let slo = &index.schedule_slos(now)[0];
    assert_eq!(slo.window, Some(SignedDuration::from_hours(7 * 24)));
    assert_eq!(slo.last_success_age, Some(SignedDuration::from_hours(84)));
    assert_eq!(slo.budget_ratio, Some(0.5));
}

#[test]
fn storages_are_indexed_and_changes_bump_the_generation() {
    let mut index = BackupIndex::new();
    let mut c = cluster("0 4 * * *", 7);
    c.spec.backup.as_mut().unwrap().storages = Some(
        [(
            "s3-us-west".to_owned(),
            serde_json::from_value(json!({"type": "s3", "s3": {"bucket": "b"}})).unwrap(),
        )]
        .into(),
    );
    index.upsert_cluster(&c, E);
    let g1 = index.storages_generation();
    index.upsert_cluster(&c, E);
    assert_eq!(
        index.storages_generation(),
        g1,
        "an unchanged cluster is not a change"
    );
    assert_eq!(
        index.storages()[&("percona".into(), "cluster1".into())].len(),
        1
    );
    index.remove_cluster("percona", "cluster1");
    assert!(index.storages().is_empty());
    assert!(index.storages_generation() > g1);
}

#[test]
fn no_success_or_unbounded_retention_gives_no_ratio() {
    let mut index = BackupIndex::new();
    index.upsert_cluster(&cluster("0 4 * * *", 0), E);
    index.upsert_backup(
        &backup("a", "s3-us-west", "Succeeded", Some("2026-11-20T04:00:00Z")),
        E,
    );
    let now: Timestamp = "2026-11-24T16:00:00Z".parse().unwrap();
    assert_eq!(index.schedule_slos(now)[0].budget_ratio, None);

    let mut empty = BackupIndex::new();
    empty.upsert_cluster(&cluster("0 4 * * *", 7), E);
    let slo = &empty.schedule_slos(now)[0];
    assert_eq!((slo.last_success_age, slo.budget_ratio), (None, None));
    assert!(slo.window.is_some());
}

/// The incremental aggregates equal a recount from scratch after any sequence of
/// upserts, state changes and removals.
#[test]
fn aggregates_match_a_recount_after_any_sequence() {
    let mut index = BackupIndex::new();
    let mut model: BTreeMap<String, (String, String, Option<String>)> = BTreeMap::new();
    let states = ["", "Running", "Succeeded", "Failed"];
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for step in 0..2000 {
        let name = format!("b{}", next(40));
        if next(5) == 0 {
            index.remove_backup("percona", &name);
            model.remove(&name);
            continue;
        }
        let storage = format!("s{}", next(3));
        let state = states[usize::try_from(next(4)).unwrap()];
        let completed =
            (next(3) > 0).then(|| format!("2026-11-2{}T00:00:{:02}Z", next(9), step % 60));
        index.upsert_backup(&backup(&name, &storage, state, completed.as_deref()), E);
        model.insert(name, (storage, state.to_owned(), completed));
    }
    let mut fresh = BackupIndex::new();
    for (name, (storage, state, completed)) in &model {
        fresh.upsert_backup(&backup(name, storage, state, completed.as_deref()), E);
    }
    assert_eq!(index.count_by_state(), fresh.count_by_state());
    assert_eq!(index.last_success(), fresh.last_success());
    assert_eq!(index.last_failure(), fresh.last_failure());
    assert_eq!(
        index.cluster_last_success("percona", "cluster1"),
        fresh.cluster_last_success("percona", "cluster1")
    );
    let recount: u64 = index.count_by_state().values().sum();
    assert_eq!(recount, u64::try_from(model.len()).unwrap());
    for name in model.keys() {
        index.remove_backup("percona", name);
    }
    assert!(index.count_by_state().is_empty() && index.last_success().is_empty());
    assert_eq!(index.cluster_last_success("percona", "cluster1"), None);
}

fn in_namespace(mut b: PerconaXtraDBClusterBackup, ns: &str) -> PerconaXtraDBClusterBackup {
    b.metadata.namespace = Some(ns.to_owned());
    b
}

/// A relist removes exactly the objects of its own scope that it did not deliver, even
/// when an earlier list broke off half way.
#[test]
fn a_sweep_removes_what_its_list_did_not_deliver_in_its_scope_only() {
    let mut index = BackupIndex::new();
    let first = Epoch::default().next();
    for (name, ns) in [("a", "percona"), ("b", "percona"), ("c", "other")] {
        let b = backup(name, "s3", "Succeeded", Some("2026-11-22T04:00:00Z"));
        index.upsert_backup(&in_namespace(b, ns), first);
    }
    index.sweep_backups(None, first);
    assert_eq!(
        index.backup_count(),
        3,
        "a complete list keeps all it delivered"
    );

    // A relist of "percona" that breaks off after delivering "a", then starts again and
    // delivers only "a": "b" was deleted meanwhile. "other" is another watch's scope.
    let broken = first.next();
    let a = backup("a", "s3", "Succeeded", Some("2026-11-22T04:00:00Z"));
    index.upsert_backup(&a, broken);
    let again = broken.next();
    index.upsert_backup(&a, again);
    index.sweep_backups(Some("percona"), again);
    assert_eq!(index.backup_count(), 2);
    let counts = index.count_by_state();
    let key = |ns: &str| StorageKey {
        namespace: ns.into(),
        cluster: "cluster1".into(),
        storage: "s3".into(),
    };
    assert_eq!(counts[&(key("percona"), "Succeeded".to_owned())], 1);
    assert_eq!(counts[&(key("other"), "Succeeded".to_owned())], 1);

    // A namespace whose name prefixes another's is a different scope.
    let b = in_namespace(backup("d", "s3", "Failed", None), "percona-2");
    index.upsert_backup(&b, first);
    index.sweep_backups(Some("percona"), again);
    assert_eq!(
        index.backup_count(),
        3,
        "percona-2 is not in percona's scope"
    );
    index.sweep_backups(Some("percona-2"), again);
    assert_eq!(index.backup_count(), 2);
    assert!(
        index.last_failure().is_empty(),
        "its contribution is gone with it"
    );
}

fn job(name: &str, cluster: &str, condition: Option<&str>) -> k8s_openapi::api::batch::v1::Job {
    let conditions: Vec<_> = condition
        .map(|c| json!({"type": c, "status": "True"}))
        .into_iter()
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "percona",
            "labels": {"percona.com/cluster": cluster}},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

#[test]
fn jobs_are_counted_per_cluster_and_state_through_changes_and_sweeps() {
    let mut index = BackupIndex::new();
    let e = Epoch::default().next();
    index.upsert_job(&job("j1", "cluster1", None), e);
    index.upsert_job(&job("j2", "cluster1", Some("Failed")), e);
    index.upsert_job(&job("j3", "cluster2", Some("Complete")), e);
    index.upsert_job(&job("j1", "cluster1", Some("Complete")), e);
    let counts: Vec<_> = index
        .jobs_by_state()
        .iter()
        .map(|j| (j.cluster.to_owned(), j.state, j.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("cluster1".to_owned(), "failed", 1),
            ("cluster1".to_owned(), "succeeded", 1),
            ("cluster2".to_owned(), "succeeded", 1)
        ]
    );
    index.remove_job("percona", "j2");
    let relist = e.next();
    index.upsert_job(&job("j1", "cluster1", Some("Complete")), relist);
    index.sweep_jobs(Some("percona"), relist);
    let counts: Vec<_> = index
        .jobs_by_state()
        .iter()
        .map(|j| (j.cluster.to_owned(), j.state, j.count))
        .collect();
    assert_eq!(counts, [("cluster1".to_owned(), "succeeded", 1)]);
}

#[test]
fn a_cluster_sweep_forgets_its_schedules_and_storages() {
    let mut index = BackupIndex::new();
    let e = Epoch::default().next();
    index.upsert_cluster(&cluster("0 4 * * *", 7), e);
    let g = index.storages_generation();
    let relist = e.next();
    index.sweep_clusters(Some("elsewhere"), relist);
    assert_eq!(index.schedule_slos(Timestamp::now()).len(), 1);
    index.sweep_clusters(Some("percona"), relist);
    assert!(index.schedule_slos(Timestamp::now()).is_empty());
    assert!(index.storages().is_empty() && index.storages_generation() > g);
}

fn created(name: &str, state: &str, at: &str) -> PerconaXtraDBClusterBackup {
    let mut b = backup(name, "s3-us-west", state, None);
    b.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        at.parse().unwrap(),
    ));
    b
}

#[test]
fn the_oldest_unfinished_backup_per_state_follows_every_change() {
    let mut index = BackupIndex::new();
    index.upsert_backup(&created("a", "Running", "2026-11-24T10:00:00Z"), E);
    index.upsert_backup(&created("b", "Running", "2026-11-24T11:00:00Z"), E);
    index.upsert_backup(&created("c", "", "2026-11-24T11:30:00Z"), E);
    index.upsert_backup(&created("d", "Succeeded", "2026-11-24T09:00:00Z"), E);
    let seen = |index: &BackupIndex| -> Vec<(String, String)> {
        index
            .oldest_unfinished()
            .into_iter()
            .map(|u| (u.state.to_owned(), u.oldest.to_string()))
            .collect()
    };
    let mut got = seen(&index);
    got.sort();
    assert_eq!(
        got,
        [
            ("New".to_owned(), "2026-11-24T11:30:00Z".to_owned()),
            ("Running".to_owned(), "2026-11-24T10:00:00Z".to_owned()),
        ]
    );
    // The oldest finishes: the next one is the oldest; a deleted one is forgotten.
    index.upsert_backup(&created("a", "Succeeded", "2026-11-24T10:00:00Z"), E);
    index.remove_backup("percona", "c");
    assert_eq!(
        seen(&index),
        [("Running".to_owned(), "2026-11-24T11:00:00Z".to_owned())]
    );
    // A list that no longer has it sweeps it out too.
    index.sweep_backups(None, E.next());
    assert!(seen(&index).is_empty());
}

#[test]
fn parallel_is_allowed_unless_the_cluster_says_otherwise() {
    let mut index = BackupIndex::new();
    index.upsert_cluster(&cluster("0 0 * * *", 3), E);
    assert_eq!(
        index.parallel_allowed().collect::<Vec<_>>(),
        [("percona", "cluster1", true)]
    );
    let mut serial = cluster("0 0 * * *", 3);
    if let Some(b) = serial.spec.backup.as_mut() {
        b.allow_parallel = Some(false);
    }
    index.upsert_cluster(&serial, E);
    assert_eq!(
        index.parallel_allowed().collect::<Vec<_>>(),
        [("percona", "cluster1", false)]
    );
}
