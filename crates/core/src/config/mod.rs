//! The configuration file: one YAML document, its typed schema and every default.
//!
//! The types here are the single source of truth. Their doc comments become the descriptions
//! of the JSON Schema (`backstop config-schema`), the schema drives validation (so every
//! structural error is reported with its path, not only the first), and `#[serde(default)]`
//! values are the documented defaults. Unknown keys are errors everywhere
//! (`deny_unknown_fields`): a typo must never silently turn a safety setting off.

mod cluster;
mod duration;
mod load;
mod opt_in;
mod validate;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cluster::{
    BufferPolicy, FailoverPolicy, ManagedCluster, PitrOnBuffer, SecondaryTarget, Strategy,
};
pub use duration::{DURATION_PATTERN, HumanDuration};
pub use load::{ConfigError, FieldError, json_schema, load_file, load_opt_in_policy, load_str};
pub use opt_in::{LabelOperator, LabelRequirement, LabelSelectorConfig, OptInConfig};

/// The default listen address. Port 10317: the Prometheus exporter range 9100–9999 is fully
/// allocated, so new exporters take ports above 10000; 10317 is not on the allocation list.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:10317";

/// The default path of the Alertmanager webhook receiver.
pub const DEFAULT_WEBHOOK_PATH: &str = "/alertmanager";

/// The name of the alert that drives failover in the shipped rules.
pub const DEFAULT_FAILOVER_ALERT: &str = "S3BackupTargetUnavailable";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP server: `/metrics`, `/healthz`, `/readyz` and the webhook, on one port.
    pub server: ServerConfig,
    /// Which part of the Kubernetes cluster Backstop watches, and leader election.
    pub kubernetes: KubernetesConfig,
    /// How S3 backup targets are probed.
    pub probe: ProbeConfig,
    /// S3 targets probed in addition to those discovered from clusters.
    pub targets: Vec<StaticTarget>,
    /// The Alertmanager webhook receiver and the playbooks it drives.
    pub responder: ResponderConfig,
    /// The clusters Backstop may change (opt-in), each with its failover policy. Clusters not
    /// listed (and not opted in by `opt_in`) are observed (probed, exported) but never
    /// changed.
    pub clusters: Vec<ManagedCluster>,
    /// Clusters that opt in themselves, by annotation or label, with default policy.
    pub opt_in: OptInConfig,
}

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on. Default `0.0.0.0:10317`.
    pub listen: String,
    /// Path of the Alertmanager webhook receiver. Default `/alertmanager`.
    pub webhook_path: String,
    /// Largest request body accepted, in bytes. Default 1 MiB.
    #[schemars(range(min = 1024))]
    pub max_body_bytes: u64,
    /// How long a request may take before it is answered 408/503. Default `10s`.
    pub request_timeout: HumanDuration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Default `20s`.
    pub shutdown_timeout: HumanDuration,
    /// Serve HTTPS instead of HTTP (all paths). Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            webhook_path: DEFAULT_WEBHOOK_PATH.to_owned(),
            max_body_bytes: 1024 * 1024,
            request_timeout: HumanDuration::from_secs(10),
            shutdown_timeout: HumanDuration::from_secs(20),
            tls: None,
        }
    }
}

/// TLS files for the HTTP server (mounted from a Secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
    /// PEM CA bundle; when set, clients must present a certificate signed by it.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<String>,
}

/// Kubernetes scope and leader election.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Namespaces to watch. Empty (the default) watches all namespaces, which needs the
    /// ClusterRole variant of the RBAC in `deploy/`.
    pub namespaces: Vec<String>,
    /// Leader election: only the leader runs playbooks; every replica serves metrics and
    /// accepts webhooks.
    pub leader_election: LeaderElectionConfig,
}

impl KubernetesConfig {
    /// The scopes watched: each namespace of `namespaces`, or `None` (every namespace) when
    /// it is empty.
    pub fn scopes(&self) -> Vec<Option<&str>> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().map(|n| Some(n.as_str())).collect()
        }
    }
}

