//! The Grafana dashboard's queries and the alert rules against a real Prometheus: Backstop runs
//! on the sandbox world (one backup succeeded, then the primary region refuses access and a
//! backup fails), the `prometheus` binary scrapes it every second with
//! `alerts/backstop.rules.yaml` loaded, and every PromQL expression of
//! `dashboards/backstop.json` (variables substituted) and of the rules must parse and, where
//! its series exist on this branch, return data. The rules must evaluate without error, and
//! S3BackupTargetUnavailable must go pending for the refused primary with its routing labels.
//! Needs `prometheus` (Debian package `prometheus`; `scripts/test.sh` installs it).

use std::collections::BTreeSet;

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::ManualClock;
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, WorldOptions};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::common;
use common::{Backend, on_both_backends};

use common::monitoring::{Prometheus, listening_address, root};

use common::sandbox::{self, DEADLINE, sample};

/// Metrics allowed to have no series in this test. Empty: the test drives a failover, so
/// every responder series exists too. A metric added to the dashboard or the rules that
/// the sandbox cannot produce must be listed here with the reason.
const NOT_EXPORTED_YET: [&str; 0] = [];

/// Grafana's variables as the dashboard would set them for the sandbox's cluster.
const VARIABLES: [(&str, &str); 9] = [
    ("${datasource}", "prometheus"),
    ("$datasource", "prometheus"),
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "1h"),
    ("${namespace}", world::NAMESPACE),
    ("$namespace", world::NAMESPACE),
    ("${cluster}", world::CLUSTER),
    ("$cluster", world::CLUSTER),
];

fn substitute(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (variable, value) in VARIABLES {
        out = out.replace(variable, value);
    }
    assert!(!out.contains('$'), "unknown variable in {expr}");
    out
}

/// One expression to check, with where it came from.
struct Expression {
    origin: String,
    expr: String,
    /// Whether its series exist on this branch (else it only has to parse).
    needs_data: bool,
}

fn needs_data(expr: &str) -> bool {
    !NOT_EXPORTED_YET.iter().any(|name| expr.contains(name))
}

/// Every target expression of the dashboard's panels (rows included) and the selector of
/// every `label_values(SELECTOR, LABEL)` variable, with the label value it must offer.
fn dashboard_expressions() -> (Vec<Expression>, Vec<(String, String, String)>) {
    let path = root().join("dashboards/backstop.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fn walk(panels: &Value, out: &mut Vec<Expression>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("target without expr");
                out.push(Expression {
                    origin: format!(
                        "panel {:?} target {}",
                        panel["title"].as_str().unwrap_or_default(),
                        target["refId"].as_str().unwrap_or_default()
                    ),
                    expr: substitute(expr),
                    needs_data: needs_data(expr),
                });
            }
            walk(&panel["panels"], out);
        }
    }
    let mut expressions = Vec::new();
    walk(&dashboard["panels"], &mut expressions);

    let mut variables = Vec::new();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["definition"].as_str().unwrap();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {query} is not label_values(...)"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let name = variable["name"].as_str().unwrap();
        let wanted = match name {
            "namespace" => world::NAMESPACE,
            "cluster" => world::CLUSTER,
            other => panic!("unexpected variable {other}"),
        };
        variables.push((
            substitute(selector.trim()),
            label.trim().to_owned(),
            wanted.to_owned(),
        ));
    }
    (expressions, variables)
}

/// Every rule expression, and the `backstop_*` metrics each reads.
fn rule_expressions() -> Vec<(String, String, BTreeSet<String>)> {
    let rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("alerts/backstop.rules.yaml")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap().to_owned();
            let metrics = metric_names(&expr);
            let name = format!(
                "rule {} ({})",
                rule["alert"].as_str().unwrap(),
                rule["labels"]["severity"].as_str().unwrap_or_default()
            );
            out.push((name, expr, metrics));
        }
    }
    out
}

/// The `backstop_*` identifiers in `expr`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("backstop_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn status(answer: &Value) -> &str {
    answer["status"].as_str().unwrap_or_default()
}

