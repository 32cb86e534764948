//! The playbooks' decisions and plans, without a server: what was observed goes in, the
//! effects come out.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::config::{Config, HumanDuration, ManagedCluster};
use crate::k8s::events::EventType;
use crate::responder::effect::{Effect, Playbook, RunResult, run_backup_name};
use crate::responder::journal::{Phase, TargetKind, test_journal};
use crate::responder::plan::{self, Destination, PlanError};

pub(crate) fn journal(phase: Phase, cover: bool) -> Journal {
    let mut j = test_journal(phase, vec![]);
    j.cover_backup = cover.then(|| "c".into());
    j
}

pub(crate) fn t(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
}

pub(crate) fn managed() -> ManagedCluster {
    serde_json::from_value(json!({
        "namespace": "ns",
        "name": "c",
        "failover": {
            "secondary": {
                "bucket": "dr-bucket",
                "region": "us-west-2",
                "credentials_secret": "dr-creds",
            },
            "buffer": {"size": "10Gi"},
        },
    }))
    .unwrap()
}

pub(crate) fn backup() -> Value {
    json!({
        "schedule": [{"name": "daily", "schedule": "0 0 * * *", "storageName": "s3-main"}],
        "storages": {"s3-main": {"type": "s3", "s3": {"bucket": "main", "region": "eu-west-1"}}},
    })
}

pub(crate) struct Fixture {
    pub(crate) key: ClusterKey,
    pub(crate) managed: ManagedCluster,
    pub(crate) config: Config,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let mut config = Config::default();
        config.responder.rate_limits.global_max_failovers = 3;
        config.responder.rate_limits.per_cluster_cooldown = HumanDuration(Duration::from_secs(600));
        config.responder.revert.hold_down_probes = 2;
        config.responder.revert.test_backup = true;
        config.responder.revert.test_backup_timeout = HumanDuration(Duration::from_secs(1_800));
        Self {
            key: ClusterKey {
                namespace: "ns".into(),
                name: "c".into(),
            },
            managed: managed(),
            config,
        }
    }

    pub(crate) fn ctx(&self, now: jiff::Timestamp) -> Context<'_> {
        Context {
            key: &self.key,
            managed: &self.managed,
            config: &self.config,
            now,
        }
    }
}

pub(crate) fn failover_observed(check: Option<Result<(), String>>) -> failover::Observed {
    let f = Fixture::new();
    failover::Observed {
        backup: backup(),
        previous: None,
        recent_failovers: 0,
        secondaries: vec![failover::Candidate {
            plan: plan::plan_failover(&backup(), &f.managed.failover, Destination::Secondary(0)),
            check,
        }],
        run_id: "run-1".into(),
        blast: None,
    }
}

pub(crate) fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event(n) | Effect::Notice(n) => Some(n.reason),
            _ => None,
        })
        .collect()
}

pub(crate) fn written(plan: &Plan) -> Option<(&Option<Value>, &Journal)> {
    plan.effects.iter().find_map(|e| match e {
        Effect::WriteCluster {
            backup, journal, ..
        } => Some((backup, journal)),
        _ => None,
    })
}

#[test]
fn decides_every_combination() {
    use Phase::*;
    for watch in [false, true] {
        let decide = |wants: bool, journal: Option<&Journal>, cover: bool| {
            decide(wants, journal, cover, watch)
        };
        assert_eq!(decide(false, None, true), Step::Idle);
        assert_eq!(decide(true, None, true), Step::Failover);
        assert_eq!(
            decide(true, Some(&journal(FailedOver, false)), true),
            Step::Cover
        );
        assert_eq!(
            decide(false, Some(&journal(FailedOver, true)), true),
            Step::Revert
        );
        assert_eq!(
            decide(false, Some(&journal(Verifying, true)), true),
            Step::Verify
        );
        assert_eq!(
            decide(true, Some(&journal(Verifying, true)), true),
            Step::Failover
        );
        for done in [Reverted, VerificationFailed] {
            assert_eq!(decide(false, Some(&journal(done, true)), true), Step::Idle);
            assert_eq!(
                decide(true, Some(&journal(done, true)), true),
                Step::Failover
            );
        }
    }
    // Failed over, the cover backup started (or not wanted): the targets are watched only
    // when the run has some to watch (retarget::watches).
    let on_secondary = journal(FailedOver, true);
    let uncovered = journal(FailedOver, false);
    for (journal, cover) in [(&on_secondary, true), (&uncovered, false)] {
        assert_eq!(decide(true, Some(journal), cover, false), Step::Idle);
        assert_eq!(decide(true, Some(journal), cover, true), Step::WatchTargets);
    }
    let mut on_buffer = journal(FailedOver, true);
    on_buffer.target_kind = TargetKind::Buffer;
    assert_eq!(decide(true, Some(&on_buffer), true, false), Step::Idle);
    // A run that moved to the buffer still covers first.
    on_buffer.cover_backup = None;
    assert_eq!(decide(true, Some(&on_buffer), true, true), Step::Cover);
}

