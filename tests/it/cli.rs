//! The binary's command line: help, exit codes and `BACKSTOP_*` environment variables.

use std::process::{Command, Output};

fn backstop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(args)
        .env_remove("BACKSTOP_CONFIG")
        .output()
        .expect("the backstop binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_subcommand() {
    let out = backstop(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for sub in [
        "run",
        "sandbox",
        "check",
        "validate-config",
        "config-schema",
        "failover",
        "revert",
        "status",
    ] {
        assert!(help.contains(sub), "{sub} missing from:\n{help}");
    }
}

#[test]
fn flags_show_their_environment_variables() {
    let out = backstop(&["run", "--help"]);
    let help = text(&out.stdout);
    for var in [
        "BACKSTOP_CONFIG",
        "BACKSTOP_LISTEN",
        "BACKSTOP_DRY_RUN",
        "BACKSTOP_LOG_FORMAT",
        "BACKSTOP_LOG",
    ] {
        assert!(help.contains(var), "{var} missing from:\n{help}");
    }
}

#[test]
fn validate_config_accepts_the_shipped_example() {
    let out = backstop(&["validate-config", "deploy/config.example.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid"));
}

#[test]
fn validate_config_prints_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "server:\n  colour: blue\nclusters:\n  - {namespace: a, name: b, failover: {secondary: {bucket: sec-bucket, credentials_secret: s}}}\n",
    )
    .unwrap();
    let out = backstop(&["validate-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("server.colour: unknown key"), "{err}");
    assert!(
        err.contains("clusters[0].failover.secondary.region: missing"),
        "{err}"
    );
}

#[test]
fn validate_config_reads_the_file_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .arg("validate-config")
        .env("BACKSTOP_CONFIG", "deploy/config.example.yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn log_format_from_the_environment_is_validated() {
    let out = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["validate-config", "deploy/config.example.yaml"])
        .env("BACKSTOP_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("xml"));
}

#[test]
fn an_invalid_log_filter_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["validate-config", "deploy/config.example.yaml"])
        .env("BACKSTOP_LOG", "info,[[[")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn missing_required_arguments_exit_2() {
    assert_eq!(backstop(&["run"]).status.code(), Some(2));
    assert_eq!(
        backstop(&["failover", "-c", "x.yaml", "--cluster", "c"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn config_schema_prints_a_json_schema() {
    let out = backstop(&["config-schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "Config");
    assert!(schema["properties"]["clusters"].is_object());
}

#[test]
fn run_with_an_invalid_config_exits_2_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "responder: {auth: {}}\n").unwrap();
    let out = backstop(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("responder.auth"));
}
