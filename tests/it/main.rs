//! The integration tests, as one binary: one place for the helpers every area shares, and
//! kube, the AWS SDK, axum and the sandbox linked once (docs/testing.md has what that did,
//! and did not do, to CI's time).
//!
//! Each file is a module named for what it tests; [`common`] holds the helpers they share
//! (the sandbox harness, fixtures, the two-backend macro), [`soak`] the chaos soak's world
//! (also run by `benches/chaos_soak.rs`). Run one area with `cargo test --test it responder::`,
//! its real API server's half with `cargo test --test it responder:: -- --skip ::simulator`.

mod common;
mod soak;

mod alerts;
mod api_server;
mod aws_health;
mod blast_radius;
mod chaos_soak;
mod cli;
mod config;
mod conformance;
mod dashboard_queries;
mod deploy;
mod drill;
mod end_to_end;
mod fuzz_corpus;
mod hostile_input;
mod http;
mod https;
mod hung_backups;
mod kube_sim;
mod kubectl;
mod least_privilege;
mod operator_lock;
mod opt_in;
mod ordered_targets;
mod probe_cycle;
mod prober;
mod prober_tls;
mod process;
mod pxc_crd_agreement;
mod responder;
mod responder_cli;
mod route_check;
mod sandbox_cli;
mod sandbox_operator;
mod sandbox_s3;
mod secrets_in_logs;
mod watch;
