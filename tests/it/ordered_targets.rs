//! Ordered fallback targets, on both API backends: two secondaries and the buffer last.
//! Down the list as each target fails (each move verified just now, each covered by a
//! backup of its own), back up in reverse as each recovers (after the hold-down, which a
//! flap starts over), a restart in between, and the revert to the original, exactly.

use std::sync::Arc;

use backstop::clock::ManualClock;
use backstop::config::{Config, HumanDuration, Strategy};
use backstop::responder::journal::{Journal, ORDERED_JOURNAL_VERSION, Phase, TargetKind};
use backstop::responder::plan::{self, Destination};
use backstop::responder::{Engine, ResponderMetrics};
use backstop_sandbox::s3::{self, Fault, Rule, RuleId};
use backstop_sandbox::world;
use kube::api::Api;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::common::sandbox::{Running, sample};
use crate::common::{Backend, on_both_backends};
use crate::responder::{
    backup_spec, cluster, events, hand_driven_config, journal, sample_key, start, step_until,
    write_intent,
};

/// Failed checks before a target is left.
const LEAVE_AFTER: u32 = 2;
/// Probe intervals a recovered target must pass before it takes the backups back.
const HOLD_DOWN_INTERVALS: i32 = 3;

struct Drive {
    r: Running,
    config: Arc<Config>,
    clock: Arc<ManualClock>,
    interval: jiff::SignedDuration,
    registry: Arc<Registry>,
    engine: Arc<Engine>,
    original: Value,
}

impl Drive {
    async fn start(backend: Backend, strategy: Strategy) -> Self {
        let r = start(backend, |c| c.responder.enabled = false).await;
        let mut config = hand_driven_config(&r);
        r.world.ordered_secondaries(&mut config);
        config.clusters[0].failover.strategy = strategy;
        config.responder.failover.buffer_after_secondary_failures = LEAVE_AFTER;
        let interval = jiff::SignedDuration::try_from(config.probe.interval.get()).unwrap();
        config.responder.failover.move_up_after =
            HumanDuration((interval * HOLD_DOWN_INTERVALS).try_into().unwrap());
        let config = Arc::new(config);
        let clock = Arc::new(ManualClock::new(jiff::Timestamp::now()));
        let mut registry = Registry::default();
        let engine = Engine::new(
            r.world.client.clone(),
            config.clone(),
            ResponderMetrics::register(&mut registry),
            clock.clone(),
        );
        let original = backup_spec(&cluster(&r).await);
        Self {
            r,
            config,
            clock,
            interval,
            registry: Arc::new(registry),
            engine,
            original,
        }
    }

    /// A restarted process: a new engine, with nothing in memory.
    fn restart(&mut self) {
        let mut registry = Registry::default();
        self.engine = Engine::new(
            self.r.world.client.clone(),
            self.config.clone(),
            ResponderMetrics::register(&mut registry),
            self.clock.clone(),
        );
        self.registry = Arc::new(registry);
    }

    async fn fail(&self, region: &str) -> RuleId {
        self.r
            .world
            .s3
            .faults()
            .set(Rule::new(Fault::ServiceUnavailable).in_region(region))
            .await
            .unwrap()
    }

    async fn heal(&self, rule: RuleId) {
        assert!(self.r.world.s3.faults().clear(rule).await.unwrap());
    }

    /// One probe interval later, one reconcile: the note.
    async fn round(&self) -> String {
        self.clock.advance(self.interval);
        self.engine.reconcile(&sample_key()).await.unwrap().note
    }

    /// Rounds until the run has moved to `storage_name` (`None`: the buffer) and covered it
    /// there, at most `rounds`.
    async fn until_on(&self, storage_name: Option<&str>, rounds: u32) -> Journal {
        for _ in 0..rounds {
            let note = self.round().await;
            let j = journal(&self.r).await.unwrap();
            if j.target_secondary.as_deref() == storage_name {
                return step_until(&self.engine, &self.r, "covered", |j| {
                    j.cover_backup.is_some()
                })
                .await;
            }
            assert_eq!(j.phase, Phase::FailedOver, "{note}");
        }
        panic!(
            "never on {storage_name:?}: {:?}",
            journal(&self.r).await.unwrap()
        );
    }

