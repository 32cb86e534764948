//! `backstop sandbox --drill` as a user runs it: each variant prints every step of the
//! outage and exits 0, on the API simulator and on a real kube-apiserver
//! (`--api-server real`).

use std::process::Command;

fn drill(api_server: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["sandbox", "--drill", "--api-server", api_server])
        .args(args)
        .env("BACKSTOP_LOG", "warn,s3s=off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "drill {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_steps(timeline: &str, steps: &[&str]) {
    let mut rest = timeline;
    for step in steps {
        let at = rest
            .find(step)
            .unwrap_or_else(|| panic!("no {step:?} after the previous step in:\n{timeline}"));
        rest = &rest[at + step.len()..];
    }
}

#[test]
fn the_drill_passes_for_every_variant_on_the_simulator() {
    every_variant("simulator");
}

#[test]
fn the_drill_passes_for_every_variant_on_a_real_api_server() {
    every_variant("real");
}

fn every_variant(api_server: &str) {
    let secondary = drill(api_server, &[]);
    assert_steps(
        &secondary,
        &[
            "fault: primary region",
            "probe: backstop_s3_up == 0",
            "alert S3BackupTargetUnavailable fires",
            "webhook delivered (firing): 200",
            "failover: backups now go to the secondary bucket pxc-backups-dr/cluster1 in \
             us-east-1 (storage \"backstop-secondary\") (strategy repoint)",
            "scheduled backup succeeded on the failover target: cron-",
            "-> s3://pxc-backups-dr/",
            "repair:",
            "webhook delivered (resolved): 200",
            "revert: original backup settings restored",
            "Succeeded on the primary; drill passed",
        ],
    );
    let in_place = drill(api_server, &["--strategy", "in-place"]);
    assert_steps(
        &in_place,
        &[
            "failover: backups now go to the secondary bucket pxc-backups-dr/cluster1 in \
             us-east-1 (storage \"s3-us-west\" rewritten in place) (strategy in-place)",
            "-> s3://pxc-backups-dr/",
            "drill passed",
        ],
    );
    let route = drill(api_server, &["--break-route"]);
    assert_steps(
        &route,
        &[
            "alert S3BackupTargetUnavailable fires",
            "route broken: Alertmanager does not deliver the alert to Backstop",
            "alert route check: backstop_alert_route_silent == 1; Event AlertNotReceived: \
             storage s3-us-west has failed every probe since",
            "route repaired",
            "webhook delivered (firing): 200",
            "alert route check: Event AlertReceived: a notification about the cluster arrived",
            "drill passed",
        ],
    );
    // A primary that hangs: the backup to it stays Running until Backstop cancels it; with
    // the operator's lock the cover backup waits for exactly that.
    for args in [&["--hang"][..], &["--hang", "--serial"][..]] {
        let hang = drill(api_server, args);
        let mut steps = vec![];
        if args.contains(&"--serial") {
            steps.push("allowParallel: false: the operator's lock serialises");
        }
        steps.extend([
            "fault: primary region us-west-2 accepts connections and never answers (hang)",
            "to the primary is Running and hangs",
            "alert S3BackupTargetUnavailable fires",
            "failover: backups now go to the secondary bucket",
            "Event BackupCancelled: deleted backup cron-cluster1-s3-us-west-",
            "which fails its check",
            "deleted; the operator's finalizer freed its lock and Job",
            "Succeeded on the failover target: backups are safe",
            "drill passed",
        ]);
        assert_steps(&hang, &steps);
    }
    // Ordered targets: primary down, the first secondary down later, the second takes over;
    // recovery in reverse. In place too: the primary's entry holds each secondary in turn.
    for strategy in ["repoint", "in-place"] {
        let ordered = drill(api_server, &["--ordered", "--strategy", strategy]);
        assert_steps(
            &ordered,
            &[
                "failover: backups now go to the secondary bucket pxc-backups-dr/cluster1",
                "fault: first secondary's region us-east-1 answers 503",
                "move down: backups of s3-us-west moved to the secondary bucket \
                 pxc-backups-eu/cluster1 in eu-west-1",
                "cover backup succeeded on the second secondary: backstop-cover-move-1-cluster1-",
                "-> s3://pxc-backups-eu/",
                "repair: first secondary's region us-east-1 answers again",
                "move up after 3s of passing checks: backups of s3-us-west moved back up to \
                 the secondary bucket pxc-backups-dr/cluster1 in us-east-1",
                "cover backup succeeded on the first secondary: backstop-cover-move-2-cluster1-",
                "scheduled backup succeeded on the failover target: cron-",
                "revert: original backup settings restored",
                "Succeeded on the primary; drill passed",
            ],
        );
    }
    let buffer = drill(api_server, &["--break-secondary"]);
    assert_steps(
        &buffer,
        &[
            "fault: secondary region",
            "failover: backups now go to the PVC buffer (storage \"backstop-buffer\") \
             (strategy repoint)",
            "-> pvc/",
            "drill passed",
        ],
    );
}
