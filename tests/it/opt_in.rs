//! Opt-in from the cluster's side, on both API backends: a cluster annotated for Backstop
//! (or matching the label selector) is probed, failed over and reverted with the defaults
//! and its overrides, without a `clusters[]` entry; a bad annotation is an Event and a
//! metric; where `clusters[]` lists the cluster too, the configuration wins and `backstop
//! status` says so.

use std::collections::BTreeMap;

use backstop::config::{Config, LabelSelectorConfig, Strategy};
use backstop::managed::{
    FAILOVER_ANNOTATION, MANAGED_ANNOTATION, STORAGE_ANNOTATION, STRATEGY_ANNOTATION,
};
use backstop::responder::journal::Phase;
use backstop_sandbox::s3;
use backstop_sandbox::world;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::common::fixtures::{firing, resolved};
use crate::common::sandbox::{DEADLINE, Running};
use crate::common::{Backend, on_both_backends};
use crate::responder::{
    backup_spec, break_region, cluster, events, journal, notify, start, wait_event,
};

/// The sandbox's policy as the opt-in defaults, and no `clusters[]` entry.
fn opt_in(c: &mut Config) {
    let policy = c.clusters.remove(0).failover;
    c.opt_in.annotation = true;
    c.opt_in.defaults = policy;
}

/// Merges `labels` and `annotations` (a `null` value removes one) into the sample cluster.
async fn mark(r: &Running, labels: Value, annotations: Value) {
    let api = backstop::responder::cluster::cluster_api(&r.world.client, world::NAMESPACE);
    api.patch(
        world::CLUSTER,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": labels, "annotations": annotations}})),
    )
    .await
    .unwrap();
}

/// `backstop status` as the CLI renders it, for `config`.
async fn status(r: &Running, config: &Config) -> String {
    let rows = backstop::responder::status::status(&r.world.client, config, None, None)
        .await
        .unwrap();
    backstop::responder::status::render_table(&rows)
}

fn config_of(r: &Running, tune: impl FnOnce(&mut Config)) -> Config {
    let mut config = r
        .world
        .backstop_config("127.0.0.1:0", &r.world.dir().join("token"))
        .unwrap();
    tune(&mut config);
    config
}

/// Whether `/metrics` shows the sample cluster's secondary as a probed target.
fn secondary_probed(metrics: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("backstop_s3_target_info{")
            && l.contains("storage=\"backstop-secondary\"")
            && l.contains(&format!("cluster=\"{}\"", world::CLUSTER))
    })
}

on_both_backends!(an_annotated_cluster_is_managed_without_configuration);
async fn an_annotated_cluster_is_managed_without_configuration(backend: Backend) {
    let r = start(backend, opt_in).await;
    let config = config_of(&r, opt_in);
    assert!(
        !secondary_probed(&r.metrics().await),
        "not opted in yet: its secondary is nobody's"
    );
    let listed = status(&r, &config).await;
    assert!(
        !listed.contains(world::CLUSTER),
        "not managed yet: {listed}"
    );
    let original = backup_spec(&cluster(&r).await);

    mark(
        &r,
        json!({}),
        json!({MANAGED_ANNOTATION: "true", STORAGE_ANNOTATION: world::PRIMARY_STORAGE}),
    )
    .await;
    // The prober picks the opted-in cluster's secondary up, so a failover may go there.
    r.wait_until("the secondary probed", secondary_probed).await;
    let table = status(&r, &config).await;
    assert!(
        table.contains(&format!(
            "MANAGED BY {}/{}: annotation",
            world::NAMESPACE,
            world::CLUSTER
        )),
        "{table}"
    );

    break_region(&r, s3::PRIMARY_REGION).await;
    notify(&r.base, &firing("f-opt-in", "2026-11-24T12:00:00Z")).await;
    let failed_over = wait_event(&r, "FailedOver").await;
    let message = failed_over[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("the secondary bucket pxc-backups-dr/cluster1"),
        "{message}"
    );
    let j = journal(&r).await.unwrap();
    assert_eq!(j.target_secondary.as_deref(), Some("backstop-secondary"));
    assert_eq!(j.protected, [world::PRIMARY_STORAGE]);

    r.world.s3.faults().clear_all().await.unwrap();
    notify(&r.base, &resolved("f-opt-in", "2026-11-24T12:00:00Z")).await;
    wait_phase(&r, Phase::Reverted).await;
    assert_eq!(
        backup_spec(&cluster(&r).await),
        original,
        "the revert is exact"
    );
    r.stop().await;
}