#[test]
fn a_healthy_secondary_is_written_with_its_journal_in_one_write() {
    let f = Fixture::new();
    let plan = failover::plan(&f.ctx(t(0)), failover_observed(Some(Ok(()))));
    let (backup, journal) = written(&plan).expect("a write");
    assert_eq!(journal.target_kind, TargetKind::Secondary);
    assert_eq!(journal.run_id, "run-1");
    assert_eq!(journal.failed_over_at, t(0));
    assert_eq!(
        backup.as_ref().unwrap()["schedule"][0]["storageName"],
        json!(journal.target_storage)
    );
    // The write comes first: nothing is counted or said unless it landed.
    assert!(matches!(plan.effects[0], Effect::WriteCluster { .. }));
    assert!(
        plan.effects
            .contains(&Effect::CountRun(Playbook::Failover, RunResult::Succeeded))
    );
    assert_eq!(reasons(&plan), ["FailedOver"]);
    assert_eq!(plan.outcome.phase, Some(Phase::FailedOver));
    assert_eq!(plan.outcome.requeue, Some(Duration::ZERO));
    assert!(
        plan.recorded_note
            .as_deref()
            .unwrap()
            .starts_with("would fail over")
    );
}

#[test]
fn an_unhealthy_secondary_falls_back_to_the_buffer_and_says_why() {
    let f = Fixture::new();
    let plan = failover::plan(
        &f.ctx(t(0)),
        failover_observed(Some(Err("HeadBucket: 503".into()))),
    );
    let (_, journal) = written(&plan).expect("a write");
    assert_eq!(journal.target_kind, TargetKind::Buffer);
    assert!(
        journal
            .message
            .as_deref()
            .unwrap()
            .contains("HeadBucket: 503")
    );
    assert_eq!(reasons(&plan), ["FailedOver", "FailoverToBuffer"]);
}

#[test]
fn no_viable_target_changes_nothing() {
    let mut f = Fixture::new();
    f.managed.failover.buffer = None;
    let plan = failover::plan(
        &f.ctx(t(0)),
        failover_observed(Some(Err("HeadBucket: 503".into()))),
    );
    assert!(!plan.writes());
    assert!(plan.effects.contains(&Effect::CountRun(
        Playbook::Failover,
        RunResult::NoViableTarget
    )));
    assert_eq!(reasons(&plan), ["FailoverRefused"]);
    // Retried a probe interval later: the secondary may recover.
    assert_eq!(plan.outcome.requeue, Some(f.config.probe.interval.get()));
}

#[test]
fn nothing_to_protect_is_refused_without_a_retry() {
    let f = Fixture::new();
    let mut observed = failover_observed(None);
    observed.backup = json!({"storages": {}});
    observed.secondaries[0].plan = Err(PlanError::NothingProtected("s3-main".into()));
    let plan = failover::plan(&f.ctx(t(0)), observed);
    assert!(!plan.writes());
    assert_eq!(plan.outcome.requeue, None);
    assert_eq!(reasons(&plan), ["FailoverRefused"]);
}

#[test]
fn rate_limits_hold_a_failover_back() {
    let f = Fixture::new();
    // The per-cluster cool-down, from the last run's revert.
    let mut observed = failover_observed(None);
    let mut previous = journal(Phase::Reverted, true);
    previous.failed_over_at = t(-3_600);
    previous.reverted_at = Some(t(-60));
    observed.previous = Some(previous);
    let plan = failover::plan(&f.ctx(t(0)), observed);
    assert!(!plan.writes());
    assert_eq!(plan.outcome.requeue, Some(Duration::from_secs(540)));
    assert!(matches!(&plan.effects[1], Effect::Notice(n) if n.reason == "FailoverRateLimited"));
    // The global limit.
    let mut observed = failover_observed(None);
    observed.recent_failovers = 3;
    let plan = failover::plan(&f.ctx(t(0)), observed);
    assert!(!plan.writes());
    assert!(plan.effects.contains(&Effect::CountRun(
        Playbook::Failover,
        RunResult::RateLimited
    )));
}

