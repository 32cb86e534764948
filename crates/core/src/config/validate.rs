//! Semantic checks: the rules a JSON Schema cannot express (address syntax, cross-field
//! rules, duplicates). Every rule adds to one list so the user sees all problems at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::{Config, FieldError, ManagedCluster};

/// Reserved paths the webhook may not take over.
const RESERVED_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

/// Every semantic problem of an otherwise well-formed configuration.
pub fn check(config: &Config) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_server(config, &mut errors);
    check_kubernetes(config, &mut errors);
    check_probe(config, &mut errors);
    check_targets(config, &mut errors);
    check_responder(config, &mut errors);
    for (i, cluster) in config.clusters.iter().enumerate() {
        check_cluster(config, i, cluster, &mut errors);
    }
    check_duplicate_clusters(config, &mut errors);
    check_opt_in(config, &mut errors);
    errors
}

fn check_opt_in(config: &Config, errors: &mut Vec<FieldError>) {
    let opt_in = &config.opt_in;
    if let Some(selector) = &opt_in.label_selector
        && let Err(problems) = selector.to_selector()
    {
        for (path, problem) in problems {
            let path = if path.is_empty() {
                "opt_in.label_selector".to_owned()
            } else {
                format!("opt_in.label_selector.{path}")
            };
            errors.push(FieldError::new(path, problem));
        }
    }
    // The defaults may leave the target to each cluster's annotations.
    check_policy("opt_in.defaults", &opt_in.defaults, false, errors);
}

fn check_server(config: &Config, errors: &mut Vec<FieldError>) {
    let server = &config.server;
    if let Err(e) = server.listen.parse::<SocketAddr>() {
        errors.push(FieldError::new(
            "server.listen",
            format!("{e}: expected ADDRESS:PORT, e.g. 0.0.0.0:10317"),
        ));
    }
    let path = &server.webhook_path;
    if !path.starts_with('/') || path.len() < 2 {
        errors.push(FieldError::new(
            "server.webhook_path",
            "must start with '/' and name a path, e.g. /alertmanager",
        ));
    } else if RESERVED_PATHS.contains(&path.as_str()) {
        errors.push(FieldError::new(
            "server.webhook_path",
            format!("{path} is reserved"),
        ));
    } else if path.contains("..") || path.contains("//") || path.contains(['?', '#', ' ']) {
        errors.push(FieldError::new(
            "server.webhook_path",
            "must be a plain path without '..', '//', '?', '#' or spaces",
        ));
    }
    if server.shutdown_timeout.get().is_zero() {
        errors.push(FieldError::new(
            "server.shutdown_timeout",
            "must be greater than 0",
        ));
    }
    if server.request_timeout.get().is_zero() {
        errors.push(FieldError::new(
            "server.request_timeout",
            "must be greater than 0",
        ));
    }
}

fn check_kubernetes(config: &Config, errors: &mut Vec<FieldError>) {
    for (i, ns) in config.kubernetes.namespaces.iter().enumerate() {
        if !is_dns1123_label(ns) {
            errors.push(FieldError::new(
                format!("kubernetes.namespaces[{i}]"),
                format!("{ns:?} is not a valid namespace name"),
            ));
        }
    }
    let le = &config.kubernetes.leader_election;
    if le.enabled && le.renew_interval >= le.lease_duration {
        errors.push(FieldError::new(
            "kubernetes.leader_election.renew_interval",
            format!(
                "must be shorter than lease_duration ({})",
                le.lease_duration
            ),
        ));
    }
}

fn check_probe(config: &Config, errors: &mut Vec<FieldError>) {
    let probe = &config.probe;
    if probe.interval.get() < std::time::Duration::from_secs(1) {
        errors.push(FieldError::new("probe.interval", "must be at least 1s"));
    }
    if probe.timeout.get().is_zero() {
        errors.push(FieldError::new("probe.timeout", "must be greater than 0"));
    }
    if probe.canary.enabled && probe.canary.key_prefix.trim_matches('/').is_empty() {
        errors.push(FieldError::new(
            "probe.canary.key_prefix",
            "must not be empty: canary objects need their own prefix",
        ));
    }
}

fn check_targets(config: &Config, errors: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    for (i, target) in config.targets.iter().enumerate() {
        if !names.insert(target.name.as_str()) {
            errors.push(FieldError::new(
                format!("targets[{i}].name"),
                format!("duplicate target name {:?}", target.name),
            ));
        }
        check_bucket(&format!("targets[{i}].bucket"), &target.bucket, errors);
        if let Some(url) = &target.endpoint_url {
            check_endpoint(&format!("targets[{i}].endpoint_url"), url, errors);
        }
        if let Some(ca) = &target.ca_bundle {
            let at = format!("targets[{i}].ca_bundle");
            if ca.namespace.as_deref().is_none_or(|n| n.trim().is_empty()) {
                errors.push(FieldError::new(
                    format!("{at}.namespace"),
                    "is required: a static target has no cluster namespace to read it from",
                ));
            }
            check_ca_bundle(&at, ca, errors);
        }
    }
}

