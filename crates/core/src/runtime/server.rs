//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and the Alertmanager webhook, on one
//! port, with graceful shutdown bounded in time.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::ServerConfig;
use crate::responder::Webhook;
use crate::runtime::metrics::{Format, Metrics};
use crate::runtime::readiness::Readiness;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Accepting or serving connections failed.
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
    /// In-flight requests did not finish within the shutdown timeout; they were dropped.
    #[error("in-flight requests did not finish within {0:?}; stopped anyway")]
    ShutdownTimedOut(Duration),
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The registry rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The gates behind `/readyz`.
    pub readiness: Readiness,
    /// The Alertmanager webhook, when the responder runs (it needs Kubernetes and
    /// `responder.enabled`).
    pub webhook: Option<Arc<Webhook>>,
}

/// Builds the router for `settings`.
pub fn router(state: AppState, settings: &ServerConfig) -> Router {
    let body_limit = usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX);
    Router::new()
        // Only the exposition is worth compressing (1.5 MB at scale); the other answers are
        // a few bytes, and the layer costs every webhook request a little.
        // The fastest level: a 300,000-backup exposition gzips in a few milliseconds
        // instead of about 11 at the default level, and metric text still shrinks several
        // times over.
        .route(
            "/metrics",
            get(metrics).layer(
                CompressionLayer::new()
                    .gzip(true)
                    .quality(CompressionLevel::Fastest),
            ),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(&settings.webhook_path, post(webhook))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout.get(),
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish for at most `grace`. A connection whose request headers take longer than
/// `header_timeout` is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
    header_timeout: Duration,
) -> Result<(), ServerError> {
    // The accept loop stops at `stop` and then drains; the drain is bounded here.
    let stop = CancellationToken::new();
    let server = crate::runtime::https::serve_plain(listener, router, header_timeout, stop.clone());
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => return Ok(()),
        () = shutdown.cancelled() => stop.cancel(),
    }
    tokio::time::timeout(grace, server)
        .await
        .map_err(|_| ServerError::ShutdownTimedOut(grace))
}

/// Like [`serve`], over TLS.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: rustls::ServerConfig,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), ServerError> {
    // The accept loop stops at `stop` and then drains; the drain is bounded here.
    let stop = CancellationToken::new();
    let server = crate::runtime::https::serve(listener, router, tls, stop.clone());
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => return Ok(()),
        () = shutdown.cancelled() => stop.cancel(),
    }
    tokio::time::timeout(grace, server)
        .await
        .map_err(|_| ServerError::ShutdownTimedOut(grace))
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let handler = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .count_http_request(&handler, response.status().as_u16());
    response
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    match state.metrics.render(format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let pending = state.readiness.pending();
    if pending.is_empty() {
        (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "waiting_for": pending})),
        )
            .into_response()
    }
}

async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match &state.webhook {
        Some(webhook) => webhook.handle(&headers, &body).await,
        // Without Kubernetes there is nowhere to record an intent; 503 makes Alertmanager
        // retry rather than drop the notification.
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "the responder is not running (no Kubernetes client, or responder.enabled is false)"})),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(r#"{"error":"not found"}"#),
    )
        .into_response()
}