/// Leader election through a coordination.k8s.io/v1 Lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Default `true`. Turn off only when running a single replica.
    pub enabled: bool,
    /// Name of the Lease. Default `backstop-leader`.
    pub lease_name: String,
    /// Namespace of the Lease. Default: the pod's namespace (`POD_NAMESPACE`), else `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_namespace: Option<String>,
    /// How long a leader holds the Lease without renewing it. Default `15s`.
    pub lease_duration: HumanDuration,
    /// How often the leader renews. Must be shorter than `lease_duration`. Default `5s`.
    pub renew_interval: HumanDuration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lease_name: "backstop-leader".to_owned(),
            lease_namespace: None,
            lease_duration: HumanDuration::from_secs(15),
            renew_interval: HumanDuration::from_secs(5),
        }
    }
}

/// Probing of S3 targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Time between the starts of two probe cycles of one target. Default `30s`.
    pub interval: HumanDuration,
    /// Timeout of each S3/STS operation within a cycle. Default `5s`.
    pub timeout: HumanDuration,
    /// Targets probed at the same time, at most. Default 8.
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: u32,
    /// Discover targets from every S3 storage of every watched PerconaXtraDBCluster.
    /// Default `true`.
    pub discover: bool,
    /// The canary write-read-delete.
    pub canary: CanaryConfig,
    /// The incremental listing of backup objects.
    pub list: ListConfig,
    /// Check credentials with STS GetCallerIdentity. Default `true`. It runs for targets on
    /// AWS (no `endpointUrl`), and for S3-compatible targets only when `sts_endpoint_url` is
    /// set, because most S3-compatible stores have no STS.
    pub sts: bool,
    /// The STS endpoint for S3-compatible targets (MinIO's STS, the sandbox's). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts_endpoint_url: Option<String>,
    /// The AWS Health API as a source for the blast radius. Off by default: it needs a
    /// Business or Enterprise support plan.
    pub aws_health: AwsHealthConfig,
}

/// Reading open S3 events from the AWS Health API (`DescribeEvents`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AwsHealthConfig {
    /// Read it. Default `false`.
    pub enabled: bool,
    /// The Health API's region (its global endpoint is in `us-east-1`). Default `us-east-1`.
    pub region: String,
    /// Another endpoint (tests, a proxy). Default: AWS's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// How often. Default `5m`.
    pub interval: HumanDuration,
    /// Regions to ask about besides those of the AWS targets probed (an S3-compatible
    /// target's region is nominal, so it is not asked about unless listed). Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Credentials from a Secret (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); absent means
    /// the ambient chain (IRSA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretRef>,
}

impl Default for AwsHealthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            region: "us-east-1".to_owned(),
            endpoint_url: None,
            interval: HumanDuration::from_secs(300),
            regions: Vec::new(),
            credentials_secret: None,
        }
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            interval: HumanDuration::from_secs(30),
            timeout: HumanDuration::from_secs(5),
            concurrency: 8,
            discover: true,
            canary: CanaryConfig::default(),
            list: ListConfig::default(),
            sts: true,
            sts_endpoint_url: None,
            aws_health: AwsHealthConfig::default(),
        }
    }
}

/// The canary object written, read back and deleted: at most every `interval` while the
/// target is healthy, every cycle while it is not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// Default `true`. Turn off for read-only credentials.
    pub enabled: bool,
    /// Key prefix of canary objects (below the storage's own prefix).
    /// Default `.backstop-canary/`.
    pub key_prefix: String,
    /// Time between canaries while the target is healthy, rounded to the nearest whole
    /// number of probe intervals. Default `2m` (every fourth cycle at the default interval).
    /// The first cycle, any cycle after one that was not up, and every cycle after a failed
    /// canary run it regardless. A value under 1.5 × `probe.interval` runs it every cycle.
    pub interval: HumanDuration,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key_prefix: ".backstop-canary/".to_owned(),
            interval: HumanDuration::from_secs(120),
        }
    }
}

