//! The process: [`app`] wires the parts together; [`server`] and [`https`] serve `/metrics`,
//! `/healthz`, `/readyz` and the webhook (over [`tls`] when configured); [`readiness`] gates
//! `/readyz` on the watches' first lists; [`metrics`] is the registry; [`telemetry`] sets up
//! logging; [`shutdown`] turns signals into a cancellation.

pub mod app;
pub mod https;
pub mod metrics;
pub mod readiness;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
