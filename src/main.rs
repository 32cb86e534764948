//! The `backstop` binary: parses the command line and hands off to the library. Errors become
//! exit codes here, and only here (`anyhow` stays at this edge).

use std::process::ExitCode;

use anyhow::Context as _;
use backstop::cli::{Cli, Command, EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE};
use backstop::config::{self, ConfigError};
use backstop::responder::journal::Phase;
use backstop::responder::manual::{self, Manual};
use backstop::runtime::app::App;
use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = backstop::runtime::telemetry::init(cli.log_format, &cli.log_filter) {
        eprintln!("backstop: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    backstop::install_crypto_provider();

    match cli.command {
        Command::ValidateConfig(args) => validate_config(&args.file),
        Command::ConfigSchema => match serde_json::to_string_pretty(&config::json_schema()) {
            Ok(text) => {
                println!("{text}");
                ExitCode::from(EXIT_OK)
            }
            Err(e) => fail(&anyhow::Error::from(e)),
        },
        Command::Run(args) => {
            let config = match load(&args.config) {
                Ok(mut config) => {
                    if let Some(listen) = args.listen {
                        config.server.listen = listen;
                    }
                    config.responder.dry_run |= args.dry_run;
                    config
                }
                Err(code) => return code,
            };
            run_async(async move {
                let shutdown = CancellationToken::new();
                backstop::runtime::shutdown::cancel_on_signal(shutdown.clone());
                // KUBECONFIG / ~/.kube/config, else the in-cluster service account.
                let client = kube::Client::try_default()
                    .await
                    .context("connecting to Kubernetes (KUBECONFIG or in-cluster)")?;
                let clock = std::sync::Arc::new(backstop::clock::SystemClock);
                App::bind_with(config, Some(client), clock)
                    .await?
                    .serve(shutdown)
                    .await?;
                Ok(())
            })
        }
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) if args.drill => {
            let credentials = match (&args.s3_access_key_id, &args.s3_secret_access_key) {
                (Some(id), Some(secret)) => Some(backstop::s3::client::StaticCredentials {
                    access_key_id: id.clone(),
                    secret_access_key: secret.clone(),
                }),
                _ => None,
            };
            let options = backstop_sandbox::drill::DrillOptions {
                strategy: args.strategy.into(),
                break_secondary: args.break_secondary,
                break_route: args.break_route,
                hang: args.hang,
                serial: args.serial,
                ordered: args.ordered,
                credentials,
                webhook_token: args.webhook_token.clone(),
                backend: sandbox_backend(args.api_server),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&anyhow::Error::from(e)),
            };
            match runtime.block_on(backstop_sandbox::drill::run(options)) {
                Ok(_) => ExitCode::from(EXIT_OK),
                Err(e) => {
                    eprintln!("backstop sandbox --drill: FAILED: {e}");
                    ExitCode::from(EXIT_UNHEALTHY)
                }
            }
        }
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => run_async(async move {
            let shutdown = CancellationToken::new();
            backstop::runtime::shutdown::cancel_on_signal(shutdown.clone());
            backstop_sandbox::run(&args.listen, sandbox_backend(args.api_server), shutdown).await?;
            Ok(())
        }),
        #[cfg(not(feature = "sandbox"))]
        Command::Sandbox(_) => {
            eprintln!("backstop: this build has no sandbox (built without the `sandbox` feature)");
            ExitCode::from(EXIT_USAGE)
        }
        Command::Check(args) => {
            let config = match load(&args.config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            run_check(config, args.output)
        }
        Command::Failover(args) => run_manual(&args, Manual::Failover),
        Command::Revert(args) => run_manual(&args, Manual::Revert),
        Command::Status(args) => run_status(&args),
    }
}

fn validate_config(path: &std::path::Path) -> ExitCode {
    match config::load_file(path) {
        Ok(_) => {
            println!("{}: valid", path.display());
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            report_config_error(path, &e);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn load(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    config::load_file(path).map_err(|e| {
        report_config_error(path, &e);
        ExitCode::from(EXIT_USAGE)
    })
}

fn report_config_error(path: &std::path::Path, error: &ConfigError) {
    eprintln!("{}: invalid configuration", path.display());
    for problem in error.problems() {
        eprintln!("  {problem}");
    }
}

/// Runs `work` with a Kubernetes client (KUBECONFIG, else in-cluster) on a fresh runtime;
/// exit 2 when no cluster can be reached.
fn with_cluster<F, Fut>(work: F) -> ExitCode
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::from(e)),
    };
    runtime.block_on(async move {
        match kube::Client::try_default().await {
            Ok(client) => work(client).await,
            Err(e) => {
                eprintln!("backstop: cannot reach Kubernetes (KUBECONFIG or in-cluster): {e}");
                ExitCode::from(EXIT_USAGE)
            }
        }
    })
}

