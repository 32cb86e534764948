//! What the benchmarks that run `backstop` (or a peer) as a child process share: the child
//! killed on drop, a port to tell it, and its resident memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `backstop` binary a benchmark runs: `BACKSTOP_BENCH_BIN` when set (scripts/bench.sh
/// points it at the `production` build the image ships), else the one cargo built for this
/// profile.
pub fn backstop_bin() -> PathBuf {
    std::env::var_os("BACKSTOP_BENCH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_backstop")),
        PathBuf::from,
    )
}

/// A child process killed when dropped, so a failed run leaves nothing behind, with the
/// directory holding its configuration.
pub struct Process {
    /// The running child.
    pub child: Child,
    /// Kept for as long as the child runs.
    pub _dir: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port: the child needs a port it is told, so bind 0, read it, release it.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Resident set size of `pid` in KiB (0 when it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Polls `url` until it answers 2xx; panics after `within`.
pub async fn wait_http_ok(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `bin run` (a Backstop binary, usually [`backstop_bin`]) with `config` against the
/// cluster in `kubeconfig` (both in `dir`, which lives as long as the process) on a free
/// loopback port, and waits up to `ready_within` for `/readyz`. Returns the process and its
/// base URL.
pub async fn start_backstop(
    bin: &Path,
    dir: tempfile::TempDir,
    config: &Path,
    kubeconfig: &Path,
    ready_within: Duration,
) -> (Process, String) {
    let port = free_port();
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", kubeconfig)
        .env("BACKSTOP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("backstop");
    let base = format!("http://127.0.0.1:{port}");
    let process = Process { child, _dir: dir };
    wait_http_ok(&format!("{base}/readyz"), ready_within).await;
    (process, base)
}

/// User + system CPU time of the process so far.
pub fn cpu(pid: u32, ticks_per_second: f64) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    Duration::from_secs_f64(ticks / ticks_per_second)
}

/// Clock ticks per second, for [`cpu`].
pub fn clock_ticks() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK")
}
