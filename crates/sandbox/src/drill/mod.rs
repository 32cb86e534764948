//! `backstop sandbox --drill`: a scripted outage, end to end, with a timeline.
//!
//! The primary S3 region breaks; Backstop's probes see it; a small rule evaluator reads
//! Backstop's own `/metrics` (the shipped `S3BackupTargetUnavailable` rule: `backstop_s3_up
//! == 0` joined to the target's users, held for a `for` of two evaluations) and delivers the
//! alert as an Alertmanager version-4 webhook; Backstop fails the cluster over; a scheduled
//! backup lands on the failover target; the primary is repaired; the alert resolves; Backstop
//! reverts and proves it with a test backup. Every step has a deadline; the drill succeeds
//! only if every step happened. With `break_route`, the firing notification is held back (a
//! broken route) until Backstop's alert-route check reports it missing. With `ordered`, the
//! cluster has two secondaries and the first one fails too, while failed over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::kube::Api;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use backstop::clock::{ManualClock, SystemClock};
use backstop::config::{HumanDuration, Strategy};
use backstop::pxc::{PerconaXtraDBClusterBackup, state};
use backstop::responder::cluster::{cluster_api, read_journal};
use backstop::responder::journal::{Journal, Phase, TargetKind};
use backstop::runtime::app::App;

use super::s3::{self, Fault, Rule};
use super::world::{self, World, WorldOptions};

/// How long any one step may take.
const STEP_DEADLINE: Duration = Duration::from_secs(120);

/// Polling period of every wait.
const POLL: Duration = Duration::from_millis(100);

/// What the drill exercises.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The failover strategy of the cluster.
    pub strategy: Strategy,
    /// Break the secondary too, so the failover goes to the PVC buffer.
    pub break_secondary: bool,
    /// Hold the firing notification back (a broken Alertmanager route) until Backstop's
    /// alert-route check reports it missing, then deliver it.
    pub break_route: bool,
    /// How the primary fails: `false` answers 503; `true` hangs (accepts connections and
    /// never answers), so a backup to it stays Running until Backstop cancels it.
    pub hang: bool,
    /// Serialise the cluster's backups with the operator's lock (`allowParallel: false`).
    pub serial: bool,
    /// Give the cluster a second secondary, break the first one after the failover, and
    /// recover in reverse ([`ordered`]).
    pub ordered: bool,
    /// The sandbox's S3 keys; `None` makes random ones.
    pub credentials: Option<backstop::s3::client::StaticCredentials>,
    /// The webhook's bearer token; `None` makes a random one.
    pub webhook_token: Option<String>,
    /// The API server the drill's world runs on.
    pub backend: crate::backend::Backend,
}

/// Why the drill failed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A step did not happen within its deadline.
    #[error("step {step:?} did not happen within {deadline:?}: {detail}")]
    Missed {
        /// The step.
        step: &'static str,
        /// Its deadline.
        deadline: Duration,
        /// What was seen last.
        detail: String,
    },
    /// The sandbox or Backstop failed.
    #[error("drill infrastructure: {0}")]
    Setup(String),
}

/// One line of the timeline.
#[derive(Debug, Clone)]
pub struct Mark {
    /// Time since the drill started.
    pub elapsed: Duration,
    /// Wall-clock time.
    pub at: jiff::Timestamp,
    /// What happened.
    pub what: String,
}

pub(super) struct Timeline {
    started: Instant,
    marks: Vec<Mark>,
}

impl Timeline {
    pub(super) fn mark(&mut self, what: impl Into<String>) {
        let mark = Mark {
            elapsed: self.started.elapsed(),
            at: jiff::Timestamp::now(),
            what: what.into(),
        };
        println!(
            "{:>8.2}s  {}  {}",
            mark.elapsed.as_secs_f64(),
            mark.at.strftime("%H:%M:%S%.3f"),
            mark.what
        );
        self.marks.push(mark);
    }
}

pub(super) fn setup(e: impl std::fmt::Display) -> DrillError {
    DrillError::Setup(e.to_string())
}

