//! The prober's core against the embedded S3, through the real aws-sdk-s3 client that
//! `backstop::s3::client` builds: a healthy target, every fault the sandbox can inject as
//! the probe classifies it, canary clean-up, the incremental listing (checked with the
//! server's request counts), and the metrics a cycle leaves in the registry.
//! Every endpoint listens on 127.0.0.1 with an ephemeral port and is stopped by its test.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use backstop::config::{CanaryConfig, ListConfig};
use backstop::probe::{
    CanaryRun, CycleOptions, CycleResult, ErrorClass, Operation, ProbeMetrics, Target, TargetState,
    run_cycle,
};
use backstop::s3::client::{self as s3client, StaticCredentials, Timeouts};
use backstop_sandbox::s3::{self, Fault, PRIMARY_REGION, RegionConfig, Rule, S3Config, S3Server};
use futures::StreamExt as _;

const ACCESS_KEY: &str = "AKIASANDBOXTEST00001";
const SECRET_KEY: &str = "sandbox/secret/key/for/tests";
const BUCKET: &str = "pxc-backups";
const OTHER_BUCKET: &str = "other-backups";
const PREFIX: &str = "prod/";
const CANARY_PREFIX: &str = "prod/.backstop-canary/";

/// A running embedded S3 and the directory holding its data.
struct World {
    server: S3Server,
    dir: tempfile::TempDir,
}

async fn start() -> World {
    let dir = tempfile::tempdir().unwrap();
    let server = s3::start(S3Config {
        root: dir.path().to_owned(),
        access_key: ACCESS_KEY.to_owned(),
        secret_key: SECRET_KEY.to_owned(),
        regions: vec![RegionConfig {
            name: PRIMARY_REGION.to_owned(),
            buckets: vec![BUCKET.to_owned(), OTHER_BUCKET.to_owned()],
        }],
    })
    .await
    .unwrap();
    World { server, dir }
}

/// The target of a cluster storage `<bucket>/prod` on the sandbox's primary region.
fn target_on(world: &World, bucket: &str, cluster: &str) -> Target {
    let endpoint = world.server.endpoint(PRIMARY_REGION).unwrap();
    target_at(&endpoint, bucket, cluster)
}

fn target_at(endpoint: &str, bucket: &str, cluster: &str) -> Target {
    let storage: backstop::pxc::Storage = serde_json::from_value(serde_json::json!({
        "type": "s3",
        "s3": {
            "bucket": format!("{bucket}/prod"),
            "region": PRIMARY_REGION,
            "endpointUrl": endpoint,
            "forcePathStyle": true,
            "credentialsSecret": "aws-creds",
        }
    }))
    .unwrap();
    Target::from_storage("percona", cluster, "s3-us-west", &storage).unwrap()
}

fn target(world: &World) -> Target {
    target_on(world, BUCKET, "cluster1")
}

/// The client Backstop builds for `target`, with `secret` and an operation timeout.
fn client_with(target: &Target, secret: &str, operation: Duration) -> Client {
    s3client::client(
        &target.endpoint(),
        &StaticCredentials {
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: secret.to_owned(),
        },
        Timeouts {
            connect: Duration::from_secs(5),
            operation,
        },
    )
}

/// A generous timeout, so a loaded machine cannot turn a success into a timeout.
fn client(target: &Target) -> Client {
    client_with(target, SECRET_KEY, Duration::from_secs(30))
}

fn options(canary: bool, page_size: u32, max_pages: u32) -> CycleOptions {
    CycleOptions {
        canary: CanaryConfig {
            enabled: canary,
            ..CanaryConfig::default()
        },
        list: ListConfig {
            enabled: true,
            page_size,
            max_pages,
            full_every: 0,
        },
        ..CycleOptions::default()
    }
}

