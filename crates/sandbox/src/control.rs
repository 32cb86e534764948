//! The sandbox's control endpoint: break and repair the embedded S3 at run time with plain
//! HTTP (`curl -X POST .../faults/us-west-2/refuse`, `curl -X DELETE .../faults`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::s3::{Fault, Faults, Rule};

/// The fault names the endpoint accepts.
pub const FAULT_NAMES: &[&str] = &[
    "refuse",
    "hang",
    "latency",
    "slowdown",
    "unavailable",
    "internal-error",
    "access-denied",
    "no-such-bucket",
    "invalid-credentials",
];

/// A running control endpoint.
pub struct Control {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Control {
    /// Serves the endpoint on 127.0.0.1 with a free port.
    pub async fn start(faults: Faults) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route("/faults", get(list).delete(clear))
            .route("/faults/{region}/{fault}", post(set))
            .with_state(faults);
        let (shutdown, task) = crate::serve::spawn(listener, router);
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    /// The endpoint's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the endpoint.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Parses a fault name (`latency` takes `latency_ms`, default 500).
pub fn parse_fault(name: &str, latency_ms: Option<u64>) -> Option<Fault> {
    Some(match name {
        "refuse" => Fault::Refuse,
        "hang" => Fault::Hang,
        "latency" => Fault::Latency(Duration::from_millis(latency_ms.unwrap_or(500))),
        "slowdown" => Fault::SlowDown,
        "unavailable" => Fault::ServiceUnavailable,
        "internal-error" => Fault::InternalError,
        "access-denied" => Fault::AccessDenied,
        "no-such-bucket" => Fault::NoSuchBucket,
        "invalid-credentials" => Fault::InvalidCredentials,
        _ => return None,
    })
}

async fn set(
    State(faults): State<Faults>,
    Path((region, fault)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let latency = query.get("latency_ms").and_then(|v| v.parse().ok());
    let Some(parsed) = parse_fault(&fault, latency) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": format!("unknown fault {fault:?}"), "faults": FAULT_NAMES})),
        )
            .into_response();
    };
    let mut rule = Rule::new(parsed).in_region(region);
    if let Some(bucket) = query.get("bucket") {
        rule = rule.on_bucket(bucket.clone());
    }
    if let Some(operation) = query.get("operation") {
        rule = rule.on_operation(operation.clone());
    }
    match faults.set(rule).await {
        Ok(id) => (
            StatusCode::CREATED,
            axum::Json(json!({"id": id.to_string()})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn list(State(faults): State<Faults>) -> Response {
    let rules: Vec<_> = faults
        .list()
        .into_iter()
        .map(|r| json!({"id": r.id.to_string(), "rule": format!("{:?}", r.rule), "hits": r.hits}))
        .collect();
    axum::Json(json!({"faults": rules})).into_response()
}

async fn clear(State(faults): State<Faults>) -> Response {
    match faults.clear_all().await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}
