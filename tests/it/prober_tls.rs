//! A storage's TLS settings, honoured the way the backup Job honours them: the embedded S3
//! behind an HTTPS front whose certificate no system trusts, probed with the default
//! (refused as a TLS failure), `verifyTLS: false` (accepted), and `caBundle` naming the
//! right CA (accepted), a wrong CA, or a Secret that is not there (refused, said why); and
//! the same bundle configured for a static target and for a failover secondary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use backstop::config::{
    CaBundleSecret, FailoverPolicy, ManagedCluster, PitrOnBuffer, ProbeConfig, SecondaryTarget,
    SecretRef, StaticTarget, Strategy,
};
use backstop::probe::classify::ErrorClass;
use backstop::probe::cycle::{CanaryRun, CycleOptions, CycleResult, Outcome, TargetState};
use backstop::probe::discovery::secondary_storage;
use backstop::probe::once::probe_once;
use backstop::probe::target::Target;
use backstop::pxc::Storage;
use backstop::s3::client::Timeouts;
use backstop_sandbox::certs::SandboxPki;
use backstop_sandbox::s3;
use backstop_sandbox::world::{self, World, WorldOptions};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A TLS-terminating TCP front for one plain-HTTP backend, as a load balancer in front of
/// MinIO would be. Stopping it closes every connection it holds.
struct TlsFront {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    async fn start(backend: SocketAddr, pki: &SandboxPki) -> Self {
        let acceptor = TlsAcceptor::from(Arc::new(pki.server_config().unwrap()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let done = stop.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        let acceptor = acceptor.clone();
                        connections.spawn(async move {
                            // A refused handshake is the client's verdict, the point of
                            // some cases here: the connection just ends.
                            let Ok(mut tls) = acceptor.accept(socket).await else { return };
                            let Ok(mut plain) = TcpStream::connect(backend).await else { return };
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        });
                    }
                    () = done.cancelled() => break,
                }
            }
            connections.shutdown().await;
        });
        Self { addr, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn storage(front: SocketAddr, extra: Value, s3_extra: Value) -> Storage {
    let mut s3 = json!({
        "bucket": world::PRIMARY_BUCKET,
        "region": s3::PRIMARY_REGION,
        "endpointUrl": format!("https://{front}"),
        "forcePathStyle": true,
        "credentialsSecret": world::CREDENTIALS_SECRET,
    });
    merge(&mut s3, s3_extra);
    let mut storage = json!({"type": "s3", "s3": s3});
    merge(&mut storage, extra);
    serde_json::from_value(storage).unwrap()
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

async fn probe(world: &World, storage: &Storage) -> CycleResult {
    let target = Target::from_storage(world::NAMESPACE, world::CLUSTER, "tls", storage).unwrap();
    probe_target(world, &target).await
}

async fn probe_target(world: &World, target: &Target) -> CycleResult {
    let mut options = CycleOptions::from(&ProbeConfig::default());
    options.sts = false;
    probe_once(
        target,
        Some(&world.client),
        &options,
        Timeouts::default(),
        &mut TargetState::default(),
    )
    .await
}

/// The class and message of the first failed operation.
fn first_failure(result: &CycleResult) -> (ErrorClass, String) {
    result
        .operations
        .iter()
        .find_map(|o| match &o.outcome {
            Outcome::Ok => None,
            Outcome::Err { class, message } => Some((*class, message.clone())),
        })
        .unwrap_or_else(|| panic!("nothing failed: {result:?}"))
}

fn all_ok(result: &CycleResult) -> bool {
    result.up
        && !result.operations.is_empty()
        && result
            .operations
            .iter()
            .all(|o| matches!(o.outcome, Outcome::Ok))
}

/// A sandbox world whose primary region is also served over HTTPS by a front with a
/// certificate from a CA of its own, which no system trusts.
async fn tls_world() -> (World, SandboxPki, TlsFront) {
    let world = World::start(WorldOptions {
        operator_interval: None,
        ..WorldOptions::default()
    })
    .await
    .unwrap();
    let pki = SandboxPki::generate().unwrap();
    let front = TlsFront::start(world.s3.addr(s3::PRIMARY_REGION).unwrap(), &pki).await;
    (world, pki, front)
}

#[tokio::test]
async fn verify_tls_and_ca_bundle_decide_whom_the_probe_trusts() {
    let (world, pki, front) = tls_world().await;
    let stranger = SandboxPki::generate().unwrap();
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), world::NAMESPACE);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("s3-ca".into()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([
                    ("ca.crt".into(), ByteString(pki.ca_pem.clone().into_bytes())),
                    (
                        "other.crt".into(),
                        ByteString(stranger.ca_pem.clone().into_bytes()),
                    ),
                ])),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Default: the system roots do not know the sandbox CA.
    let default = probe(&world, &storage(front.addr, json!({}), json!({}))).await;
    assert!(!default.up, "{default:?}");
    let (class, message) = first_failure(&default);
    assert_eq!(class, ErrorClass::Tls, "{message}");

    // verifyTLS: false: the backup Job would connect, so the probe must too.
    let insecure = storage(front.addr, json!({"verifyTLS": false}), json!({}));
    let result = probe(&world, &insecure).await;
    assert!(all_ok(&result), "{result:?}");

    // caBundle naming the CA that signed the endpoint's certificate.
    let bundled = storage(
        front.addr,
        json!({}),
        json!({"caBundle": {"name": "s3-ca", "key": "ca.crt"}}),
    );
    let result = probe(&world, &bundled).await;
    assert!(all_ok(&result), "{result:?}");

    // caBundle naming another CA: refused, as the Job's client would refuse it.
    let wrong = storage(
        front.addr,
        json!({}),
        json!({"caBundle": {"name": "s3-ca", "key": "other.crt"}}),
    );
    let result = probe(&world, &wrong).await;
    assert!(!result.up);
    let (class, message) = first_failure(&result);
    assert_eq!(class, ErrorClass::Tls, "{message}");

    // A bundle that is not there: a TLS failure that says which Secret is missing.
    let missing = storage(
        front.addr,
        json!({}),
        json!({"caBundle": {"name": "no-such-ca", "key": "ca.crt"}}),
    );
    let result = probe(&world, &missing).await;
    assert!(!result.up);
    let (class, message) = first_failure(&result);
    assert_eq!(class, ErrorClass::Tls);
    assert!(
        message.contains("percona/no-such-ca not found"),
        "{message}"
    );

    // The same CA for a static target, read from the namespace its `ca_bundle` names (here
    // not the cluster's), and for a failover secondary (the storage the failover would
    // write, as the preflight sees it).
    let namespaces: Api<Namespace> = Api::all(world.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "backstop-ca"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut elsewhere = secrets.get("s3-ca").await.unwrap();
    // A name only that namespace has, so reading the cluster's namespace would fail.
    elsewhere.metadata = kube::api::ObjectMeta {
        name: Some("static-ca".into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(world.client.clone(), "backstop-ca")
        .create(&PostParams::default(), &elsewhere)
        .await
        .unwrap();
    let static_target = |ca_key: &str| {
        Target::from_static(&StaticTarget {
            name: "private-ca".into(),
            bucket: world::PRIMARY_BUCKET.into(),
            region: s3::PRIMARY_REGION.into(),
            endpoint_url: Some(format!("https://{}", front.addr)),
            force_path_style: true,
            verify_tls: true,
            credentials_secret: Some(SecretRef {
                namespace: world::NAMESPACE.into(),
                name: world::CREDENTIALS_SECRET.into(),
            }),
            ca_bundle: Some(CaBundleSecret {
                namespace: Some("backstop-ca".into()),
                name: "static-ca".into(),
                key: ca_key.into(),
            }),
        })
        .unwrap()
    };
    let result = probe_target(&world, &static_target("ca.crt")).await;
    assert!(all_ok(&result), "{result:?}");
    let result = probe_target(&world, &static_target("other.crt")).await;
    assert_eq!(first_failure(&result).0, ErrorClass::Tls);

    let secondary = |ca_key: &str| {
        let managed = ManagedCluster {
            namespace: world::NAMESPACE.into(),
            name: world::CLUSTER.into(),
            failover: FailoverPolicy {
                secondary: Some(SecondaryTarget {
                    storage_name: "dr".into(),
                    bucket: world::PRIMARY_BUCKET.into(),
                    region: s3::PRIMARY_REGION.into(),
                    endpoint_url: Some(format!("https://{}", front.addr)),
                    credentials_secret: world::CREDENTIALS_SECRET.into(),
                    force_path_style: true,
                    verify_tls: true,
                    ca_bundle: Some(CaBundleSecret {
                        namespace: None,
                        name: "s3-ca".into(),
                        key: ca_key.into(),
                    }),
                }),
                secondaries: Vec::new(),
                strategy: Strategy::Repoint,
                storage: None,
                buffer: None,
                pitr_on_buffer: PitrOnBuffer::Disable,
            },
        };
        secondary_storage(managed.failover.secondary.as_ref().unwrap()).1
    };
    let result = probe(&world, &secondary("ca.crt")).await;
    assert!(all_ok(&result), "{result:?}");
    let result = probe(&world, &secondary("other.crt")).await;
    assert_eq!(first_failure(&result).0, ErrorClass::Tls);

    front.stop().await;
    world.shutdown().await;
}

/// A cycle that cannot read its CA bundle never reaches S3, yet the target was not up: the
/// first cycle after the bundle is back runs the canary, rather than trusting a canary from
/// before the gap for the rest of its interval.
#[tokio::test]
async fn a_cycle_without_its_ca_bundle_makes_the_canary_due_again() {
    let (world, pki, front) = tls_world().await;
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), world::NAMESPACE);
    let bundle: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3-ca"},
        "data": {"ca.crt": ByteString(pki.ca_pem.clone().into_bytes())},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &bundle)
        .await
        .unwrap();
    let bundled = storage(
        front.addr,
        json!({}),
        json!({"caBundle": {"name": "s3-ca", "key": "ca.crt"}}),
    );
    let target = Target::from_storage(world::NAMESPACE, world::CLUSTER, "tls", &bundled).unwrap();
    // The shipped probe settings: the canary every 2 minutes while healthy. The cycles below
    // run back to back, so it is never due by time.
    let mut options = CycleOptions::from(&ProbeConfig::default());
    options.sts = false;
    let mut state = TargetState::default();
    let mut cycle = async || {
        probe_once(
            &target,
            Some(&world.client),
            &options,
            Timeouts::default(),
            &mut state,
        )
        .await
    };

    let first = cycle().await;
    assert!(all_ok(&first), "{first:?}");
    assert_eq!(first.canary, CanaryRun::Ran);
    let second = cycle().await;
    assert!(second.up, "{second:?}");
    assert_eq!(second.canary, CanaryRun::NotDue);

    secrets
        .delete("s3-ca", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let without = cycle().await;
    assert!(!without.up);
    assert_eq!(without.canary, CanaryRun::NotRun);
    assert_eq!(first_failure(&without).0, ErrorClass::Tls);

    secrets
        .create(&PostParams::default(), &bundle)
        .await
        .unwrap();
    let back = cycle().await;
    assert!(all_ok(&back), "{back:?}");
    assert_eq!(back.canary, CanaryRun::Ran, "{back:?}");
    let after = cycle().await;
    assert_eq!(after.canary, CanaryRun::NotDue);

    front.stop().await;
    world.shutdown().await;
}
