//! The command line: `backstop --help` is the user's map. Every flag can also be set through
//! a `BACKSTOP_*` environment variable (shown in `--help`), which is how the Deployment in
//! `deploy/` configures it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::runtime::telemetry::LogFormat;

/// Exit code: success, or everything healthy.
pub const EXIT_OK: u8 = 0;
/// Exit code: something is unhealthy, or the service failed at run time.
pub const EXIT_UNHEALTHY: u8 = 1;
/// Exit code: bad usage or an invalid configuration.
pub const EXIT_USAGE: u8 = 2;

/// Keeps Percona XtraDB Cluster backups landing when their S3 target fails.
///
/// Backstop probes every S3 backup target, exports backup health for Prometheus, and answers
/// Alertmanager webhooks by failing backups over to a verified secondary bucket (or a local
/// PVC buffer) and reverting when S3 returns.
#[derive(Debug, Parser)]
#[command(
    name = "backstop",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, env = "BACKSTOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's env-filter syntax (e.g. `info,backstop=debug`).
    #[arg(
        long = "log",
        global = true,
        env = "BACKSTOP_LOG",
        default_value = "info,s3s=off"
    )]
    pub log_filter: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: prober, exporter and webhook responder.
    Run(RunArgs),
    /// Run everything on an embedded sandbox: an S3 server and a simulated Kubernetes cluster.
    Sandbox(SandboxArgs),
    /// Probe every backup target once and print a diagnosis (the runbook's step 1).
    Check(CheckArgs),
    /// Load and validate a configuration file; print every problem with its path.
    ValidateConfig(ValidateArgs),
    /// Print the JSON Schema of the configuration file (for editors and CI).
    ConfigSchema,
    /// Run the failover playbook for one cluster by hand.
    Failover(PlaybookArgs),
    /// Run the revert playbook for one cluster by hand.
    Revert(PlaybookArgs),
    /// Show every managed cluster's failover journal and phase.
    Status(StatusArgs),
}

/// Arguments of `backstop run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(long, short, env = "BACKSTOP_CONFIG")]
    pub config: PathBuf,
    /// Override `server.listen`.
    #[arg(long, env = "BACKSTOP_LISTEN")]
    pub listen: Option<String>,
    /// Override `responder.dry_run` to true: decide and report, never write.
    #[arg(long, env = "BACKSTOP_DRY_RUN")]
    pub dry_run: bool,
}

/// Arguments of `backstop sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Where Backstop's HTTP server listens in the sandbox (port 0 picks a free port).
    #[arg(
        long,
        env = "BACKSTOP_SANDBOX_LISTEN",
        default_value = "127.0.0.1:10317"
    )]
    pub listen: String,
    /// The Kubernetes API server the sandbox runs on: the embedded simulator, or a real
    /// kube-apiserver with etcd built once by `scripts/kube-apiserver.sh`.
    #[arg(long, value_enum, env = "BACKSTOP_SANDBOX_API_SERVER", default_value_t = SandboxApiServer::Simulator)]
    pub api_server: SandboxApiServer,
    /// Run a scripted outage end to end (break S3, alert, failover, backups on the target,
    /// repair, revert, test backup), print its timeline, and exit 0 only if every step happened.
    #[arg(long)]
    pub drill: bool,
    /// The failover strategy the drill uses.
    #[arg(long, value_enum, default_value_t = DrillStrategy::Repoint, requires = "drill")]
    pub strategy: DrillStrategy,
    /// Break the secondary region too, so the drill fails over to the PVC buffer.
    #[arg(long, requires = "drill")]
    pub break_secondary: bool,
    /// Break Alertmanager's route to Backstop: the alert fires but is not delivered until
    /// Backstop's alert-route check has said so; then the route is repaired.
    #[arg(long, requires = "drill")]
    pub break_route: bool,
    /// Make the primary hang (accept connections, never answer) instead of answering 503: a
    /// backup to it stays Running until Backstop cancels it after the failover.
    #[arg(long, requires = "drill")]
    pub hang: bool,
    /// Give the cluster a second secondary (ordered fallback targets): the primary breaks,
    /// later the first secondary, and the second takes over; then recovery in reverse (the
    /// first secondary takes the backups back, then the primary).
    #[arg(long, requires = "drill", conflicts_with = "break_secondary")]
    pub ordered: bool,
    /// Serialise the sample cluster's backups with the operator's lock
    /// (`allowParallel: false`), so a hung backup holds every later one back.
    #[arg(long, requires = "drill")]
    pub serial: bool,
    /// The drill's S3 access key id instead of a random one. Hidden: only tests that must
    /// know the sandbox's secrets (to check no log shows them) set it, through the
    /// environment so it never appears in a process listing.
    #[arg(long, env = "BACKSTOP_SANDBOX_S3_ACCESS_KEY_ID", hide = true, hide_env_values = true, requires_all = ["drill", "s3_secret_access_key"])]
    pub s3_access_key_id: Option<String>,
    /// The drill's S3 secret access key (see `s3_access_key_id`).
    #[arg(long, env = "BACKSTOP_SANDBOX_S3_SECRET_ACCESS_KEY", hide = true, hide_env_values = true, requires_all = ["drill", "s3_access_key_id"])]
    pub s3_secret_access_key: Option<String>,
    /// The drill's webhook token instead of a random one (see `s3_access_key_id`).
    #[arg(
        long,
        env = "BACKSTOP_SANDBOX_WEBHOOK_TOKEN",
        hide = true,
        hide_env_values = true,
        requires = "drill"
    )]
    pub webhook_token: Option<String>,
}

