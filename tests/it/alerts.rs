//! The alert rules as shipped: `promtool` accepts the rule file and passes its unit tests,
//! the PrometheusRule (and its copy in `deploy/base/`) carries exactly the same groups, every
//! alert is documented, tested and linked to an existing runbook section, the failover alert
//! carries the labels the responder routes on, and the Alertmanager snippet is a valid
//! configuration. Needs `promtool` and `amtool` (Debian: `prometheus`,
//! `prometheus-alertmanager`; `scripts/test.sh` installs them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

const RULES: &str = "alerts/backstop.rules.yaml";
const PROMETHEUS_RULE: &str = "alerts/prometheusrule.yaml";
const DEPLOY_PROMETHEUS_RULE: &str = "deploy/base/prometheusrule.yaml";
const RUNBOOK: &str = "docs/runbook.md";
/// The placeholder the shipped rules link to until `scripts/runbook-base.sh` points them at
/// the user's copy of docs/runbook.md.
const RUNBOOK_URL: &str = "https://runbooks.example.com/backstop/runbook.md#";

/// The labels the responder routes S3BackupTargetUnavailable on.
const ROUTING_LABELS: [&str; 5] = ["namespace", "cluster", "storage", "bucket", "region"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `program` in the repository root and returns its output, failing with everything it
/// printed unless it exited 0.
fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (scripts/test.sh installs the tools the tests need)")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Every alerting rule of the plain rule file.
fn alerts() -> Vec<Value> {
    yaml(RULES)["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

fn unit_test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("alerts/tests"))
        .expect("alerts/tests")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no alerts/tests/*.yaml");
    files
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to `-`, punctuation dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn promtool_accepts_the_rule_file() {
    let output = run("promtool", &["check", "rules", RULES]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn promtool_unit_tests_pass() {
    let files = unit_test_files();
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("promtool", &args);
}

#[test]
fn every_alert_is_tested_firing_and_silent() {
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for file in unit_test_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        for test in doc["tests"].as_array().expect("tests") {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_owned();
                let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
                if expected == 0 {
                    silent.insert(name);
                } else {
                    firing.insert(name);
                }
            }
        }
    }
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        assert!(firing.contains(name), "no unit test expects {name} to fire");
        assert!(
            silent.contains(name),
            "no unit test expects {name} to stay silent"
        );
    }
}

#[test]
fn prometheus_rule_has_exactly_the_rule_files_groups() {
    let rule = yaml(PROMETHEUS_RULE);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"],
        yaml(RULES)["groups"],
        "{PROMETHEUS_RULE} spec.groups differs from {RULES} groups"
    );
}

#[test]
fn deploy_copy_of_the_prometheus_rule_is_identical() {
    assert!(
        read(DEPLOY_PROMETHEUS_RULE) == read(PROMETHEUS_RULE),
        "{DEPLOY_PROMETHEUS_RULE} differs from {PROMETHEUS_RULE}: cp {PROMETHEUS_RULE} {DEPLOY_PROMETHEUS_RULE}"
    );
}

#[test]
fn every_alert_has_severity_annotations_and_a_runbook_section() {
    let runbook = read(RUNBOOK);
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(github_anchor)
        .collect();
    let alerts_doc = read("docs/alerts.md");
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description", "runbook_url"] {
            let text = alert["annotations"][annotation]
                .as_str()
                .unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name}: no {annotation}");
        }
        let url = alert["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url
            .strip_prefix(RUNBOOK_URL)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not under {RUNBOOK_URL}"));
        assert!(
            anchors.contains(anchor),
            "{name}: {RUNBOOK} has no heading with anchor #{anchor} (has {anchors:?})"
        );
        assert_eq!(
            anchor,
            github_anchor(name),
            "{name}: its section is its name"
        );
        assert!(
            alerts_doc.contains(&format!("| {name} |")),
            "{name}: no row in docs/alerts.md"
        );
    }
}

/// Renders an annotation template that uses only `{{ $labels.NAME }}`.
fn render(template: &str, labels: &Value) -> String {
    let mut out = template.to_owned();
    for (name, value) in labels.as_object().unwrap() {
        out = out.replace(
            &format!("{{{{ $labels.{name} }}}}"),
            value.as_str().unwrap(),
        );
    }
    assert!(!out.contains("{{"), "unrendered template: {out}");
    out
}

/// Runs promtool on a unit test written here, against the shipped rule file: a target down on
/// both replicas, used by two cluster storages, fires once per storage with exactly the
/// routing labels (and the target's other labels), and nothing else.
#[test]
fn s3_backup_target_unavailable_carries_the_routing_labels() {
    let alert = alerts()
        .into_iter()
        .find(|a| a["alert"] == "S3BackupTargetUnavailable")
        .expect("S3BackupTargetUnavailable");
    assert_eq!(alert["labels"]["severity"], "critical");

    let target = "s3://pxc-backups/prod/@us-west-2";
    let info = |instance: &str, namespace: &str, cluster: &str, storage: &str| {
        json!({
            "series": format!(
                "backstop_s3_target_info{{job=\"backstop\",instance=\"{instance}\",target=\"{target}\",\
                 bucket=\"pxc-backups\",prefix=\"prod/\",region=\"us-west-2\",endpoint=\"\",\
                 namespace=\"{namespace}\",cluster=\"{cluster}\",storage=\"{storage}\"}}"
            ),
            "values": "1x10",
        })
    };
    let up = |instance: &str| {
        json!({
            "series": format!("backstop_s3_up{{job=\"backstop\",instance=\"{instance}\",target=\"{target}\"}}"),
            "values": "0x10",
        })
    };
    let expected = |namespace: &str, cluster: &str, storage: &str| {
        let routing = BTreeMap::from([
            ("namespace", namespace),
            ("cluster", cluster),
            ("storage", storage),
            ("bucket", "pxc-backups"),
            ("region", "us-west-2"),
        ]);
        // promtool compares the whole label set: the routing labels and nothing missing.
        let mut labels = json!({"severity": "critical", "prefix": "prod/", "target": target});
        for label in ROUTING_LABELS {
            labels[label] = json!(routing[label]);
        }
        let annotations: BTreeMap<&str, String> = alert["annotations"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), render(v.as_str().unwrap(), &labels)))
            .collect();
        json!({"exp_labels": labels, "exp_annotations": annotations})
    };
    let test = json!({
        "rule_files": [root().join(RULES).display().to_string()],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                up("a"), up("b"),
                info("a", "percona", "cluster1", "s3-us-west"),
                info("b", "percona", "cluster1", "s3-us-west"),
                info("a", "orders", "orders-db", "s3"),
            ],
            "alert_rule_test": [{
                "eval_time": "5m",
                "alertname": "S3BackupTargetUnavailable",
                "exp_alerts": [
                    expected("percona", "cluster1", "s3-us-west"),
                    expected("orders", "orders-db", "s3"),
                ],
            }],
        }],
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routing.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(&test).unwrap()).unwrap();
    run("promtool", &["test", "rules", &file.display().to_string()]);
}

/// The snippet's route, receiver and inhibit rule, merged into a complete alertmanager.yml
/// under a default receiver, pass `amtool check-config`; and the route sends
/// S3BackupTargetUnavailable with its resolution to Backstop's webhook with a bearer token.
#[test]
fn alertmanager_snippet_is_a_valid_configuration() {
    let snippet = yaml("deploy/alertmanager-snippet.yml");
    let routes = snippet["route"]["routes"].as_array().expect("route.routes");
    let backstop = routes
        .iter()
        .find(|r| r["receiver"] == "backstop")
        .expect("a route to the backstop receiver");
    assert_eq!(
        backstop["matchers"],
        json!(["alertname=\"S3BackupTargetUnavailable\""])
    );
    let receiver = &snippet["receivers"][0];
    assert_eq!(receiver["name"], "backstop");
    let webhook = &receiver["webhook_configs"][0];
    assert_eq!(webhook["send_resolved"], true);
    assert_eq!(webhook["http_config"]["authorization"]["type"], "Bearer");
    assert!(
        webhook["http_config"]["authorization"]["credentials_file"]
            .as_str()
            .is_some_and(|f| !f.is_empty())
    );
    let config = yaml("deploy/config.example.yaml");
    let path = config["server"]["webhook_path"].as_str().unwrap();
    assert!(
        webhook["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":10317{path}")),
        "{}",
        webhook["url"]
    );

    let mut receivers = vec![json!({"name": "default"})];
    receivers.extend(snippet["receivers"].as_array().unwrap().iter().cloned());
    let full = json!({
        "route": {"receiver": "default", "group_by": ["alertname"], "routes": routes},
        "receivers": receivers,
        "inhibit_rules": snippet["inhibit_rules"],
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alertmanager.yml");
    std::fs::write(&file, serde_yaml_ng::to_string(&full).unwrap()).unwrap();
    let output = run("amtool", &["check-config", &file.display().to_string()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// The prometheus-operator AlertmanagerConfig routes the same alert the same way.
#[test]
fn alertmanager_config_routes_the_failover_alert_with_resolutions() {
    let am = yaml("deploy/base/alertmanagerconfig.yaml");
    assert_eq!(am["apiVersion"], "monitoring.coreos.com/v1alpha1");
    let matchers: BTreeMap<String, String> = am["spec"]["route"]["matchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["matchType"], "=");
            (
                m["name"].as_str().unwrap().to_owned(),
                m["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        matchers,
        BTreeMap::from([(
            "alertname".to_owned(),
            "S3BackupTargetUnavailable".to_owned()
        )])
    );
    let webhook = &am["spec"]["receivers"][0]["webhookConfigs"][0];
    assert_eq!(webhook["sendResolved"], true);
    assert_eq!(
        webhook["url"],
        "http://backstop.backstop.svc:10317/alertmanager"
    );
    assert_eq!(
        webhook["httpConfig"]["authorization"]["credentials"],
        json!({"name": "backstop-webhook", "key": "token"})
    );
}

/// `scripts/runbook-base.sh URL` points every link at the user's runbook, keeps each anchor,
/// and leaves files promtool still accepts, tests and all; a URL it cannot use changes
/// nothing.
#[test]
fn the_runbook_base_is_one_setting() {
    let copy = tempfile::tempdir().unwrap();
    for dir in ["alerts/tests", "deploy/base", "dashboards"] {
        std::fs::create_dir_all(copy.path().join(dir)).unwrap();
    }
    let files = [
        RULES,
        PROMETHEUS_RULE,
        DEPLOY_PROMETHEUS_RULE,
        "alerts/tests/backups.yaml",
        "alerts/tests/responder.yaml",
        "alerts/tests/s3.yaml",
        "alerts/tests/self.yaml",
        "dashboards/backstop.json",
    ];
    for file in files {
        std::fs::copy(root().join(file), copy.path().join(file)).unwrap();
    }
    let script = root().join("scripts/runbook-base.sh");
    let base = "https://git.example.org/ops/backstop/-/blob/main/docs/runbook.md";
    let rewrite = |url: &str| {
        Command::new("bash")
            .arg(&script)
            .arg(url)
            .arg(copy.path())
            .output()
            .unwrap()
    };
    let refused = rewrite("not a url");
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(copy.path().join(RULES)).unwrap(),
        read(RULES),
        "a refused URL changes nothing"
    );
    let done = rewrite(base);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    for file in files {
        let text = std::fs::read_to_string(copy.path().join(file)).unwrap();
        assert!(
            !text.contains(RUNBOOK_URL.trim_end_matches('#')),
            "{file} still links to the placeholder"
        );
        assert_eq!(
            text.matches(base).count(),
            read(file)
                .matches(RUNBOOK_URL.trim_end_matches('#'))
                .count(),
            "{file}: every link moved, no other text"
        );
    }
    // The anchors are the alerts' sections, as before.
    let rules = std::fs::read_to_string(copy.path().join(RULES)).unwrap();
    assert!(rules.contains(&format!("{base}#s3backuptargetunavailable")));
    // promtool still passes the rewritten rules and their rewritten tests.
    let tests: Vec<String> = files[3..7]
        .iter()
        .map(|f| copy.path().join(f).display().to_string())
        .collect();
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    run("promtool", &args);
}
