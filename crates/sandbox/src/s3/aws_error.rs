//! S3 errors shaped the way AWS sends them.
//!
//! Clients (the SDK's retry classifier, Backstop's own probe classification) key on the
//! status, the XML `Code`, and the `x-amz-request-id` header, so injected faults must
//! carry all three with AWS's wording rather than s3s's bare defaults. s3s already writes
//! the `<Error>` document with `Code`, `Message` and `RequestId` from an [`S3Error`]; this
//! module only fills those in and adds the header.

use s3s::{S3Error, S3ErrorCode};

use super::faults::Fault;

/// The header in which S3 names a request, also repeated in the error body.
const REQUEST_ID_HEADER: &str = "x-amz-request-id";

/// The S3 error an HTTP-level fault answers with; `None` for faults that are not answers.
pub(crate) fn for_fault(fault: Fault) -> Option<S3Error> {
    let (code, message) = match fault {
        Fault::Refuse | Fault::Hang | Fault::Latency(_) => return None,
        Fault::SlowDown => (S3ErrorCode::SlowDown, "Please reduce your request rate."),
        Fault::ServiceUnavailable => (
            S3ErrorCode::ServiceUnavailable,
            "Service is unable to handle request.",
        ),
        Fault::InternalError => (
            S3ErrorCode::InternalError,
            "We encountered an internal error. Please try again.",
        ),
        Fault::AccessDenied => (S3ErrorCode::AccessDenied, "Access Denied"),
        Fault::NoSuchBucket => (
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        ),
        Fault::InvalidCredentials => return Some(invalid_access_key_id()),
    };
    Some(with_request_id(S3Error::with_message(code, message)))
}

/// AWS's answer to a request signed with an access key it does not know.
pub(crate) fn invalid_access_key_id() -> S3Error {
    with_request_id(S3Error::with_message(
        S3ErrorCode::InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records.",
    ))
}

/// AWS's answer to a request signed for another region than the endpoint's.
pub(crate) fn wrong_region(signed_for: &str, expected: &str) -> S3Error {
    with_request_id(S3Error::with_message(
        S3ErrorCode::AuthorizationHeaderMalformed,
        format!(
            "The authorization header is malformed; the region '{signed_for}' is wrong; \
             expecting '{expected}'"
        ),
    ))
}

/// Gives `error` a fresh request id in its body and in the `x-amz-request-id` header.
fn with_request_id(mut error: S3Error) -> S3Error {
    // AWS request ids are 16 upper-case hex digits.
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_ascii_uppercase();
    let mut headers = hyper::HeaderMap::new();
    // s3s replaces the whole header map with these, so the content type goes here too.
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    if let Ok(value) = hyper::header::HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    error.set_request_id(id);
    error.set_headers(headers);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_map_to_aws_codes_and_statuses() {
        let cases = [
            (Fault::SlowDown, "SlowDown", 503),
            (Fault::ServiceUnavailable, "ServiceUnavailable", 503),
            (Fault::InternalError, "InternalError", 500),
            (Fault::AccessDenied, "AccessDenied", 403),
            (Fault::NoSuchBucket, "NoSuchBucket", 404),
            (Fault::InvalidCredentials, "InvalidAccessKeyId", 403),
        ];
        for (fault, code, status) in cases {
            let error = for_fault(fault).unwrap();
            assert_eq!(error.code().as_str(), code);
            assert_eq!(error.status_code().unwrap().as_u16(), status);
            let id = error.request_id().unwrap();
            assert_eq!(id.len(), 16);
            assert_eq!(error.headers().unwrap()[REQUEST_ID_HEADER], id);
        }
        assert!(for_fault(Fault::Hang).is_none());
    }
}
