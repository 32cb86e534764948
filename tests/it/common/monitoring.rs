//! Real Prometheus and Alertmanager processes for tests: started on 127.0.0.1 with ports of
//! their choosing (read back from their logs), each with its own directory, killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::sandbox::DEADLINE;

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A `prometheus` process with its own data directory, killed on drop.
pub struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Prometheus {
    /// Starts Prometheus on 127.0.0.1 with a port of its choosing, scraping `target`
    /// (`HOST:PORT`) every second with the project's rules, and waits until it serves.
    pub async fn start(target: &str, alertmanager: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules = root().join("alerts/backstop.rules.yaml");
        Self::start_with_rules(target, alertmanager, &rules, dir).await
    }

    /// Like [`Prometheus::start`] with another rule file (for example the shipped one with
    /// test `for` durations), sending alerts to `alertmanager` (`HOST:PORT`) when given.
    pub async fn start_with_rules(
        target: &str,
        alertmanager: Option<&str>,
        rules: &Path,
        dir: tempfile::TempDir,
    ) -> Self {
        let alerting = alertmanager.map_or_else(String::new, |am| {
            format!("alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['{am}']}}]\n")
        });
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: backstop\n    static_configs: [{{targets: ['{target}']}}]\n{alerting}",
            rules.display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            // Port 0: the kernel picks a free port; Prometheus logs which.
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (scripts/test.sh installs it)");
        let mut prometheus = Self {
            child,
            dir,
            base: String::new(),
        };
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let address = loop {
            if let Some(address) = listening_address(&prometheus.log()) {
                break address.to_owned();
            }
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", prometheus.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus never listened:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        prometheus.base = format!("http://{address}");
        prometheus
            .wait_until("ready", |p| async move {
                reqwest::get(format!("{}/-/ready", p.base))
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await;
        prometheus
    }

    /// The process's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/query` of `expr` at the current time: the whole JSON answer (also for 400).
    pub async fn query(&self, expr: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GET `path` as JSON.
    pub async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls `check` until it holds, failing after [`DEADLINE`] with Prometheus's log.
    pub async fn wait_until<'a, F, Fut>(&'a self, what: &str, check: F)
    where
        F: Fn(&'a Self) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !check(self).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never: {what}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address Prometheus reports once it listens: `msg="Listening on" address=HOST:PORT`.
pub fn listening_address(log: &str) -> Option<&str> {
    log.lines()
        .find(|l| l.contains("msg=\"Listening on\""))?
        .split_whitespace()
        .find_map(|field| field.strip_prefix("address="))
}

/// A `prometheus-alertmanager` process (Debian's name for Alertmanager), killed on drop.
pub struct Alertmanager {
    child: Child,
    dir: tempfile::TempDir,
    /// `HOST:PORT` it listens on.
    pub address: String,
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (alertmanager.yml text), clustering off.
    pub async fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            // No gossip: a single instance, no port to pick.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus-alertmanager (scripts/test.sh installs it)");
        let mut am = Self {
            child,
            dir,
            address: String::new(),
        };
        let deadline = tokio::time::Instant::now() + DEADLINE;
        am.address = loop {
            if let Some(address) = listening_address(&am.log()) {
                break address.to_owned();
            }
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!("alertmanager exited ({status}):\n{}", am.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "alertmanager never listened:\n{}",
                am.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !reqwest::get(format!("http://{}/-/ready", am.address))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "alertmanager never ready:\n{}",
                am.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        am
    }

    /// The process's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