fn series(answer: &Value) -> Vec<Value> {
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether `expr` parses and (when `needs_data`) returns at least one series; polled until
/// `deadline` (shared by all checks), since rates need two scrapes. Returns what was wrong.
async fn check(
    prometheus: &Prometheus,
    deadline: tokio::time::Instant,
    origin: &str,
    expr: &str,
    needs_data: bool,
) -> Option<String> {
    loop {
        let answer = prometheus.query(expr).await;
        if status(&answer) != "success" {
            return Some(format!(
                "{origin}: does not evaluate: {}\n  {expr}",
                answer["error"]
            ));
        }
        if !needs_data || !series(&answer).is_empty() {
            return None;
        }
        if tokio::time::Instant::now() >= deadline {
            return Some(format!("{origin}: no data\n  {expr}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

on_both_backends!(every_dashboard_and_rule_expression_evaluates_against_backstop_in_prometheus);
async fn every_dashboard_and_rule_expression_evaluates_against_backstop_in_prometheus(
    backend: Backend,
) {
    // Backstop on the sandbox, its clock driving the operator's schedule by hand.
    let clock = ManualClock::new(Timestamp::now());
    let options = WorldOptions {
        clock: Arc::new(clock.clone()),
        operator_interval: None,
        history: 3,
        retention: 10,
        ..common::world_on(backend)
    };
    let r = sandbox::start(options, Arc::new(clock.clone()), |config| {
        config.probe.interval = backstop::config::HumanDuration(Duration::from_secs(1));
        config.probe.timeout = backstop::config::HumanDuration(Duration::from_millis(500));
    })
    .await;
    r.wait_until("both targets probed, the newest object seen", |t| {
        t.lines()
            .filter(|l| l.starts_with("backstop_s3_up{") && l.ends_with(" 1"))
            .count()
            == 2
            && t.contains("backstop_s3_newest_object_timestamp_seconds{")
    })
    .await;

    // One scheduled backup succeeds, then the primary region refuses access and the next
    // fails: completions of both results, a failure cause, probe errors, a target down.
    r.world.operator.step().await.unwrap();
    clock.advance(SignedDuration::from_secs(60));
    let report = r.world.operator.step().await.unwrap();
    assert_eq!(report.succeeded.len(), 1, "{report:?}");
    r.world
        .s3
        .faults()
        .set(Rule::new(Fault::AccessDenied).in_region(s3::PRIMARY_REGION))
        .await
        .unwrap();
    clock.advance(SignedDuration::from_secs(60));
    let report = r.world.operator.step().await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let primary = format!("bucket=\"{}\"", world::PRIMARY_BUCKET);
    r.wait_until("the failure counted and the primary down", |t| {
        sample(t, "backstop_backup_failures_total{", &[]).is_some()
            && sample(
                t,
                "backstop_backup_completions_total{",
                &["result=\"failed\""],
            ) == Some(1.0)
            && t.contains("backstop_s3_probe_errors_total{")
            && t.lines()
                .filter(|l| l.starts_with("backstop_s3_up{") && l.ends_with(" 0"))
                .count()
                == 1
            && t.contains(&primary)
    })
    .await;

    // Alertmanager's notification for the refused primary (the real payload): the responder
    // fails the cluster over, so its webhook, playbook and failover series exist.
    let firing = common::fixtures::text("alertmanager/webhook-firing.json").into_bytes();
    let answer = reqwest::Client::new()
        .post(format!("{}/alertmanager", r.base))
        .header("content-type", "application/json")
        .header("authorization", "Bearer t")
        .body(firing)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    r.wait_for(
        "backstop_failover_active{namespace=\"percona\",cluster=\"cluster1\",target_kind=\"secondary\"} 1",
    )
    .await;

    let prometheus = Prometheus::start(r.base.trim_start_matches("http://"), None).await;
    prometheus
        .wait_until("Backstop scraped", |p| async move {
            series(&p.query("up{job=\"backstop\"} == 1").await).len() == 1
        })
        .await;

    let mut wrong = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let (expressions, variables) = dashboard_expressions();
    assert!(expressions.len() >= 20, "{} expressions", expressions.len());
    for e in &expressions {
        wrong.extend(check(&prometheus, deadline, &e.origin, &e.expr, e.needs_data).await);
    }
    for (selector, label, wanted) in &variables {
        let answer = prometheus.query(selector).await;
        let offered: BTreeSet<&str> = answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["metric"][label.as_str()].as_str())
            .collect();
        if !offered.contains(wanted.as_str()) {
            wrong.push(format!(
                "variable label_values({selector}, {label}) does not offer {wanted}: {answer}"
            ));
        }
    }
    // Alert expressions return nothing while their condition is false: each must parse, and
    // every metric it reads must have data.
    for (origin, expr, metrics) in rule_expressions() {
        wrong.extend(check(&prometheus, deadline, &origin, &expr, false).await);
        for metric in metrics.iter().filter(|m| needs_data(m)) {
            let selector = format!("{{__name__=\"{metric}\"}}");
            if let Some(problem) = check(&prometheus, deadline, &origin, &selector, true).await {
                wrong.push(format!("{problem} (read by the rule)"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} problems:\n{}\n\nBackstop's metrics:\n{}",
        wrong.len(),
        wrong.join("\n"),
        r.metrics().await
    );

    // Every rule has been evaluated without error.
    prometheus
        .wait_until("every rule evaluated", |p| async move {
            let rules = p.get("/api/v1/rules").await;
            let all: Vec<Value> = rules["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            !all.is_empty()
                && all.iter().all(|r| {
                    r["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001-"))
                })
        })
        .await;
    let rules = prometheus.get("/api/v1/rules").await;
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(
                rule["health"], "ok",
                "rule {} fails to evaluate: {}",
                rule["name"], rule["lastError"]
            );
        }
    }

    // The failover alert for the refused primary, with the labels the responder routes on.
    let expected = [
        ("alertname", "S3BackupTargetUnavailable"),
        ("namespace", world::NAMESPACE),
        ("cluster", world::CLUSTER),
        ("storage", world::PRIMARY_STORAGE),
        ("bucket", world::PRIMARY_BUCKET),
        ("region", s3::PRIMARY_REGION),
        ("severity", "critical"),
    ];
    prometheus
        .wait_until(
            "S3BackupTargetUnavailable pending for the primary",
            |p| async move {
                let alerts = p.get("/api/v1/alerts").await;
                alerts["data"]["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| {
                        expected.iter().all(|(k, v)| a["labels"][*k] == *v)
                            && ["pending", "firing"]
                                .contains(&a["state"].as_str().unwrap_or_default())
                    })
            },
        )
        .await;

    drop(prometheus);
    r.stop().await;
}

#[test]
fn prometheus_listening_address_is_read_from_its_log() {
    let log = "ts=2026-11-24T19:17:44.046Z caller=web.go:503 level=info component=web msg=\"Start listening for connections\" address=127.0.0.1:0\n\
               ts=2026-11-24T19:17:44.052Z caller=tls_config.go:232 level=info component=web msg=\"Listening on\" address=127.0.0.1:43621\n";
    assert_eq!(listening_address(log), Some("127.0.0.1:43621"));
    assert_eq!(
        listening_address("level=info msg=\"Starting Prometheus\""),
        None
    );
}
