//! S3 clients built from a storage's settings, the way the operator's backup Job would reach
//! the bucket: its region, endpoint, addressing style and credentials. SDK retries are
//! disabled and every operation has its own timeout, because a retry hides exactly the
//! failure Backstop exists to measure.

use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, ProvideCredentials as _, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, StalledStreamProtectionConfig, retry::RetryConfig,
    timeout::TimeoutConfig,
};

/// Where a bucket is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// AWS region (signing region for S3-compatible stores).
    pub region: String,
    /// S3-compatible endpoint URL; `None` for AWS.
    pub endpoint_url: Option<String>,
    /// Path-style addressing.
    pub force_path_style: bool,
}

impl Endpoint {
    /// Where a PXC storage's bucket is reached (the operator's default region is `us-east-1`).
    pub fn of_storage(s3: &crate::pxc::S3Storage) -> Self {
        Self {
            region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
            endpoint_url: s3.endpoint_url.clone(),
            force_path_style: s3.force_path_style.unwrap_or(false),
        }
    }
}

/// Static credentials, as read from a storage's `credentialsSecret`.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
}

impl StaticCredentials {
    /// The SDK's form of these credentials (no session token, no expiry).
    pub fn to_sdk(&self) -> Credentials {
        Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            None,
            None,
            "backstop-static",
        )
    }
}

impl std::fmt::Debug for StaticCredentials {
    // Never print the secret, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Timeouts of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (TCP + TLS).
    pub connect: Duration,
    /// A whole operation.
    pub operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            operation: Duration::from_secs(5),
        }
    }
}

/// A client for `endpoint` with static credentials, no retries, and `timeouts`.
pub fn client(
    endpoint: &Endpoint,
    credentials: &StaticCredentials,
    timeouts: Timeouts,
) -> aws_sdk_s3::Client {
    finish(
        builder(endpoint, credentials.to_sdk()),
        endpoint,
        timeouts,
        None,
    )
}

/// A client for `endpoint` signing with `credentials` (a Secret's, or what the ambient chain
/// gave this cycle, see [`resolve_ambient`]), reaching the endpoint through `http`, built for
/// the storage's TLS settings (see [`crate::s3::tls`]).
pub fn client_with(
    endpoint: &Endpoint,
    credentials: Credentials,
    timeouts: Timeouts,
    http: crate::s3::tls::TlsClient,
) -> aws_sdk_s3::Client {
    finish(
        builder(endpoint, credentials),
        endpoint,
        timeouts,
        Some(http),
    )
}

/// Why the ambient AWS credential chain gave no credentials.
#[derive(Debug, thiserror::Error)]
pub enum AmbientCredentialsError {
    /// Nothing in the chain is configured to give credentials.
    #[error("no ambient AWS credentials provider is configured")]
    NoProvider,
    /// The chain was asked and failed; the message is the SDK's whole error chain.
    #[error("resolving ambient AWS credentials: {0}")]
    Resolve(String),
    /// The chain gave no answer in time (it runs outside the SDK's operation timeout).
    #[error("resolving ambient AWS credentials: no answer within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
}

/// Asks the ambient AWS credential chain (environment, web identity / IRSA, container / EKS
/// Pod Identity, profile, IMDS) for credentials, afresh, as the backup Job's uploader does
/// when it starts.
///
/// The prober calls this once per cycle, before any timed request, and signs every request
/// of the cycle (S3 and STS) with the result. Left to the SDK, the chain would run inside
/// the first request's `send()`, so HeadBucket's recorded latency would include an STS
/// round trip, and the STS client would run the chain a second time. `timeout` bounds the
/// whole lookup.
pub async fn resolve_ambient(
    region: &str,
    timeout: Duration,
) -> Result<Credentials, AmbientCredentialsError> {
    let lookup = async {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .load()
            .await;
        let provider = shared
            .credentials_provider()
            .ok_or(AmbientCredentialsError::NoProvider)?;
        provider.provide_credentials().await.map_err(|e| {
            AmbientCredentialsError::Resolve(
                aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
            )
        })
    };
    tokio::time::timeout(timeout, lookup)
        .await
        .unwrap_or(Err(AmbientCredentialsError::TimedOut(timeout)))
}

fn builder(endpoint: &Endpoint, credentials: Credentials) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(endpoint.region.clone()))
        .credentials_provider(credentials)
}

/// What every Backstop S3 client shares: the endpoint and addressing style, no retries (a
/// retry hides the failure being measured), and explicit timeouts.
fn finish(
    builder: aws_sdk_s3::config::Builder,
    endpoint: &Endpoint,
    timeouts: Timeouts,
    http: Option<crate::s3::tls::TlsClient>,
) -> aws_sdk_s3::Client {
    let mut builder = builder
        .force_path_style(endpoint.force_path_style)
        // Checksums only where S3 demands them, as before the SDK's 2025 default: many
        // S3-compatible stores reject the flexible-checksum trailers, which would read as an
        // outage the backup Job (xbcloud sends no such trailers) does not have. The canary
        // compares what it reads with what it wrote, byte for byte, anyway.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // The operation timeout bounds a stalled transfer already; the SDK's own stall
        // detector would only add a second, looser clock around every body.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .operation_timeout(timeouts.operation)
                .build(),
        );
    if let Some(url) = &endpoint.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    if let Some(http) = http {
        builder = builder.http_client(http);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// An STS client signing with the same `credentials` as the cycle's S3 client. Same rules
/// as the S3 clients: no retries, explicit timeouts, requests through `http`.
/// `endpoint_url` overrides AWS's regional STS endpoint.
pub fn sts_client(
    region: &str,
    endpoint_url: Option<&str>,
    credentials: Credentials,
    timeouts: Timeouts,
    http: crate::s3::tls::TlsClient,
) -> aws_sdk_sts::Client {
    let mut builder = aws_sdk_sts::config::Builder::new()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_sts::config::timeout::TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .operation_timeout(timeouts.operation)
                .build(),
        );
    if let Some(url) = endpoint_url {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_sts::Client::from_conf(builder.http_client(http).build())
}

/// Reads `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` from a Secret's data.
pub fn credentials_from_secret(
    secret: &k8s_openapi::api::core::v1::Secret,
) -> Option<StaticCredentials> {
    let data = secret.data.as_ref()?;
    let get = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|s| s.trim().to_owned())
    };
    Some(StaticCredentials {
        access_key_id: get("AWS_ACCESS_KEY_ID")?,
        secret_access_key: get("AWS_SECRET_ACCESS_KEY")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret() {
        let c = StaticCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG".into(),
        };
        let text = format!("{c:?}");
        assert!(text.contains("AKIDEXAMPLE"));
        assert!(!text.contains("wJalr"));
    }

    #[test]
    fn secrets_without_both_keys_give_no_credentials() {
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "s"},
                "data": {"AWS_ACCESS_KEY_ID": "QUtJRA=="},
            }))
            .unwrap();
        assert!(credentials_from_secret(&secret).is_none());
    }
}