/// The Kubernetes API server of `backstop sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxApiServer {
    /// The embedded API simulator.
    Simulator,
    /// A real kube-apiserver with etcd (see `scripts/kube-apiserver.sh`).
    Real,
}

/// The failover strategy of `sandbox --drill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DrillStrategy {
    /// Point schedules at the secondary storage entry.
    Repoint,
    /// Rewrite the failing storage's bucket and region.
    InPlace,
}

impl From<DrillStrategy> for crate::config::Strategy {
    fn from(s: DrillStrategy) -> Self {
        match s {
            DrillStrategy::Repoint => Self::Repoint,
            DrillStrategy::InPlace => Self::InPlace,
        }
    }
}

/// How `check` and `status` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// Arguments of `backstop check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file.
    #[arg(long, short, env = "BACKSTOP_CONFIG")]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, short, env = "BACKSTOP_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Arguments of `backstop validate-config`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Configuration file.
    #[arg(env = "BACKSTOP_CONFIG")]
    pub file: PathBuf,
}

/// Arguments of `backstop failover` and `backstop revert`.
#[derive(Debug, Args)]
pub struct PlaybookArgs {
    /// Configuration file.
    #[arg(long, short, env = "BACKSTOP_CONFIG")]
    pub config: PathBuf,
    /// Namespace of the PerconaXtraDBCluster.
    #[arg(long, short, env = "BACKSTOP_NAMESPACE")]
    pub namespace: String,
    /// Name of the PerconaXtraDBCluster.
    #[arg(long, env = "BACKSTOP_CLUSTER")]
    pub cluster: String,
    /// Decide and report, never write.
    #[arg(long, env = "BACKSTOP_DRY_RUN")]
    pub dry_run: bool,
}

/// Arguments of `backstop status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Configuration file.
    #[arg(long, short, env = "BACKSTOP_CONFIG")]
    pub config: PathBuf,
    /// Only this namespace.
    #[arg(long, short, env = "BACKSTOP_NAMESPACE")]
    pub namespace: Option<String>,
    /// Only this cluster.
    #[arg(long, env = "BACKSTOP_CLUSTER")]
    pub cluster: Option<String>,
    /// Output format.
    #[arg(long, short, env = "BACKSTOP_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn playbook_args_parse() {
        let cli = Cli::try_parse_from([
            "backstop",
            "failover",
            "--config",
            "c.yaml",
            "--namespace",
            "percona",
            "--cluster",
            "cluster1",
            "--dry-run",
        ])
        .unwrap();
        match cli.command {
            Command::Failover(args) => {
                assert_eq!(args.namespace, "percona");
                assert_eq!(args.cluster, "cluster1");
                assert!(args.dry_run);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn failover_without_cluster_is_a_usage_error() {
        let err = Cli::try_parse_from(["backstop", "failover", "--config", "c.yaml"]).unwrap_err();
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE));
    }

    #[test]
    fn output_format_is_validated() {
        let err =
            Cli::try_parse_from(["backstop", "check", "-c", "x", "--output", "xml"]).unwrap_err();
        assert!(err.to_string().contains("xml"), "{err}");
    }
}
