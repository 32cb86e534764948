//! Time to safe backups: how long from an S3 fault until backups land again, with the shipped
//! alert rules and Alertmanager settings, for the outages users fear most.
//!
//! Four runs side by side, each its own sandbox world, Backstop (default configuration: probe
//! every 30 s, timeout 5 s, hung backups cancelled after 2 m), real `prometheus` (the shipped
//! `alerts/backstop.rules.yaml` unmodified, scrape and evaluation every 30 s, as the shipped
//! ServiceMonitor scrapes) and real `prometheus-alertmanager` (the shipped route of
//! `deploy/alertmanager-snippet.yml`: group_wait 10 s). The primary region either refuses
//! connections or hangs (accepts them and never answers); the cluster's backups run in
//! parallel (the operator's default) or serialised by its lock (`allowParallel: false`). Right
//! after the fault a backup to the primary is started, as a schedule would: under `hang` it
//! stays Running.
//!
//! Each run reports the seconds from the fault to: the alert firing in Prometheus, the
//! failover written (journal `FailedOver`), the hung backup cancelled (under `hang`), and the
//! first backup Succeeded on the new target (the cover backup). The `refuse` run with parallel
//! backups is the baseline; each other run's time to safe backups is given as a ratio to it,
//! and against the bound the issue sets: the alert's `for` + one probe interval +
//! `group_wait` + one backup's own run time (plus one scrape and one evaluation interval,
//! which the bound leaves out).
//!
//! `cargo bench --features sandbox --bench time_to_safe` (about 4 minutes). Under `cargo
//! test` (no `--bench`) it runs a smoke with every interval compressed (the rules' `for: 2s`,
//! probe, scrape and `group_wait` 1 s) and only the baseline and the hang with the lock, so
//! the harness cannot rot; its figures mean nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop::clock::SystemClock;
use backstop::pxc::PerconaXtraDBClusterBackup;
use backstop::responder::cluster::{cluster_api, read_journal};
use backstop::responder::journal::{Journal, Phase};
use backstop::runtime::app::App;
use backstop_sandbox::s3::{self, Fault, Rule};
use backstop_sandbox::world::{self, World, WorldOptions};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const STEP_LIMIT: Duration = Duration::from_secs(900);

/// The intervals a run uses: the shipped ones, or a smoke's.
#[derive(Debug, Clone, Copy)]
struct Settings {
    smoke: bool,
    scrape: Duration,
    alert_for: Duration,
    probe: Duration,
    group_wait: Duration,
}

impl Settings {
    fn new(smoke: bool) -> Self {
        if smoke {
            let second = Duration::from_secs(1);
            Self {
                smoke,
                scrape: second,
                alert_for: Duration::from_secs(2),
                probe: second,
                group_wait: second,
            }
        } else {
            Self {
                smoke,
                scrape: Duration::from_secs(30),
                alert_for: Duration::from_secs(120),
                probe: Duration::from_secs(30),
                group_wait: Duration::from_secs(10),
            }
        }
    }

    /// The shipped rules, with every `for:` shortened in a smoke.
    fn rules(&self, dir: &Path) -> std::path::PathBuf {
        let shipped = root().join("alerts/backstop.rules.yaml");
        if !self.smoke {
            return shipped;
        }
        let mut rules: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(shipped).expect("rules"))
                .expect("rules yaml");
        for group in rules["groups"].as_sequence_mut().into_iter().flatten() {
            for rule in group["rules"].as_sequence_mut().into_iter().flatten() {
                if rule.get("for").is_some() {
                    rule["for"] = serde_yaml_ng::Value::from("2s");
                }
            }
        }
        let path = dir.join("rules.yaml");
        std::fs::write(&path, serde_yaml_ng::to_string(&rules).expect("yaml")).expect("rules");
        path
    }
}

