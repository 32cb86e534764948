//! A minimal AWS Health API for the tests: `DescribeEvents` over the wire protocol the
//! current SDK speaks, Smithy RPC v2 CBOR (`POST /service/AWSHealth_20160804/operation/
//! DescribeEvents`, `smithy-protocol: rpc-v2-cbor`, `Content-Type: application/cbor`, CBOR
//! bodies with timestamps as tag 1, errors as a map with `__type`, a SigV4 `Authorization` for
//! service `health`). It answers the events it was given that match the request's filter
//! (service, regions, status), or the error AWS gives an account without a support plan. It
//! checks who signed (the access key in the `Credential=` scope and the scope's service), not
//! the signature. CBOR is ciborium's, not the SDK's own codec, so the two sides are separate
//! implementations of the format.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ciborium::Value;
use tokio_util::sync::CancellationToken;

/// The path of `DescribeEvents`.
pub const DESCRIBE_EVENTS: &str = "/service/AWSHealth_20160804/operation/DescribeEvents";

/// One event the server holds.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its region.
    pub region: String,
    /// Its service (`S3`).
    pub service: String,
    /// Its type (`AWS_S3_OPERATIONAL_ISSUE`).
    pub event_type_code: String,
    /// `open`, `closed` or `upcoming`.
    pub status_code: String,
}

#[derive(Debug, Default)]
struct State {
    events: Vec<Event>,
    subscription_required: bool,
    requests: usize,
}

/// A running Health endpoint.
pub struct HealthServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HealthServer {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the events it holds.
    pub fn set_events(&self, events: Vec<Event>) {
        self.lock().events = events;
    }

    /// Answers every request as for an account without a support plan.
    pub fn require_subscription(&self, required: bool) {
        self.lock().subscription_required = required;
    }

    /// How many well-formed `DescribeEvents` requests it has answered.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the server.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn cbor(status: StatusCode, body: &Value) -> Response {
    let mut bytes = Vec::new();
    // Writing a Value to a Vec cannot fail.
    let _ = ciborium::into_writer(body, &mut bytes);
    (
        status,
        [
            (header::CONTENT_TYPE, "application/cbor"),
            (
                header::HeaderName::from_static("smithy-protocol"),
                "rpc-v2-cbor",
            ),
        ],
        bytes,
    )
        .into_response()
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn cbor_error(status: StatusCode, kind: &str, message: &str) -> Response {
    cbor(
        status,
        &Value::Map(vec![
            (
                text("__type"),
                text(&format!("com.amazonaws.health#{kind}")),
            ),
            (text("message"), text(message)),
        ]),
    )
}

fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn strings(filter: Option<&Value>, key: &str) -> Option<Vec<String>> {
    field(filter?, key)?.as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_text().map(str::to_owned))
            .collect()
    })
}

fn answer(access_key: &str, state: &Mutex<State>, headers: &HeaderMap, body: &Bytes) -> Response {
    let header_of = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    if header_of("smithy-protocol") != "rpc-v2-cbor"
        || header_of("content-type") != "application/cbor"
    {
        return cbor_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "expected smithy-protocol rpc-v2-cbor and application/cbor",
        );
    }
    let authorization = header_of("authorization");
    let scope: Vec<&str> = authorization
        .split("Credential=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default()
        .split('/')
        .collect();
    if scope.first() != Some(&access_key) || scope.get(3) != Some(&"health") {
        return cbor_error(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        );
    }
    let Ok(request) = ciborium::from_reader::<Value, _>(&body[..]) else {
        return cbor_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "the body is not CBOR",
        );
    };
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.requests += 1;
    if state.subscription_required {
        return cbor_error(
            StatusCode::BAD_REQUEST,
            "SubscriptionRequiredException",
            "The AWS Premium Support Subscription is required to use this service.",
        );
    }
    let filter = field(&request, "filter");
    let services = strings(filter, "services");
    let regions = strings(filter, "regions");
    let statuses = strings(filter, "eventStatusCodes");
    let keep = |wanted: &Option<Vec<String>>, value: &str| {
        wanted.as_ref().is_none_or(|w| w.iter().any(|x| x == value))
    };
    let time = |seconds: f64| Value::Tag(1, Box::new(Value::Float(seconds)));
    let events: Vec<Value> = state
        .events
        .iter()
        .filter(|e| {
            keep(&services, &e.service)
                && keep(&regions, &e.region)
                && keep(&statuses, &e.status_code)
        })
        .map(|e| {
            Value::Map(vec![
                (
                    text("arn"),
                    text(&format!(
                        "arn:aws:health:{}::event/{}/{}/sandbox",
                        e.region, e.service, e.event_type_code
                    )),
                ),
                (text("service"), text(&e.service)),
                (text("eventTypeCode"), text(&e.event_type_code)),
                (text("eventTypeCategory"), text("issue")),
                (text("region"), text(&e.region)),
                (text("startTime"), time(1_796_000_000.0)),
                (text("lastUpdatedTime"), time(1_796_000_060.0)),
                (text("statusCode"), text(&e.status_code)),
                (text("eventScopeCode"), text("PUBLIC")),
            ])
        })
        .collect();
    cbor(
        StatusCode::OK,
        &Value::Map(vec![(text("events"), Value::Array(events))]),
    )
}

/// Starts the endpoint on 127.0.0.1 (a free port), accepting requests signed with
/// `access_key`.
///
/// # Errors
///
/// The I/O error when the port cannot be bound.
pub async fn start(access_key: &str) -> std::io::Result<HealthServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let key = access_key.to_owned();
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    let router = Router::new()
        .route(
            DESCRIBE_EVENTS,
            post(move |headers: HeaderMap, body: Bytes| {
                let key = key.clone();
                let shared = shared.clone();
                async move { answer(&key, &shared, &headers, &body) }
            }),
        )
        .fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                cbor_error(
                    StatusCode::NOT_FOUND,
                    "UnknownOperationException",
                    &format!("{method} {uri} is not served"),
                )
            },
        );
    let (shutdown, task) = crate::serve::spawn(listener, router);
    Ok(HealthServer {
        addr,
        state,
        shutdown,
        task: Some(task),
    })
}
