//! The AWS Health API as an opt-in source for the blast radius: open S3 events in the regions
//! Backstop probes (`DescribeEvents`, service `S3`, status `open`). It needs a Business,
//! Enterprise On-Ramp or Enterprise support plan, so it is off by default
//! (`probe.aws_health.enabled`); a failure to read it is exported
//! (`backstop_aws_health_up 0`) and logged, and never holds up a probe or a playbook: the
//! verdicts simply say nothing about it.
//!
//! What was checked against real AWS: nothing; no AWS account is reachable from where this
//! was built. The request and response shapes are the SDK's (`aws-sdk-health`, generated from
//! AWS's model), and the tests run the SDK against a server that speaks the protocol the SDK
//! uses, Smithy RPC v2 CBOR (`backstop_sandbox::aws_health`), from the protocol's
//! specification rather than from a recorded AWS response.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_health::types::{EventFilter, EventStatusCode};
use tokio_util::sync::CancellationToken;

use crate::config::AwsHealthConfig;

/// An open S3 event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// Its region.
    pub region: String,
    /// What it is (`AWS_S3_OPERATIONAL_ISSUE`, ...).
    pub event_type_code: String,
}

/// What the last read said: the open events, or why there are none to say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LastRead {
    /// Not read yet (or not enabled).
    #[default]
    Never,
    /// Read: the open S3 events in the regions asked about.
    Events(Vec<HealthEvent>),
    /// The read failed: why.
    Failed(String),
}

/// The last read, shared between the poller and whoever judges.
#[derive(Debug, Default)]
pub struct HealthFeed {
    last: Mutex<LastRead>,
}

impl HealthFeed {
    /// What the last read said.
    pub fn last(&self) -> LastRead {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a read.
    pub fn set(&self, read: LastRead) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = read;
    }

    /// The open events in `region`, as a clause for a verdict's reason (`None`: none, or
    /// nothing known).
    pub fn clause_for(&self, region: &str) -> Option<String> {
        let LastRead::Events(events) = self.last() else {
            return None;
        };
        let codes: Vec<String> = events
            .iter()
            .filter(|e| e.region == region)
            .map(|e| e.event_type_code.clone())
            .collect();
        (!codes.is_empty()).then(|| {
            format!(
                "AWS Health has an open S3 event in {region} ({})",
                codes.join(", ")
            )
        })
    }
}

/// Reads the open S3 events in `regions`.
///
/// # Errors
///
/// The SDK's error, as text (a missing support plan answers `SubscriptionRequiredException`).
pub async fn open_s3_events(
    client: &aws_sdk_health::Client,
    regions: &[String],
) -> Result<Vec<HealthEvent>, String> {
    let filter = EventFilter::builder()
        .services("S3")
        .set_regions(Some(regions.to_vec()))
        .event_status_codes(EventStatusCode::Open)
        .build();
    let mut events = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .describe_events()
            .filter(filter.clone())
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| {
                let meta = aws_sdk_health::error::ProvideErrorMetadata::meta(&e).clone();
                match (meta.code(), meta.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.to_owned(),
                    _ => crate::probe::classify::chain_text(&e),
                }
            })?;
        for event in page.events() {
            events.push(HealthEvent {
                region: event.region().unwrap_or_default().to_owned(),
                event_type_code: event.event_type_code().unwrap_or_default().to_owned(),
            });
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(events);
        }
    }
}

/// The Health client: the global endpoint's region (`us-east-1`), the ambient credentials
/// (IRSA) or the configured Secret's, no retries, the probe's timeout.
pub async fn client(
    config: &AwsHealthConfig,
    credentials: Option<&crate::s3::client::StaticCredentials>,
    timeout: Duration,
) -> aws_sdk_health::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.region.clone()))
        .load()
        .await;
    let mut builder = aws_sdk_health::config::Builder::from(&shared)
        .retry_config(aws_sdk_health::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_health::config::timeout::TimeoutConfig::builder()
                .connect_timeout(timeout)
                .operation_timeout(timeout)
                .build(),
        );
    if let Some(keys) = credentials {
        builder = builder.credentials_provider(aws_sdk_health::config::Credentials::new(
            keys.access_key_id.clone(),
            keys.secret_access_key.clone(),
            None,
            None,
            "backstop-aws-health",
        ));
    }
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_health::Client::from_conf(builder.build())
}

/// Reads the open S3 events of `regions()` every `config.interval` into `feed`, until
/// `shutdown`.
pub fn spawn(
    client: aws_sdk_health::Client,
    config: AwsHealthConfig,
    regions: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    feed: Arc<HealthFeed>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(config.interval.get());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let wanted = regions();
            if wanted.is_empty() {
                continue;
            }
            match open_s3_events(&client, &wanted).await {
                Ok(events) => feed.set(LastRead::Events(events)),
                Err(error) => {
                    tracing::warn!(%error, "AWS Health could not be read; verdicts go on without it");
                    feed.set(LastRead::Failed(error));
                }
            }
        }
    })
}

/// Starts reading the AWS Health API into `down`'s verdicts when `probe.aws_health.enabled`:
/// the credentials from the configured Secret (read once, now) or the ambient chain. A Secret
/// that cannot be read is reported as a failed read, and nothing is polled.
pub async fn start(
    kube: &kube::Client,
    probe: &crate::config::ProbeConfig,
    down: Arc<crate::probe::health::DownSince>,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let config = &probe.aws_health;
    if !config.enabled {
        return None;
    }
    let feed = Arc::new(HealthFeed::default());
    down.set_feed(feed.clone());
    let credentials = match &config.credentials_secret {
        None => None,
        Some(secret) => {
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
                kube::Api::namespaced(kube.clone(), &secret.namespace);
            let keys = api
                .get_opt(&secret.name)
                .await
                .ok()
                .flatten()
                .as_ref()
                .and_then(crate::s3::client::credentials_from_secret);
            let Some(keys) = keys else {
                feed.set(LastRead::Failed(format!(
                    "Secret {}/{} with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY could not be read",
                    secret.namespace, secret.name
                )));
                return None;
            };
            Some(keys)
        }
    };
    let client = client(config, credentials.as_ref(), probe.timeout.get()).await;
    let extra = config.regions.clone();
    let regions = Arc::new(move || down.aws_regions(&extra));
    Some(spawn(client, config.clone(), regions, feed, shutdown))
}