/// A child process killed on drop, with its directory.
struct Proc {
    child: Child,
    dir: tempfile::TempDir,
    address: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Starts `program` with `args` (a `{dir}` in one stands for its directory) on a port of its
/// choosing, and waits until its log says where it listens.
async fn spawn(program: &str, config_name: &str, config: &str, args: &[&str]) -> Proc {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join(config_name);
    std::fs::write(&config_path, config).expect("config");
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let d = dir.path().display().to_string();
    let child = Command::new(program)
        .args(args.iter().map(|a| a.replace("{dir}", &d)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test.sh installs it)"));
    let mut proc = Proc {
        child,
        dir,
        address: String::new(),
    };
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(proc.dir.path().join("log")).unwrap_or_default();
        // `msg="Listening on" address=HOST:PORT`, as both programs log it.
        if let Some(address) = text
            .lines()
            .find(|l| l.contains("msg=\"Listening on\""))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("address="))
            })
        {
            proc.address = address.to_owned();
            return proc;
        }
        assert!(Instant::now() < until, "{program} never listened:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alertmanager_config(backstop: &str, token_file: &Path, settings: &Settings) -> String {
    // The shipped route and receiver, pointed at this Backstop and its token.
    let snippet: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/alertmanager-snippet.yml")).expect("snippet"),
    )
    .expect("snippet yaml");
    let mut receiver = snippet["receivers"][0].clone();
    receiver["webhook_configs"][0]["url"] = json!(format!("{backstop}/alertmanager"));
    receiver["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] =
        json!(token_file.display().to_string());
    let mut routes = snippet["route"]["routes"].clone();
    if settings.smoke {
        routes[0]["group_wait"] = json!("1s");
    }
    let config = json!({
        "route": {"receiver": "nobody", "routes": routes},
        "receivers": [{"name": "nobody"}, receiver],
    });
    serde_yaml_ng::to_string(&config).expect("yaml")
}

async fn query(prometheus: &str, expr: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json")
}

async fn journal(world: &World) -> Option<Journal> {
    let object = cluster_api(&world.client, world::NAMESPACE)
        .get(world::CLUSTER)
        .await
        .ok()?;
    read_journal(&object).ok().flatten()
}

async fn state(world: &World, name: &str) -> Option<String> {
    let api: Api<PerconaXtraDBClusterBackup> =
        Api::namespaced(world.client.clone(), world::NAMESPACE);
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .map(|b| b.status.and_then(|s| s.state).unwrap_or_default())
}

/// Polls `check` every 200 ms until it yields, or gives up after [`STEP_LIMIT`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let limit = Instant::now() + STEP_LIMIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < limit, "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Seconds from the fault to each milestone of one run.
#[derive(Debug)]
struct Run {
    name: &'static str,
    alert: f64,
    failover: f64,
    cancelled: Option<f64>,
    safe: f64,
    backup_run: f64,
}

