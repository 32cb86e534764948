//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, the webhook route, body limits and
//! graceful shutdown. Every server is bound to 127.0.0.1:0 and stopped by its test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use backstop::config::{self, Config};
use backstop::runtime::app::App;
use backstop::runtime::readiness::Readiness;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn test_config() -> Config {
    let mut c = config::load_str("responder:\n  auth:\n    allow_unauthenticated: true\n").unwrap();
    c.server.listen = "127.0.0.1:0".to_owned();
    c
}

struct Running {
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), backstop::Error>>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(self) -> Result<(), backstop::Error> {
        self.shutdown.cancel();
        self.task.await.expect("server task does not panic")
    }
}

async fn start_with(
    config: Config,
    extend: impl FnOnce(axum::Router) -> axum::Router + Send + 'static,
) -> Running {
    let app = App::bind(config).await.unwrap();
    let addr = app.local_addr().unwrap();
    let readiness = app.readiness().clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.serve_with(shutdown.clone(), extend));
    Running {
        addr,
        readiness,
        shutdown,
        task,
    }
}

async fn start() -> Running {
    start_with(test_config(), |r| r).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_gzip().build().unwrap()
}

#[tokio::test]
async fn metrics_default_to_the_prometheus_text_format() {
    let s = start().await;
    let resp = client().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = resp.text().await.unwrap();
    assert!(body.contains("backstop_build_info{version=\""), "{body}");
    assert!(
        body.contains("# TYPE backstop_start_time_seconds gauge"),
        "{body}"
    );
    assert!(!body.contains("# EOF"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_speak_openmetrics_when_asked() {
    let s = start().await;
    let resp = client()
        .get(s.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let body = resp.text().await.unwrap();
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_are_gzipped_when_accepted() {
    let s = start().await;
    let resp = client()
        .get(s.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn requests_are_counted_by_route_not_raw_path() {
    let s = start().await;
    let c = client();
    assert_eq!(c.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(
        c.get(s.url("/no/such/../path"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let body = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("backstop_http_requests_total{handler=\"/healthz\",code=\"200\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("backstop_http_requests_total{handler=\"unmatched\",code=\"404\"} 1"),
        "{body}"
    );
    assert!(!body.contains("no/such"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn healthz_answers_while_the_process_lives() {
    let s = start().await;
    let resp = client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok\n");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_flips_with_its_gates() {
    let s = start().await;
    let c = client();
    assert_eq!(c.get(s.url("/readyz")).send().await.unwrap().status(), 200);

    let watch = s.readiness.gate("backup-watch");
    let resp = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["waiting_for"], serde_json::json!(["backup-watch"]));

    watch.open();
    assert_eq!(c.get(s.url("/readyz")).send().await.unwrap().status(), 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn without_kubernetes_the_webhook_answers_503_so_alertmanager_retries() {
    let s = start().await;
    let c = client();
    let resp = c
        .post(s.url("/alertmanager"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("responder"));
    assert_eq!(
        c.get(s.url("/alertmanager")).send().await.unwrap().status(),
        405
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_webhook_path_is_configurable() {
    let mut config = test_config();
    config.server.webhook_path = "/hooks/am".to_owned();
    let s = start_with(config, |r| r).await;
    let c = client();
    assert_eq!(
        c.post(s.url("/hooks/am")).send().await.unwrap().status(),
        503
    );
    assert_eq!(
        c.post(s.url("/alertmanager"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let mut config = test_config();
    config.server.max_body_bytes = 2048;
    let s = start_with(config, |r| r).await;
    let resp = client()
        .post(s.url("/alertmanager"))
        .header("content-type", "application/json")
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    s.stop().await.unwrap();
}

/// A route that signals when a request arrives and answers only when released.
fn held_route(
    arrived: Arc<Notify>,
    release: oneshot::Receiver<()>,
) -> impl FnOnce(axum::Router) -> axum::Router {
    let release = Arc::new(tokio::sync::Mutex::new(Some(release)));
    move |router| {
        router.route(
            "/test/held",
            get(move || {
                let arrived = arrived.clone();
                let release = release.clone();
                async move {
                    arrived.notify_one();
                    if let Some(rx) = release.lock().await.take() {
                        let _ = rx.await;
                    }
                    "finished"
                }
            }),
        )
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let arrived = Arc::new(Notify::new());
    let (release_tx, release_rx) = oneshot::channel();
    let s = start_with(test_config(), held_route(arrived.clone(), release_rx)).await;

    let url = s.url("/test/held");
    let request = tokio::spawn(async move { client().get(url).send().await });
    arrived.notified().await;

    s.shutdown.cancel();
    // The server cannot finish while the request is held; release it and both complete.
    tokio::task::yield_now().await;
    assert!(
        !s.task.is_finished(),
        "server stopped before the in-flight request finished"
    );
    release_tx.send(()).unwrap();

    let resp = request.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "finished");
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_is_bounded_when_a_request_never_finishes() {
    let arrived = Arc::new(Notify::new());
    let (_never_released, release_rx) = oneshot::channel::<()>();
    let mut config = test_config();
    config.server.shutdown_timeout = config::HumanDuration(Duration::from_millis(200));
    let s = start_with(config, held_route(arrived.clone(), release_rx)).await;

    let url = s.url("/test/held");
    let _request = tokio::spawn(async move { client().get(url).send().await });
    arrived.notified().await;

    let err = s.stop().await.unwrap_err();
    assert!(
        matches!(
            err,
            backstop::Error::Server(backstop::runtime::server::ServerError::ShutdownTimedOut(_))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn binding_a_taken_port_is_a_clear_error() {
    let s = start().await;
    let mut config = test_config();
    config.server.listen = s.addr.to_string();
    let err = App::bind(config).await.err().expect("second bind fails");
    assert!(err.to_string().contains(&s.addr.to_string()), "{err}");
    s.stop().await.unwrap();
}