#[test]
fn the_cover_backup_is_named_by_the_run_and_recorded_after_it_is_created() {
    let f = Fixture::new();
    let plan = cover::plan(&f.ctx(t(0)), Some(journal(Phase::FailedOver, false)));
    let Effect::CreateBackup { backup, .. } = &plan.effects[0] else {
        panic!("{:?}", plan.effects);
    };
    assert_eq!(backup.name, run_backup_name("c", "cover", "r"));
    let (spec, written) = written(&plan).unwrap();
    assert!(spec.is_none(), "the spec is left alone");
    assert_eq!(written.cover_backup.as_deref(), Some(backup.name.as_str()));
    // After a move to the buffer it covers again, under another name.
    let mut moved = journal(Phase::FailedOver, false);
    moved.moved_to_buffer_at = Some(t(0));
    moved.target_kind = TargetKind::Buffer;
    moved.moves = 1;
    let plan = cover::plan(&f.ctx(t(0)), Some(moved));
    assert!(
        matches!(&plan.effects[0], Effect::CreateBackup { backup, .. } if backup.purpose == "cover-buffer")
    );
}

#[test]
fn a_revert_waits_for_the_hold_down_then_restores_exactly() {
    let f = Fixture::new();
    let failed_over = failover::plan(&f.ctx(t(0)), failover_observed(Some(Ok(()))));
    let (changed, run) = written(&failed_over).unwrap();
    let (changed, run) = (changed.clone().unwrap(), run.clone());
    let observed = |checks| revert::Observed {
        backup: changed.clone(),
        journal: run.clone(),
        checks,
    };
    let later = f.ctx(t(3_600));
    let waiting = revert::plan(
        &later,
        observed(revert::Checks::Checked {
            problems: vec![],
            passes: 1,
        }),
    );
    assert!(!waiting.writes());
    assert_eq!(waiting.outcome.note, "primary healthy 1/2 times in a row");
    let unhealthy = revert::plan(
        &later,
        observed(revert::Checks::Checked {
            problems: vec!["HeadBucket: 503".into()],
            passes: 0,
        }),
    );
    assert!(!unhealthy.writes());
    assert_eq!(reasons(&unhealthy), ["RevertWaiting"]);
    let cooling = revert::plan(
        &f.ctx(t(60)),
        observed(revert::Checks::CoolingDown(Duration::from_secs(540))),
    );
    assert_eq!(cooling.outcome.requeue, Some(Duration::from_secs(540)));

    let done = revert::plan(
        &later,
        observed(revert::Checks::Checked {
            problems: vec![],
            passes: 2,
        }),
    );
    let (restored, journal) = written(&done).unwrap();
    assert_eq!(restored.as_ref(), Some(&backup()), "restored byte for byte");
    assert_eq!(journal.phase, Phase::Verifying);
    assert_eq!(
        journal.test_backup.as_deref(),
        Some(run_backup_name("c", "verify", &run.run_id).as_str())
    );
    // With a test backup to come the run is not counted yet.
    assert!(
        !done
            .effects
            .iter()
            .any(|e| matches!(e, Effect::CountRun(..)))
    );
}

#[test]
fn a_revert_keeps_fields_edited_since_the_failover_and_says_so() {
    let f = Fixture::new();
    let failed_over = failover::plan(&f.ctx(t(0)), failover_observed(Some(Ok(()))));
    let (changed, run) = written(&failed_over).unwrap();
    let mut edited = changed.clone().unwrap();
    edited["schedule"][0]["storageName"] = json!("by-hand");
    let plan = revert::plan(
        &f.ctx(t(3_600)),
        revert::Observed {
            backup: edited,
            journal: run.clone(),
            checks: revert::Checks::Checked {
                problems: vec![],
                passes: 2,
            },
        },
    );
    let (restored, journal) = written(&plan).unwrap();
    assert_eq!(
        restored.as_ref().unwrap()["schedule"][0]["storageName"],
        json!("by-hand")
    );
    assert!(!journal.kept_edits.is_empty());
    assert_eq!(reasons(&plan), ["Reverted", "RevertKeptEdits"]);
}

