//! `backstop status`: every managed cluster's intent, phase, target and journal message, read
//! from the API server, and the newest word of the alert-route check (its Events) where it
//! says the route is broken or unproven.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::json;

use crate::config::Config;

use kube::api::DynamicObject;

use super::cluster::{
    ClusterKey, cluster_api, is_paused, list_clusters, read_intent, read_journal,
};
use super::journal::Phase;
use super::route_check::reasons;
use crate::managed::{self as opt_in, Resolution, Source};

/// One managed cluster as `backstop status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub cluster: String,
    /// Whether the cluster exists.
    pub found: bool,
    /// Whether the alerts want it failed over.
    pub wants_failover: bool,
    /// Whether the kill switch is on.
    pub paused: bool,
    /// The journal, if any (or the problem reading it).
    pub journal: Option<serde_json::Value>,
    /// What the alert-route check last said, when it says the route is broken or unproven.
    pub alert_route: Option<String>,
    /// How it came to be managed ([`Source::as_str`]); for a cluster listed in
    /// `clusters[]` whose opt-in annotations are ignored, says so.
    pub managed_by: String,
    /// Why its opt-in cannot be used (empty when it can).
    pub opt_in_problems: Vec<String>,
}

/// Reads every managed cluster (optionally one namespace or cluster).
///
/// # Errors
///
/// The Kubernetes error when a cluster cannot be read.
pub async fn status(
    client: &kube::Client,
    config: &Config,
    namespace: Option<&str>,
    cluster: Option<&str>,
) -> Result<Vec<StatusRow>, kube::Error> {
    let wanted = |ns: &str, name: &str| {
        namespace.is_none_or(|n| n == ns) && cluster.is_none_or(|c| c == name)
    };
    let mut rows = Vec::new();
    for managed in config
        .clusters
        .iter()
        .filter(|c| wanted(&c.namespace, &c.name))
    {
        let object = cluster_api(client, &managed.namespace)
            .get_opt(&managed.name)
            .await?;
        rows.push(
            row(
                client,
                config,
                &managed.namespace,
                &managed.name,
                object.as_ref(),
            )
            .await?,
        );
    }
    if config.opt_in.enabled() {
        for object in opted_in(client, config, namespace).await? {
            let key = ClusterKey::of(&object);
            if wanted(&key.namespace, &key.name)
                && !config
                    .clusters
                    .iter()
                    .any(|c| c.namespace == key.namespace && c.name == key.name)
                && (opt_in::resolve_object(config, &object) != Resolution::Unmanaged
                    || left_failed_over(&object))
            {
                rows.push(row(client, config, &key.namespace, &key.name, Some(&object)).await?);
            }
        }
    }
    Ok(rows)
}

/// Whether an unmanaged cluster's journal says it runs on a failover target (its opt-in was
/// withdrawn, or it left `clusters[]`, during a run): shown, since nothing will revert it.
fn left_failed_over(object: &DynamicObject) -> bool {
    read_journal(object)
        .ok()
        .flatten()
        .is_some_and(|j| matches!(j.phase, Phase::FailedOver | Phase::Verifying))
}

/// Every cluster in the namespaces `status` looks at, for the opted-in among them.
async fn opted_in(
    client: &kube::Client,
    config: &Config,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let scopes = match namespace {
        Some(ns) => vec![Some(ns)],
        None => config.kubernetes.scopes(),
    };
    list_clusters(client, &scopes).await
}

async fn row(
    client: &kube::Client,
    config: &Config,
    namespace: &str,
    name: &str,
    object: Option<&DynamicObject>,
) -> Result<StatusRow, kube::Error> {
    let Some(object) = object else {
        return Ok(StatusRow {
            namespace: namespace.to_owned(),
            cluster: name.to_owned(),
            found: false,
            wants_failover: false,
            paused: false,
            journal: None,
            alert_route: None,
            managed_by: Source::Config.as_str().to_owned(),
            opt_in_problems: Vec::new(),
        });
    };
    let (managed_by, opt_in_problems) = match opt_in::resolve_object(config, object) {
        Resolution::Managed(m) if m.ignored.is_empty() => (m.source.as_str().to_owned(), vec![]),
        Resolution::Managed(m) => (
            format!(
                "{}, which wins: ignored annotations {}",
                m.source.as_str(),
                m.ignored.join(", ")
            ),
            vec![],
        ),
        Resolution::Invalid(problems) => ("nothing (opt-in invalid)".to_owned(), problems),
        Resolution::Unmanaged => (
            "nothing: it left Backstop during a run, and nothing will revert it".to_owned(),
            vec![],
        ),
    };
    Ok(StatusRow {
        namespace: namespace.to_owned(),
        cluster: name.to_owned(),
        found: true,
        wants_failover: read_intent(object).wants_failover(),
        paused: is_paused(object),
        journal: match read_journal(object) {
            Ok(j) => j.and_then(|j| serde_json::to_value(j).ok()),
            Err(problem) => Some(json!({"error": problem})),
        },
        alert_route: alert_route(client, namespace, name).await?,
        managed_by,
        opt_in_problems,
    })
}