fn check_ca_bundle(at: &str, ca: &super::CaBundleSecret, errors: &mut Vec<FieldError>) {
    if !is_dns1123_subdomain(&ca.name) {
        errors.push(FieldError::new(
            format!("{at}.name"),
            format!("{:?} is not a valid Secret name", ca.name),
        ));
    }
    // What Kubernetes allows as a key of a Secret's data.
    let key_ok = !ca.key.is_empty()
        && ca.key.len() <= 253
        && ca
            .key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !key_ok {
        errors.push(FieldError::new(
            format!("{at}.key"),
            format!("{:?} is not a valid Secret key", ca.key),
        ));
    }
}

fn check_responder(config: &Config, errors: &mut Vec<FieldError>) {
    let responder = &config.responder;
    // A hold-down longer than a backup retention is a typo, and its end must stay a time.
    if responder.failover.move_up_after.get() > std::time::Duration::from_secs(30 * 86_400) {
        errors.push(FieldError::new(
            "responder.failover.move_up_after",
            "must be at most 30d (0s turns moving up off)",
        ));
    }
    if !responder.enabled {
        return;
    }
    let auth = &responder.auth;
    match (
        &auth.bearer_token_file,
        &auth.basic_auth_file,
        auth.allow_unauthenticated,
    ) {
        (Some(_), Some(_), _) => errors.push(FieldError::new(
            "responder.auth",
            "set only one of bearer_token_file and basic_auth_file",
        )),
        (None, None, false) => errors.push(FieldError::new(
            "responder.auth",
            "webhook authentication is required: set bearer_token_file or basic_auth_file \
             (or allow_unauthenticated: true for local experiments)",
        )),
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, route) in responder.routes.iter().enumerate() {
        if !names.insert(route.name.as_str()) {
            errors.push(FieldError::new(
                format!("responder.routes[{i}].name"),
                format!("duplicate route name {:?}", route.name),
            ));
        }
        for (j, alertname) in route.alertnames.iter().enumerate() {
            if alertname.trim().is_empty() {
                errors.push(FieldError::new(
                    format!("responder.routes[{i}].alertnames[{j}]"),
                    "must not be empty",
                ));
            }
        }
    }
}

fn check_cluster(
    config: &Config,
    i: usize,
    cluster: &ManagedCluster,
    errors: &mut Vec<FieldError>,
) {
    let at = |field: &str| format!("clusters[{i}].{field}");
    if !is_dns1123_label(&cluster.namespace) {
        errors.push(FieldError::new(
            at("namespace"),
            format!("{:?} is not a valid namespace name", cluster.namespace),
        ));
    }
    if !is_dns1123_subdomain(&cluster.name) {
        errors.push(FieldError::new(
            at("name"),
            format!("{:?} is not a valid object name", cluster.name),
        ));
    }
    let watched = &config.kubernetes.namespaces;
    if !watched.is_empty() && !watched.contains(&cluster.namespace) {
        errors.push(FieldError::new(
            at("namespace"),
            format!(
                "{:?} is not in kubernetes.namespaces, so the cluster would never be seen",
                cluster.namespace
            ),
        ));
    }
    check_policy(&at("failover"), &cluster.failover, true, errors);
}