/// The newest-backup-object listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ListConfig {
    /// Default `true`.
    pub enabled: bool,
    /// Keys per ListObjectsV2 page. Default 1000 (the S3 maximum).
    #[schemars(range(min = 1, max = 1000))]
    pub page_size: u32,
    /// Pages read per cycle at most; the listing resumes after the newest key next cycle.
    /// Default 2.
    #[schemars(range(min = 1, max = 100))]
    pub max_pages: u32,
    /// After this many listings that caught up, list the prefix from the start again, one
    /// extra page per cycle until done, so an object rewritten under a key the listing
    /// already passed is seen. 0 never does. Default 20 (10 minutes at the default
    /// interval).
    pub full_every: u32,
}

impl Default for ListConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            page_size: 1000,
            max_pages: 2,
            full_every: 20,
        }
    }
}

/// A reference to a Kubernetes Secret holding `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`, the keys the operator's backup Job reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
}

/// A key of a Secret holding a PEM CA bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaBundleSecret {
    /// Namespace of the Secret. For a failover secondary it must be left out: the bundle is
    /// read from the cluster's namespace, as the operator reads a storage's `caBundle`.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

impl CaBundleSecret {
    /// The bundle as a storage's `s3.caBundle` names it (the namespace is the cluster's).
    pub fn selector(&self) -> crate::pxc::SecretKeySelector {
        crate::pxc::SecretKeySelector {
            name: Some(self.name.clone()),
            key: Some(self.key.clone()),
        }
    }
}

/// An S3 target probed in addition to the discovered ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticTarget {
    /// A name, unique among static targets; it appears as the `storage` label of
    /// `backstop_s3_target_info` (the `target` label is derived from the bucket and region).
    pub name: String,
    /// Bucket, optionally followed by `/prefix` as in the operator's `s3.bucket`.
    pub bucket: String,
    /// AWS region.
    pub region: String,
    /// S3-compatible endpoint; empty means AWS.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Path-style addressing. Default `false`.
    #[serde(default)]
    pub force_path_style: bool,
    /// Verify the endpoint's TLS certificate. Default `true`.
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    /// Credentials; absent means the ambient AWS chain (env, web identity, profile, IMDS).
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretRef>,
    /// PEM CA bundle the endpoint's certificate is checked against instead of the system
    /// roots (`namespace`, `name`, `key` of a Secret). Ignored with `verify_tls: false`.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleSecret>,
}

fn default_true() -> bool {
    true
}

/// The webhook receiver and playbook engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ResponderConfig {
    /// Accept webhooks and run playbooks. Default `true`.
    pub enabled: bool,
    /// Do everything but the writes; Events and logs say what would have happened.
    /// Default `false`.
    pub dry_run: bool,
    /// Webhook authentication. One of `bearer_token_file` or `basic_auth_file` is required
    /// unless `allow_unauthenticated` is set.
    pub auth: WebhookAuth,
    /// Alert routes. Default: one route sending `S3BackupTargetUnavailable` to failover.
    pub routes: Vec<Route>,
    /// Limits on how often playbooks may change clusters.
    pub rate_limits: RateLimits,
    /// Failover behaviour shared by every cluster.
    pub failover: FailoverSettings,
    /// Revert behaviour shared by every cluster.
    pub revert: RevertSettings,
    /// The check that notifications arrive when the probe sees an outage.
    pub route_check: RouteCheckSettings,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dry_run: false,
            auth: WebhookAuth::default(),
            routes: vec![Route {
                name: "s3-unavailable".to_owned(),
                alertnames: vec![DEFAULT_FAILOVER_ALERT.to_owned()],
                matchers: BTreeMap::new(),
                playbook: Playbook::Failover,
            }],
            rate_limits: RateLimits::default(),
            failover: FailoverSettings::default(),
            revert: RevertSettings::default(),
            route_check: RouteCheckSettings::default(),
        }
    }
}

/// How the webhook authenticates Alertmanager.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookAuth {
    /// File holding the bearer token (Alertmanager `http_config.authorization.credentials`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    /// File holding `user:password` (Alertmanager `http_config.basic_auth`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth_file: Option<String>,
    /// Accept unauthenticated webhooks. Default `false`; meant for local experiments only.
    pub allow_unauthenticated: bool,
}

/// What a matching alert asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Playbook {
    /// Firing → failover; resolved → revert.
    Failover,
}