    /// The spec must be exactly the original with a failover straight to `to` applied.
    async fn assert_on(&self, to: Destination, j: &Journal) {
        let policy = &self.config.clusters[0].failover;
        let direct = plan::plan_failover(&self.original, policy, to).unwrap();
        assert_eq!(j.changes, direct.changes, "{to:?}");
        let mut expected = self.original.clone();
        plan::apply(&mut expected, &direct.changes);
        assert_eq!(backup_spec(&cluster(&self.r).await), expected, "{to:?}");
        let backups: Api<backstop::pxc::PerconaXtraDBClusterBackup> =
            Api::namespaced(self.r.world.client.clone(), world::NAMESPACE);
        let cover = backups
            .get(j.cover_backup.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(
            cover.spec.storage_name.as_deref(),
            Some(direct.target_storage.as_str()),
            "the cover backup of each move goes to its target"
        );
    }

    fn runs(&self, playbook: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        sample(
            &text,
            "backstop_playbook_runs_total",
            &[&format!("playbook=\"{playbook}\""), "result=\"succeeded\""],
        )
        .unwrap_or(0.0)
    }
}

async fn down_the_list_and_back_up(backend: Backend, strategy: Strategy) {
    let mut d = Drive::start(backend, strategy).await;
    let primary = d.fail(s3::PRIMARY_REGION).await;
    write_intent(&d.r, true).await;
    let first = step_until(&d.engine, &d.r, "failed over", |j| {
        j.phase == Phase::FailedOver && j.cover_backup.is_some()
    })
    .await;
    assert_eq!(
        first.target_secondary.as_deref(),
        Some("backstop-secondary")
    );
    d.assert_on(Destination::Secondary(0), &first).await;

    // The first secondary fails: after LEAVE_AFTER checks, the second takes over.
    let secondary = d.fail(s3::SECONDARY_REGION).await;
    let second = d.until_on(Some(world::TERTIARY_STORAGE), LEAVE_AFTER).await;
    assert_eq!(
        (second.run_id.as_str(), second.failed_over_at, second.moves),
        (first.run_id.as_str(), first.failed_over_at, 1),
        "the same run"
    );
    assert_eq!(second.version, ORDERED_JOURNAL_VERSION);
    d.assert_on(Destination::Secondary(1), &second).await;
    assert_eq!(events(&d.r, "MovedToSecondary").await.len(), 1);

    // The second fails too: the buffer, last.
    let tertiary = d.fail(s3::TERTIARY_REGION).await;
    let buffer = d.until_on(None, LEAVE_AFTER).await;
    assert_eq!(buffer.target_kind, TargetKind::Buffer);
    d.assert_on(Destination::Buffer, &buffer).await;
    assert_eq!(d.runs("move"), 1.0);
    assert_eq!(d.runs("move_to_buffer"), 1.0);

    // Recovery in reverse. The second recovers, flaps once, and recovers for good: the
    // hold-down counts from the last failure, not the first pass.
    d.heal(tertiary).await;
    d.round().await;
    let flap = d.fail(s3::TERTIARY_REGION).await;
    d.round().await;
    d.heal(flap).await;
    for _ in 0..HOLD_DOWN_INTERVALS {
        let note = d.round().await;
        assert_eq!(
            journal(&d.r).await.unwrap().target_kind,
            TargetKind::Buffer,
            "moved before the hold-down: {note}"
        );
    }
    // A restart forgets the passes: the hold-down starts over, it never moves early.
    d.restart();
    for _ in 0..HOLD_DOWN_INTERVALS {
        d.round().await;
        assert_eq!(journal(&d.r).await.unwrap().target_kind, TargetKind::Buffer);
    }
    let back_on_second = d.until_on(Some(world::TERTIARY_STORAGE), 2).await;
    d.assert_on(Destination::Secondary(1), &back_on_second)
        .await;
    assert_eq!(back_on_second.moves, 3);

    // The first recovers: it takes the backups back after its own hold-down.
    d.heal(secondary).await;
    let back_on_first = d
        .until_on(Some("backstop-secondary"), HOLD_DOWN_INTERVALS as u32 + 2)
        .await;
    d.assert_on(Destination::Secondary(0), &back_on_first).await;
    let up = events(&d.r, "MovedUp").await;
    assert_eq!(up.len(), 2, "{up:#?}");
    let covers: std::collections::BTreeSet<_> =
        [&first, &second, &buffer, &back_on_second, &back_on_first]
            .iter()
            .map(|j| j.cover_backup.clone().unwrap())
            .collect();
    assert_eq!(
        covers.len(),
        5,
        "a cover backup of its own per move: {covers:?}"
    );

    // The primary: the alert resolves, the revert restores the original exactly.
    d.heal(primary).await;
    write_intent(&d.r, false).await;
    let reverted = step_until(&d.engine, &d.r, "reverted", |j| {
        j.phase != Phase::FailedOver
    })
    .await;
    assert_eq!(reverted.run_id, first.run_id);
    assert_eq!(
        backup_spec(&cluster(&d.r).await),
        d.original,
        "{strategy:?}: the revert restores spec.backup field for field"
    );
    d.r.stop().await;
}

on_both_backends!(down_the_list_and_back_up_repoint);
async fn down_the_list_and_back_up_repoint(backend: Backend) {
    down_the_list_and_back_up(backend, Strategy::Repoint).await;
}

on_both_backends!(down_the_list_and_back_up_in_place);
async fn down_the_list_and_back_up_in_place(backend: Backend) {
    down_the_list_and_back_up(backend, Strategy::InPlace).await;
}

on_both_backends!(a_failover_skips_a_failing_first_secondary);
/// The first secondary already fails when the primary does: the failover goes straight to
/// the second, verified just now, with a journal an older Backstop refuses.
async fn a_failover_skips_a_failing_first_secondary(backend: Backend) {
    let d = Drive::start(backend, Strategy::Repoint).await;
    d.fail(s3::PRIMARY_REGION).await;
    d.fail(s3::SECONDARY_REGION).await;
    write_intent(&d.r, true).await;
    let j = step_until(&d.engine, &d.r, "failed over", |j| {
        j.phase == Phase::FailedOver && j.cover_backup.is_some()
    })
    .await;
    assert_eq!(j.target_secondary.as_deref(), Some(world::TERTIARY_STORAGE));
    assert_eq!(j.version, ORDERED_JOURNAL_VERSION);
    d.assert_on(Destination::Secondary(1), &j).await;
    assert!(
        j.message
            .as_deref()
            .is_some_and(|m| m.starts_with("secondary 1 unhealthy: ")),
        "{j:?}"
    );
    d.r.stop().await;
}
