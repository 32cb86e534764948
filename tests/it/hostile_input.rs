//! Hostile input at the HTTP edge: oversized and slow bodies, wrong content types, deep
//! nesting, invalid UTF-8, alert floods, control characters and path traversal. For each, the
//! answer is a clear 4xx, the process stays healthy (`/healthz`, `/readyz` and a well-formed
//! notification still answer 200), and nothing changes on the cluster (its resourceVersion,
//! spec and annotations are compared before and after).
//!
//! The hostile notifications are built to *route*: if one were accepted, the cluster would get
//! an intent annotation and be failed over, so "nothing changed" really tests the refusal.

use std::sync::Arc;
use std::time::Duration;

use backstop::clock::{ManualClock, SystemClock};
use backstop::config::{Config, HumanDuration};
use backstop::responder::alertmanager::MAX_ALERTS;
use backstop::responder::cluster::cluster_api;
use backstop_sandbox::world::{self, WorldOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common;

use common::sandbox::{self, DEADLINE, Running};

/// The webhook token the harness writes.
const TOKEN: &str = "t";

/// How long a raw exchange may take before the test gives up. A guard against hanging
/// forever, not an assertion on how fast the server is.
const GUARD: Duration = Duration::from_secs(60);

fn options() -> WorldOptions {
    WorldOptions {
        clock: Arc::new(ManualClock::new(
            "2026-11-24T12:00:30Z".parse::<jiff::Timestamp>().unwrap(),
        )),
        // The operator steps only when asked, so nothing but Backstop could change the cluster.
        operator_interval: None,
        history: 1,
        retention: 10,
        ..WorldOptions::default()
    }
}

/// Starts Backstop on a fresh world and waits until it is ready.
async fn start(tune: impl FnOnce(&mut Config)) -> Running {
    let r = sandbox::start(options(), Arc::new(SystemClock), tune).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = get_status(&r, "/readyz").await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r
}

fn addr(r: &Running) -> &str {
    r.base.trim_start_matches("http://")
}

async fn get_status(r: &Running, path: &str) -> u16 {
    reqwest::get(format!("{}{path}", r.base))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// One alert that affects the sample cluster: accepted, it would fail the cluster over.
fn routed_alert(fingerprint: &str) -> Value {
    json!({
        "status": "firing",
        "labels": {
            "alertname": "S3BackupTargetUnavailable",
            "namespace": world::NAMESPACE,
            "cluster": world::CLUSTER,
            "bucket": world::PRIMARY_BUCKET,
            "severity": "critical",
        },
        "annotations": {"summary": "hostile"},
        "startsAt": "2026-11-24T03:10:30.32Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    })
}

fn notification(alerts: Vec<Value>) -> Value {
    json!({
        "version": "4",
        "status": "firing",
        "receiver": "backstop",
        "groupKey": "{}:{alertname=\"S3BackupTargetUnavailable\"}",
        "truncatedAlerts": 0,
        "alerts": alerts,
    })
}

/// The notification that would fail the cluster over.
fn routed() -> Value {
    notification(vec![routed_alert("0123456789abcdef")])
}

/// A well-formed notification no route matches: answered 200, changes nothing.
fn unrouted() -> Value {
    let mut alert = routed_alert("fedcba9876543210");
    alert["labels"]["alertname"] = json!("SomethingElse");
    notification(vec![alert])
}

/// Posts `body` to the webhook with the token and `content_type`.
async fn post(r: &Running, content_type: Option<&[u8]>, body: Vec<u8>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/alertmanager", r.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body);
    if let Some(ct) = content_type {
        request = request.header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(ct).unwrap(),
        );
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn post_json(r: &Running, body: &[u8]) -> (u16, Value) {
    post(r, Some(b"application/json"), body.to_vec()).await
}

/// What must not change: the cluster's resourceVersion, spec and annotations.
async fn snapshot(r: &Running) -> (Option<String>, Value, Value) {
    let object = cluster_api(&r.world.client, world::NAMESPACE)
        .get(world::CLUSTER)
        .await
        .unwrap();
    let annotations = serde_json::to_value(&object.metadata.annotations).unwrap();
    (
        object.metadata.resource_version.clone(),
        object.data["spec"].clone(),
        annotations,
    )
}

/// The process still serves, the webhook still accepts a good notification, and the
/// cluster is as it was: then stops everything.
async fn assert_healthy_and_unchanged(r: Running, before: (Option<String>, Value, Value)) {
    assert_eq!(get_status(&r, "/healthz").await, 200);
    assert_eq!(get_status(&r, "/readyz").await, 200);
    let (status, answer) = post_json(&r, &serde_json::to_vec(&unrouted()).unwrap()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unrouted"], 1, "{answer}");
    let after = snapshot(&r).await;
    assert!(before.0.is_some(), "the cluster has a resourceVersion");
    assert_eq!(after, before, "the cluster changed");
    r.stop().await;
}

/// Sends raw bytes on a new connection and reads the whole answer (the server closes the
/// connection: every raw request says `Connection: close` or is cut off by the server).
async fn raw(r: &Running, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr(r)).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_answer(&mut stream).await
}

/// Reads until the server closes; the status code and the whole text.
async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut buffer = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                // A reset after the answer is a close too.
                Err(_) if !buffer.is_empty() => break,
                Err(e) => panic!("reading the answer: {e}"),
            }
        }
    };
    tokio::time::timeout(GUARD, read)
        .await
        .expect("the server answered and closed the connection");
    let text = String::from_utf8_lossy(&buffer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    (status, text)
}

fn webhook_head(extra: &str) -> String {
    format!(
        "POST /alertmanager HTTP/1.1\r\nHost: backstop\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nConnection: close\r\n{extra}\r\n"
    )
}

fn small_limits(c: &mut Config) {
    c.server.max_body_bytes = 4096;
    c.server.request_timeout = HumanDuration(Duration::from_secs(1));
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let r = start(small_limits).await;
    let before = snapshot(&r).await;

    // Declared too long: refused from the Content-Length, before the body is read. The body is
    // a routed notification padded with whitespace, so it would act if it were read.
    let mut body = serde_json::to_vec(&routed()).unwrap();
    body.resize(5000, b' ');
    let (status, _) = post_json(&r, &body).await;
    assert_eq!(status, 413);

    // Chunked, no length given: refused once the limit is crossed while reading.
    let mut request = webhook_head("Transfer-Encoding: chunked\r\n").into_bytes();
    for _ in 0..5 {
        request.extend_from_slice(b"400\r\n");
        request.extend_from_slice(&[b' '; 0x400]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw(&r, &request).await;
    assert_eq!(status, 413, "{text}");

    // Just under the limit is read and parsed (a 400 for the padding-only body, not a 413).
    let (status, answer) = post_json(&r, &vec![b' '; 4000]).await;
    assert_eq!(status, 400, "{answer}");
    assert_healthy_and_unchanged(r, before).await;
}

#[tokio::test]
async fn slow_bodies_get_408_and_do_not_block_others() {
    let r = start(small_limits).await;
    let before = snapshot(&r).await;

    // Stalled: the head and a few bytes of a 1000-byte body, then nothing.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(addr(&r)).await.unwrap();
        let request = format!("{}{{\"version\":", webhook_head("Content-Length: 1000\r\n"));
        stream.write_all(request.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    // While they hang, everything else is served.
    assert_eq!(get_status(&r, "/healthz").await, 200);
    let (status, answer) = post_json(&r, &serde_json::to_vec(&unrouted()).unwrap()).await;
    assert_eq!(status, 200, "{answer}");
    for mut stream in stalled {
        let (status, text) = read_answer(&mut stream).await;
        assert_eq!(status, 408, "{text}");
    }

    // Drip-fed: a byte at a time, each well within any idle timeout, never finishing. Only a
    // timeout on the whole request stops it.
    let stream = TcpStream::connect(addr(&r)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Within the body limit, so only the timeout can end it.
    let head = webhook_head("Content-Length: 4000\r\n");
    writer.write_all(head.as_bytes()).await.unwrap();
    let drip = tokio::spawn(async move {
        for _ in 0..4000 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buffer = Vec::new();
    tokio::time::timeout(GUARD, async {
        let mut chunk = [0u8; 1024];
        while let Ok(n) = reader.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the drip-fed request was cut off");
    drip.abort();
    let text = String::from_utf8_lossy(&buffer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_healthy_and_unchanged(r, before).await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_do_not_block_others() {
    let r = start(small_limits).await;
    let before = snapshot(&r).await;
    // Slowloris: half a request head, then a header line now and then, never the blank
    // line that ends the head. Only a deadline on the headers ends it.
    let stream = TcpStream::connect(addr(&r)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"POST /alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let drip = tokio::spawn(async move {
        for i in 0..10_000 {
            if writer
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // While it drips, everything else is served.
    assert_eq!(get_status(&r, "/healthz").await, 200);
    let mut buffer = Vec::new();
    tokio::time::timeout(GUARD, async {
        let mut chunk = [0u8; 1024];
        while let Ok(n) = reader.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the server never closed a connection whose headers never ended");
    drip.abort();
    // hyper closes such a connection; whatever it sends first, it is never a success.
    let text = String::from_utf8_lossy(&buffer);
    assert!(!text.starts_with("HTTP/1.1 2"), "{text}");
    assert_healthy_and_unchanged(r, before).await;
}

#[tokio::test]
async fn wrong_content_types_get_400_naming_the_problem() {
    let r = start(|_| {}).await;
    let before = snapshot(&r).await;
    let body = serde_json::to_vec(&routed()).unwrap();
    let wrong: [Option<&[u8]>; 8] = [
        None,
        Some(b"text/plain"),
        Some(b"application/x-www-form-urlencoded"),
        Some(b"multipart/form-data; boundary=x"),
        Some(b"application/jsonx"),
        Some(b"application/json-patch+json"),
        Some(b"text/json"),
        // Not even ASCII.
        Some(b"application/json\xff"),
    ];
    for content_type in wrong {
        let (status, answer) = post(&r, content_type, body.clone()).await;
        assert_eq!(status, 400, "{content_type:?}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("content type must be application/json"),
            "{content_type:?}: {answer}"
        );
    }
    // Without credentials the answer is 401 whatever the body: nothing is parsed.
    let response = reqwest::Client::new()
        .post(format!("{}/alertmanager", r.base))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_healthy_and_unchanged(r, before).await;
}

#[tokio::test]
async fn deep_nesting_and_invalid_utf8_get_400() {
    let r = start(|_| {}).await;
    let before = snapshot(&r).await;
    let depth = 100_000;
    let nested = |open: &str, close: &str| format!("{}{}", open.repeat(depth), close.repeat(depth));

    // Nesting in a field the parser ignores, in a label value, and as the whole body: serde's
    // recursion limit refuses each without exhausting the stack.
    let mut ignored = serde_json::to_string(&routed()).unwrap();
    ignored.pop();
    ignored.push_str(&format!(",\"extra\":{}}}", nested("[", "]")));
    let in_label = serde_json::to_string(&routed()).unwrap().replace(
        "\"severity\":\"critical\"",
        &format!("\"severity\":{}", nested("{\"a\":", "}")),
    );
    for body in [ignored, in_label, nested("[", "]"), nested("{\"a\":", "}")] {
        let (status, answer) = post_json(&r, body.as_bytes()).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("malformed Alertmanager payload"),
            "{answer}"
        );
    }

    // Invalid UTF-8 in a label value, in a key, and a lone surrogate escape.
    let good = serde_json::to_vec(&routed()).unwrap();
    let text = String::from_utf8(good).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        text.replace("critical", "crit\u{1}ical")
            .into_bytes()
            .into_iter()
            .map(|b| if b == 1 { 0xff } else { b })
            .collect(),
        text.replace("\"severity\"", "\"sev\u{1}\"")
            .into_bytes()
            .into_iter()
            .map(|b| if b == 1 { 0xc3 } else { b })
            .collect(),
        text.replace("critical", "\\ud800").into_bytes(),
    ];
    for body in cases {
        let (status, answer) = post_json(&r, &body).await;
        assert_eq!(status, 400, "{answer}");
    }
    assert_healthy_and_unchanged(r, before).await;
}

#[tokio::test]
async fn alert_floods_are_bounded_with_a_clear_answer() {
    let r = start(|_| {}).await;
    let before = snapshot(&r).await;

    // More routed alerts than accepted: refused whole, and the answer says how to fix it.
    let flood = (0..=MAX_ALERTS)
        .map(|i| routed_alert(&format!("{i:016x}")))
        .collect();
    let (status, answer) = post_json(&r, &serde_json::to_vec(&notification(flood)).unwrap()).await;
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"].as_str().unwrap_or_default();
    assert!(message.contains(&(MAX_ALERTS + 1).to_string()), "{answer}");
    assert!(message.contains("max_alerts"), "{answer}");

    // Exactly the limit is handled (unrouted alerts here, so the cluster keeps still).
    let mut many = Vec::new();
    for i in 0..MAX_ALERTS {
        let mut alert = routed_alert(&format!("{i:016x}"));
        alert["labels"]["alertname"] = json!("SomethingElse");
        many.push(alert);
    }
    let mut body = notification(many);
    // Alertmanager says how many it left out; the answer repeats it, nothing breaks.
    body["truncatedAlerts"] = json!(u64::MAX);
    let (status, answer) = post_json(&r, &serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["alerts"], MAX_ALERTS, "{answer}");
    assert_eq!(answer["unrouted"], MAX_ALERTS, "{answer}");
    assert_eq!(answer["truncatedAlerts"], json!(u64::MAX), "{answer}");

    // A count that is no count is a 400 naming the field.
    for bad in ["-1", "1e30", "\"many\"", "18446744073709551616", "null"] {
        let body = serde_json::to_string(&routed()).unwrap().replace(
            "\"truncatedAlerts\":0",
            &format!("\"truncatedAlerts\":{bad}"),
        );
        assert!(body.contains(bad));
        let (status, answer) = post_json(&r, body.as_bytes()).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains("truncatedAlerts"), "{bad}: {answer}");
    }
    assert_healthy_and_unchanged(r, before).await;
}

/// Control characters in label values are accepted (Alertmanager label values are any
/// Unicode text) but match nothing: routing compares exactly, so `cluster1\n` is not
/// `cluster1`. Raw (unescaped) control characters are not JSON and get 400.
#[tokio::test]
async fn control_characters_in_labels_match_nothing_and_corrupt_nothing() {
    let r = start(|_| {}).await;
    let before = snapshot(&r).await;
    let hostile = [
        "\u{0}",
        "\r\n",
        "\n# HELP forged",
        "\u{1b}[31m",
        "\u{7f}",
        "\u{2028}",
    ];
    for bad in hostile {
        for label in ["namespace", "cluster", "bucket"] {
            let mut alert = routed_alert("0123456789abcdef");
            let value = alert["labels"][label].as_str().unwrap().to_owned();
            alert["labels"][label] = json!(format!("{value}{bad}"));
            alert["annotations"]["summary"] = json!(format!("evil{bad}line"));
            let body = serde_json::to_vec(&notification(vec![alert])).unwrap();
            let (status, answer) = post_json(&r, &body).await;
            assert_eq!(status, 200, "{label}={bad:?}: {answer}");
            assert_eq!(answer["clusters"], json!([]), "{label}={bad:?}: {answer}");
        }
        // In the alert name: no route.
        let mut alert = routed_alert(&format!("fp{bad}"));
        alert["labels"]["alertname"] = json!(format!("S3BackupTargetUnavailable{bad}"));
        let body = serde_json::to_vec(&notification(vec![alert])).unwrap();
        let (status, answer) = post_json(&r, &body).await;
        assert_eq!(status, 200, "alertname {bad:?}: {answer}");
        assert_eq!(answer["unrouted"], 1, "alertname {bad:?}: {answer}");
    }
    // Unescaped control characters inside a JSON string are not JSON.
    let raw_control = serde_json::to_string(&routed())
        .unwrap()
        .replace("critical", "crit\u{1}\nical");
    let (status, answer) = post_json(&r, raw_control.as_bytes()).await;
    assert_eq!(status, 400, "{answer}");
    // Nothing of the labels reached the metrics: every line is still a comment or a sample.
    let metrics = r.metrics().await;
    assert!(!metrics.contains("forged"), "{metrics}");
    assert!(
        !metrics.contains('\u{0}') && !metrics.contains('\r'),
        "{metrics}"
    );
    assert_healthy_and_unchanged(r, before).await;
}

#[tokio::test]
async fn path_traversal_is_404_or_400_never_a_file() {
    let r = start(|_| {}).await;
    let before = snapshot(&r).await;
    let targets = [
        "/alertmanager/../metrics",
        "/alertmanager/%2e%2e/metrics",
        "/alertmanager/..%2fmetrics",
        "/alertmanager/%2E%2E%2Fmetrics",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/metrics/../../etc/passwd",
        "//etc/passwd",
        "/healthz/..;/metrics",
        "/.%2e/.%2e/etc/passwd",
        "/alertmanager%00/../metrics",
        "/alertmanager\\..\\metrics",
        "http://backstop/../etc/passwd",
    ];
    let body = serde_json::to_string(&routed()).unwrap();
    for target in targets {
        for method in ["GET", "POST"] {
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: backstop\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let (status, text) = raw(&r, request.as_bytes()).await;
            assert!(
                status == 404 || status == 400,
                "{method} {target}: {status}\n{text}"
            );
            assert!(!text.contains("root:"), "{method} {target} served a file");
            assert!(
                !text.contains("backstop_build_info"),
                "{method} {target} reached /metrics"
            );
        }
    }
    // The webhook's own path with a traversal back to it is not the webhook either.
    for target in [
        "/alertmanager/../alertmanager",
        "/metrics/%2e%2e/alertmanager",
    ] {
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: backstop\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, text) = raw(&r, request.as_bytes()).await;
        assert_eq!(status, 404, "{target}: {text}");
    }
    // Raw paths never become label values: they are all counted as `unmatched`.
    let metrics = r.metrics().await;
    assert!(!metrics.contains("passwd"), "{metrics}");
    assert!(!metrics.contains("%2e"), "{metrics}");
    assert!(
        metrics.contains("handler=\"unmatched\""),
        "traversals are counted as unmatched:\n{metrics}"
    );
    assert_healthy_and_unchanged(r, before).await;
}