async fn put(client: &Client, bucket: &str, key: &str) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(key.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

/// Every key of `bucket`, read with the test's own (fault-free) view of the store.
async fn all_keys(client: &Client, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        if page.is_truncated() != Some(true) {
            return keys;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
}

/// The operations a cycle attempted, with their error class (`None` = success).
fn outcomes(result: &CycleResult) -> Vec<(Operation, Option<ErrorClass>)> {
    result
        .operations
        .iter()
        .map(|o| (o.operation, o.error_class()))
        .collect()
}

#[tokio::test]
async fn a_healthy_target_is_up_finds_the_newest_backup_and_leaves_no_canary() {
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    // Seeded in key order, one after the other, so the last is also the newest.
    let backups = [
        "prod/cluster1-2026-11-22-00:00:00-full/xtrabackup_info",
        "prod/cluster1-2026-11-23-00:00:00-full/xtrabackup_info",
        "prod/cluster1-2026-11-24-00:00:00-full/xtrabackup_info",
    ];
    for key in backups {
        put(&client, BUCKET, key).await;
    }
    // Outside the storage prefix, so never a candidate.
    put(
        &client,
        BUCKET,
        "staging/cluster9-2030-01-01-00:00:00-full/x",
    )
    .await;

    let mut state = TargetState::default();
    let result = run_cycle(&client, &target, &options(true, 1000, 2), &mut state).await;

    assert_eq!(
        outcomes(&result),
        Operation::S3.map(|o| (o, None)),
        "{result:#?}"
    );
    assert!(result.up, "{result:#?}");
    assert!(result.credentials_valid());
    assert_eq!(result.target_id, target.id());
    let (newest, at) = result.newest_object.clone().unwrap();
    assert_eq!(newest, backups[2]);
    assert_eq!(state.newest().unwrap().last_modified, at);
    assert!(state.leftover_canaries().is_empty());

    let mut expected: Vec<String> = backups.iter().map(|k| (*k).to_owned()).collect();
    expected.push("staging/cluster9-2030-01-01-00:00:00-full/x".to_owned());
    assert_eq!(all_keys(&client, BUCKET).await, expected);
    let requests = world.server.requests();
    assert_eq!(requests.count(PRIMARY_REGION, BUCKET, "PutObject"), 5);
    assert_eq!(requests.count(PRIMARY_REGION, BUCKET, "GetObject"), 1);
    assert_eq!(requests.count(PRIMARY_REGION, BUCKET, "DeleteObject"), 1);
    world.server.shutdown().await;
}

/// What a cycle reports when `rule` is in force: (operation, class) for each attempted
/// operation. Checks that the rule was hit and that the target is down.
async fn cycle_under(
    world: &World,
    client: &Client,
    target: &Target,
    rule: Rule,
) -> (CycleResult, TargetState) {
    let faults = world.server.faults();
    let id = faults.set(rule.clone()).await.unwrap();
    let mut state = TargetState::default();
    let result = run_cycle(client, target, &options(true, 1000, 2), &mut state).await;
    let hits = faults.list().iter().find(|a| a.id == id).map(|a| a.hits);
    assert!(faults.clear(id).await.unwrap());
    if rule.fault != Fault::Refuse {
        assert!(hits.unwrap_or(0) > 0, "{rule:?} was never hit");
    }
    assert!(!result.up, "{rule:?}: {result:#?}");
    (result, state)
}

#[tokio::test]
async fn every_request_fault_is_classified_on_every_operation_it_hits() {
    use ErrorClass::*;
    use Operation::*;
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    // A failed PutObject stops the canary, so get and delete are never attempted.
    let cases = [
        // HEAD answers have no body: 503 is a server error whether S3 meant SlowDown
        // or ServiceUnavailable, and a rejected key looks like a denial.
        (Fault::SlowDown, [ServerError, Throttled, Throttled]),
        (
            Fault::ServiceUnavailable,
            [ServerError, ServerError, ServerError],
        ),
        (
            Fault::InternalError,
            [ServerError, ServerError, ServerError],
        ),
        (
            Fault::AccessDenied,
            [AccessDenied, AccessDenied, AccessDenied],
        ),
        (
            Fault::NoSuchBucket,
            [NoSuchBucket, NoSuchBucket, NoSuchBucket],
        ),
        (
            Fault::InvalidCredentials,
            [AccessDenied, InvalidCredentials, InvalidCredentials],
        ),
    ];
    for (fault, [head, put, list]) in cases {
        let rule = Rule::new(fault).in_region(PRIMARY_REGION).on_bucket(BUCKET);
        let (result, _) = cycle_under(&world, &client, &target, rule).await;
        assert_eq!(
            outcomes(&result),
            [
                (HeadBucket, Some(head)),
                (PutObject, Some(put)),
                (ListObjects, Some(list))
            ],
            "{fault:?}: {result:#?}"
        );
        assert_eq!(
            result.credentials_valid(),
            fault != Fault::InvalidCredentials,
            "{fault:?}"
        );
    }
    assert!(all_keys(&client, BUCKET).await.is_empty());
    world.server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_key_is_invalid_credentials() {
    let world = start().await;
    let target = target(&world);
    let client = client_with(&target, "not-the-secret", Duration::from_secs(30));
    let mut state = TargetState::default();
    let result = run_cycle(&client, &target, &options(true, 1000, 2), &mut state).await;
    assert_eq!(
        outcomes(&result),
        [
            // A bodyless 403: see the HEAD table in `probe::classify`.
            (Operation::HeadBucket, Some(ErrorClass::AccessDenied)),
            (Operation::PutObject, Some(ErrorClass::InvalidCredentials)),
            (Operation::ListObjects, Some(ErrorClass::InvalidCredentials)),
        ],
        "{result:#?}"
    );
    assert!(!result.up);
    assert!(!result.credentials_valid());
    let put = result.operation(Operation::PutObject).unwrap();
    assert!(
        format!("{:?}", put.outcome).contains("SignatureDoesNotMatch"),
        "{put:?}"
    );
    world.server.shutdown().await;
}

#[tokio::test]
async fn a_refusing_endpoint_is_a_connect_failure_and_nothing_else_is_tried() {
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    let rule = Rule::new(Fault::Refuse).in_region(PRIMARY_REGION);
    let (result, state) = cycle_under(&world, &client, &target, rule).await;
    assert_eq!(
        outcomes(&result),
        [(Operation::HeadBucket, Some(ErrorClass::Connect))],
        "{result:#?}"
    );
    assert!(result.credentials_valid());
    assert!(state.leftover_canaries().is_empty());
    world.server.shutdown().await;
}

#[tokio::test]
async fn a_hanging_endpoint_is_a_timeout() {
    let world = start().await;
    let target = target(&world);
    // Short, so the test is quick; a hang never answers, so no machine is too slow for it.
    let client = client_with(&target, SECRET_KEY, Duration::from_millis(300));
    let rule = Rule::new(Fault::Hang).in_region(PRIMARY_REGION);
    let (result, _) = cycle_under(&world, &client, &target, rule).await;
    assert_eq!(
        outcomes(&result),
        [(Operation::HeadBucket, Some(ErrorClass::Timeout))],
        "{result:#?}"
    );
    world.server.shutdown().await;
}

#[tokio::test]
async fn a_tls_handshake_with_a_plain_http_endpoint_is_a_tls_failure() {
    let world = start().await;
    let addr = world.server.addr(PRIMARY_REGION).unwrap();
    let target = target_at(&format!("https://{addr}"), BUCKET, "cluster1");
    let client = client(&target);
    let mut state = TargetState::default();
    let result = run_cycle(&client, &target, &options(true, 1000, 2), &mut state).await;
    assert_eq!(
        outcomes(&result),
        [(Operation::HeadBucket, Some(ErrorClass::Tls))],
        "{result:#?}"
    );
    assert!(!result.up);
    world.server.shutdown().await;
}

#[tokio::test]
async fn a_fault_on_one_operation_fails_only_that_operation() {
    use ErrorClass::*;
    use Operation::*;
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    let cases = [
        (
            "HeadBucket",
            Fault::AccessDenied,
            vec![
                (HeadBucket, Some(AccessDenied)),
                (PutObject, None),
                (GetObject, None),
                (DeleteObject, None),
                (ListObjects, None),
            ],
        ),
        (
            "PutObject",
            Fault::SlowDown,
            vec![
                (HeadBucket, None),
                (PutObject, Some(Throttled)),
                (ListObjects, None),
            ],
        ),
        // The canary is deleted even though reading it back failed.
        (
            "GetObject",
            Fault::InternalError,
            vec![
                (HeadBucket, None),
                (PutObject, None),
                (GetObject, Some(ServerError)),
                (DeleteObject, None),
                (ListObjects, None),
            ],
        ),
        (
            "ListObjectsV2",
            Fault::SlowDown,
            vec![
                (HeadBucket, None),
                (PutObject, None),
                (GetObject, None),
                (DeleteObject, None),
                (ListObjects, Some(Throttled)),
            ],
        ),
    ];
    for (operation, fault, expected) in cases {
        let rule = Rule::new(fault).on_bucket(BUCKET).on_operation(operation);
        let (result, state) = cycle_under(&world, &client, &target, rule).await;
        assert_eq!(outcomes(&result), expected, "{operation}: {result:#?}");
        assert!(state.leftover_canaries().is_empty(), "{operation}");
        assert!(
            all_keys(&client, BUCKET).await.is_empty(),
            "{operation} left a canary behind"
        );
    }
    world.server.shutdown().await;
}

/// A store that stops answering after a good HeadBucket costs one timeout per cycle, not one
/// per remaining call: the call that timed out ends the cycle's S3 calls.
#[tokio::test]
async fn a_call_that_times_out_ends_the_cycle() {
    use ErrorClass::*;
    use Operation::*;
    let world = start().await;
    let target = target(&world);
    // The store answers these operations only after 2 s; the client waits 300 ms.
    let client = client_with(&target, SECRET_KEY, Duration::from_millis(300));
    let stall = Fault::Latency(Duration::from_secs(2));
    for (operation, expected) in [
        (
            "PutObject",
            vec![(HeadBucket, None), (PutObject, Some(Timeout))],
        ),
        (
            "GetObject",
            vec![
                (HeadBucket, None),
                (PutObject, None),
                (GetObject, Some(Timeout)),
            ],
        ),
    ] {
        let rule = Rule::new(stall).on_bucket(BUCKET).on_operation(operation);
        let (result, mut state) = cycle_under(&world, &client, &target, rule).await;
        assert_eq!(outcomes(&result), expected, "{operation}: {result:#?}");
        // The canary that may have landed is remembered and deleted by the next cycle.
        assert_eq!(state.leftover_canaries().len(), 1, "{operation}");
        let next = run_cycle(&client, &target, &options(true, 1000, 2), &mut state).await;
        assert!(next.up, "{operation}: {next:#?}");
        assert!(state.leftover_canaries().is_empty(), "{operation}");
        assert!(
            all_keys(&client, BUCKET).await.is_empty(),
            "{operation} left a canary behind"
        );
    }
    world.server.shutdown().await;
}

#[tokio::test]
async fn a_canary_that_could_not_be_deleted_is_deleted_by_a_later_cycle() {
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    let faults = world.server.faults();
    let id = faults
        .set(
            Rule::new(Fault::AccessDenied)
                .on_bucket(BUCKET)
                .on_operation("DeleteObject"),
        )
        .await
        .unwrap();
    let mut state = TargetState::default();
    let opts = options(true, 1000, 2);
    let failed = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(
        failed
            .operation(Operation::DeleteObject)
            .unwrap()
            .error_class(),
        Some(ErrorClass::AccessDenied)
    );
    assert!(!failed.up);
    // The canary lives under `<storage prefix><canary key_prefix>`.
    let left = all_keys(&client, BUCKET).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(CANARY_PREFIX), "{left:?}");
    assert_eq!(state.leftover_canaries(), left.as_slice());
    // Backstop's own objects are never the newest backup.
    assert_eq!(failed.newest_object, None);

    assert!(faults.clear(id).await.unwrap());
    let recovered = run_cycle(&client, &target, &opts, &mut state).await;
    assert!(recovered.up, "{recovered:#?}");
    assert!(state.leftover_canaries().is_empty());
    assert!(all_keys(&client, BUCKET).await.is_empty());
    world.server.shutdown().await;
}

#[tokio::test]
async fn listing_is_incremental_and_still_finds_a_new_newest_backup() {
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    let key = |i: usize| format!("{PREFIX}cluster1-backup-{i:05}");
    futures::stream::iter(0..2500)
        .map(|i| {
            let client = client.clone();
            let key = key(i);
            async move { put(&client, BUCKET, &key).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let requests = world.server.requests();
    let lists = || requests.count(PRIMARY_REGION, BUCKET, "ListObjectsV2");
    // No canary, so only the listing touches the bucket's keys.
    let opts = options(false, 1000, 2);
    let mut state = TargetState::default();

    let first = run_cycle(&client, &target, &opts, &mut state).await;
    assert!(first.up, "{first:#?}");
    assert_eq!(lists(), 2, "the first cycle reads max_pages pages");
    assert_eq!(state.resume_after(), Some(key(1999).as_str()));
    let (newest, _) = first.newest_object.clone().unwrap();
    assert!(newest.as_str() <= key(1999).as_str(), "{newest}");

    let second = run_cycle(&client, &target, &opts, &mut state).await;
    assert!(second.up, "{second:#?}");
    assert_eq!(
        lists(),
        3,
        "the second cycle reads the last 500 keys in one page"
    );
    assert_eq!(state.resume_after(), Some(key(2499).as_str()));
    assert!(second.newest_object.is_some());

    let caught_up = run_cycle(&client, &target, &opts, &mut state).await;
    assert!(caught_up.up);
    assert_eq!(lists(), 4, "a caught-up listing reads one (empty) page");
    assert_eq!(caught_up.newest_object, second.newest_object);

    // Written after every other object, and last in key order, so it is the newest
    // whatever the store's time resolution.
    let new_backup = format!("{PREFIX}cluster1-backup-99999");
    put(&client, BUCKET, &new_backup).await;
    let after_backup = run_cycle(&client, &target, &opts, &mut state).await;
    assert!(after_backup.up);
    assert_eq!(lists(), 5, "a new backup is found with one page");
    assert_eq!(
        after_backup.newest_object.map(|(key, _)| key),
        Some(new_backup)
    );
    world.server.shutdown().await;
}

#[tokio::test]
async fn list_disabled_and_canary_disabled_are_neither_run_nor_required() {
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    let mut opts = options(false, 1000, 2);
    opts.list.enabled = false;
    let mut state = TargetState::default();
    let result = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(outcomes(&result), [(Operation::HeadBucket, None)]);
    assert!(result.up);
    assert_eq!(result.newest_object, None);
    let requests = world.server.requests();
    assert_eq!(requests.count(PRIMARY_REGION, BUCKET, "ListObjectsV2"), 0);
    assert_eq!(requests.count(PRIMARY_REGION, BUCKET, "PutObject"), 0);
    world.server.shutdown().await;
}

/// The canary on its own interval: skipped while the target stays healthy, with its last
/// results standing in the metrics, and back every cycle as soon as anything fails.
#[tokio::test]
async fn a_healthy_target_runs_the_canary_on_its_interval_and_every_cycle_once_anything_fails() {
    use Operation::*;
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    let mut registry = backstop::runtime::metrics::Metrics::new();
    let metrics = ProbeMetrics::register(registry.registry_mut());
    let t = format!("target=\"{}\"", target.id());
    let success = |text: &str, op: &str| {
        value(
            text,
            "backstop_s3_probe_success",
            &format!("{t},operation=\"{op}\""),
        )
    };
    let requests = world.server.requests();
    let puts = || requests.count(PRIMARY_REGION, BUCKET, "PutObject");
    // An hour: no cycle of this test reaches it.
    let mut opts = options(true, 1000, 2);
    opts.canary.interval = backstop::config::HumanDuration(Duration::from_secs(3600));
    opts.interval = Duration::from_secs(30);
    let mut state = TargetState::default();

    let first = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(first.canary, CanaryRun::Ran);
    assert!(first.up, "{first:#?}");
    metrics.record(&target, &first);
    assert_eq!(puts(), 1);
    let verified = value(
        &render(&mut registry),
        "backstop_s3_canary_last_success_timestamp_seconds",
        &t,
    )
    .unwrap();

    let second = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(second.canary, CanaryRun::NotDue);
    assert_eq!(
        outcomes(&second),
        [(HeadBucket, None), (ListObjects, None)],
        "{second:#?}"
    );
    assert!(second.up);
    assert_eq!(puts(), 1, "no canary written");
    metrics.record(&target, &second);
    let text = render(&mut registry);
    // The canary's last results stand; nothing new was observed for it.
    for op in ["put_object", "get_object", "delete_object"] {
        assert_eq!(success(&text, op), Some(1.0), "{op}\n{text}");
        assert_eq!(
            value(
                &text,
                "backstop_s3_probe_duration_seconds_count",
                &format!("{t},operation=\"{op}\"")
            ),
            Some(1.0),
            "{op}"
        );
    }
    assert_eq!(
        value(
            &text,
            "backstop_s3_canary_last_success_timestamp_seconds",
            &t
        ),
        Some(verified)
    );

    // A HEAD that is refused: not up, and the canary runs in that cycle too.
    let faults = world.server.faults();
    let head = faults
        .set(
            Rule::new(Fault::AccessDenied)
                .on_bucket(BUCKET)
                .on_operation("HeadBucket"),
        )
        .await
        .unwrap();
    let denied = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(denied.canary, CanaryRun::Ran);
    assert!(!denied.up);
    assert!(faults.clear(head).await.unwrap());

    // Writes refused from now on. The cycle after a down one runs the canary, finds it,
    // and so does every cycle after until a canary succeeds.
    let writes = faults
        .set(
            Rule::new(Fault::AccessDenied)
                .on_bucket(BUCKET)
                .on_operation("PutObject"),
        )
        .await
        .unwrap();
    for cycle in 0..3 {
        let refused = run_cycle(&client, &target, &opts, &mut state).await;
        assert_eq!(refused.canary, CanaryRun::Ran, "cycle {cycle}");
        assert_eq!(
            refused.operation(PutObject).unwrap().error_class(),
            Some(ErrorClass::AccessDenied)
        );
        assert!(!refused.up, "cycle {cycle}");
        metrics.record(&target, &refused);
    }
    let text = render(&mut registry);
    assert_eq!(success(&text, "put_object"), Some(0.0));
    // Not attempted after the refused put: no value rather than a stale 1.
    assert_eq!(success(&text, "get_object"), None);
    assert_eq!(value(&text, "backstop_s3_up", &t), Some(0.0));
    let last_success = |text: &str| {
        value(
            text,
            "backstop_s3_canary_last_success_timestamp_seconds",
            &t,
        )
    };
    // Refused canaries are not successes.
    assert_eq!(last_success(&text), Some(verified));

    assert!(faults.clear(writes).await.unwrap());
    let mended = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(mended.canary, CanaryRun::Ran);
    assert!(mended.up, "{mended:#?}");
    metrics.record(&target, &mended);
    assert!(last_success(&render(&mut registry)).is_some_and(|at| at >= verified));
    let after = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(after.canary, CanaryRun::NotDue);

    // A failed listing is not up either: the next cycle runs the canary.
    let lists = faults
        .set(
            Rule::new(Fault::SlowDown)
                .on_bucket(BUCKET)
                .on_operation("ListObjectsV2"),
        )
        .await
        .unwrap();
    let throttled = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(throttled.canary, CanaryRun::NotDue);
    assert!(!throttled.up);
    assert!(faults.clear(lists).await.unwrap());
    let listed = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(listed.canary, CanaryRun::Ran);
    assert!(listed.up, "{listed:#?}");
    assert!(all_keys(&client, BUCKET).await.is_empty());
    world.server.shutdown().await;
}

fn render(metrics: &mut backstop::runtime::metrics::Metrics) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, metrics.registry_mut()).unwrap();
    out
}

/// The value of the series `name{labels}` in `text`, if it is there.
fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn cycles_become_metrics_and_forget_removes_every_series_of_a_target() {
    let world = start().await;
    let mut registry = backstop::runtime::metrics::Metrics::new();
    let metrics = ProbeMetrics::register(registry.registry_mut());

    let mut target = target(&world);
    // A second cluster writing to the same place is the same target: one more info series.
    assert!(target.merge(&target_on(&world, BUCKET, "cluster2")));
    let other = target_on(&world, OTHER_BUCKET, "cluster3");
    let client = client(&target);
    put(
        &client,
        BUCKET,
        "prod/cluster1-2026-11-24-00:00:00-full/xtrabackup_info",
    )
    .await;
    metrics.set_info(&target);
    metrics.set_info(&other);

    let mut state = TargetState::default();
    let good = run_cycle(&client, &target, &options(true, 1000, 2), &mut state).await;
    assert!(good.up, "{good:#?}");
    metrics.record(&target, &good);
    let mut other_state = TargetState::default();
    let other_result = run_cycle(&client, &other, &options(true, 1000, 2), &mut other_state).await;
    metrics.record(&other, &other_result);

    let text = render(&mut registry);
    let id = target.id();
    let t = format!("target=\"{id}\"");
    assert_eq!(value(&text, "backstop_s3_up", &t), Some(1.0), "{text}");
    assert_eq!(value(&text, "backstop_s3_credentials_valid", &t), Some(1.0));
    let canary_at = value(
        &text,
        "backstop_s3_canary_last_success_timestamp_seconds",
        &t,
    );
    assert!(canary_at.is_some_and(|at| at > 1.7e9), "{text}");
    for op in Operation::S3 {
        let labels = format!("{t},operation=\"{}\"", op.as_str());
        assert_eq!(
            value(&text, "backstop_s3_probe_success", &labels),
            Some(1.0),
            "{op}"
        );
        assert_eq!(
            value(&text, "backstop_s3_probe_duration_seconds_count", &labels),
            Some(1.0),
            "{op}"
        );
    }
    assert!(!text.contains("backstop_s3_probe_errors_total{"), "{text}");
    let (_, newest_at) = good.newest_object.clone().unwrap();
    let newest_seconds = value(&text, "backstop_s3_newest_object_timestamp_seconds", &t).unwrap();
    assert_eq!(newest_seconds, newest_at.as_millisecond() as f64 / 1000.0);
    let endpoint = world.server.endpoint(PRIMARY_REGION).unwrap();
    for cluster in ["cluster1", "cluster2"] {
        let labels = format!(
            "{t},bucket=\"{BUCKET}\",prefix=\"{PREFIX}\",region=\"{PRIMARY_REGION}\",\
             endpoint=\"{endpoint}\",namespace=\"percona\",cluster=\"{cluster}\",\
             storage=\"s3-us-west\""
        );
        assert_eq!(
            value(&text, "backstop_s3_target_info", &labels),
            Some(1.0),
            "{labels}\n{text}"
        );
    }

    // A failed cycle: the secret is wrong.
    let bad_client = client_with(&target, "not-the-secret", Duration::from_secs(30));
    let bad = run_cycle(&bad_client, &target, &options(true, 1000, 2), &mut state).await;
    metrics.record(&target, &bad);
    let text = render(&mut registry);
    assert_eq!(value(&text, "backstop_s3_up", &t), Some(0.0), "{text}");
    assert_eq!(value(&text, "backstop_s3_credentials_valid", &t), Some(0.0));
    for (op, success) in [
        ("head_bucket", Some(0.0)),
        ("put_object", Some(0.0)),
        // Not attempted after the put failed: no value rather than a stale 1.
        ("get_object", None),
        ("delete_object", None),
        ("list_objects", Some(0.0)),
    ] {
        let labels = format!("{t},operation=\"{op}\"");
        assert_eq!(
            value(&text, "backstop_s3_probe_success", &labels),
            success,
            "{op}"
        );
    }
    for (op, class) in [
        ("head_bucket", "access_denied"),
        ("put_object", "invalid_credentials"),
        ("list_objects", "invalid_credentials"),
    ] {
        let labels = format!("{t},operation=\"{op}\",class=\"{class}\"");
        assert_eq!(
            value(&text, "backstop_s3_probe_errors_total", &labels),
            Some(1.0),
            "{labels}\n{text}"
        );
    }
    // The newest object is still known from the good cycle.
    assert_eq!(
        value(&text, "backstop_s3_newest_object_timestamp_seconds", &t),
        Some(newest_seconds)
    );

    metrics.forget(&target);
    let text = render(&mut registry);
    assert!(!text.contains(&id), "series of a forgotten target:\n{text}");
    let other_t = format!("target=\"{}\"", other.id());
    assert_eq!(
        value(&text, "backstop_s3_up", &other_t),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("cluster=\"cluster3\""), "{text}");
    assert!(text.contains("backstop_build_info"), "{text}");
    world.server.shutdown().await;
}

/// Sets the modification time, which the store serves as LastModified, of `key` in the
/// primary region's `BUCKET`: so a test orders objects in time without waiting.
fn set_last_modified(world: &World, key: &str, at: std::time::SystemTime) {
    let path = world.dir.path().join(PRIMARY_REGION).join(BUCKET).join(key);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .set_modified(at)
        .unwrap();
}

/// The incremental listing never looks behind its resume point again, so an object
/// rewritten under an old key stays unseen; `probe.list.full_every` lists from the start
/// every so many listings, and the rewritten object becomes the newest.
#[tokio::test]
async fn a_full_listing_now_and_then_sees_an_object_rewritten_behind_the_resume_point() {
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    let older = format!("{PREFIX}cluster1-2026-11-01-00:00:00-full/xtrabackup_info");
    let newer = format!("{PREFIX}cluster1-2026-11-02-00:00:00-full/xtrabackup_info");
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(86_400);
    for (key, age) in [(&older, 2 * day), (&newer, day)] {
        put(&client, BUCKET, key).await;
        set_last_modified(&world, key, now - age);
    }
    let newest = |result: &backstop::probe::cycle::CycleResult| {
        result.newest_object.clone().map(|(key, _)| key)
    };
    let mut opts = options(false, 1000, 2);
    let mut state = TargetState::default();
    let first = run_cycle(&client, &target, &opts, &mut state).await;
    assert_eq!(newest(&first).as_ref(), Some(&newer));

    // The older backup is written again: it is now the newest object in the bucket.
    put(&client, BUCKET, &older).await;
    set_last_modified(&world, &older, now + Duration::from_secs(3_600));
    for _ in 0..3 {
        let incremental = run_cycle(&client, &target, &opts, &mut state).await;
        assert!(incremental.up);
        assert_eq!(
            newest(&incremental).as_ref(),
            Some(&newer),
            "without full listings the rewrite is never seen"
        );
    }
    opts.list.full_every = 2;
    let mut seen = None;
    for _ in 0..2 {
        let result = run_cycle(&client, &target, &opts, &mut state).await;
        assert!(result.up);
        seen = newest(&result);
    }
    assert_eq!(
        seen.as_ref(),
        Some(&older),
        "a full listing finds the rewrite"
    );
    world.server.shutdown().await;
}

/// What a full listing costs, counted: one extra ListObjectsV2 page per cycle while it runs,
/// started only after `full_every` listings that caught up, and never more than that
/// (docs/performance.md derives the steady-state average from this).
#[tokio::test]
async fn a_full_listing_costs_one_extra_page_per_cycle_while_it_runs() {
    let world = start().await;
    let target = target(&world);
    let client = client(&target);
    futures::stream::iter(0..2500)
        .map(|i| {
            let client = client.clone();
            async move { put(&client, BUCKET, &format!("{PREFIX}cluster1-backup-{i:05}")).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let requests = world.server.requests();
    let lists = || requests.count(PRIMARY_REGION, BUCKET, "ListObjectsV2");
    let mut opts = options(false, 1000, 2);
    opts.list.full_every = 2;
    let mut state = TargetState::default();
    let mut per_cycle = Vec::new();
    for _ in 0..6 {
        let before = lists();
        let result = run_cycle(&client, &target, &opts, &mut state).await;
        assert!(result.up, "{result:#?}");
        per_cycle.push(lists() - before);
    }
    // 1: catching up (two pages, not done); 2: caught up (one page), one caught-up listing;
    // 3: caught up again, the second: the full listing starts, its first page beside the
    // incremental one; 4, 5: its next pages, the last reaching the end; 6: incremental only.
    assert_eq!(per_cycle, [2, 1, 2, 2, 2, 1]);
    world.server.shutdown().await;
}