#[test]
fn the_test_backup_is_started_waited_for_and_judged() {
    let f = Fixture::new();
    let mut run = journal(Phase::Verifying, true);
    run.reverted_at = Some(t(0));
    run.test_backup = Some("backstop-verify-c-r".into());
    let observed = |backup: Option<Value>| verify::Observed {
        journal: run.clone(),
        name: "backstop-verify-c-r".into(),
        backup: backup.map(|b| serde_json::from_value(b).unwrap()),
    };
    let backup = |state: &str| {
        json!({
            "apiVersion": "pxc.percona.com/v1",
            "kind": "PerconaXtraDBClusterBackup",
            "metadata": {"name": "backstop-verify-c-r", "namespace": "ns",
                         "annotations": {STARTED: t(10).to_string()}},
            "spec": {"pxcCluster": "c", "storageName": "a"},
            "status": {"state": state},
        })
    };
    const STARTED: &str = crate::responder::effect::STARTED_AT_ANNOTATION;
    let started = verify::plan(&f.ctx(t(10)), observed(None));
    assert!(
        matches!(&started.effects[0], Effect::CreateBackup { backup, .. } if backup.purpose == "verify")
    );
    assert!(!started.writes());
    assert_eq!(started.outcome.phase, Some(Phase::Verifying));

    let running = verify::plan(&f.ctx(t(600)), observed(Some(backup("Running"))));
    assert!(running.effects.is_empty());
    let succeeded = verify::plan(&f.ctx(t(600)), observed(Some(backup("Succeeded"))));
    assert_eq!(written(&succeeded).unwrap().1.phase, Phase::Reverted);
    assert!(
        succeeded
            .effects
            .contains(&Effect::CountRun(Playbook::Revert, RunResult::Succeeded))
    );
    let failed = verify::plan(&f.ctx(t(600)), observed(Some(backup("Failed"))));
    assert_eq!(written(&failed).unwrap().1.phase, Phase::VerificationFailed);
    assert!(matches!(
        failed.effects.last(),
        Some(Effect::Event(n)) if n.type_ == EventType::Warning
    ));
    // Outlasting the timeout (30 minutes from its start) fails it too.
    let late = verify::plan(&f.ctx(t(10 + 1_800)), observed(Some(backup("Running"))));
    assert_eq!(written(&late).unwrap().1.phase, Phase::VerificationFailed);
}

#[test]
fn the_test_backup_timeout_starts_at_a_plausible_time() {
    use verify::test_backup_started;
    let (reverted, now) = (t(0), t(3_600));
    let stamp = t(1_000).to_string();
    // Backstop's stamp first, then the API server's creation time.
    assert_eq!(
        test_backup_started(Some(&stamp), Some(t(2_000)), reverted, now),
        t(1_000)
    );
    assert_eq!(
        test_backup_started(None, Some(t(2_000)), reverted, now),
        t(2_000)
    );
    assert_eq!(
        test_backup_started(Some("not a time"), Some(t(2_000)), reverted, now),
        t(2_000)
    );
    // Implausible times are passed over: before the revert, or far in the future.
    let future = t(3_600 + 86_400).to_string();
    assert_eq!(
        test_backup_started(Some(&future), Some(t(-5)), reverted, now),
        reverted
    );
    // A little ahead is clock skew, believed.
    let skewed = t(3_660).to_string();
    assert_eq!(
        test_backup_started(Some(&skewed), None, reverted, now),
        t(3_660)
    );
    assert_eq!(test_backup_started(None, None, reverted, now), reverted);
}

#[test]
fn run_backup_names_are_stable_and_valid() {
    let a = run_backup_name("cluster1", "verify", "0f3c2a9e-1111-2222");
    assert_eq!(a, "backstop-verify-cluster1-0f3c2a9e");
    assert_eq!(
        a,
        run_backup_name("cluster1", "verify", "0f3c2a9e-1111-2222")
    );
    let long = run_backup_name(&"x".repeat(80), "cover", "abc");
    assert!(long.len() <= 63 && !long.ends_with('-'));
}
