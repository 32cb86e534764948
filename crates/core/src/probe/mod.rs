//! The S3 prober's core: what a target is, one probe cycle of it, how its failures are
//! classified, and the metrics a cycle produces.
//!
//! The core is deliberately free of discovery and scheduling: a cycle takes a target, a
//! ready S3 client and the target's state, and returns a plain [`cycle::CycleResult`].
//! That keeps every S3 decision testable against the embedded S3 with nothing else
//! running, and lets `backstop check` (one cycle per target, printed) and the long-running
//! prober (cycles on an interval, exported as metrics) share exactly the same probe.
//! Discovery of targets from clusters and the scheduling loop build on these parts.

pub mod aws_health;
pub mod blast;
pub mod classify;
pub mod cycle;
pub mod discovery;
pub mod health;
pub mod metrics;
pub mod once;
pub mod scheduler;
pub mod target;

pub use classify::{ErrorClass, classify};
pub use cycle::{
    CanaryRun, CycleOptions, CycleResult, NewestObject, Operation, OperationResult, Outcome,
    TargetState, run_cycle,
};
pub use metrics::ProbeMetrics;
pub use target::{CredentialSource, Target, TargetError, TargetKey, User};
