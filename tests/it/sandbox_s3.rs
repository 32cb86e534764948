//! The sandbox's embedded S3, driven by the unmodified AWS SDK: the normal protocol
//! (SigV4, path-style put/get/list/delete), and every injected fault as the SDK sees it.
//! Every endpoint listens on 127.0.0.1 with an ephemeral port and is stopped by its test.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::RequestId as _;
use aws_sdk_s3::primitives::ByteStream;
use backstop_sandbox::s3::{
    self, Fault, PRIMARY_REGION, RegionConfig, Rule, S3Config, S3Server, SECONDARY_REGION,
};

const ACCESS_KEY: &str = "AKIASANDBOXTEST00001";
const SECRET_KEY: &str = "sandbox/secret/key/for/tests";
const ALPHA: &str = "alpha-backups";
const BETA: &str = "beta-backups";
const DR: &str = "dr-backups";

/// A running embedded S3 and the directory holding its data.
struct World {
    server: S3Server,
    _dir: tempfile::TempDir,
}

/// Starts the two sandbox regions: the primary with two buckets, the secondary with one.
async fn start() -> World {
    let dir = tempfile::tempdir().unwrap();
    let config = S3Config {
        root: dir.path().to_owned(),
        access_key: ACCESS_KEY.to_owned(),
        secret_key: SECRET_KEY.to_owned(),
        regions: vec![
            RegionConfig {
                name: PRIMARY_REGION.to_owned(),
                buckets: vec![ALPHA.to_owned(), BETA.to_owned()],
            },
            RegionConfig {
                name: SECONDARY_REGION.to_owned(),
                buckets: vec![DR.to_owned()],
            },
        ],
    };
    let server = s3::start(config).await.unwrap();
    World { server, _dir: dir }
}

/// The SDK as Backstop builds it, without retries so each fault is seen once.
fn client_with(
    world: &World,
    endpoint_region: &str,
    signing_region: &str,
    access_key: &str,
    secret_key: &str,
    operation_timeout: Duration,
) -> Client {
    let endpoint = world.server.endpoint(endpoint_region).unwrap();
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .region(Region::new(signing_region.to_owned()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(operation_timeout)
                .build(),
        )
        .build();
    Client::from_conf(config)
}

fn client(world: &World, region: &str) -> Client {
    client_with(
        world,
        region,
        region,
        ACCESS_KEY,
        SECRET_KEY,
        Duration::from_secs(10),
    )
}

async fn put(client: &Client, bucket: &str, key: &str, body: &str) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

async fn get(client: &Client, bucket: &str, key: &str) -> String {
    let output = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let bytes = output.body.collect().await.unwrap().into_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// How an operation failed at the HTTP level: (error code, status, request id).
#[derive(Debug, PartialEq, Eq)]
struct HttpFailure {
    code: Option<String>,
    status: Option<u16>,
    request_id: Option<String>,
}

/// Picks an SDK error apart the way a caller classifies it.
macro_rules! http_failure {
    ($result:expr) => {{
        let err = $result.expect_err("the operation should have failed");
        let status = err.raw_response().map(|r| r.status().as_u16());
        let service = err.into_service_error();
        HttpFailure {
            code: service.meta().code().map(str::to_owned),
            status,
            request_id: service.request_id().map(str::to_owned),
        }
    }};
}

fn put_request(client: &Client, bucket: &str, key: &str) -> impl Future<Output = PutResult> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(b"payload"))
        .send()
}

type PutResult = Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    SdkError<
        aws_sdk_s3::operation::put_object::PutObjectError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
>;