/// Polls `check` until it yields a value, or fails the step.
pub(super) async fn wait<T, F, Fut>(step: &'static str, mut check: F) -> Result<T, DrillError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + STEP_DEADLINE;
    let mut detail = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => detail = e,
        }
        if Instant::now() >= deadline {
            return Err(DrillError::Missed {
                step,
                deadline: STEP_DEADLINE,
                detail,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The message of the newest Event `reason` about the drill's cluster, once there is one.
pub(super) async fn cluster_event(
    world: &World,
    reason: &'static str,
) -> Result<Option<String>, String> {
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(world.client.clone(), world::NAMESPACE);
    let list = events
        .list(&::kube::api::ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.involved_object.name.as_deref() == Some(world::CLUSTER)
        })
        .max_by_key(|e| e.event_time.as_ref().map(|t| t.0))
        .and_then(|e| e.message))
}

/// The primary target's `backstop_s3_up`, read the way the shipped rule reads it: through
/// the `backstop_s3_target_info` series of the cluster's primary storage.
fn primary_up(metrics: &str) -> Option<bool> {
    let info = metrics.lines().find(|l| {
        l.starts_with("backstop_s3_target_info{")
            && l.contains(&format!("storage=\"{}\"", world::PRIMARY_STORAGE))
    })?;
    let start = info.find("target=\"")? + 8;
    let target = &info[start..start + info[start..].find('"')?];
    let up = metrics
        .lines()
        .find(|l| l.starts_with(&format!("backstop_s3_up{{target=\"{target}\"}}")))?;
    Some(up.ends_with(" 1"))
}

fn payload(status: &str, starts_at: jiff::Timestamp) -> Value {
    let labels = json!({
        "alertname": backstop::config::DEFAULT_FAILOVER_ALERT,
        "bucket": world::PRIMARY_BUCKET,
        "namespace": world::NAMESPACE,
        "cluster": world::CLUSTER,
        "storage": world::PRIMARY_STORAGE,
        "region": s3::PRIMARY_REGION,
        "severity": "critical",
    });
    let ends_at = if status == "resolved" {
        jiff::Timestamp::now().to_string()
    } else {
        "0001-01-01T00:00:00Z".to_owned()
    };
    json!({
        "version": "4",
        "status": status,
        "receiver": "backstop",
        "groupKey": "{}:{alertname=\"S3BackupTargetUnavailable\"}",
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": backstop::config::DEFAULT_FAILOVER_ALERT},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1/drill",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": {"summary": "primary S3 target unavailable (drill)"},
            "startsAt": starts_at.to_string(),
            "endsAt": ends_at,
            "generatorURL": "http://127.0.0.1/drill",
            "fingerprint": "d7111d7111d7111d",
        }],
    })
}

/// Runs the drill; the timeline is printed as it happens and returned.
///
/// # Errors
///
/// [`DrillError::Missed`] naming the first step that did not happen.
pub async fn run(options: DrillOptions) -> Result<Vec<Mark>, DrillError> {
    let operator_clock = ManualClock::new(jiff::Timestamp::now());
    let world_options = WorldOptions {
        clock: Arc::new(operator_clock.clone()),
        operator_interval: Some(Duration::from_millis(200)),
        history: 2,
        retention: 10,
        backend: options.backend,
        crd_file: None,
        operator: crate::operator::OperatorOptions {
            // A hung upload is left Running after this long, so the operator's other backups
            // (the cover backup) are not held up behind it.
            upload_wait: Duration::from_millis(300),
            ..crate::operator::OperatorOptions::default()
        },
    };
    let world = match options.credentials.clone() {
        Some(credentials) => {
            // Says which keys are in use without saying the keys.
            tracing::info!("drill: S3 keys given by the caller");
            World::start_with_credentials(world_options, credentials).await
        }
        None => World::start(world_options).await,
    }
    .map_err(setup)?;
    let result = drive(&world, &operator_clock, options).await;
    world.shutdown().await;
    result
}

