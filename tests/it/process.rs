//! The real binary as a process: `backstop run` against a Kubernetes API (the simulator, through
//! a kubeconfig) serves, becomes ready, and SIGTERM stops it cleanly.

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

    // The simulator runs on this runtime's worker threads while the test blocks on the child.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(backstop_sandbox::kube::KubeSim::start(Default::default()))
        .unwrap();
    rt.block_on(async {
        backstop_sandbox::crds::install_pxc_crds(&sim.admin_client().await.unwrap())
            .await
            .unwrap();
    });
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, sim.admin_token())
        .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("KUBECONFIG", &kubeconfig)
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
    // Ready once the watches have listed (poll with a deadline; the lists are quick).
    let deadline = std::time::Instant::now() + DEADLINE;
    while reqwest::blocking_get(&format!("http://{addr}/readyz")).contains("waiting_for") {
        assert!(std::time::Instant::now() < deadline, "never became ready");
        std::thread::yield_now();
    }

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
    rt.block_on(sim.shutdown());
}

#[test]
fn run_without_a_reachable_cluster_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("backstop.yaml");
    std::fs::write(
        &config,
        "server: {listen: '127.0.0.1:0'}\nresponder: {auth: {allow_unauthenticated: true}}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["run", "--config"])
        .arg(&config)
        .env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connecting to Kubernetes"));
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