fn list_keys(output: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<String> {
    output
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn put_get_list_delete_round_trip_per_region() {
    let world = start().await;
    let primary = client(&world, PRIMARY_REGION);
    primary.head_bucket().bucket(ALPHA).send().await.unwrap();

    for i in 1..=5 {
        put(
            &primary,
            ALPHA,
            &format!("backups/b{i}"),
            &format!("backup {i}"),
        )
        .await;
    }
    put(&primary, ALPHA, "other/x", "x").await;
    assert_eq!(get(&primary, ALPHA, "backups/b3").await, "backup 3");

    let all = primary
        .list_objects_v2()
        .bucket(ALPHA)
        .prefix("backups/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        list_keys(&all),
        [
            "backups/b1",
            "backups/b2",
            "backups/b3",
            "backups/b4",
            "backups/b5"
        ]
    );

    let after = primary
        .list_objects_v2()
        .bucket(ALPHA)
        .prefix("backups/")
        .start_after("backups/b2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        list_keys(&after),
        ["backups/b3", "backups/b4", "backups/b5"]
    );

    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let page = primary
            .list_objects_v2()
            .bucket(ALPHA)
            .prefix("backups/")
            .max_keys(2)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        pages.push(list_keys(&page));
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
        assert!(token.is_some(), "a truncated page must carry a token");
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(
        pages,
        [
            vec!["backups/b1", "backups/b2"],
            vec!["backups/b3", "backups/b4"],
            vec!["backups/b5"],
        ]
    );

    primary
        .delete_object()
        .bucket(ALPHA)
        .key("backups/b1")
        .send()
        .await
        .unwrap();
    let missing = http_failure!(
        primary
            .get_object()
            .bucket(ALPHA)
            .key("backups/b1")
            .send()
            .await
    );
    assert_eq!(missing.code.as_deref(), Some("NoSuchKey"));
    assert_eq!(missing.status, Some(404));

    // The secondary region is another store: its own bucket, none of the primary's.
    let secondary = client(&world, SECONDARY_REGION);
    put(&secondary, DR, "backups/b1", "copy").await;
    assert_eq!(get(&secondary, DR, "backups/b1").await, "copy");
    let foreign = http_failure!(secondary.head_bucket().bucket(ALPHA).send().await);
    assert_eq!(foreign.status, Some(404));
    world.server.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_key_is_signature_does_not_match() {
    let world = start().await;
    let client = client_with(
        &world,
        PRIMARY_REGION,
        PRIMARY_REGION,
        ACCESS_KEY,
        "not-the-secret",
        Duration::from_secs(10),
    );
    let failure = http_failure!(put_request(&client, ALPHA, "k").await);
    assert_eq!(failure.code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(failure.status, Some(403));
    world.server.shutdown().await;
}

#[tokio::test]
async fn unknown_access_key_is_invalid_access_key_id() {
    let world = start().await;
    let client = client_with(
        &world,
        PRIMARY_REGION,
        PRIMARY_REGION,
        "AKIAUNKNOWN000000000",
        SECRET_KEY,
        Duration::from_secs(10),
    );
    let failure = http_failure!(put_request(&client, ALPHA, "k").await);
    assert_eq!(failure.code.as_deref(), Some("InvalidAccessKeyId"));
    assert_eq!(failure.status, Some(403));
    world.server.shutdown().await;
}

#[tokio::test]
async fn request_signed_for_another_region_is_rejected() {
    let world = start().await;
    // Failing over the endpoint but not the signing region, as a buggy client would.
    let client = client_with(
        &world,
        SECONDARY_REGION,
        PRIMARY_REGION,
        ACCESS_KEY,
        SECRET_KEY,
        Duration::from_secs(10),
    );
    let failure = http_failure!(put_request(&client, DR, "k").await);
    assert_eq!(
        failure.code.as_deref(),
        Some("AuthorizationHeaderMalformed")
    );
    assert_eq!(failure.status, Some(400));
    world.server.shutdown().await;
}

#[tokio::test]
async fn http_faults_reach_the_sdk_as_aws_errors() {
    let world = start().await;
    let client = client(&world, PRIMARY_REGION);
    let faults = world.server.faults();
    let cases = [
        (Fault::SlowDown, "SlowDown", 503),
        (Fault::ServiceUnavailable, "ServiceUnavailable", 503),
        (Fault::InternalError, "InternalError", 500),
        (Fault::AccessDenied, "AccessDenied", 403),
        (Fault::NoSuchBucket, "NoSuchBucket", 404),
        (Fault::InvalidCredentials, "InvalidAccessKeyId", 403),
    ];
    for (fault, code, status) in cases {
        let id = faults
            .set(
                Rule::new(fault)
                    .in_region(PRIMARY_REGION)
                    .on_bucket(ALPHA)
                    .on_operation("PutObject"),
            )
            .await
            .unwrap();
        let failure = http_failure!(put_request(&client, ALPHA, "k").await);
        assert_eq!(failure.code.as_deref(), Some(code), "{fault:?}");
        assert_eq!(failure.status, Some(status), "{fault:?}");
        let request_id = failure.request_id.unwrap_or_default();
        assert_eq!(request_id.len(), 16, "{fault:?}: request id {request_id:?}");
        assert_eq!(faults.list()[0].hits, 1, "{fault:?}");
        assert!(faults.clear(id).await.unwrap());
        put_request(&client, ALPHA, "k").await.unwrap();
    }
    world.server.shutdown().await;
}

#[tokio::test]
async fn refuse_closes_the_endpoint_and_clearing_reopens_it() {
    let world = start().await;
    let addr = world.server.addr(PRIMARY_REGION).unwrap();
    let primary = client(&world, PRIMARY_REGION);
    let secondary = client(&world, SECONDARY_REGION);
    // Leaves a keep-alive connection in the client's pool, which must not serve later.
    primary.head_bucket().bucket(ALPHA).send().await.unwrap();

    let id = world
        .server
        .faults()
        .set(Rule::new(Fault::Refuse).in_region(PRIMARY_REGION))
        .await
        .unwrap();
    let connect = tokio::net::TcpStream::connect(addr).await;
    assert_eq!(
        connect.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    match primary.head_bucket().bucket(ALPHA).send().await {
        Err(SdkError::DispatchFailure(failure)) => {
            assert!(failure.is_io(), "not an I/O failure: {failure:?}");
        }
        other => panic!("expected a dispatch failure, got {other:?}"),
    }
    secondary.head_bucket().bucket(DR).send().await.unwrap();

    assert!(world.server.faults().clear(id).await.unwrap());
    assert_eq!(world.server.addr(PRIMARY_REGION), Some(addr));
    primary.head_bucket().bucket(ALPHA).send().await.unwrap();
    world.server.shutdown().await;
}

#[tokio::test]
async fn hang_times_out_and_clearing_restores_service() {
    let world = start().await;
    let timeout = Duration::from_millis(300);
    let primary = client_with(
        &world,
        PRIMARY_REGION,
        PRIMARY_REGION,
        ACCESS_KEY,
        SECRET_KEY,
        timeout,
    );
    let secondary = client(&world, SECONDARY_REGION);
    let faults = world.server.faults();
    let id = faults
        .set(Rule::new(Fault::Hang).in_region(PRIMARY_REGION))
        .await
        .unwrap();

    match primary.head_bucket().bucket(ALPHA).send().await {
        Err(SdkError::TimeoutError(_)) => {}
        Err(SdkError::DispatchFailure(failure)) if failure.is_timeout() => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The request reached the server and was held, not refused.
    assert_eq!(faults.list()[0].hits, 1);
    secondary.head_bucket().bucket(DR).send().await.unwrap();

    assert!(faults.clear(id).await.unwrap());
    // A client with the usual timeout, so a loaded machine cannot fail the recovery.
    let recovered = client(&world, PRIMARY_REGION);
    recovered.head_bucket().bucket(ALPHA).send().await.unwrap();
    world.server.shutdown().await;
}

#[tokio::test]
async fn latency_delays_the_matching_operation_which_still_succeeds() {
    let world = start().await;
    let client = client(&world, PRIMARY_REGION);
    put(&client, ALPHA, "k", "v").await;
    let faults = world.server.faults();
    let latency = Duration::from_millis(200);
    faults
        .set(
            Rule::new(Fault::Latency(latency))
                .on_bucket(ALPHA)
                .on_operation("GetObject"),
        )
        .await
        .unwrap();

    client.head_bucket().bucket(ALPHA).send().await.unwrap();
    assert_eq!(faults.list()[0].hits, 0, "HeadBucket was delayed");

    let started = Instant::now();
    assert_eq!(get(&client, ALPHA, "k").await, "v");
    assert!(started.elapsed() >= latency);
    assert_eq!(faults.list()[0].hits, 1, "GetObject was not delayed");
    world.server.shutdown().await;
}

#[tokio::test]
async fn a_fault_on_one_bucket_spares_the_others() {
    let world = start().await;
    let primary = client(&world, PRIMARY_REGION);
    let secondary = client(&world, SECONDARY_REGION);
    world
        .server
        .faults()
        .set(Rule::new(Fault::InternalError).on_bucket(ALPHA))
        .await
        .unwrap();

    let failure = http_failure!(put_request(&primary, ALPHA, "k").await);
    assert_eq!(failure.code.as_deref(), Some("InternalError"));
    put(&primary, BETA, "k", "v").await;
    put(&secondary, DR, "k", "v").await;
    world.server.shutdown().await;
}

#[tokio::test]
async fn a_fault_on_one_operation_spares_the_others() {
    let world = start().await;
    let client = client(&world, PRIMARY_REGION);
    put(&client, ALPHA, "k", "v").await;
    world
        .server
        .faults()
        .set(Rule::new(Fault::SlowDown).on_operation("PutObject"))
        .await
        .unwrap();

    let failure = http_failure!(put_request(&client, ALPHA, "k2").await);
    assert_eq!(failure.code.as_deref(), Some("SlowDown"));
    client.head_bucket().bucket(ALPHA).send().await.unwrap();
    assert_eq!(get(&client, ALPHA, "k").await, "v");
    client.list_objects_v2().bucket(ALPHA).send().await.unwrap();
    world.server.shutdown().await;
}

#[tokio::test]
async fn a_fault_on_one_region_spares_the_other() {
    let world = start().await;
    let primary = client(&world, PRIMARY_REGION);
    let secondary = client(&world, SECONDARY_REGION);
    world
        .server
        .faults()
        .set(Rule::new(Fault::ServiceUnavailable).in_region(PRIMARY_REGION))
        .await
        .unwrap();

    let failure = http_failure!(primary.list_objects_v2().bucket(ALPHA).send().await);
    assert_eq!(failure.code.as_deref(), Some("ServiceUnavailable"));
    assert_eq!(failure.status, Some(503));
    secondary.list_objects_v2().bucket(DR).send().await.unwrap();
    world.server.shutdown().await;
}

#[tokio::test]
async fn requests_are_counted_per_region_bucket_and_operation() {
    let world = start().await;
    let primary = client(&world, PRIMARY_REGION);
    let secondary = client(&world, SECONDARY_REGION);
    let requests = world.server.requests();
    for _ in 0..3 {
        primary
            .list_objects_v2()
            .bucket(ALPHA)
            .send()
            .await
            .unwrap();
    }
    primary.list_objects_v2().bucket(BETA).send().await.unwrap();
    secondary.list_objects_v2().bucket(DR).send().await.unwrap();
    put(&primary, ALPHA, "k", "v").await;
    // Requests answered by a fault still hit the endpoint.
    world
        .server
        .faults()
        .set(Rule::new(Fault::SlowDown).on_operation("ListObjectsV2"))
        .await
        .unwrap();
    let _ = http_failure!(primary.list_objects_v2().bucket(ALPHA).send().await);

    assert_eq!(requests.count(PRIMARY_REGION, ALPHA, "ListObjectsV2"), 4);
    assert_eq!(requests.count(PRIMARY_REGION, BETA, "ListObjectsV2"), 1);
    assert_eq!(requests.count(SECONDARY_REGION, DR, "ListObjectsV2"), 1);
    assert_eq!(requests.count(PRIMARY_REGION, ALPHA, "PutObject"), 1);
    assert_eq!(requests.count(SECONDARY_REGION, ALPHA, "ListObjectsV2"), 0);
    assert_eq!(requests.snapshot().values().sum::<u64>(), 7);

    requests.reset();
    assert_eq!(requests.count(PRIMARY_REGION, ALPHA, "ListObjectsV2"), 0);
    assert!(requests.snapshot().is_empty());
    world.server.shutdown().await;
}

#[tokio::test]
async fn rules_are_validated_listed_and_cleared() {
    let world = start().await;
    let faults = world.server.faults();
    assert!(matches!(
        faults
            .set(Rule::new(Fault::SlowDown).in_region("eu-west-9"))
            .await,
        Err(s3::Error::UnknownRegion(_))
    ));
    assert!(matches!(
        faults
            .set(Rule::new(Fault::Hang).on_operation("PutObject"))
            .await,
        Err(s3::Error::ScopedConnectionFault(Fault::Hang))
    ));

    let slow = Rule::new(Fault::SlowDown).on_bucket(ALPHA);
    let denied = Rule::new(Fault::AccessDenied).on_bucket(BETA);
    let slow_id = faults.set(slow.clone()).await.unwrap();
    let denied_id = faults.set(denied.clone()).await.unwrap();
    let listed: Vec<_> = faults.list().into_iter().map(|a| (a.id, a.rule)).collect();
    assert_eq!(listed, [(slow_id, slow), (denied_id, denied.clone())]);

    assert!(faults.clear(slow_id).await.unwrap());
    assert!(!faults.clear(slow_id).await.unwrap());
    let listed: Vec<_> = faults.list().into_iter().map(|a| a.rule).collect();
    assert_eq!(listed, [denied]);

    let client = client(&world, PRIMARY_REGION);
    let failure = http_failure!(put_request(&client, BETA, "k").await);
    assert_eq!(failure.code.as_deref(), Some("AccessDenied"));
    faults.clear_all().await.unwrap();
    assert!(faults.list().is_empty());
    put(&client, BETA, "k", "v").await;
    world.server.shutdown().await;
}

#[tokio::test]
async fn start_rejects_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = |regions: Vec<RegionConfig>| S3Config {
        root: dir.path().to_owned(),
        access_key: ACCESS_KEY.to_owned(),
        secret_key: SECRET_KEY.to_owned(),
        regions,
    };
    let region = |name: &str, bucket: &str| RegionConfig {
        name: name.to_owned(),
        buckets: vec![bucket.to_owned()],
    };
    for regions in [
        vec![],
        vec![region("../escape", ALPHA)],
        vec![region(PRIMARY_REGION, "Not_A_Bucket")],
        vec![region(PRIMARY_REGION, ALPHA), region(PRIMARY_REGION, BETA)],
    ] {
        let result = s3::start(config(regions.clone())).await;
        assert!(
            matches!(result, Err(s3::Error::InvalidConfig(_))),
            "{regions:?} was accepted"
        );
    }
}

#[tokio::test]
async fn shutdown_stops_every_endpoint() {
    let world = start().await;
    let addrs = [
        world.server.addr(PRIMARY_REGION).unwrap(),
        world.server.addr(SECONDARY_REGION).unwrap(),
    ];
    // An open connection must not keep its endpoint alive.
    let client = client(&world, PRIMARY_REGION);
    client.head_bucket().bucket(ALPHA).send().await.unwrap();
    world.server.shutdown().await;
    for addr in addrs {
        let connect = tokio::net::TcpStream::connect(addr).await;
        assert_eq!(
            connect.map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
    }
    match client.head_bucket().bucket(ALPHA).send().await {
        Err(SdkError::DispatchFailure(_)) => {}
        other => panic!("expected a dispatch failure, got {other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_server_stops_every_endpoint() {
    let world = start().await;
    let addr = world.server.addr(PRIMARY_REGION).unwrap();
    let faults = world.server.faults().clone();
    drop(world);
    // A rule change waits for every region to acknowledge it; a region whose task was
    // aborted acknowledges only as the task is dropped, with its listener.
    tokio::time::timeout(Duration::from_secs(10), faults.clear_all())
        .await
        .expect("a dropped region never acknowledged")
        .unwrap();
    let connect = tokio::net::TcpStream::connect(addr).await;
    assert_eq!(
        connect.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}