/// The newest alert-route Event about the cluster, as a line, when it says the route is broken
/// (`AlertNotReceived`) or unproven (`AlertRouteUnproven`); nothing when the newest says the
/// notification came, or there is none (the API server keeps Events an hour by default); and
/// "unknown" when the credentials may not list Events.
async fn alert_route(
    client: &kube::Client,
    namespace: &str,
    cluster: &str,
) -> Result<Option<String>, kube::Error> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    // Filtered here rather than by field selector, which not every API server in the tests
    // supports for Events; a namespace's Events are few.
    let list = match events.list(&ListParams::default()).await {
        Ok(list) => list,
        // Backstop's own ServiceAccount only creates Events (least privilege); run as it,
        // status says what it cannot know instead of failing.
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Ok(Some(format!(
                "unknown: these credentials may not list Events in {namespace}"
            )));
        }
        Err(e) => return Err(e),
    };
    let newest = list
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(cluster)
                && e.involved_object.kind.as_deref() == Some("PerconaXtraDBCluster")
                && e.reason.as_deref().is_some_and(|r| {
                    [reasons::NOT_RECEIVED, reasons::RECEIVED, reasons::UNPROVEN].contains(&r)
                })
        })
        .max_by_key(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        });
    Ok(newest.and_then(|e| {
        let reason = e.reason?;
        (reason != reasons::RECEIVED)
            .then(|| format!("{reason}: {}", e.message.unwrap_or_default()))
    }))
}