/// Waits for the journal to reach `phase`, stepping the simulated operator (these worlds
/// run it by hand) so the cover and test backups finish.
async fn wait_phase(r: &Running, phase: Phase) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        r.world.operator.step().await.unwrap();
        if journal(r).await.is_some_and(|j| j.phase == phase) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {phase:?}: {:?}",
            journal(r).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn invalid_sample(metrics: &str) -> Option<String> {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("backstop_cluster_opt_in_invalid{")
                && l.contains(&format!("cluster=\"{}\"", world::CLUSTER))
        })
        .map(str::to_owned)
}

on_both_backends!(a_bad_annotation_is_an_event_and_a_metric_until_fixed);
async fn a_bad_annotation_is_an_event_and_a_metric_until_fixed(backend: Backend) {
    let r = start(backend, opt_in).await;
    let config = config_of(&r, opt_in);
    mark(
        &r,
        json!({}),
        json!({MANAGED_ANNOTATION: "true", FAILOVER_ANNOTATION: "{stratgy: in-place, buffer: {size: 10GB}}"}),
    )
    .await;
    let said = wait_event(&r, "OptInInvalid").await;
    let message = said[0].message.clone().unwrap_or_default();
    assert!(message.contains("stratgy"), "{message}");
    r.wait_until("the metric says so", |m| {
        invalid_sample(m).is_some_and(|l| l.ends_with(" 1"))
    })
    .await;
    let table = status(&r, &config).await;
    assert!(
        table.contains(&format!(
            "OPT-IN INVALID {}/{}: opt-in policy",
            world::NAMESPACE,
            world::CLUSTER
        )),
        "{table}"
    );
    // Nothing changes it meanwhile: an alert finds no cluster to fail over.
    break_region(&r, s3::PRIMARY_REGION).await;
    let answer = notify(&r.base, &firing("f-bad", "2026-11-24T12:00:00Z")).await;
    assert_eq!(answer["clusters"], json!([]), "{answer}");
    assert!(journal(&r).await.is_none());

    // Fixed: managed, the metric back to 0, and the alert (repeated by Alertmanager) acts.
    mark(
        &r,
        json!({}),
        json!({FAILOVER_ANNOTATION: "{strategy: in-place}"}),
    )
    .await;
    r.wait_until("the metric clears", |m| {
        invalid_sample(m).is_some_and(|l| l.ends_with(" 0"))
    })
    .await;
    notify(&r.base, &firing("f-bad", "2026-11-24T12:00:00Z")).await;
    wait_phase(&r, Phase::FailedOver).await;
    assert_eq!(
        journal(&r).await.unwrap().strategy,
        Strategy::InPlace.as_str()
    );
    r.stop().await;
}

on_both_backends!(the_configuration_wins_and_status_says_so);
async fn the_configuration_wins_and_status_says_so(backend: Backend) {
    let both = |c: &mut Config| {
        c.opt_in.annotation = true;
        c.opt_in.defaults = c.clusters[0].failover.clone();
    };
    let r = start(backend, both).await;
    let config = config_of(&r, both);
    mark(
        &r,
        json!({}),
        json!({MANAGED_ANNOTATION: "true", STRATEGY_ANNOTATION: "in-place"}),
    )
    .await;
    let table = status(&r, &config).await;
    assert!(
        table.contains(&format!(
            "MANAGED BY {}/{}: configuration (clusters[]), which wins: ignored annotations \
             {MANAGED_ANNOTATION}, {STRATEGY_ANNOTATION}",
            world::NAMESPACE,
            world::CLUSTER
        )),
        "{table}"
    );
    break_region(&r, s3::PRIMARY_REGION).await;
    notify(&r.base, &firing("f-both", "2026-11-24T12:00:00Z")).await;
    wait_phase(&r, Phase::FailedOver).await;
    assert_eq!(
        journal(&r).await.unwrap().strategy,
        Strategy::Repoint.as_str(),
        "the configuration's strategy, not the annotation's"
    );
    assert!(events(&r, "OptInInvalid").await.is_empty());
    r.stop().await;
}

