use super::*;
use aws_sdk_s3::error::ConnectorError;
use aws_sdk_s3::error::ErrorMetadata;
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::SdkBody;

fn response(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
    let mut builder = hyper::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    HttpResponse::try_from(builder.body(SdkBody::empty()).unwrap()).unwrap()
}

fn put_error(code: &str, status: u16) -> SdkError<PutObjectError, HttpResponse> {
    let meta = ErrorMetadata::builder()
        .code(code)
        .message("a message")
        .build();
    SdkError::service_error(
        PutObjectError::generic(meta),
        response(status, &[("x-amz-request-id", "ABCDEF0123456789")]),
    )
}

fn head_error(status: u16) -> SdkError<HeadBucketError, HttpResponse> {
    // What the SDK builds from a bodyless answer: a code only for 404.
    let mut meta = ErrorMetadata::builder();
    if status == 404 {
        meta = meta.code("NotFound");
    }
    SdkError::service_error(
        HeadBucketError::generic(meta.build()),
        response(status, &[]),
    )
}

#[test]
fn labels_are_exactly_the_documented_ones() {
    let labels: Vec<_> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        labels,
        [
            "timeout",
            "connect",
            "dns",
            "tls",
            "throttled",
            "server_error",
            "access_denied",
            "no_such_bucket",
            "invalid_credentials",
            "other"
        ]
    );
}

#[test]
fn service_codes_decide_first() {
    let cases = [
        ("SlowDown", 503, ErrorClass::Throttled),
        ("Throttling", 400, ErrorClass::Throttled),
        ("TooManyRequests", 429, ErrorClass::Throttled),
        ("RequestLimitExceeded", 503, ErrorClass::Throttled),
        ("InternalError", 500, ErrorClass::ServerError),
        ("ServiceUnavailable", 503, ErrorClass::ServerError),
        ("AccessDenied", 403, ErrorClass::AccessDenied),
        ("NoSuchBucket", 404, ErrorClass::NoSuchBucket),
        ("InvalidAccessKeyId", 403, ErrorClass::InvalidCredentials),
        ("SignatureDoesNotMatch", 403, ErrorClass::InvalidCredentials),
        ("ExpiredToken", 400, ErrorClass::InvalidCredentials),
        ("InvalidToken", 400, ErrorClass::InvalidCredentials),
        // Unknown codes: the status decides for 5xx and 429 only.
        ("SomethingNew", 502, ErrorClass::ServerError),
        ("SomethingNew", 429, ErrorClass::Throttled),
        ("NoSuchKey", 404, ErrorClass::Other),
        ("RequestTimeTooSkewed", 403, ErrorClass::Other),
    ];
    for (code, status, expected) in cases {
        let (class, message) = classify(&put_error(code, status));
        assert_eq!(class, expected, "{code} {status}");
        assert!(
            message.starts_with(&format!("{code}: a message")),
            "{message}"
        );
        assert!(message.contains(&format!("HTTP {status}")), "{message}");
        assert!(message.contains("ABCDEF0123456789"), "{message}");
    }
}

#[test]
fn bodyless_head_answers_are_classified_by_status() {
    let cases = [
        (404, ErrorClass::NoSuchBucket),
        (403, ErrorClass::AccessDenied),
        (429, ErrorClass::Throttled),
        (503, ErrorClass::ServerError),
        (500, ErrorClass::ServerError),
        (400, ErrorClass::Other),
        (301, ErrorClass::Other),
    ];
    for (status, expected) in cases {
        let (class, message) = classify(&head_error(status));
        assert_eq!(class, expected, "{status}");
        assert!(
            message.starts_with(&format!("HTTP {status} without an error body")),
            "{message}"
        );
    }
}

#[test]
fn a_body_that_is_not_an_s3_error_is_quoted_with_its_content_type() {
    let page = format!(
        "<html>\n<h1>502 Bad Gateway</h1>\u{1b}[31m{}</html>",
        "x".repeat(300)
    );
    let answer = hyper::Response::builder()
        .status(502)
        .header("content-type", "text/html")
        .body(SdkBody::from(page.clone()))
        .unwrap();
    let error = SdkError::<HeadBucketError, _>::service_error(
        HeadBucketError::generic(ErrorMetadata::builder().build()),
        HttpResponse::try_from(answer).unwrap(),
    );
    let (class, message) = classify(&error);
    assert_eq!(class, ErrorClass::ServerError);
    assert!(
            message.starts_with(&format!(
                "HTTP 502 with a body that is not an S3 error (text/html, {} bytes): \"<html>\\n<h1>502 Bad Gateway</h1>\\u{{1b}}[31mxxx",
                page.len()
            )),
            "{message}"
        );
    assert!(message.contains("…\""), "a long body is cut: {message}");
    assert!(
        !message.contains('\n') && !message.contains('\u{1b}'),
        "escaped: {message}"
    );
}

