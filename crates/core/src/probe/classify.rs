//! Why an S3 operation failed, in a handful of classes that say what to do about it.
//!
//! Error classes become a metric label and drive alerts, so there are few of them and each
//! names a different cause with a different remedy: the network (`timeout`, `connect`,
//! `dns`, `tls`), the service (`throttled`, `server_error`), and the account or bucket
//! (`access_denied`, `no_such_bucket`, `invalid_credentials`). The S3 error code decides
//! first, because it is the most precise thing S3 says; the HTTP status decides only when
//! there is no code. Transport failures carry no code at all, so they are told apart by the
//! SDK's own failure kind and, for DNS and TLS, by the text of the error's source chain —
//! the only place hyper and rustls say which step of connecting failed.
//!
//! # HEAD requests
//!
//! HEAD responses have no body, so a failed `HeadBucket` carries no error code, only a
//! status (the SDK adds the code `NotFound` for a 404 and nothing else). It is classified
//! by status, which is what the embedded S3 and AWS both send:
//!
//! | status | class | why |
//! |---|---|---|
//! | 404 | `no_such_bucket` | `HeadBucket` is the only HEAD the prober sends |
//! | 403 | `access_denied` | also what an unknown key or bad signature gets: a HEAD cannot tell them apart, so `invalid_credentials` comes from the canary and listing, which have bodies |
//! | 429 | `throttled` | |
//! | 503 and other 5xx | `server_error` | 503 is both `SlowDown` and `ServiceUnavailable`; without the code a throttle cannot be told from an outage, and calling it an outage is the safer error for an availability alert |
//! | 400 | `other` | a request signed for the wrong region or an expired session token; the status alone does not say which |
//! | 301/307 | `other` | the bucket is in another region; the message names it when S3 says |

use std::error::Error as StdError;
use std::fmt::Write as _;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::s3::client::AmbientCredentialsError;

/// Messages longer than this are cut: they go to logs and check reports, and an error
/// chain with a debug dump in it can be kilobytes long.
const MAX_MESSAGE_CHARS: usize = 512;

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The operation (or connecting) did not finish within its timeout.
    Timeout,
    /// The connection could not be made or broke (refused, reset, closed early).
    Connect,
    /// The endpoint's name did not resolve.
    Dns,
    /// The TLS handshake failed (untrusted or invalid certificate, protocol mismatch).
    Tls,
    /// S3 asked the client to slow down (`SlowDown`, `Throttling`, HTTP 429, ...).
    Throttled,
    /// S3 failed on its side (`InternalError`, `ServiceUnavailable`, other 5xx).
    ServerError,
    /// The credentials are valid but not allowed to do this (`AccessDenied`, 403).
    AccessDenied,
    /// The bucket does not exist (`NoSuchBucket`, 404 on `HeadBucket`).
    NoSuchBucket,
    /// The credentials themselves are wrong, unknown or expired (`InvalidAccessKeyId`,
    /// `SignatureDoesNotMatch`, `ExpiredToken`, `InvalidToken`, none available).
    InvalidCredentials,
    /// Anything else, including a canary read back with the wrong bytes.
    Other,
}

impl ErrorClass {
    /// Every class, in label order.
    pub const ALL: [Self; 10] = [
        Self::Timeout,
        Self::Connect,
        Self::Dns,
        Self::Tls,
        Self::Throttled,
        Self::ServerError,
        Self::AccessDenied,
        Self::NoSuchBucket,
        Self::InvalidCredentials,
        Self::Other,
    ];

