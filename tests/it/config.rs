//! Configuration loading: valid files load, and every class of error is reported with its
//! path, all at once.

use backstop::config::{self, ConfigError, Playbook, Strategy};

const MINIMAL: &str = "responder:\n  auth:\n    bearer_token_file: /t\n";

fn problems(yaml: &str) -> Vec<String> {
    match config::load_str(yaml) {
        Ok(c) => panic!("expected an invalid config, got {c:?}"),
        Err(e) => e.problems(),
    }
}

fn assert_problem(yaml: &str, expected: &str) {
    let found = problems(yaml);
    assert!(
        found.iter().any(|p| p == expected),
        "expected {expected:?} among {found:#?}"
    );
}

#[test]
fn the_shipped_example_is_valid_and_means_what_it_says() {
    let c = config::load_file(std::path::Path::new("deploy/config.example.yaml")).unwrap();
    assert_eq!(c.server.listen, "0.0.0.0:10317");
    assert_eq!(c.clusters.len(), 1);
    let policy = &c.clusters[0].failover;
    assert_eq!(policy.strategy, Strategy::Repoint);
    assert_eq!(policy.secondary.as_ref().unwrap().region, "us-east-1");
    assert_eq!(policy.buffer.as_ref().unwrap().size, "100Gi");
    let order: Vec<&str> = policy
        .ordered_secondaries()
        .map(|s| s.region.as_str())
        .collect();
    assert_eq!(order, ["us-east-1", "eu-west-1"]);
    assert!(
        !c.opt_in.enabled(),
        "opt-in is the platform team's decision"
    );
    assert_eq!(c.opt_in.defaults.buffer.as_ref().unwrap().size, "100Gi");
    assert_eq!(c.responder.routes[0].playbook, Playbook::Failover);
    assert_eq!(
        c.targets[0].credentials_secret.as_ref().unwrap().name,
        "dr-backup-s3"
    );
}

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let c = config::load_str(MINIMAL).unwrap();
    assert_eq!(c.server.listen, config::DEFAULT_LISTEN);
    assert_eq!(c.server.webhook_path, "/alertmanager");
    assert_eq!(c.probe.interval.get().as_secs(), 30);
    assert_eq!(c.probe.timeout.get().as_secs(), 5);
    assert_eq!(c.probe.concurrency, 8);
    assert!(c.probe.canary.enabled);
    assert_eq!(c.probe.canary.interval.get().as_secs(), 120);
    assert!(c.kubernetes.namespaces.is_empty());
    assert!(c.kubernetes.leader_election.enabled);
    assert!(!c.responder.dry_run);
    assert_eq!(c.responder.revert.hold_down_probes, 3);
    assert_eq!(
        c.responder.routes[0].alertnames,
        ["S3BackupTargetUnavailable"]
    );
}

#[test]
fn the_canary_interval_takes_a_duration_and_zero_means_every_cycle() {
    let c = config::load_str(&format!("{MINIMAL}probe:\n  canary:\n    interval: 0s\n")).unwrap();
    assert_eq!(c.probe.canary.interval.get(), std::time::Duration::ZERO);
    let c = config::load_str(&format!("{MINIMAL}probe:\n  canary:\n    interval: 10m\n")).unwrap();
    assert_eq!(c.probe.canary.interval.get().as_secs(), 600);
    assert!(
        config::load_str(&format!(
            "{MINIMAL}probe:\n  canary:\n    interval: often\n"
        ))
        .is_err()
    );
}

#[test]
fn missing_required_field_is_reported_at_its_path() {
    let yaml = format!(
        "{MINIMAL}clusters:\n{}",
        ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let secondary = if i == 2 {
                    "{bucket: sec-bucket, credentials_secret: s}"
                } else {
                    "{bucket: sec-bucket, region: r, credentials_secret: s}"
                };
                format!("  - {{namespace: ns, name: {n}, failover: {{secondary: {secondary}}}}}\n")
            })
            .collect::<String>()
    );
    assert_eq!(
        problems(&yaml),
        ["clusters[2].failover.secondary.region: missing"]
    );
}

#[test]
fn unknown_keys_are_errors_not_ignored() {
    assert_problem(
        &format!("{MINIMAL}probe:\n  intervall: 10s\n"),
        "probe.intervall: unknown key",
    );
    assert_problem("dry_run: true\n", "dry_run: unknown key");
}

