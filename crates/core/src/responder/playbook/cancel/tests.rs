//! The cancellation rule and plan, without a server.

use serde_json::json;

use super::*;
use crate::responder::journal::test_journal;

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn failed_over() -> Journal {
    let mut j = test_journal(Phase::FailedOver, vec![]);
    j.failed_over_at = ts("2026-11-24T12:05:00Z");
    j.protected = vec!["primary".into()];
    j.target_storage = "secondary".into();
    j
}

fn backup(name: &str, storage: &str, state: &str, created: &str) -> PerconaXtraDBClusterBackup {
    serde_json::from_value(json!({
        "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": {"pxcCluster": "c", "storageName": storage},
        "status": {"state": state},
    }))
    .unwrap()
}

#[test]
fn only_running_backups_to_the_failed_storage_from_before_the_failover_are_candidates() {
    let mut ours = backup("cover", "primary", "Running", "2026-11-24T12:00:00Z");
    ours.metadata.labels = Some([(RUN_LABEL.to_owned(), "r".to_owned())].into());
    let mut deleting = backup("going", "primary", "Running", "2026-11-24T12:00:00Z");
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts("2026-11-24T12:06:00Z")),
    );
    let mut other_cluster = backup("other", "primary", "Running", "2026-11-24T12:00:00Z");
    other_cluster.spec.pxc_cluster = "d".into();
    let backups = vec![
        backup("hung", "primary", "Running", "2026-11-24T12:00:00Z"),
        backup("starting", "primary", "Starting", "2026-11-24T12:04:00Z"),
        backup("done", "primary", "Succeeded", "2026-11-24T12:00:00Z"),
        backup("new", "primary", "", "2026-11-24T12:00:00Z"),
        backup("healthy", "secondary", "Running", "2026-11-24T12:00:00Z"),
        backup("after", "primary", "Running", "2026-11-24T12:05:01Z"),
        ours,
        deleting,
        other_cluster,
    ];
    let mut journal = failed_over();
    let found = candidates(&backups, "c", &journal, ts("2026-11-24T12:10:00Z"));
    let names: Vec<&str> = found.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["hung", "starting"]);
    assert_eq!(found[0].age, Duration::from_secs(600));
    // A backup the journal already records is the redo's, not a new cancellation.
    journal.cancelled_backups.push("hung".into());
    let found = candidates(&backups, "c", &journal, ts("2026-11-24T12:10:00Z"));
    assert_eq!(found.len(), 1);
}

fn candidate(name: &str) -> Candidate {
    Candidate {
        name: name.into(),
        state: "Running".into(),
        storage: "primary".into(),
        age: Duration::from_secs(250),
    }
}

#[test]
fn a_failing_storage_cancels_with_the_journal_first_and_a_healthy_one_never() {
    let observed = Observed {
        due: vec![
            (candidate("hung"), Err("HeadBucket timed out".into())),
            (candidate("slow"), Ok(())),
        ],
        ..Observed::default()
    };
    assert!(observed.cancels());
    let plan = plan(failed_over(), &observed);
    let Some(Effect::WriteCluster {
        journal, backup, ..
    }) = plan.effects.first()
    else {
        panic!("the journal is written first: {:?}", plan.effects);
    };
    assert_eq!(journal.cancelled_backups, ["hung"]);
    assert!(backup.is_none(), "spec.backup is left alone");
    let deletes: Vec<&str> = plan
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::DeleteBackup { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deletes, ["hung"], "never the backup whose storage passed");
    let counts: Vec<CancelResult> = plan
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::CountCancel(r) => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(counts, [CancelResult::Cancelled, CancelResult::Refused]);
    let event = plan.effects.iter().find_map(|e| match e {
        Effect::Event(note) if note.reason == "BackupCancelled" => Some(note.message.clone()),
        _ => None,
    });
    assert!(
        event
            .as_deref()
            .is_some_and(|m| m.contains("deleted backup hung (Running for 4m 10s")
                && m.contains("HeadBucket timed out")),
        "{event:?}"
    );
    assert_eq!(plan.outcome.requeue, Some(Duration::ZERO));
}

#[test]
fn only_passing_checks_cancel_nothing_and_recorded_names_are_deleted_again() {
    let observed = Observed {
        due: vec![(candidate("slow"), Ok(()))],
        redo: vec!["hung".into()],
        ..Observed::default()
    };
    assert!(!observed.cancels());
    let plan = plan(failed_over(), &observed);
    assert!(!plan.writes());
    assert_eq!(
        redo(&observed),
        [Effect::DeleteBackup {
            name: "hung".into()
        }]
    );
}