    /// The `class` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Throttled => "throttled",
            Self::ServerError => "server_error",
            Self::AccessDenied => "access_denied",
            Self::NoSuchBucket => "no_such_bucket",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies the failure of any aws-sdk-s3 operation and describes it in one line.
///
/// The message names the S3 error code, message, status and request id for answers from
/// S3, and the error's source chain for everything else. It never contains credentials:
/// neither the SDK's errors nor S3's answers include them.
pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> (ErrorClass, String)
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let (class, message) = match error {
        SdkError::TimeoutError(_) => (ErrorClass::Timeout, chain_text(error)),
        SdkError::DispatchFailure(failure) => {
            let text = chain_text(error);
            let class = if failure.is_timeout() {
                ErrorClass::Timeout
            } else {
                classify_transport(&text, failure.is_io())
            };
            (class, text)
        }
        SdkError::ServiceError(service) => {
            classify_answer(service.err().code(), service.err().message(), service.raw())
        }
        SdkError::ResponseError(response) => {
            // An answer the SDK could not parse: judge it by its status, as for HEAD.
            let (class, _) = classify_answer(None, None, response.raw());
            (class, chain_text(error))
        }
        // Building the request failed: a bug or a bad setting, not the target's fault.
        SdkError::ConstructionFailure(_) => (ErrorClass::Other, chain_text(error)),
        // `SdkError` is non-exhaustive; a new kind is not one of ours.
        _ => (ErrorClass::Other, chain_text(error)),
    };
    (class, truncate(message))
}

/// Classifies a failure of the ambient credential chain and describes it in one line.
///
/// A chain with nothing to give, or one that refuses, is `invalid_credentials`; a provider
/// that could not be reached in time or at all (STS, the Pod Identity agent, IMDS) is
/// classified like any transport failure, since the keys may be fine.
pub fn classify_ambient(error: &AmbientCredentialsError) -> (ErrorClass, String) {
    let text = error.to_string();
    let class = match error {
        AmbientCredentialsError::NoProvider => ErrorClass::InvalidCredentials,
        AmbientCredentialsError::TimedOut(_) => ErrorClass::Timeout,
        // Judged by the SDK's own text: the wrapper's words ("credentials") say nothing
        // about what failed, and an I/O failure on the way to the provider is a connect
        // failure, not bad keys.
        AmbientCredentialsError::Resolve(inner) => {
            let lower = inner.to_ascii_lowercase();
            let io = [
                "io error",
                "connection refused",
                "connection reset",
                "tcp connect",
            ]
            .iter()
            .any(|needle| lower.contains(needle));
            classify_transport(inner, io)
        }
    };
    (class, truncate(text))
}

/// Classifies a transport failure (no answer from S3) from its source chain's text.
/// `io` is the SDK's verdict that an I/O error is in the chain.
pub(crate) fn classify_transport(text: &str, io: bool) -> ErrorClass {
    let lower = text.to_ascii_lowercase();
    // hyper-util: "dns error: failed to lookup address information: ...";
    // the SDK's own resolver: "failed to perform DNS lookup".
    const DNS: &[&str] = &[
        "dns error",
        "dns lookup",
        "failed to lookup address",
        "name or service not known",
        "no such host",
        "nodename nor servname",
        "temporary failure in name resolution",
    ];
    // rustls / hyper-rustls wording for handshake and certificate failures.
    const TLS: &[&str] = &[
        "invalid peer certificate",
        "certificate",
        "tls handshake",
        "handshake",
        "received fatal alert",
        "corrupt message",
        "invalidcontenttype",
        "peer is incompatible",
        "peer misbehaved",
        "rustls",
    ];
    // Identity resolution runs before sending, and its failure reaches the caller as a
    // dispatch failure ("no providers in chain provided credentials", ...).
    const CREDENTIALS: &[&str] = &["credential", "identity"];
    let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if lower.contains("timed out") || lower.contains("timeout") {
        ErrorClass::Timeout
    } else if any(DNS) {
        ErrorClass::Dns
    } else if any(TLS) {
        ErrorClass::Tls
    } else if io {
        ErrorClass::Connect
    } else if any(CREDENTIALS) {
        ErrorClass::InvalidCredentials
    } else if lower.contains("connection") || lower.contains("connect") {
        ErrorClass::Connect
    } else {
        ErrorClass::Other
    }
}