#[test]
fn a_redirect_names_the_buckets_region() {
    let error = SdkError::<HeadBucketError, _>::service_error(
        HeadBucketError::generic(ErrorMetadata::builder().build()),
        response(301, &[("x-amz-bucket-region", "eu-central-1")]),
    );
    let (class, message) = classify(&error);
    assert_eq!(class, ErrorClass::Other);
    assert!(message.contains("bucket region eu-central-1"), "{message}");
}

#[test]
fn timeouts_are_timeouts() {
    let error = SdkError::<PutObjectError, HttpResponse>::timeout_error("operation timed out");
    assert_eq!(classify(&error).0, ErrorClass::Timeout);
    let error = SdkError::<PutObjectError, HttpResponse>::dispatch_failure(
        ConnectorError::timeout("connect timed out".into()),
    );
    assert_eq!(classify(&error).0, ErrorClass::Timeout);
}

fn io_failure(kind: std::io::ErrorKind, text: &str) -> SdkError<PutObjectError, HttpResponse> {
    SdkError::dispatch_failure(ConnectorError::io(Box::new(std::io::Error::new(
        kind,
        text.to_owned(),
    ))))
}

#[test]
fn transport_failures_are_told_apart_by_their_chain() {
    let (class, message) = classify(&io_failure(
        std::io::ErrorKind::ConnectionRefused,
        "tcp connect error: Connection refused (os error 111)",
    ));
    assert_eq!(class, ErrorClass::Connect);
    assert!(message.contains("Connection refused"), "{message}");
    assert_eq!(
        classify(&io_failure(
            std::io::ErrorKind::Other,
            "dns error: failed to lookup address information: Name or service not known"
        ))
        .0,
        ErrorClass::Dns
    );
    assert_eq!(
        classify(&io_failure(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer"
        ))
        .0,
        ErrorClass::Tls
    );
    let no_credentials =
        SdkError::<PutObjectError, HttpResponse>::dispatch_failure(ConnectorError::other(
            "failed to resolve identity: no providers in chain provided credentials".into(),
            None,
        ));
    assert_eq!(classify(&no_credentials).0, ErrorClass::InvalidCredentials);
    let unknown = SdkError::<PutObjectError, HttpResponse>::dispatch_failure(
        ConnectorError::other("something odd".into(), None),
    );
    assert_eq!(classify(&unknown).0, ErrorClass::Other);
}

#[test]
fn construction_failures_are_other() {
    let error = SdkError::<PutObjectError, HttpResponse>::construction_failure("bad input");
    assert_eq!(classify(&error).0, ErrorClass::Other);
}

#[test]
fn long_messages_are_cut() {
    let long = "x".repeat(5000);
    let error = SdkError::<PutObjectError, HttpResponse>::construction_failure(long);
    let (_, message) = classify(&error);
    assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
}

#[test]
fn chains_skip_repeated_text() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }
    let e = Outer(std::io::Error::other("inner"));
    assert_eq!(chain_text(&e), "wrapped: inner");
}

#[test]
fn ambient_chain_failures_are_classified_by_what_failed() {
    let cases = [
            (
                AmbientCredentialsError::NoProvider,
                ErrorClass::InvalidCredentials,
            ),
            (
                AmbientCredentialsError::Resolve(
                    "the credential provider was not enabled: no providers in chain provided credentials".into(),
                ),
                ErrorClass::InvalidCredentials,
            ),
            (
                AmbientCredentialsError::Resolve(
                    "an error occurred while loading credentials: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity".into(),
                ),
                ErrorClass::InvalidCredentials,
            ),
            (
                AmbientCredentialsError::Resolve(
                    "credentials provider timed out after 5 seconds".into(),
                ),
                ErrorClass::Timeout,
            ),
            (
                AmbientCredentialsError::TimedOut(std::time::Duration::from_secs(1)),
                ErrorClass::Timeout,
            ),
            (
                AmbientCredentialsError::Resolve(
                    "dispatch failure: dns error: failed to lookup address information".into(),
                ),
                ErrorClass::Dns,
            ),
            (
                AmbientCredentialsError::Resolve(
                    "an error occurred while loading credentials: dispatch failure: io error: \
                     client error (Connect): tcp connect error: Connection refused (os error 111)"
                        .into(),
                ),
                ErrorClass::Connect,
            ),
        ];
    for (error, class) in cases {
        let (got, message) = classify_ambient(&error);
        assert_eq!(got, class, "{message}");
        assert!(message.contains("ambient AWS credentials"), "{message}");
    }
    let long = AmbientCredentialsError::Resolve("x".repeat(MAX_MESSAGE_CHARS * 2));
    assert!(classify_ambient(&long).1.chars().count() <= MAX_MESSAGE_CHARS + 1);
}
