//! `backstop sandbox` as a user runs it: a process that prints where everything is, serves
//! kubectl from its kubeconfig, takes faults on its control endpoint and stops cleanly on
//! SIGINT, removing its files; on the API simulator and on a real kube-apiserver
//! (`--api-server real`, whose etcd, API server and controller manager it stops too).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

fn field(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_else(|| panic!("no {label:?} line in {lines:#?}"))
}

#[test]
fn the_sandbox_serves_kubectl_metrics_and_fault_control_then_stops_cleanly() {
    sandbox_session("simulator");
}

#[test]
fn the_sandbox_on_a_real_api_server_does_the_same() {
    sandbox_session("real");
}

/// The children of process `pid` still running (the real server's etcd, kube-apiserver and
/// kube-controller-manager while the sandbox runs).
fn children(pid: u32) -> Vec<(u32, String)> {
    let out = Command::new("ps")
        .args(["-o", "pid=,comm=", "--ppid", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (pid, comm) = l.trim().split_once(' ')?;
            Some((pid.parse().ok()?, comm.trim().to_owned()))
        })
        .collect()
}

fn sandbox_session(api_server: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--api-server",
            api_server,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("faults:")) {
        lines.push(
            rx.recv_timeout(DEADLINE)
                .expect("the sandbox prints its summary"),
        );
    }

    // Backstop runs as the shipped ServiceAccount, under the shipped ClusterRole.
    assert_eq!(
        field(&lines, "runs as:"),
        "system:serviceaccount:backstop:backstop"
    );
    let kubeconfig = field(&lines, "kubeconfig:");
    let binding = Command::new("kubectl")
        .args([
            "--kubeconfig",
            &kubeconfig,
            "get",
            "clusterrolebinding",
            "backstop",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        binding.status.success(),
        "{}",
        String::from_utf8_lossy(&binding.stderr)
    );
    let binding: serde_json::Value = serde_json::from_slice(&binding.stdout).unwrap();
    assert_eq!(binding["subjects"][0]["name"], "backstop", "{binding}");
    let out = Command::new("kubectl")
        .args([
            "--kubeconfig",
            &kubeconfig,
            "get",
            "pxc,pxc-backup",
            "-A",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(
        names.contains("perconaxtradbcluster.pxc.percona.com/cluster1"),
        "{names}"
    );
    let backups = names
        .lines()
        .filter(|l| l.contains("perconaxtradbclusterbackup"))
        .count();
    assert!(backups >= 12, "a few days of history: {names}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics_url = field(&lines, "metrics:");
    let control = field(&lines, "fault control:");
    rt.block_on(async {
        let metrics = reqwest::get(&metrics_url).await.unwrap();
        assert_eq!(metrics.status(), 200);
        assert!(
            metrics
                .text()
                .await
                .unwrap()
                .contains("backstop_build_info")
        );

        let client = reqwest::Client::new();
        let set = client
            .post(format!("{control}/faults/us-west-2/refuse"))
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 201);
        let listed: serde_json::Value = client
            .get(format!("{control}/faults"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["faults"].as_array().unwrap().len(), 1);
        let bad = client
            .post(format!("{control}/faults/us-west-2/bogus"))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let cleared = client
            .delete(format!("{control}/faults"))
            .send()
            .await
            .unwrap();
        assert_eq!(cleared.status(), 204);
    });

    if api_server == "simulator" {
        quickstart_commands_run(&control, &kubeconfig);
    }

    let dir = std::path::Path::new(&kubeconfig)
        .parent()
        .unwrap()
        .to_owned();
    assert!(dir.exists());
    let running = children(child.id());
    if api_server == "real" {
        for program in ["etcd", "kube-apiserver", "kube-controller"] {
            assert!(
                running.iter().any(|(_, c)| c.starts_with(program)),
                "{program} runs: {running:?}"
            );
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    drop(rx);
    reader.join().unwrap();
    assert!(!dir.exists(), "the sandbox removes its files on exit");
    for (pid, program) in running {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{program} ({pid}) was stopped with the sandbox"
        );
    }
}

/// Every command the README shows in its ```` ```sh ```` blocks (the whole file, not only the
/// Quickstart), checked as a user would run it: the `curl` lines, and `kubectl` lines naming
/// `--kubeconfig PATH`, against this running sandbox (its port and kubeconfig put in);
/// `kubectl apply -k DIR` and `kubectl kustomize DIR` rendered with `kubectl kustomize DIR`
/// from the repository root (no server: it proves the directory exists and renders);
/// `kubectl create secret generic ... --dry-run=client -o yaml` as is (client-side);
/// `cargo run -- ARGS` as this build's binary with ARGS (asking it for `--help`, since the
/// sandbox itself is the one running); `bash scripts/...` parsed by bash (its arguments are not
/// run). A command of any other kind, a `kubectl` command of none of these forms, or a shell
/// block fenced other than `sh` fails the test, so a new one cannot slip in unchecked.
fn quickstart_commands_run(control: &str, kubeconfig: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    assert!(
        readme.contains("\n## Quickstart\n"),
        "a Quickstart section in README.md"
    );
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        // Fences may be indented (a block inside a list item).
        if let Some(info) = line.trim_start().strip_prefix("```") {
            assert!(
                !["bash", "shell", "console"].contains(&info.trim()),
                "README.md fences a shell block as {line:?}: use ```sh so this test checks it"
            );
            in_block = info == "sh" && !in_block;
            continue;
        }
        if in_block {
            // A trailing comment explains the command; it is not part of it.
            let command = line.split("  #").next().unwrap_or_default().trim();
            if !command.is_empty() && !command.starts_with('#') {
                commands.push(command.to_owned());
            }
        }
    }
    assert!(commands.len() >= 7, "the README's commands: {commands:?}");
    let port = control.rsplit(':').next().unwrap();
    for command in &commands {
        let output = if let Some(args) = command.strip_prefix("cargo run -- ") {
            Command::new(env!("CARGO_BIN_EXE_backstop"))
                .args(args.split_whitespace())
                .arg("--help")
                .output()
                .unwrap()
        } else if let Some(rest) = command.strip_prefix("bash ") {
            let script = rest.split_whitespace().next().unwrap_or_default();
            let path = std::path::Path::new(root).join(script);
            Command::new("bash").arg("-n").arg(&path).output().unwrap()
        } else if command.starts_with("curl ") {
            let line = command.replace("PORT", port);
            Command::new("sh")
                .arg("-c")
                .arg(format!("{line} --fail --silent --show-error"))
                .output()
                .unwrap()
        } else if let Some(rest) = command.strip_prefix("kubectl ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let kustomization = if words.first() == Some(&"kustomize") {
                words.get(1).copied()
            } else {
                words
                    .iter()
                    .position(|w| *w == "-k")
                    .and_then(|i| words.get(i + 1).copied())
            };
            if let Some(dir) = kustomization {
                Command::new("kubectl")
                    .args(["kustomize", dir])
                    .current_dir(root)
                    .output()
                    .unwrap()
            } else if rest.starts_with("create secret generic ")
                && command.contains("--dry-run=client")
                && command.contains("-o yaml")
            {
                Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .current_dir(root)
                    .output()
                    .unwrap()
            } else if command.contains("--kubeconfig PATH") {
                let line =
                    command.replace("--kubeconfig PATH", &format!("--kubeconfig {kubeconfig}"));
                Command::new("sh").arg("-c").arg(line).output().unwrap()
            } else {
                panic!(
                    "the README shows {command:?}: a kubectl command this test can check names \
                     `--kubeconfig PATH`, `-k DIR` or `kustomize DIR`, or is a client-side \
                     `create secret generic ... --dry-run=client -o yaml`"
                );
            }
        } else {
            panic!("the README shows {command:?}, which this test cannot check");
        };
        assert!(
            output.status.success(),
            "README command {command:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