/// The rules of one failover policy, whose fields' paths start with `prefix`; a policy that
/// must be usable on its own (`needs_target`, unlike the opt-in defaults, which a cluster's
/// annotations may complete) needs somewhere to go.
pub(super) fn check_policy(
    prefix: &str,
    policy: &super::FailoverPolicy,
    needs_target: bool,
    errors: &mut Vec<FieldError>,
) {
    let at = |field: &str| format!("{prefix}.{field}");
    if needs_target && policy.ordered_secondaries().next().is_none() && policy.buffer.is_none() {
        errors.push(FieldError::new(
            prefix,
            "needs a secondary or a buffer (or both): otherwise failover has nowhere to go",
        ));
    }
    let secondaries = policy
        .secondary
        .iter()
        .map(|s| ("secondary".to_owned(), s))
        .chain(
            policy
                .secondaries
                .iter()
                .enumerate()
                .map(|(j, s)| (format!("secondaries[{j}]"), s)),
        );
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    for (path, secondary) in secondaries {
        let field = |name: &str| at(&format!("{path}.{name}"));
        check_bucket(&field("bucket"), &secondary.bucket, errors);
        if let Some(url) = &secondary.endpoint_url {
            check_endpoint(&field("endpoint_url"), url, errors);
        }
        if policy.storage.as_deref() == Some(secondary.storage_name.as_str()) {
            errors.push(FieldError::new(
                field("storage_name"),
                format!("must differ from {prefix}.storage (the storage being protected)"),
            ));
        }
        if !is_storage_name(&secondary.storage_name) {
            errors.push(FieldError::new(
                field("storage_name"),
                "must be a lowercase name of letters, digits and '-'",
            ));
        }
        // The storage name is how a journal says which secondary a cluster runs on.
        if let Some(first) = names.get(secondary.storage_name.as_str()) {
            errors.push(FieldError::new(
                field("storage_name"),
                format!(
                    "{:?} is already the storage_name of {prefix}.{first}: each secondary needs its own",
                    secondary.storage_name
                ),
            ));
        } else {
            names.insert(&secondary.storage_name, path.clone());
        }
        if let Some(ca) = &secondary.ca_bundle {
            if ca.namespace.is_some() {
                errors.push(FieldError::new(
                    field("ca_bundle.namespace"),
                    "must be left out: the operator reads a storage's caBundle from the cluster's namespace",
                ));
            }
            check_ca_bundle(&field("ca_bundle"), ca, errors);
        }
    }
    if let Some(buffer) = &policy.buffer {
        if !is_quantity(&buffer.size) {
            errors.push(FieldError::new(
                at("buffer.size"),
                format!(
                    "{:?} is not a Kubernetes quantity (e.g. 100Gi)",
                    buffer.size
                ),
            ));
        }
        if buffer.access_modes.is_empty() {
            errors.push(FieldError::new(
                at("buffer.access_modes"),
                "must name at least one access mode",
            ));
        }
        for (j, mode) in buffer.access_modes.iter().enumerate() {
            if ![
                "ReadWriteOnce",
                "ReadOnlyMany",
                "ReadWriteMany",
                "ReadWriteOncePod",
            ]
            .contains(&mode.as_str())
            {
                errors.push(FieldError::new(
                    at(&format!("buffer.access_modes[{j}]")),
                    format!("{mode:?} is not an access mode"),
                ));
            }
        }
        if !is_storage_name(&buffer.storage_name) {
            errors.push(FieldError::new(
                at("buffer.storage_name"),
                "must be a lowercase name of letters, digits and '-'",
            ));
        }
        if let Some(secondary) = names.get(buffer.storage_name.as_str()) {
            errors.push(FieldError::new(
                at("buffer.storage_name"),
                format!("must differ from the storage_name of {prefix}.{secondary}"),
            ));
        }
    }
}

fn check_duplicate_clusters(config: &Config, errors: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, cluster) in config.clusters.iter().enumerate() {
        if !seen.insert((cluster.namespace.as_str(), cluster.name.as_str())) {
            errors.push(FieldError::new(
                format!("clusters[{i}]"),
                format!("duplicate cluster {}/{}", cluster.namespace, cluster.name),
            ));
        }
    }
}

fn check_bucket(path: &str, bucket: &str, errors: &mut Vec<FieldError>) {
    let name = bucket.split('/').next().unwrap_or_default();
    let valid = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        errors.push(FieldError::new(
            path,
            format!("{name:?} is not a valid S3 bucket name"),
        ));
    }
}

fn check_endpoint(path: &str, url: &str, errors: &mut Vec<FieldError>) {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    if rest.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
        errors.push(FieldError::new(
            path,
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
}

/// RFC 1123 label: what Kubernetes requires of namespace names.
fn is_dns1123_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// RFC 1123 subdomain: what Kubernetes requires of most object names.
fn is_dns1123_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len()) && s.split('.').all(is_dns1123_label)
}

/// Storage names become keys of `spec.backup.storages` and parts of backup names.
fn is_storage_name(s: &str) -> bool {
    is_dns1123_label(s)
}

/// A Kubernetes resource quantity such as `100Gi`, `1.5T` or `500M`.
fn is_quantity(s: &str) -> bool {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    !number.is_empty()
        && number.parse::<f64>().is_ok()
        && [
            "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
        ]
        .contains(&suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for ok in ["100Gi", "1.5T", "500M", "1024"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "10GB", "1,5Gi", "-1Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns1123_label("percona-prod"));
        assert!(!is_dns1123_label("Percona"));
        assert!(!is_dns1123_label("-x"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("cluster1.example"));
    }
}