on_both_backends!(a_label_selector_opts_in_and_the_annotation_opts_out);
async fn a_label_selector_opts_in_and_the_annotation_opts_out(backend: Backend) {
    let selected = |c: &mut Config| {
        opt_in(c);
        c.opt_in.annotation = false;
        c.opt_in.label_selector = Some(LabelSelectorConfig {
            match_labels: BTreeMap::from([("backup-tier".to_owned(), "gold".to_owned())]),
            match_expressions: Vec::new(),
        });
    };
    let r = start(backend, selected).await;
    let config = config_of(&r, selected);
    mark(&r, json!({"backup-tier": "gold"}), json!({})).await;
    let table = status(&r, &config).await;
    assert!(
        table.contains("MANAGED BY percona/cluster1: label selector"),
        "{table}"
    );
    r.wait_until("the secondary probed", secondary_probed).await;

    // The cluster's owner opts out: the selector no longer takes it, and nothing fails it
    // over.
    mark(&r, json!({}), json!({MANAGED_ANNOTATION: "false"})).await;
    let table = status(&r, &config).await;
    assert!(!table.contains(world::CLUSTER), "{table}");
    break_region(&r, s3::PRIMARY_REGION).await;
    let answer = notify(&r.base, &firing("f-out", "2026-11-24T12:00:00Z")).await;
    assert_eq!(answer["clusters"], json!([]), "{answer}");
    // An annotation asking in while opt-in by annotation is off is said, not ignored.
    mark(
        &r,
        json!({"backup-tier": null}),
        json!({MANAGED_ANNOTATION: "true"}),
    )
    .await;
    let said = wait_event(&r, "OptInInvalid").await;
    assert!(
        said[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("opt_in.annotation")),
        "{said:?}"
    );
    assert!(journal(&r).await.is_none());
    r.stop().await;
}

on_both_backends!(withdrawing_the_opt_in_while_failed_over_is_said);
/// The owner withdraws the opt-in while the cluster runs on its secondary: Backstop stops
/// acting on it, and says once that nothing will revert it.
async fn withdrawing_the_opt_in_while_failed_over_is_said(backend: Backend) {
    let r = start(backend, opt_in).await;
    mark(&r, json!({}), json!({MANAGED_ANNOTATION: "true"})).await;
    r.wait_until("the secondary probed", secondary_probed).await;
    break_region(&r, s3::PRIMARY_REGION).await;
    notify(&r.base, &firing("f-withdrawn", "2026-11-24T12:00:00Z")).await;
    wait_phase(&r, Phase::FailedOver).await;
    mark(&r, json!({}), json!({MANAGED_ANNOTATION: "false"})).await;
    let said = wait_event(&r, "UnmanagedWhileFailedOver").await;
    assert_eq!(said.len(), 1);
    let message = said[0].message.clone().unwrap_or_default();
    assert!(message.contains("nothing will revert it"), "{message}");
    let table = status(&r, &config_of(&r, opt_in)).await;
    assert!(
        table.contains("MANAGED BY percona/cluster1: nothing: it left Backstop during a run"),
        "{table}"
    );
    // The alert resolving changes nothing now: the cluster is not Backstop's.
    r.world.s3.faults().clear_all().await.unwrap();
    let answer = notify(&r.base, &resolved("f-withdrawn", "2026-11-24T12:00:00Z")).await;
    assert_eq!(answer["clusters"], json!([]), "{answer}");
    assert_eq!(journal(&r).await.unwrap().phase, Phase::FailedOver);
    r.stop().await;
}