/// `backstop failover|revert`: 0 when the cluster got there, 1 when it did not (refused,
/// verification failed), 2 when the command cannot run.
fn run_manual(args: &backstop::cli::PlaybookArgs, which: Manual) -> ExitCode {
    let mut config = match load(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    config.responder.dry_run |= args.dry_run;
    let key = backstop::responder::ClusterKey {
        namespace: args.namespace.clone(),
        name: args.cluster.clone(),
    };
    with_cluster(|client| async move {
        let clock = std::sync::Arc::new(backstop::clock::SystemClock);
        let say = |line: &str| println!("{} {key}: {line}", jiff::Timestamp::now());
        match manual::run(client, std::sync::Arc::new(config), clock, &key, which, say).await {
            Ok(phase) => {
                let arrived = match which {
                    Manual::Failover => phase == Some(Phase::FailedOver),
                    Manual::Revert => matches!(phase, None | Some(Phase::Reverted)),
                };
                if arrived {
                    ExitCode::from(EXIT_OK)
                } else {
                    ExitCode::from(EXIT_UNHEALTHY)
                }
            }
            Err(
                e @ (manual::ManualError::Unmanaged(_) | manual::ManualError::OptInInvalid(..)),
            ) => {
                eprintln!("backstop: {e}");
                ExitCode::from(EXIT_USAGE)
            }
            Err(e) => fail(&anyhow::Error::from(e)),
        }
    })
}

/// `backstop status`: every managed cluster's intent, phase and journal.
fn run_status(args: &backstop::cli::StatusArgs) -> ExitCode {
    let config = match load(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    with_cluster(|client| async move {
        match backstop::responder::status::status(
            &client,
            &config,
            args.namespace.as_deref(),
            args.cluster.as_deref(),
        )
        .await
        {
            Ok(rows) => {
                match args.output {
                    backstop::cli::OutputFormat::Table => {
                        println!("{}", backstop::responder::status::render_table(&rows))
                    }
                    backstop::cli::OutputFormat::Json => {
                        match serde_json::to_string_pretty(&rows) {
                            Ok(text) => println!("{text}"),
                            Err(e) => return fail(&anyhow::Error::from(e)),
                        }
                    }
                }
                ExitCode::from(EXIT_OK)
            }
            Err(e) => fail(&anyhow::Error::from(e)),
        }
    })
}

/// `backstop check`: 0 healthy, 1 unhealthy, 2 when the check cannot run at all.
fn run_check(config: config::Config, output: backstop::cli::OutputFormat) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::from(e)),
    };
    runtime.block_on(async move {
        let clock = std::sync::Arc::new(backstop::clock::SystemClock);
        // Static targets need no cluster: without one the check still runs, and says so.
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("KUBECONFIG or in-cluster: {e}"));
        let cluster = match &client {
            Ok(client) => backstop::check::Cluster::Reachable(client),
            Err(why) => backstop::check::Cluster::Unreachable(why),
        };
        match backstop::check::run(&config, cluster, clock).await {
            Ok(report) => {
                match output {
                    backstop::cli::OutputFormat::Table => {
                        print!("{}", backstop::check::render_table(&report))
                    }
                    backstop::cli::OutputFormat::Json => {
                        match serde_json::to_string_pretty(&report) {
                            Ok(text) => println!("{text}"),
                            Err(e) => return fail(&anyhow::Error::from(e)),
                        }
                    }
                }
                ExitCode::from(if report.healthy {
                    EXIT_OK
                } else {
                    EXIT_UNHEALTHY
                })
            }
            Err(e) => {
                eprintln!("backstop check: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        }
    })
}

fn run_async(future: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime");
    let result = runtime.and_then(|rt| rt.block_on(future));
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => fail(&e),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("backstop: {error:#}");
    ExitCode::from(EXIT_UNHEALTHY)
}

#[cfg(feature = "sandbox")]
fn sandbox_backend(choice: backstop::cli::SandboxApiServer) -> backstop_sandbox::backend::Backend {
    match choice {
        backstop::cli::SandboxApiServer::Simulator => backstop_sandbox::backend::Backend::Simulator,
        backstop::cli::SandboxApiServer::Real => backstop_sandbox::backend::Backend::Real,
    }
}