/// Routes alerts to playbooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A name for logs and metrics.
    pub name: String,
    /// Alert names this route takes (the `alertname` label).
    #[schemars(length(min = 1))]
    pub alertnames: Vec<String>,
    /// Further labels that must equal these values.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// The playbook to run. Default `failover`.
    #[serde(default = "default_playbook")]
    pub playbook: Playbook,
}

fn default_playbook() -> Playbook {
    Playbook::Failover
}

/// Rate limits with cool-down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Failovers across all clusters within `global_window`, at most. Default 5.
    #[schemars(range(min = 1))]
    pub global_max_failovers: u32,
    /// The window of `global_max_failovers`. Default `1h`.
    pub global_window: HumanDuration,
    /// After a failover or revert of a cluster, how long before the next one. Default `10m`.
    pub per_cluster_cooldown: HumanDuration,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            global_max_failovers: 5,
            global_window: HumanDuration::from_secs(3600),
            per_cluster_cooldown: HumanDuration::from_secs(600),
        }
    }
}

/// Failover behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverSettings {
    /// Start an on-demand backup right after a failover, covering the missed ones.
    /// Default `true`.
    pub on_demand_backup: bool,
    /// While a cluster is failed over to a secondary and the alert still fires, that
    /// secondary is checked once per probe interval; after this many consecutive failed
    /// checks the cluster moves to the best target that passes a fresh check (the next
    /// secondary in order, else the buffer). Default 3; 0 never moves it off a secondary.
    #[schemars(range(min = 0, max = 100))]
    pub buffer_after_secondary_failures: u32,
    /// While failed over, the secondaries ranked above the current target are checked once
    /// per probe interval; one that has passed every check for this long (the hold-down
    /// against flapping) and passes a fresh check takes the backups back. `0s` never moves
    /// up. Default `10m`.
    pub move_up_after: HumanDuration,
    /// While failed over, a backup to the failed storage that is `Starting` or `Running`,
    /// was created before the failover and has gone on this long, is deleted when a fresh
    /// check of its storage fails: the operator's finalizer then frees the backup lock and
    /// the Job stops, so later backups (the cover backup first) start at once. `0s` never
    /// cancels. Default `2m` (the failover alert's `for`).
    pub cancel_hung_backups_after: HumanDuration,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        Self {
            on_demand_backup: true,
            buffer_after_secondary_failures: 3,
            move_up_after: HumanDuration::from_secs(600),
            cancel_hung_backups_after: HumanDuration::from_secs(120),
        }
    }
}

/// Revert behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RevertSettings {
    /// Consecutive successful probes of the primary required before switching back.
    /// Default 3.
    #[schemars(range(min = 1, max = 100))]
    pub hold_down_probes: u32,
    /// Run an on-demand backup on the primary after the revert and watch it. Default `true`.
    pub test_backup: bool,
    /// How long the test backup may take before the revert counts as unverified.
    /// Default `2h`.
    pub test_backup_timeout: HumanDuration,
}

impl Default for RevertSettings {
    fn default() -> Self {
        Self {
            hold_down_probes: 3,
            test_backup: true,
            test_backup_timeout: HumanDuration::from_secs(7200),
        }
    }
}

/// The alert-route check: when the probe has seen a protected storage fail for `after` and no
/// notification about the cluster has arrived, Alertmanager's route to Backstop is likely
/// broken (a matcher typo, a missing `continue: true`, a wrong token), and Backstop says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RouteCheckSettings {
    /// Run the check. Default `true`.
    pub enabled: bool,
    /// How long a protected storage may fail before the missing notification counts. Default
    /// `4m`: the shipped alert's `for` (2m), the snippet's `group_wait` (10s), up to a scrape
    /// and a rule evaluation (30s each by default), and a margin. Raise it with any of those.
    pub after: HumanDuration,
}

impl Default for RouteCheckSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            after: HumanDuration::from_secs(240),
        }
    }
}

impl Config {
    /// The listen address, parsed. Validation guarantees it parses.
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|e: std::net::AddrParseError| {
                ConfigError::Invalid(vec![FieldError::new("server.listen", e.to_string())])
            })
    }
}
