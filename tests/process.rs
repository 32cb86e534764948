//! The real binary as a process: `backstop run` serves, and SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Generous deadline for a freshly started debug binary on a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn run_serves_until_sigterm_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("backstop.yaml");
    std::fs::write(
        &config,
        "server: {listen: '127.0.0.1:0'}\nresponder: {auth: {allow_unauthenticated: true}}\n",
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();

    // Log lines arrive on a channel so the test can wait with a deadline, never a sleep.
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = rx.recv_timeout(DEADLINE).expect("a 'listening' log line");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if json["fields"]["message"] == "listening" {
            break json["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };

    let body = reqwest::blocking_get(&format!("http://{addr}/healthz"));
    assert_eq!(body, "ok\n");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));

    let rest: Vec<String> = rx.iter().collect();
    reader.join().unwrap();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:#?}");
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:#?}");
}

mod reqwest {
    /// A one-off GET on a private runtime (this test is synchronous around a child process).
    pub fn blocking_get(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}
