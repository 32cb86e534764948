use super::*;
use crate::responder::alertmanager::AlertStatus;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const AFTER: SignedDuration = SignedDuration::from_secs(240);

fn intent(episodes: &[(&str, AlertStatus, &str)]) -> Intent {
    let mut intent = Intent::default();
    for (key, status, at) in episodes {
        intent.observe(key, "S3BackupTargetUnavailable", ts(at), *status, ts(at));
    }
    intent
}

fn down(since: &str) -> Vec<(String, Timestamp)> {
    vec![("s3-us-west".to_owned(), ts(since))]
}

#[test]
fn nothing_failing_is_healthy() {
    assert_eq!(
        judge(&[], &intent(&[]), ts("2026-11-24T12:00:00Z"), AFTER),
        Verdict::Healthy
    );
}

#[test]
fn a_failure_shorter_than_after_waits_and_a_longer_one_is_silent() {
    let quiet = intent(&[]);
    assert_eq!(
        judge(
            &down("2026-11-24T12:00:00Z"),
            &quiet,
            ts("2026-11-24T12:03:59Z"),
            AFTER
        ),
        Verdict::Waiting
    );
    assert_eq!(
        judge(
            &down("2026-11-24T12:00:00Z"),
            &quiet,
            ts("2026-11-24T12:04:00Z"),
            AFTER
        ),
        Verdict::Silent {
            storage: "s3-us-west".to_owned(),
            down_since: ts("2026-11-24T12:00:00Z"),
        }
    );
}

#[test]
fn the_storage_failing_longest_is_named() {
    let failing = vec![
        ("b".to_owned(), ts("2026-11-24T12:01:00Z")),
        ("a".to_owned(), ts("2026-11-24T12:00:00Z")),
    ];
    let Verdict::Silent { storage, .. } =
        judge(&failing, &intent(&[]), ts("2026-11-24T13:00:00Z"), AFTER)
    else {
        panic!("not silent");
    };
    assert_eq!(storage, "a");
}

#[test]
fn a_firing_episode_or_one_changed_during_the_outage_is_a_notification() {
    let now = ts("2026-11-24T13:00:00Z");
    let firing = intent(&[("f1", AlertStatus::Firing, "2026-11-24T11:00:00Z")]);
    assert_eq!(
        judge(&down("2026-11-24T12:00:00Z"), &firing, now, AFTER),
        Verdict::Notified
    );
    // Resolved during the outage: the route delivered something, so it works.
    let resolved_late = intent(&[("f1", AlertStatus::Resolved, "2026-11-24T12:02:00Z")]);
    assert_eq!(
        judge(&down("2026-11-24T12:00:00Z"), &resolved_late, now, AFTER),
        Verdict::Notified
    );
    // An episode that ended before this outage proves nothing about this one.
    let old = intent(&[("f0", AlertStatus::Resolved, "2026-11-20T12:00:00Z")]);
    assert!(matches!(
        judge(&down("2026-11-24T12:00:00Z"), &old, now, AFTER),
        Verdict::Silent { .. }
    ));
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(human(SignedDuration::from_millis(250_400)), "4m 10s");
}
