//! The moves between targets, without a server: a round of checks goes in, the move (or
//! the reason to stay) comes out.

use std::time::Duration;

use serde_json::Value;

use super::super::cover;
use super::super::failover;
use super::super::tests::{Fixture, backup, failover_observed, journal, reasons, t, written};
use super::*;
use crate::config::HumanDuration;
use crate::responder::effect::{Effect, Playbook, RunResult};
use crate::responder::journal::{Journal, Phase, TargetKind};

/// What a round of checks found: the current target failed `failures` times in a row (or
/// passes, with `None`), and the others as given.
fn checked(
    spec: &Value,
    run: &Journal,
    current: Destination,
    failures: Option<u32>,
    others: Vec<(Destination, Check)>,
) -> Observed {
    Observed::Checked {
        backup: spec.clone(),
        journal: run.clone(),
        current: Some(current),
        current_check: (current != Destination::Buffer).then(|| match failures {
            Some(failures) => failed(failures),
            None => passed(t(0)),
        }),
        others,
        edited: None,
    }
}

fn failed(failures: u32) -> Check {
    Check {
        result: Err("HeadBucket: 503".into()),
        failures,
        passing_since: None,
    }
}

fn passed(since: jiff::Timestamp) -> Check {
    Check {
        result: Ok(()),
        failures: 0,
        passing_since: Some(since),
    }
}

fn ordered() -> Fixture {
    let mut f = Fixture::new();
    f.config.responder.failover.buffer_after_secondary_failures = 3;
    f.config.responder.failover.move_up_after = HumanDuration(Duration::from_secs(600));
    let mut second = f.managed.failover.secondary.clone().unwrap();
    second.storage_name = "dr2".into();
    second.bucket = "dr2-bucket".into();
    f.managed.failover.secondaries.push(second);
    f
}

#[test]
fn a_failing_secondary_moves_to_the_buffer_after_enough_checks() {
    let mut f = Fixture::new();
    f.config.responder.failover.buffer_after_secondary_failures = 3;
    let failed_over = failover::plan(&f.ctx(t(0)), failover_observed(Some(Ok(()))));
    let (changed, run) = written(&failed_over).unwrap();
    let changed = changed.clone().unwrap();
    let here = Destination::Secondary(0);
    let warned = plan(&f.ctx(t(60)), checked(&changed, run, here, Some(1), vec![]));
    assert!(!warned.writes());
    assert_eq!(reasons(&warned), ["SecondaryUnhealthy"]);
    let moved = plan(
        &f.ctx(t(180)),
        checked(&changed, run, here, Some(3), vec![]),
    );
    let (spec, journal) = written(&moved).unwrap();
    assert_eq!(reasons(&moved), ["MovedToBuffer"]);
    assert_eq!(journal.target_kind, TargetKind::Buffer);
    assert_eq!(journal.run_id, run.run_id, "the same run");
    assert_eq!(journal.failed_over_at, run.failed_over_at);
    assert_eq!((journal.moves, journal.moved_at), (1, Some(t(180))));
    // Its changes are against the original settings: reverting them restores the original.
    let mut reverted = spec.clone().unwrap();
    plan::apply_revert(
        &mut reverted,
        &plan::plan_revert(spec.as_ref().unwrap(), journal),
    );
    assert_eq!(reverted, backup());
    // Without a buffer there is nowhere to go: refused, said, counted.
    f.managed.failover.buffer = None;
    let stuck = plan(
        &f.ctx(t(180)),
        checked(&changed, run, here, Some(3), vec![]),
    );
    assert!(!stuck.writes());
    assert_eq!(reasons(&stuck), ["MoveRefused"]);
    assert!(
        stuck
            .effects
            .contains(&Effect::CountRun(Playbook::Move, RunResult::Refused))
    );
}

/// Down the list to the next secondary that passed just now, not the buffer; back up only
/// after the hold-down, to the best recovered target.
#[test]
fn ordered_targets_move_down_in_order_and_up_after_the_hold_down() {
    use Destination::{Buffer, Secondary};
    let f = ordered();
    let observed = failover_observed(Some(Ok(())));
    let failed_over = failover::plan(&f.ctx(t(0)), observed);
    let (changed, run) = written(&failed_over).unwrap();
    let changed = changed.clone().unwrap();
    assert_eq!(run.target_secondary.as_deref(), Some("backstop-secondary"));

    // The first secondary fails for good, the second passes just now: down to it.
    let down = plan(
        &f.ctx(t(180)),
        checked(
            &changed,
            run,
            Secondary(0),
            Some(3),
            vec![(Secondary(1), passed(t(180)))],
        ),
    );
    assert_eq!(reasons(&down), ["MovedToSecondary"]);
    let (spec, on_second) = written(&down).unwrap();
    let spec = spec.clone().unwrap();
    assert_eq!(on_second.target_secondary.as_deref(), Some("dr2"));
    assert_eq!(
        on_second.version,
        crate::responder::journal::ORDERED_JOURNAL_VERSION
    );
    assert_eq!(on_second.moved_to_buffer_at, None);
    assert_eq!(spec["storages"]["dr2"]["s3"]["bucket"], "dr2-bucket");

    // The first recovers: not before the hold-down, then back up.
    let early = plan(
        &f.ctx(t(700)),
        checked(
            &spec,
            on_second,
            Secondary(1),
            None,
            vec![(Secondary(0), passed(t(200)))],
        ),
    );
    assert!(!early.writes(), "{early:?}");
    assert_eq!(early.outcome.note, "secondary healthy");
    let up = plan(
        &f.ctx(t(800)),
        checked(
            &spec,
            on_second,
            Secondary(1),
            None,
            vec![(Secondary(0), passed(t(200)))],
        ),
    );
    assert_eq!(reasons(&up), ["MovedUp"]);
    let (back_up, on_first) = written(&up).unwrap();
    assert_eq!(
        on_first.target_secondary.as_deref(),
        Some("backstop-secondary")
    );
    assert_eq!(on_first.moves, 2);
    // Exactly what the failover to the first secondary wrote.
    assert_eq!(back_up.as_ref(), Some(&changed));
    assert_eq!(on_first.changes, run.changes);

    // On the buffer, a recovered secondary takes the backups back after the hold-down.
    let (to_buffer, on_buffer) = {
        let down = plan(
            &f.ctx(t(900)),
            checked(
                &changed,
                run,
                Secondary(0),
                Some(3),
                vec![(Secondary(1), failed(1))],
            ),
        );
        assert_eq!(reasons(&down), ["MovedToBuffer"]);
        let (spec, j) = written(&down).unwrap();
        (spec.clone().unwrap(), j.clone())
    };
    let up = plan(
        &f.ctx(t(2_000)),
        checked(
            &to_buffer,
            &on_buffer,
            Buffer,
            None,
            vec![(Secondary(0), failed(2)), (Secondary(1), passed(t(1_000)))],
        ),
    );
    assert_eq!(reasons(&up), ["MovedUp"]);
    assert_eq!(
        written(&up).unwrap().1.target_secondary.as_deref(),
        Some("dr2")
    );
    // The hold-down off: never moves up.
    let mut never = ordered();
    never.config.responder.failover.move_up_after = HumanDuration(Duration::ZERO);
    let stays = plan(
        &never.ctx(t(2_000)),
        checked(
            &to_buffer,
            &on_buffer,
            Buffer,
            None,
            vec![(Secondary(1), passed(t(1_000)))],
        ),
    );
    assert!(!stays.writes());
}