async fn run(name: &'static str, hang: bool, serial: bool, settings: Settings) -> Run {
    let world = World::start(WorldOptions {
        clock: Arc::new(SystemClock),
        operator_interval: Some(Duration::from_secs(1)),
        history: 1,
        retention: 10,
        ..WorldOptions::default()
    })
    .await
    .expect("world");
    cluster_api(&world.client, world::NAMESPACE)
        .patch(
            world::CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backup": {"allowParallel": !serial}}})),
        )
        .await
        .expect("patch");
    let token = world.dir().join("token");
    std::fs::write(&token, "bench-token").expect("token");
    // The default configuration, as shipped, for the sandbox's cluster (compressed in a smoke).
    let mut config = world
        .backstop_config("127.0.0.1:0", &token)
        .expect("config");
    if settings.smoke {
        config.probe.interval = backstop::config::HumanDuration(settings.probe);
        config.probe.timeout = backstop::config::HumanDuration(Duration::from_millis(500));
        config.responder.failover.cancel_hung_backups_after =
            backstop::config::HumanDuration(settings.alert_for);
        config.responder.rate_limits.per_cluster_cooldown =
            backstop::config::HumanDuration(Duration::ZERO);
    }
    let app = App::bind_with(config, Some(world.client.clone()), Arc::new(SystemClock))
        .await
        .expect("bind");
    let base = format!("http://{}", app.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let serving = tokio::spawn(app.serve(stop.clone()));

    let am = spawn(
        "prometheus-alertmanager",
        "alertmanager.yml",
        &alertmanager_config(&base, &token, &settings),
        &[
            "--config.file={dir}/alertmanager.yml",
            "--storage.path={dir}/data",
            "--web.listen-address=127.0.0.1:0",
            "--cluster.listen-address=",
        ],
    )
    .await;
    let rules_dir = tempfile::tempdir().expect("tempdir");
    let scrape = format!("{}s", settings.scrape.as_secs());
    let prometheus_config = format!(
        "global: {{scrape_interval: {scrape}, evaluation_interval: {scrape}}}\n\
         rule_files: ['{}']\n\
         scrape_configs:\n  - job_name: backstop\n    static_configs: [{{targets: ['{}']}}]\n\
         alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['{}']}}]\n",
        settings.rules(rules_dir.path()).display(),
        base.trim_start_matches("http://"),
        am.address
    );
    let prometheus = spawn(
        "prometheus",
        "prometheus.yml",
        &prometheus_config,
        &[
            "--config.file={dir}/prometheus.yml",
            "--storage.tsdb.path={dir}/data",
            "--web.listen-address=127.0.0.1:0",
        ],
    )
    .await;
    let p = prometheus.address.clone();
    until("the primary scraped up", || {
        let p = p.clone();
        async move {
            let answer = query(&p, "backstop_s3_up == 1").await;
            (answer["data"]["result"].as_array().map_or(0, Vec::len) == 2).then_some(())
        }
    })
    .await;

    // A backup to the healthy secondary, timed: one backup's own run time on the new target.
    let started = Instant::now();
    let api: Api<PerconaXtraDBClusterBackup> =
        Api::namespaced(world.client.clone(), world::NAMESPACE);
    let sample = |name: &str, storage: &str| -> PerconaXtraDBClusterBackup {
        serde_json::from_value(json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
            "metadata": {"name": name, "namespace": world::NAMESPACE},
            "spec": {"pxcCluster": world::CLUSTER, "storageName": storage},
        }))
        .expect("backup")
    };
    api.create(
        &PostParams::default(),
        &sample("timed", world::SECONDARY_STORAGE),
    )
    .await
    .expect("create");
    until("the timed backup", || async {
        (state(&world, "timed").await.as_deref() == Some("Succeeded")).then_some(())
    })
    .await;
    let backup_run = started.elapsed().as_secs_f64();

    let fault = Instant::now();
    let rule = if hang {
        Rule::new(Fault::Hang)
    } else {
        Rule::new(Fault::Refuse)
    };
    world
        .s3
        .faults()
        .set(rule.in_region(s3::PRIMARY_REGION))
        .await
        .expect("fault");
    api.create(
        &PostParams::default(),
        &sample("user", world::PRIMARY_STORAGE),
    )
    .await
    .expect("create");
    let alert = until("S3BackupTargetUnavailable firing", || {
        let p = p.clone();
        async move {
            let answer = query(
                &p,
                "ALERTS{alertname=\"S3BackupTargetUnavailable\",alertstate=\"firing\"}",
            )
            .await;
            (answer["data"]["result"].as_array().map_or(0, Vec::len) > 0)
                .then(|| fault.elapsed().as_secs_f64())
        }
    })
    .await;
    let failover = until("the failover", || async {
        journal(&world)
            .await
            .filter(|j| j.phase == Phase::FailedOver)
            .map(|_| fault.elapsed().as_secs_f64())
    })
    .await;
    let cancelled = if hang {
        Some(
            until("the hung backup cancelled", || async {
                (state(&world, "user").await.is_none()).then(|| fault.elapsed().as_secs_f64())
            })
            .await,
        )
    } else {
        None
    };
    let safe = until("the first backup Succeeded on the new target", || async {
        let cover = journal(&world).await?.cover_backup?;
        (state(&world, &cover).await.as_deref() == Some("Succeeded"))
            .then(|| fault.elapsed().as_secs_f64())
    })
    .await;
    drop(prometheus);
    drop(am);
    stop.cancel();
    let _ = serving.await;
    world.shutdown().await;
    Run {
        name,
        alert,
        failover,
        cancelled,
        safe,
        backup_run,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let settings = Settings::new(!std::env::args().any(|a| a == "--bench"));
    let started = Instant::now();
    let runs = if settings.smoke {
        futures::future::join_all([
            run("refuse, parallel (baseline)", false, false, settings),
            run("hang, allowParallel: false", true, true, settings),
        ])
        .await
    } else {
        futures::future::join_all([
            run("refuse, parallel (baseline)", false, false, settings),
            run("refuse, allowParallel: false", false, true, settings),
            run("hang, parallel", true, false, settings),
            run("hang, allowParallel: false", true, true, settings),
        ])
        .await
    };
    let baseline = runs[0].safe;
    println!(
        "time to safe backups, seconds after the fault (shipped rules, for {}s; scrape and \
         evaluation {}s; probe {}s; group_wait {}s){}",
        settings.alert_for.as_secs(),
        settings.scrape.as_secs(),
        settings.probe.as_secs(),
        settings.group_wait.as_secs(),
        if settings.smoke {
            " [smoke run: figures not meaningful]"
        } else {
            ""
        }
    );
    println!(
        "| run | alert firing | failover written | hung backup cancelled | first backup Succeeded on the new target | ratio to baseline | bound (for + probe + group_wait + run) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &runs {
        let bound = (settings.alert_for + settings.probe + settings.group_wait).as_secs_f64()
            + r.backup_run;
        println!(
            "| {} | {:.0} | {:.0} | {} | {:.0} | {:.2} | {:.0} ({}) |",
            r.name,
            r.alert,
            r.failover,
            r.cancelled.map_or("—".to_owned(), |c| format!("{c:.0}")),
            r.safe,
            r.safe / baseline,
            bound,
            if r.safe <= bound {
                "within".to_owned()
            } else {
                format!("over by {:.0}s", r.safe - bound)
            }
        );
    }
    println!("ran in {:.0}s", started.elapsed().as_secs_f64());
}