/// Renders status rows as aligned columns.
pub fn render_table(rows: &[StatusRow]) -> String {
    let mut lines = vec![
        [
            "NAMESPACE",
            "CLUSTER",
            "INTENT",
            "PHASE",
            "TARGET",
            "SINCE",
            "RUN",
            "MESSAGE",
        ]
        .map(str::to_owned),
    ];
    for row in rows {
        let j = row.journal.as_ref();
        let field = |k: &str| {
            j.and_then(|j| j.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or("-")
                .to_owned()
        };
        let intent = if !row.found {
            "not found"
        } else if !row.opt_in_problems.is_empty() {
            "opt-in invalid"
        } else if row.paused {
            "paused"
        } else if row.wants_failover {
            "failover"
        } else {
            "normal"
        };
        let since = j
            .and_then(|j| {
                j.get("finishedAt")
                    .or_else(|| j.get("revertedAt"))
                    .or_else(|| j.get("movedAt"))
                    .or_else(|| j.get("movedToBufferAt"))
                    .or_else(|| j.get("failedOverAt"))
            })
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_owned();
        let moved = j.is_some_and(|j| j.get("movedToBufferAt").is_some());
        let moves = j
            .and_then(|j| j.get("moves"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        // In place, the entry is the primary's: the secondary it now holds is named too.
        let storage = match field("targetSecondary").as_str() {
            "-" => field("targetStorage"),
            name if name == field("targetStorage") => name.to_owned(),
            name => format!("{}={name}", field("targetStorage")),
        };
        let target = match field("targetKind").as_str() {
            "-" => "-".to_owned(),
            kind if moves > 0 => format!("{kind}:{storage} (after {moves} move(s))"),
            kind if moved => format!("{kind}:{storage} (moved from the secondary)"),
            kind => format!("{kind}:{storage}"),
        };
        lines.push([
            row.namespace.clone(),
            row.cluster.clone(),
            intent.to_owned(),
            match field("phase").as_str() {
                "-" => "never failed over".to_owned(),
                phase => phase.to_owned(),
            },
            target,
            since,
            field("runId"),
            j.and_then(|j| j.get("message").or_else(|| j.get("error")))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out: Vec<String> = lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect();
    for row in rows {
        let j = row.journal.as_ref();
        let failed_over =
            j.and_then(|j| j.get("phase")).and_then(|v| v.as_str()) == Some("FailedOver");
        if let Some(blast) = j
            .and_then(|j| j.get("blastRadius"))
            .and_then(|v| v.as_str())
            .filter(|_| failed_over)
        {
            out.push(format!(
                "BLAST RADIUS {}/{}: {blast}",
                row.namespace, row.cluster
            ));
        }
        if row.managed_by != Source::Config.as_str() {
            out.push(format!(
                "MANAGED BY {}/{}: {}",
                row.namespace, row.cluster, row.managed_by
            ));
        }
        if !row.opt_in_problems.is_empty() {
            out.push(format!(
                "OPT-IN INVALID {}/{}: {}",
                row.namespace,
                row.cluster,
                row.opt_in_problems.join("; ")
            ));
        }
        if let Some(route) = &row.alert_route {
            out.push(format!(
                "ALERT ROUTE {}/{}: {route}",
                row.namespace, row.cluster
            ));
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(journal: serde_json::Value) -> StatusRow {
        StatusRow {
            namespace: "ns".into(),
            cluster: "c1".into(),
            found: true,
            wants_failover: true,
            paused: false,
            journal: Some(journal),
            alert_route: None,
            managed_by: Source::Config.as_str().to_owned(),
            opt_in_problems: Vec::new(),
        }
    }

    #[test]
    fn a_run_that_moved_to_the_buffer_says_so_and_since_when() {
        let table = render_table(&[
            row(json!({
                "phase": "FailedOver", "targetKind": "secondary", "targetStorage": "dr",
                "failedOverAt": "2026-11-24T03:10:30Z", "runId": "r1",
            })),
            row(json!({
                "phase": "FailedOver", "targetKind": "buffer", "targetStorage": "buf",
                "failedOverAt": "2026-11-24T03:10:30Z",
                "movedToBufferAt": "2026-11-24T03:20:30Z", "runId": "r2",
                "message": "the secondary storage \"dr\" failed 3 checks in a row",
            })),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].contains("secondary:dr  "), "{table}");
        assert!(lines[1].contains("2026-11-24T03:10:30Z"), "{table}");
        assert!(
            lines[2].contains("buffer:buf (moved from the secondary)"),
            "{table}"
        );
        assert!(lines[2].contains("2026-11-24T03:20:30Z"), "{table}");
        assert!(lines[2].contains("failed 3 checks"), "{table}");
        assert_eq!(
            lines.len(),
            3,
            "no route line without a word from the check: {table}"
        );
    }

    #[test]
    fn how_a_cluster_is_managed_is_said_when_it_is_not_the_configuration_alone() {
        let mut annotated = row(json!({}));
        annotated.managed_by = Source::Annotation.as_str().into();
        let mut listed = row(json!({}));
        listed.cluster = "c2".into();
        listed.managed_by = "configuration (clusters[]), which wins: ignored annotations \
                             backstop.percona.com/strategy"
            .into();
        let mut invalid = row(json!({}));
        invalid.cluster = "c3".into();
        invalid.managed_by = "nothing (opt-in invalid)".into();
        invalid.opt_in_problems = vec!["annotation backstop.percona.com/managed: \"yes\"".into()];
        let table = render_table(&[annotated, listed, invalid, row(json!({}))]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[3].contains("opt-in invalid"), "{table}");
        assert!(table.contains("MANAGED BY ns/c1: annotation\n"), "{table}");
        assert!(
            table.contains("MANAGED BY ns/c2: configuration (clusters[]), which wins: ignored"),
            "{table}"
        );
        assert!(
            table.contains("OPT-IN INVALID ns/c3: annotation backstop.percona.com/managed"),
            "{table}"
        );
        assert_eq!(
            table.matches("MANAGED BY").count(),
            3,
            "none for clusters[] alone: {table}"
        );
    }

    #[test]
    fn a_run_that_moved_between_targets_names_the_secondary_and_counts_the_moves() {
        let table = render_table(&[
            row(json!({
                "phase": "FailedOver", "targetKind": "secondary", "targetStorage": "s3-us-west",
                "targetSecondary": "dr-eu", "strategy": "in-place", "moves": 2,
                "failedOverAt": "2026-11-24T03:10:30Z", "movedAt": "2026-11-24T03:40:30Z",
                "runId": "r1",
            })),
            row(json!({
                "phase": "FailedOver", "targetKind": "secondary", "targetStorage": "dr-eu",
                "targetSecondary": "dr-eu", "failedOverAt": "2026-11-24T03:10:30Z", "runId": "r2",
            })),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].contains("secondary:s3-us-west=dr-eu (after 2 move(s))"),
            "{table}"
        );
        assert!(lines[1].contains("2026-11-24T03:40:30Z"), "{table}");
        assert!(lines[2].contains("secondary:dr-eu  "), "{table}");
    }

    #[test]
    fn a_failover_says_how_far_the_failure_reached() {
        let table = render_table(&[row(json!({
            "phase": "FailedOver", "targetKind": "secondary", "targetStorage": "dr",
            "blastRadius": "s3-us-west: region (every one of the 2 targets in region us-west-2 fails)",
        }))]);
        assert_eq!(
            table.lines().last().unwrap_or_default(),
            "BLAST RADIUS ns/c1: s3-us-west: region (every one of the 2 targets in region us-west-2 fails)"
        );
        // Once reverted, the verdict is history: the journal keeps it, the table does not.
        let table = render_table(&[row(json!({
            "phase": "Reverted", "blastRadius": "s3-us-west: region (...)",
        }))]);
        assert!(!table.contains("BLAST RADIUS"), "{table}");
    }

    #[test]
    fn a_broken_route_gets_a_line_under_the_table() {
        let mut silent = row(json!({}));
        silent.alert_route = Some("AlertNotReceived: storage s3-us-west has failed".into());
        let table = render_table(&[silent]);
        let last = table.lines().last().unwrap_or_default();
        assert_eq!(
            last,
            "ALERT ROUTE ns/c1: AlertNotReceived: storage s3-us-west has failed"
        );
    }
}