#[test]
fn every_move_gets_a_cover_backup_of_its_own() {
    let f = Fixture::new();
    let mut run = journal(Phase::FailedOver, false);
    let mut names = std::collections::BTreeSet::new();
    for (moves, kind) in [
        (0, TargetKind::Secondary),
        (1, TargetKind::Secondary),
        (2, TargetKind::Buffer),
        (3, TargetKind::Secondary),
    ] {
        run.moves = moves;
        run.target_kind = kind;
        let plan = cover::plan(&f.ctx(t(0)), Some(run.clone()));
        let Effect::CreateBackup { backup, .. } = &plan.effects[0] else {
            panic!("{:?}", plan.effects);
        };
        assert!(names.insert(backup.name.clone()), "{names:?}");
    }
}

/// A secondary no longer in the policy has nothing better than it: the cluster leaves it
/// only when it fails. An edit since the failover stops every move, said and (when a move is
/// due) counted. A hold-down too long to add to a time never moves up (and never panics).
#[test]
fn unknown_targets_edits_and_endless_hold_downs_never_move_up() {
    use Destination::Secondary;
    let f = ordered();
    let failed_over = failover::plan(&f.ctx(t(0)), failover_observed(Some(Ok(()))));
    let (changed, run) = written(&failed_over).unwrap();
    let changed = changed.clone().unwrap();
    let mut unknown = checked(
        &changed,
        run,
        Secondary(1),
        None,
        vec![(Secondary(0), passed(t(0)))],
    );
    if let Observed::Checked { current, .. } = &mut unknown {
        *current = None;
    }
    assert!(!plan(&f.ctx(t(10_000)), unknown).writes());

    let mut edited = checked(&changed, run, Secondary(0), Some(3), vec![]);
    if let Observed::Checked { edited: e, .. } = &mut edited {
        *e = Some("ScheduleStorage(\"daily\")".into());
    }
    let refused = plan(&f.ctx(t(180)), edited.clone());
    assert!(!refused.writes());
    assert_eq!(reasons(&refused), ["MoveRefused"]);
    assert!(
        refused
            .effects
            .contains(&Effect::CountRun(Playbook::Move, RunResult::Refused))
    );
    if let Observed::Checked { current_check, .. } = &mut edited {
        *current_check = Some(passed(t(0)));
    }
    let said = plan(&f.ctx(t(180)), edited);
    assert_eq!(reasons(&said), ["MoveRefused"]);
    assert!(
        !said
            .effects
            .iter()
            .any(|e| matches!(e, Effect::CountRun(..))),
        "not counted while no move is due"
    );

    let mut endless = ordered();
    endless.config.responder.failover.move_up_after =
        HumanDuration(Duration::from_secs(u64::MAX / 4));
    let on_second = checked(
        &changed,
        run,
        Secondary(1),
        None,
        vec![(Secondary(0), passed(t(0)))],
    );
    assert!(!plan(&endless.ctx(t(1_000_000)), on_second).writes());
}

/// The first move from the first secondary to the buffer is what a Backstop of one
/// secondary wrote (version 2, so it can still revert it); any other move is version 3.
#[test]
fn a_first_move_to_the_buffer_keeps_the_older_journal_version() {
    let f = ordered();
    let failed_over = failover::plan(&f.ctx(t(0)), failover_observed(Some(Ok(()))));
    let (changed, run) = written(&failed_over).unwrap();
    let changed = changed.clone().unwrap();
    let moved = plan(
        &f.ctx(t(180)),
        checked(&changed, run, Destination::Secondary(0), Some(3), vec![]),
    );
    let (_, on_buffer) = written(&moved).unwrap();
    assert_eq!(
        on_buffer.version,
        crate::responder::journal::MOVED_JOURNAL_VERSION
    );
    assert_eq!(on_buffer.moved_to_buffer_at, Some(t(180)));
}