#[test]
fn wrong_types_name_the_expected_type() {
    assert_problem(
        &format!("{MINIMAL}probe:\n  concurrency: many\n"),
        "probe.concurrency: wrong type: expected integer, got \"many\"",
    );
    assert_problem(
        &format!("{MINIMAL}kubernetes:\n  namespaces: percona\n"),
        "kubernetes.namespaces: wrong type: expected array, got \"percona\"",
    );
}

#[test]
fn bad_durations_and_enums_and_ranges_are_reported() {
    assert_problem(
        &format!("{MINIMAL}probe:\n  timeout: 5\n"),
        "probe.timeout: wrong type: expected string, got 5",
    );
    assert_problem(
        &format!("{MINIMAL}probe:\n  timeout: soon\n"),
        "probe.timeout: invalid duration \"soon\": use a number and a unit, e.g. 30s, 5m, 1h 30m",
    );
    let found = problems(&format!(
        "{MINIMAL}clusters:\n  - {{namespace: a, name: b, failover: {{strategy: sideways, buffer: {{size: 1Gi}}}}}}\n"
    ));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("clusters[0].failover.strategy:") && p.contains("in-place")),
        "{found:#?}"
    );
    let found = problems(&format!("{MINIMAL}probe:\n  concurrency: 0\n"));
    assert!(
        found.iter().any(|p| p.starts_with("probe.concurrency:")),
        "{found:#?}"
    );
}

#[test]
fn every_structural_error_is_reported_in_one_pass() {
    let found = problems(
        "server:\n  colour: blue\n  shutdown_timeout: 30\nprobe:\n  interval: never\nclusters:\n  - {namespace: a}\n",
    );
    for expected in [
        "server.colour: unknown key",
        "server.shutdown_timeout: wrong type: expected string, got 30",
        "clusters[0].name: missing",
        "clusters[0].failover: missing",
    ] {
        assert!(
            found.iter().any(|p| p == expected),
            "{expected:?} not in {found:#?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("probe.interval: invalid duration"))
    );
}

#[test]
fn semantic_rules_are_checked_with_paths() {
    let found = problems(
        "server:\n  listen: localhost\n  webhook_path: /metrics\nresponder:\n  auth: {}\n\
         kubernetes:\n  namespaces: [Bad_NS]\n  leader_election: {lease_duration: 5s, renew_interval: 10s}\n\
         clusters:\n  - {namespace: ns, name: c, failover: {}}\n\
         \x20 - {namespace: ns, name: c, failover: {buffer: {size: 10GB, access_modes: [Sometimes]}}}\n",
    );
    for prefix in [
        "server.listen: ",
        "server.webhook_path: /metrics is reserved",
        "responder.auth: webhook authentication is required",
        "kubernetes.namespaces[0]: ",
        "kubernetes.leader_election.renew_interval: must be shorter",
        "clusters[0].failover: needs a secondary or a buffer",
        "clusters[1]: duplicate cluster ns/c",
        "clusters[1].failover.buffer.size: \"10GB\" is not a Kubernetes quantity",
        "clusters[1].failover.buffer.access_modes[0]: ",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(prefix)),
            "{prefix:?} not in {found:#?}"
        );
    }
}

/// The ordered secondaries: each needs its own storage name (the journal names the one in
/// use by it), the buffer's differs from all of them, and each is checked like `secondary`.
#[test]
fn ordered_secondaries_need_names_of_their_own() {
    let secondary = "{bucket: dr, region: us-east-1, credentials_secret: s}";
    let found = problems(&format!(
        "{MINIMAL}clusters:\n  - namespace: ns\n    name: c\n    failover:\n         \x20     secondary: {secondary}\n         \x20     secondaries: [{secondary}, {{storage_name: b, bucket: x, region: r, credentials_secret: s}}]\n         \x20     buffer: {{storage_name: b, size: 1Gi}}\n"
    ));
    for expected in [
        "clusters[0].failover.secondaries[0].storage_name: \"backstop-secondary\" is already the storage_name of clusters[0].failover.secondary: each secondary needs its own",
        "clusters[0].failover.secondaries[1].bucket: ",
        "clusters[0].failover.buffer.storage_name: must differ from the storage_name of clusters[0].failover.secondaries[1]",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected:?} not in {found:#?}"
        );
    }
    let valid = config::load_str(&format!(
        "{MINIMAL}clusters:\n  - namespace: ns\n    name: c\n    failover:\n         \x20     secondaries:\n         \x20     - {{storage_name: dr-east, bucket: dr-east, region: us-east-1, credentials_secret: s}}\n         \x20     - {{storage_name: dr-minio, bucket: dr-minio, region: local, endpoint_url: 'https://minio.local', credentials_secret: s}}\n"
    ))
    .unwrap();
    let names: Vec<&str> = valid.clusters[0]
        .failover
        .ordered_secondaries()
        .map(|s| s.storage_name.as_str())
        .collect();
    assert_eq!(names, ["dr-east", "dr-minio"]);
    assert_eq!(valid.responder.failover.move_up_after.to_string(), "10m");
}