/// Classifies an answer from S3 by its error code, then by its status.
fn classify_answer(
    code: Option<&str>,
    message: Option<&str>,
    raw: &HttpResponse,
) -> (ErrorClass, String) {
    let status = raw.status().as_u16();
    let class = code
        .and_then(class_of_code)
        .unwrap_or_else(|| class_of_status(status, code.is_some()));

    let mut text = String::new();
    let mut details = Vec::new();
    // Writing to a String cannot fail, so the results are ignored.
    match code {
        // `NotFound` is the SDK's stand-in for a bodyless 404, not something S3 said.
        Some(code) if code != "NotFound" => {
            let _ = write!(text, "{code}");
            if let Some(message) = message.filter(|m| !m.is_empty()) {
                let _ = write!(text, ": {message}");
            }
            details.push(format!("HTTP {status}"));
        }
        _ => match raw.body().bytes().filter(|b| !b.is_empty()) {
            None => {
                let _ = write!(text, "HTTP {status} without an error body");
            }
            // A proxy's or load balancer's page, say: what it was, safely quoted.
            Some(body) => {
                let content_type = raw
                    .headers()
                    .get("content-type")
                    .unwrap_or("no content type");
                let _ = write!(
                    text,
                    "HTTP {status} with a body that is not an S3 error ({content_type}, {} bytes): {}",
                    body.len(),
                    quote_start(body)
                );
            }
        },
    }
    if let Some(region) = raw.headers().get("x-amz-bucket-region") {
        details.push(format!("bucket region {region}"));
    }
    if let Some(id) = raw.headers().get("x-amz-request-id") {
        details.push(format!("request id {id}"));
    }
    if !details.is_empty() {
        let _ = write!(text, " ({})", details.join(", "));
    }
    (class, text)
}

/// How much of an unexpected body an error message quotes.
const QUOTED_BODY_CHARS: usize = 120;

/// The start of `body` as a quoted, escaped string (control characters and quotes escaped,
/// invalid UTF-8 replaced), `…` marking a cut.
fn quote_start(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut quoted: String = text
        .chars()
        .take(QUOTED_BODY_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > QUOTED_BODY_CHARS {
        quoted.push('…');
    }
    format!("\"{quoted}\"")
}

/// The class an S3 error code names, if it names one.
fn class_of_code(code: &str) -> Option<ErrorClass> {
    Some(match code {
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "TooManyRequests"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "BandwidthLimitExceeded" => ErrorClass::Throttled,
        "InternalError" | "ServiceUnavailable" | "InternalFailure" => ErrorClass::ServerError,
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => ErrorClass::AccessDenied,
        // `NotFound` is what the SDK calls a bodyless 404: the HeadBucket case.
        "NoSuchBucket" | "NotFound" => ErrorClass::NoSuchBucket,
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "TokenRefreshRequired"
        | "InvalidClientTokenId"
        | "ExpiredTokenException" => ErrorClass::InvalidCredentials,
        // S3 closed a request whose body did not arrive in time.
        "RequestTimeout" => ErrorClass::Timeout,
        _ => return None,
    })
}

/// The class of a status whose code is unknown (`has_code`) or absent (HEAD).
fn class_of_status(status: u16, has_code: bool) -> ErrorClass {
    match status {
        429 => ErrorClass::Throttled,
        500..=599 => ErrorClass::ServerError,
        // With a code we do not know (`RequestTimeTooSkewed`, `NoSuchKey`, ...), the
        // status alone would claim too much.
        _ if has_code => ErrorClass::Other,
        403 => ErrorClass::AccessDenied,
        404 => ErrorClass::NoSuchBucket,
        401 => ErrorClass::InvalidCredentials,
        _ => ErrorClass::Other,
    }
}

/// An error and its sources, `outer: inner: innermost`, skipping repeats (wrappers often
/// print their source's text as their own).
pub(crate) fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let part = e.to_string();
        if !part.is_empty() && parts.last().is_none_or(|last| !last.contains(&part)) {
            parts.push(part);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn truncate(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests;
