//! Who is managed, and with which policy, from the configuration and a cluster's metadata.

use super::*;
use crate::config::Strategy;

fn config(yaml: &str) -> Config {
    config::load_str(&format!(
        "responder: {{auth: {{bearer_token_file: /t}}}}\n{yaml}"
    ))
    .unwrap()
}

const OPT_IN: &str = "opt_in:\n  annotation: true\n  label_selector: {match_labels: {backup-tier: gold}}\n  defaults:\n    secondary: {bucket: dr-bucket, region: us-east-1, credentials_secret: dr}\n    buffer: {size: 10Gi}\n";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn of(config: &Config, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Resolution {
    resolve(config, "ns", "c1", &map(labels), &map(annotations))
}

fn managed(r: Resolution) -> Managed {
    match r {
        Resolution::Managed(m) => *m,
        other => panic!("not managed: {other:?}"),
    }
}

fn invalid(r: Resolution) -> String {
    match r {
        Resolution::Invalid(problems) => problems.join("\n"),
        other => panic!("not invalid: {other:?}"),
    }
}

#[test]
fn an_annotated_cluster_gets_the_defaults_and_its_overrides() {
    let c = config(OPT_IN);
    let plain = managed(of(&c, &[], &[(MANAGED_ANNOTATION, "true")]));
    assert_eq!(plain.source, Source::Annotation);
    assert_eq!(plain.cluster.failover, c.opt_in.defaults);
    assert_eq!(
        (
            plain.cluster.namespace.as_str(),
            plain.cluster.name.as_str()
        ),
        ("ns", "c1")
    );

    let tuned = managed(of(
        &c,
        &[],
        &[
            (MANAGED_ANNOTATION, "true"),
            (STRATEGY_ANNOTATION, "in-place"),
            (STORAGE_ANNOTATION, "s3-main"),
            (
                FAILOVER_ANNOTATION,
                r#"{"buffer": {"size": "50Gi", "storage_class_name": "gp3"}}"#,
            ),
        ],
    ));
    let policy = tuned.cluster.failover;
    assert_eq!(policy.strategy, Strategy::InPlace);
    assert_eq!(policy.storage.as_deref(), Some("s3-main"));
    let buffer = policy.buffer.unwrap();
    assert_eq!(
        (buffer.size.as_str(), buffer.storage_class_name.as_deref()),
        ("50Gi", Some("gp3"))
    );
    assert_eq!(
        policy.secondary, c.opt_in.defaults.secondary,
        "untouched keys keep the default"
    );
    // YAML works as well as JSON.
    let yaml = managed(of(
        &c,
        &[],
        &[
            (MANAGED_ANNOTATION, "true"),
            (FAILOVER_ANNOTATION, "pitr_on_buffer: keep\n"),
        ],
    ));
    assert_eq!(
        yaml.cluster.failover.pitr_on_buffer,
        crate::config::PitrOnBuffer::Keep
    );
}

#[test]
fn the_label_selector_opts_in_and_the_annotation_can_opt_out() {
    let c = config(OPT_IN);
    assert_eq!(
        managed(of(&c, &[("backup-tier", "gold")], &[])).source,
        Source::LabelSelector
    );
    assert_eq!(
        of(&c, &[("backup-tier", "silver")], &[]),
        Resolution::Unmanaged
    );
    assert_eq!(
        of(
            &c,
            &[("backup-tier", "gold")],
            &[(MANAGED_ANNOTATION, "false")]
        ),
        Resolution::Unmanaged
    );
    assert_eq!(of(&c, &[], &[]), Resolution::Unmanaged);
    // Overrides on a cluster that did not opt in change nothing.
    assert_eq!(
        of(&c, &[], &[(STRATEGY_ANNOTATION, "bogus")]),
        Resolution::Unmanaged
    );
}

#[test]
fn the_configuration_wins_and_says_which_annotations_it_ignores() {
    let c = config(&format!(
        "{OPT_IN}clusters:\n- namespace: ns\n  name: c1\n  failover: {{buffer: {{size: 1Gi}}}}\n"
    ));
    let listed = managed(of(
        &c,
        &[],
        &[
            (MANAGED_ANNOTATION, "true"),
            (STRATEGY_ANNOTATION, "nonsense"),
        ],
    ));
    assert_eq!(listed.source, Source::Config);
    assert_eq!(listed.cluster, c.clusters[0]);
    assert_eq!(listed.ignored, [MANAGED_ANNOTATION, STRATEGY_ANNOTATION]);
    // Even a "false" does not unmanage a listed cluster: the configuration wins.
    assert_eq!(
        managed(of(&c, &[], &[(MANAGED_ANNOTATION, "false")])).source,
        Source::Config
    );
}

/// Every problem is said, with the annotation or the policy path it comes from.
#[test]
fn bad_annotations_are_invalid_never_skipped() {
    let c = config(OPT_IN);
    let yes = invalid(of(&c, &[], &[(MANAGED_ANNOTATION, "yes")]));
    assert!(yes.contains("\"yes\" is neither"), "{yes}");
    let typo = invalid(of(
        &c,
        &[],
        &[
            (MANAGED_ANNOTATION, "true"),
            (FAILOVER_ANNOTATION, "{stratgy: in-place}"),
        ],
    ));
    assert!(typo.contains("stratgy"), "unknown keys are errors: {typo}");
    let many = invalid(of(
        &c,
        &[],
        &[
            (MANAGED_ANNOTATION, "true"),
            (STRATEGY_ANNOTATION, "sideways"),
            (
                FAILOVER_ANNOTATION,
                "{buffer: {size: 10GB}, secondaries: [{bucket: x, region: r, credentials_secret: s}]}",
            ),
        ],
    ));
    assert!(many.contains("failover.strategy"), "{many}");
    let semantic = invalid(of(
        &c,
        &[],
        &[
            (MANAGED_ANNOTATION, "true"),
            (FAILOVER_ANNOTATION, "{buffer: {size: 10GB}}"),
        ],
    ));
    assert!(
        semantic.contains("failover.buffer.size: \"10GB\" is not a Kubernetes quantity"),
        "{semantic}"
    );
    let both = invalid(of(
        &c,
        &[],
        &[
            (MANAGED_ANNOTATION, "true"),
            (STRATEGY_ANNOTATION, "in-place"),
            (FAILOVER_ANNOTATION, "{strategy: repoint}"),
        ],
    ));
    assert!(both.contains("set it once"), "{both}");
    let list = invalid(of(
        &c,
        &[],
        &[(MANAGED_ANNOTATION, "true"), (FAILOVER_ANNOTATION, "[1]")],
    ));
    assert!(list.contains("got a list"), "{list}");
    let broken = invalid(of(
        &c,
        &[],
        &[(MANAGED_ANNOTATION, "true"), (FAILOVER_ANNOTATION, "{a: [")],
    ));
    assert!(
        broken.starts_with("annotation backstop.percona.com/failover: "),
        "{broken}"
    );
}

#[test]
fn an_opt_in_the_configuration_does_not_allow_is_said() {
    let off = config("");
    let said = invalid(of(&off, &[], &[(MANAGED_ANNOTATION, "true")]));
    assert!(said.contains("opt_in.annotation"), "{said}");
    // Defaults without a target: a cluster that adds none has nowhere to go.
    let bare = config("opt_in: {annotation: true}\n");
    let nowhere = invalid(of(&bare, &[], &[(MANAGED_ANNOTATION, "true")]));
    assert!(
        nowhere.contains("needs a secondary or a buffer"),
        "{nowhere}"
    );
    let given = managed(of(
        &bare,
        &[],
        &[
            (MANAGED_ANNOTATION, "true"),
            (FAILOVER_ANNOTATION, "{buffer: {size: 5Gi}}"),
        ],
    ));
    assert!(given.cluster.failover.buffer.is_some());
}

#[test]
fn the_selector_and_defaults_are_validated_with_the_configuration() {
    for (yaml, expected) in [
        (
            "opt_in: {label_selector: {}}\n",
            "opt_in.label_selector: selects every cluster",
        ),
        (
            "opt_in: {label_selector: {match_expressions: [{key: a, operator: In}]}}\n",
            "opt_in.label_selector.match_expressions[0].values: In needs at least one value",
        ),
        (
            "opt_in: {label_selector: {match_expressions: [{key: a, operator: Exists, values: [b]}]}}\n",
            "opt_in.label_selector.match_expressions[0].values: Exists takes no values",
        ),
        (
            "opt_in: {defaults: {buffer: {size: lots}}}\n",
            "opt_in.defaults.buffer.size: ",
        ),
    ] {
        let problems = config::load_str(&format!(
            "responder: {{auth: {{bearer_token_file: /t}}}}\n{yaml}"
        ))
        .unwrap_err()
        .problems();
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} not in {problems:#?}"
        );
    }
    let c = config(
        "opt_in:\n  label_selector:\n    match_expressions:\n    - {key: tier, operator: In, values: [gold, silver]}\n    - {key: legacy, operator: DoesNotExist}\n  defaults: {buffer: {size: 1Gi}}\n",
    );
    assert!(of(&c, &[("tier", "silver")], &[]).managed().is_some());
    assert_eq!(
        of(&c, &[("tier", "silver"), ("legacy", "")], &[]),
        Resolution::Unmanaged
    );
}