/// A CA bundle is a Secret key: a static target names the Secret's namespace (it has no
/// cluster), a secondary must not (the operator reads it from the cluster's namespace).
#[test]
fn ca_bundles_name_a_secret_key_where_it_will_be_read() {
    let found = problems(&format!(
        "{MINIMAL}targets:\n  - {{name: t, bucket: dr-bucket, region: r, ca_bundle: {{name: ca, key: ''}}}}\n\
         clusters:\n  - {{namespace: ns, name: c, failover: {{secondary: {{bucket: dr-bucket, region: r, \
         credentials_secret: s, ca_bundle: {{namespace: other, name: '', key: ca.crt}}}}}}}}\n"
    ));
    for expected in [
        "targets[0].ca_bundle.namespace: is required: a static target has no cluster namespace to read it from",
        "targets[0].ca_bundle.key: \"\" is not a valid Secret key",
        "clusters[0].failover.secondary.ca_bundle.namespace: must be left out: the operator reads a storage's caBundle from the cluster's namespace",
        "clusters[0].failover.secondary.ca_bundle.name: \"\" is not a valid Secret name",
    ] {
        assert!(
            found.iter().any(|p| p == expected),
            "{expected:?} not in {found:#?}"
        );
    }
    let fine = config::load_str(&format!(
        "{MINIMAL}targets:\n  - {{name: t, bucket: dr-bucket, region: r, ca_bundle: {{namespace: ns, name: ca, key: ca.crt}}}}\n\
         clusters:\n  - {{namespace: ns, name: c, failover: {{secondary: {{bucket: dr-bucket, region: r, \
         credentials_secret: s, ca_bundle: {{name: ca, key: ca.crt}}}}}}}}\n"
    ))
    .unwrap();
    assert_eq!(fine.targets[0].ca_bundle.as_ref().unwrap().key, "ca.crt");
}

#[test]
fn both_auth_methods_at_once_is_an_error() {
    assert_problem(
        "responder:\n  auth: {bearer_token_file: /a, basic_auth_file: /b}\n",
        "responder.auth: set only one of bearer_token_file and basic_auth_file",
    );
}

#[test]
fn auth_is_not_required_when_the_responder_is_off() {
    let c = config::load_str("responder:\n  enabled: false\n").unwrap();
    assert!(!c.responder.enabled);
}

#[test]
fn yaml_syntax_errors_are_reported_as_such() {
    let err = config::load_str("server: [unclosed\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax(_)), "{err:?}");
    assert!(err.to_string().contains("line"), "{err}");
}

#[test]
fn an_unreadable_file_names_the_file() {
    let err = config::load_file(std::path::Path::new("/nonexistent/backstop.yaml")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/backstop.yaml"),
        "{err}"
    );
}

#[test]
fn the_schema_documents_defaults_and_descriptions() {
    let schema = config::json_schema();
    let text = schema.to_string();
    assert!(
        text.contains("Default `30s`"),
        "descriptions come from doc comments"
    );
    assert!(text.contains("\"additionalProperties\":false"));
}

#[test]
fn a_loaded_config_serializes_back_to_an_equal_valid_one() {
    let c = config::load_file(std::path::Path::new("deploy/config.example.yaml")).unwrap();
    let text = serde_yaml_ng::to_string(&c).unwrap();
    let again = config::load_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, c);
}