async fn drive(
    world: &World,
    operator_clock: &ManualClock,
    options: DrillOptions,
) -> Result<Vec<Mark>, DrillError> {
    let token = match options.webhook_token.clone() {
        Some(token) => {
            tracing::info!("drill: webhook token given by the caller");
            token
        }
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let token_path = world.dir().join("drill-webhook-token");
    std::fs::write(&token_path, &token).map_err(setup)?;
    let mut config = world
        .backstop_config("127.0.0.1:0", &token_path)
        .map_err(setup)?;
    config.probe.interval = HumanDuration(Duration::from_secs(1));
    config.probe.timeout = HumanDuration(Duration::from_secs(1));
    config.responder.rate_limits.per_cluster_cooldown = HumanDuration(Duration::ZERO);
    config.responder.revert.hold_down_probes = 2;
    config.responder.revert.test_backup_timeout = HumanDuration(Duration::from_secs(90));
    // The drill's alert fires after two 1-second evaluations; a notification missing for 5
    // seconds is as late as one missing for 4 minutes is in production.
    config.responder.route_check.after = HumanDuration(Duration::from_secs(5));
    // As compressed as the alert's `for` (two 1-second evaluations).
    config.responder.failover.cancel_hung_backups_after = HumanDuration(Duration::from_secs(2));
    if let Some(c) = config.clusters.first_mut() {
        c.failover.strategy = options.strategy;
    }
    if options.ordered {
        ordered::configure(world, &mut config);
    }
    let app = App::bind_with(
        config.clone(),
        Some(world.client.clone()),
        Arc::new(SystemClock),
    )
    .await
    .map_err(setup)?;
    let base = format!("http://{}", app.local_addr().map_err(setup)?);
    let stop = CancellationToken::new();
    let serving = tokio::spawn(app.serve(stop.clone()));
    let result = script(
        world,
        operator_clock,
        options,
        &base,
        &config.server.webhook_path,
        &token,
    )
    .await;
    stop.cancel();
    let _ = serving.await;
    result
}

async fn script(
    world: &World,
    operator_clock: &ManualClock,
    options: DrillOptions,
    base: &str,
    webhook_path: &str,
    token: &str,
) -> Result<Vec<Mark>, DrillError> {
    let http = reqwest_like::Client::new();
    let mut t = Timeline {
        started: Instant::now(),
        marks: Vec::new(),
    };
    let metrics = || http.get_text(format!("{base}/metrics"));
    wait("Backstop probes the primary", || async {
        Ok(metrics()
            .await?
            .as_deref()
            .and_then(primary_up)
            .filter(|up| *up))
    })
    .await?;
    t.mark(format!(
        "Backstop is up; primary s3://{}/{} healthy (strategy {:?}{})",
        world::PRIMARY_BUCKET,
        world::CLUSTER,
        options.strategy,
        if options.break_secondary {
            ", secondary will be broken too"
        } else {
            ""
        }
    ));

    if options.serial {
        hung::serialise(world, &mut t).await?;
    }
    let faults = world.s3.faults();
    let fault_at = Instant::now();
    if options.hang {
        faults
            .set(Rule::new(Fault::Hang).in_region(s3::PRIMARY_REGION))
            .await
            .map_err(setup)?;
        t.mark(format!(
            "fault: primary region {} accepts connections and never answers (hang)",
            s3::PRIMARY_REGION
        ));
    } else {
        faults
            .set(Rule::new(Fault::ServiceUnavailable).in_region(s3::PRIMARY_REGION))
            .await
            .map_err(setup)?;
        t.mark(format!(
            "fault: primary region {} answers 503",
            s3::PRIMARY_REGION
        ));
    }
    let hung = if options.hang {
        Some(hung::hung_backup(world, operator_clock, &mut t).await?)
    } else {
        None
    };
    if options.break_secondary {
        faults
            .set(Rule::new(Fault::ServiceUnavailable).in_region(s3::SECONDARY_REGION))
            .await
            .map_err(setup)?;
        t.mark(format!(
            "fault: secondary region {} answers 503",
            s3::SECONDARY_REGION
        ));
    }

    // The rule: backstop_s3_up == 0 for two consecutive evaluations.
    wait("the probe sees the primary down", || {
        let m = metrics();
        async move { Ok(m.await?.as_deref().and_then(primary_up).filter(|up| !*up)) }
    })
    .await?;
    t.mark("probe: backstop_s3_up == 0 for the primary target");
    let evaluations = std::sync::atomic::AtomicU32::new(0);
    wait("the alert fires", || {
        let m = metrics();
        let seen = &evaluations;
        async move {
            let down = m.await?.as_deref().and_then(primary_up) == Some(false);
            let held = if down {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
            } else {
                seen.store(0, std::sync::atomic::Ordering::Relaxed);
                0
            };
            Ok((held >= 2).then_some(()))
        }
    })
    .await?;
    let starts_at = jiff::Timestamp::now();
    t.mark("alert S3BackupTargetUnavailable fires (held for 2 evaluations)");
    if options.break_route {
        t.mark("route broken: Alertmanager does not deliver the alert to Backstop");
        let silent = format!(
            "backstop_alert_route_silent{{namespace=\"{}\",cluster=\"{}\"}} 1",
            world::NAMESPACE,
            world::CLUSTER
        );
        wait("Backstop reports the missing notification", || {
            let m = metrics();
            let silent = &silent;
            async move { Ok(m.await?.filter(|text| text.contains(silent.as_str()))) }
        })
        .await?;
        let said = wait("the AlertNotReceived Event", || {
            cluster_event(world, "AlertNotReceived")
        })
        .await?;
        t.mark(format!(
            "alert route check: backstop_alert_route_silent == 1; Event AlertNotReceived: {said}"
        ));
        t.mark("route repaired");
    }
    let url = format!("{base}{webhook_path}");
    let answer = http
        .post_json(&url, token, &payload("firing", starts_at))
        .await
        .map_err(setup)?;
    t.mark(format!("webhook delivered (firing): {answer}"));

    let journal = wait("the cluster fails over", || async {
        Ok(read_cluster_journal(world)
            .await?
            .filter(|j| j.phase == Phase::FailedOver))
    })
    .await?;
    let expected_kind = if options.break_secondary {
        TargetKind::Buffer
    } else {
        TargetKind::Secondary
    };
    if journal.target_kind != expected_kind {
        return Err(DrillError::Missed {
            step: "the failover goes to the expected target",
            deadline: Duration::ZERO,
            detail: format!(
                "went to {:?}, expected {expected_kind:?}",
                journal.target_kind
            ),
        });
    }
    t.mark(format!(
        "failover: backups now go to {} (strategy {}), run {}",
        backstop::responder::plan::describe_target(
            journal.target_kind,
            &journal.strategy,
            &journal.target_storage,
            journal.written_storage(&journal.target_storage),
        ),
        journal.strategy,
        journal.run_id
    ));
    if options.break_route {
        let said = wait("the AlertReceived Event", || {
            cluster_event(world, "AlertReceived")
        })
        .await?;
        t.mark(format!("alert route check: Event AlertReceived: {said}"));
    }

    hung::cancelled_then_covered(world, hung.as_deref(), &mut t, fault_at).await?;
    if options.ordered {
        ordered::down_and_back_up(world, &mut t).await?;
    }

    // The next scheduled backup: move the operator's clock to the next minute.
    operator_clock.advance(jiff::SignedDuration::from_secs(60));
    let landed = wait(
        "a scheduled backup lands on the failover target",
        || async {
            let api: Api<PerconaXtraDBClusterBackup> =
                Api::namespaced(world.client.clone(), world::NAMESPACE);
            let list = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(list.items.into_iter().find_map(|b| {
                let status = b.status.as_ref()?;
                let name = b.metadata.name.clone()?;
                let destination = status.destination.clone()?;
                // A scheduled backup created after the failover, where the failover sent it.
                let created = b.metadata.creation_timestamp.as_ref()?.0;
                let on_target = match journal.target_kind {
                    TargetKind::Secondary => {
                        destination.starts_with(&format!("s3://{}/", world::SECONDARY_BUCKET))
                    }
                    TargetKind::Buffer => destination.starts_with("pvc/"),
                };
                (name.starts_with("cron-")
                    // creationTimestamp has whole seconds.
                    && created.as_second() >= journal.failed_over_at.as_second()
                    && on_target
                    && status.state.as_deref() == Some(state::SUCCEEDED))
                .then(|| format!("{name} -> {destination}"))
            }))
        },
    )
    .await?;
    t.mark(format!(
        "scheduled backup succeeded on the failover target: {landed}"
    ));

    faults.clear_all().await.map_err(setup)?;
    t.mark("repair: every S3 fault cleared");
    wait("the probe sees the primary up", || {
        let m = metrics();
        async move { Ok(m.await?.as_deref().and_then(primary_up).filter(|up| *up)) }
    })
    .await?;
    t.mark("probe: backstop_s3_up == 1 for the primary target; the alert resolves");
    let answer = http
        .post_json(&url, token, &payload("resolved", starts_at))
        .await
        .map_err(setup)?;
    t.mark(format!("webhook delivered (resolved): {answer}"));

    let verifying = wait("the revert is written", || async {
        Ok(read_cluster_journal(world)
            .await?
            .filter(|j| matches!(j.phase, Phase::Verifying | Phase::Reverted)))
    })
    .await?;
    t.mark(format!(
        "revert: original backup settings restored; test backup {}",
        verifying.test_backup.clone().unwrap_or_default()
    ));
    let done = wait("the test backup proves the revert", || async {
        Ok(read_cluster_journal(world)
            .await?
            .filter(|j| matches!(j.phase, Phase::Reverted | Phase::VerificationFailed)))
    })
    .await?;
    if done.phase != Phase::Reverted {
        return Err(DrillError::Missed {
            step: "the test backup succeeds",
            deadline: STEP_DEADLINE,
            detail: done.message.unwrap_or_default(),
        });
    }
    t.mark(format!(
        "test backup {} Succeeded on the primary; drill passed",
        done.test_backup.unwrap_or_default()
    ));
    Ok(t.marks)
}

pub(super) async fn read_cluster_journal(world: &World) -> Result<Option<Journal>, String> {
    let object = cluster_api(&world.client, world::NAMESPACE)
        .get(world::CLUSTER)
        .await
        .map_err(|e| e.to_string())?;
    read_journal(&object)
}

mod hung;
mod ordered;
mod reqwest_like;
