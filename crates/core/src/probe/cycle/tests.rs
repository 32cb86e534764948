use super::*;

fn ts(secs: i64) -> Option<jiff::Timestamp> {
    Some(jiff::Timestamp::from_second(secs).unwrap())
}

#[test]
fn newest_is_by_last_modified_and_the_cursor_by_key() {
    let mut state = TargetState::default();
    state.observe("p/a-backup/file1", ts(100), "p/.canary/");
    state.observe("p/a-backup/xtrabackup_info", ts(300), "p/.canary/");
    state.observe("p/a-backup/zz-chunk", ts(200), "p/.canary/");
    let newest = state.newest().unwrap();
    assert_eq!(newest.key, "p/a-backup/xtrabackup_info");
    assert_eq!(newest.last_modified, ts(300).unwrap());
    assert_eq!(state.resume_after(), Some("p/a-backup/zz-chunk"));
}

#[test]
fn ties_go_to_the_later_key_and_older_objects_never_win() {
    let mut state = TargetState::default();
    state.observe("k1", ts(100), "");
    state.observe("k2", ts(100), "");
    assert_eq!(state.newest().unwrap().key, "k2");
    state.observe("k3", ts(50), "");
    assert_eq!(state.newest().unwrap().key, "k2");
    assert_eq!(state.resume_after(), Some("k3"));
}

#[test]
fn canaries_move_the_cursor_but_are_never_newest() {
    let mut state = TargetState::default();
    state.observe("p/backup", ts(100), "p/.backstop-canary/");
    state.observe("p/.backstop-canary/zzz", ts(900), "p/.backstop-canary/");
    assert_eq!(state.newest().unwrap().key, "p/backup");
    assert_eq!(state.resume_after(), Some("p/backup"));
    state.observe("q/.backstop-canary/x", ts(901), "p/.backstop-canary/");
    assert_eq!(state.newest().unwrap().key, "q/.backstop-canary/x");
}

#[test]
fn objects_without_a_date_only_move_the_cursor() {
    let mut state = TargetState::default();
    state.observe("a", None, "");
    assert!(state.newest().is_none());
    assert_eq!(state.resume_after(), Some("a"));
}

#[test]
fn leftover_canaries_are_bounded_oldest_first() {
    let mut state = TargetState::default();
    for i in 0..MAX_LEFTOVER_CANARIES + 3 {
        state.remember_canary(format!("c{i}"));
    }
    state.remember_canary("c5".to_owned());
    assert_eq!(state.leftover_canaries().len(), MAX_LEFTOVER_CANARIES);
    assert_eq!(state.leftover_canaries()[0], "c3");
}

#[test]
fn operation_labels_are_exactly_the_documented_ones() {
    let labels: Vec<_> = Operation::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(
        labels,
        [
            "head_bucket",
            "put_object",
            "get_object",
            "delete_object",
            "list_objects",
            "get_caller_identity"
        ]
    );
}

#[test]
fn credentials_are_invalid_only_on_that_class() {
    let op = |operation, class: Option<ErrorClass>| OperationResult {
        operation,
        duration: Duration::ZERO,
        outcome: match class {
            None => Outcome::Ok,
            Some(class) => Outcome::Err {
                class,
                message: String::new(),
            },
        },
    };
    let mut result = CycleResult {
        target_id: "t".into(),
        operations: vec![
            op(Operation::HeadBucket, Some(ErrorClass::AccessDenied)),
            op(Operation::ListObjects, Some(ErrorClass::Timeout)),
        ],
        newest_object: None,
        up: false,
        canary: CanaryRun::NotRun,
    };
    assert!(result.credentials_valid());
    result.operations.push(op(
        Operation::PutObject,
        Some(ErrorClass::InvalidCredentials),
    ));
    assert!(!result.credentials_valid());
    assert_eq!(
        result
            .operation(Operation::PutObject)
            .unwrap()
            .error_class(),
        Some(ErrorClass::InvalidCredentials)
    );
    assert!(result.operation(Operation::GetObject).is_none());
}

fn every(canary: Duration, probe: Duration) -> CycleOptions {
    CycleOptions {
        canary: CanaryConfig {
            interval: crate::config::HumanDuration(canary),
            ..CanaryConfig::default()
        },
        interval: probe,
        ..CycleOptions::default()
    }
}

#[test]
fn the_canary_is_due_first_then_after_its_interval_less_half_a_cycle() {
    let options = every(Duration::from_secs(120), Duration::from_secs(30));
    let t0 = Instant::now();
    let mut state = TargetState::default();
    assert!(state.canary_due(t0, &options), "the first cycle runs it");
    state.finish_cycle(t0, CanaryRun::Ran, true);
    for cycle in 1..4 {
        let at = t0 + Duration::from_secs(30 * cycle);
        assert!(!state.canary_due(at, &options), "cycle {cycle}");
        state.finish_cycle(at, CanaryRun::NotDue, true);
    }
    // The fourth cycle, even a little early, runs it.
    let fourth = t0 + Duration::from_millis(119_000);
    assert!(state.canary_due(fourth, &options));
    state.finish_cycle(fourth, CanaryRun::Ran, true);
    assert!(!state.canary_due(fourth + Duration::from_secs(30), &options));
}

#[test]
fn anything_short_of_up_makes_the_canary_due_next_cycle() {
    let options = every(Duration::from_secs(3600), Duration::from_secs(30));
    let t0 = Instant::now();
    let next = t0 + Duration::from_secs(30);
    for (canary, up) in [
        (CanaryRun::Ran, false),
        (CanaryRun::NotDue, false),
        (CanaryRun::NotRun, false),
        (CanaryRun::NotRun, true),
    ] {
        let mut state = TargetState::default();
        state.finish_cycle(t0, CanaryRun::Ran, true);
        assert!(!state.canary_due(next, &options));
        state.finish_cycle(next, canary, up);
        assert!(
            state.canary_due(next + Duration::from_secs(30), &options),
            "after {canary:?}, up {up}"
        );
    }
    let mut state = TargetState::default();
    state.finish_cycle(t0, CanaryRun::Ran, true);
    state.forget_canary_success();
    assert!(state.canary_due(next, &options));
}

#[test]
fn an_interval_of_one_cycle_or_less_runs_the_canary_every_cycle() {
    let t0 = Instant::now();
    for canary in [Duration::ZERO, Duration::from_secs(30)] {
        let options = every(canary, Duration::from_secs(30));
        let mut state = TargetState::default();
        state.finish_cycle(t0, CanaryRun::Ran, true);
        assert!(state.canary_due(t0 + Duration::from_secs(30), &options));
    }
}
