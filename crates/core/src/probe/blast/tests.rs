use super::*;
use crate::probe::target::CredentialSource;

fn key(bucket: &str, region: &str, endpoint: Option<&str>, secret: &str) -> TargetKey {
    TargetKey {
        bucket: bucket.into(),
        prefix: String::new(),
        region: region.into(),
        endpoint_url: endpoint.map(str::to_owned),
        force_path_style: false,
        verify_tls: true,
        ca_bundle: None,
        credentials: CredentialSource::Secret {
            namespace: "ns".into(),
            name: secret.into(),
        },
    }
}

fn seen(key: TargetKey, up: bool, classes: &[ErrorClass]) -> Seen {
    Seen {
        key,
        up,
        classes: classes.to_vec(),
    }
}

fn scope(id: &str, all: &BTreeMap<String, Seen>) -> Scope {
    verdict(id, all).map(|v| v.scope).unwrap()
}

#[test]
fn the_narrowest_scope_that_explains_the_failure() {
    use ErrorClass::*;
    let mut all = BTreeMap::new();
    all.insert(
        "a".into(),
        seen(key("a", "us-west-2", None, "s"), false, &[Timeout]),
    );
    all.insert(
        "b".into(),
        seen(key("b", "us-west-2", None, "s"), false, &[Timeout]),
    );
    all.insert(
        "c".into(),
        seen(key("c", "us-east-1", None, "s"), true, &[]),
    );
    assert_eq!(scope("a", &all), Scope::Region);
    assert_eq!(scope("c", &all), Scope::Healthy);
    // A neighbour in the region passes: only the bucket.
    all.insert(
        "b".into(),
        seen(key("b", "us-west-2", None, "s"), true, &[]),
    );
    assert_eq!(scope("a", &all), Scope::Target);
    // Everything fails: not a region.
    all.insert(
        "b".into(),
        seen(key("b", "us-west-2", None, "s"), false, &[Timeout]),
    );
    all.insert(
        "c".into(),
        seen(key("c", "us-east-1", None, "s"), false, &[Dns]),
    );
    assert_eq!(scope("a", &all), Scope::Everywhere);
    assert!(
        verdict("a", &all)
            .unwrap()
            .reason
            .contains("every one of the 3")
    );
    assert_eq!(verdict("nope", &all), None);
}

#[test]
fn refused_credentials_and_a_failing_endpoint_are_named() {
    use ErrorClass::*;
    let mut all = BTreeMap::new();
    all.insert(
        "a".into(),
        seen(
            key("a", "us-west-2", None, "old"),
            false,
            &[InvalidCredentials],
        ),
    );
    all.insert(
        "b".into(),
        seen(key("b", "us-west-2", None, "new"), true, &[]),
    );
    assert_eq!(scope("a", &all), Scope::Credentials);
    let minio = Some("https://minio.internal:9000");
    let mut all = BTreeMap::new();
    all.insert(
        "m1".into(),
        seen(key("m1", "us-east-1", minio, "s"), false, &[Connect]),
    );
    all.insert(
        "m2".into(),
        seen(key("m2", "us-east-1", minio, "s"), false, &[Connect]),
    );
    all.insert(
        "aws".into(),
        seen(key("aws", "us-east-1", None, "s"), true, &[]),
    );
    assert_eq!(scope("m1", &all), Scope::Endpoint);
}

#[test]
fn alone_in_its_region_it_says_the_region_cannot_be_told_apart() {
    let mut all = BTreeMap::new();
    all.insert(
        "a".into(),
        seen(
            key("a", "us-west-2", None, "s"),
            false,
            &[ErrorClass::Connect],
        ),
    );
    all.insert(
        "b".into(),
        seen(key("b", "us-east-1", None, "s"), true, &[]),
    );
    let v = verdict("a", &all).unwrap();
    assert_eq!(v.scope, Scope::Target);
    assert!(v.reason.contains("cannot be told apart"), "{}", v.reason);
}
