//! The hooks through which a region's s3s service counts requests and injects request faults.
//!
//! s3s calls an [`S3Access`] check for every request after verifying its signature and
//! resolving its operation but before reading its body or touching storage. That is the
//! one place where the bucket and the operation name are both known and nothing has
//! happened yet, so request faults and request accounting live there rather than in a
//! wrapper around all of s3s-fs's operations. The [`S3Auth`] here only makes unknown
//! access keys fail the way AWS fails them.

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey, SimpleAuth};
use s3s::{S3Result, s3_error};

use super::aws_error;
use super::faults::Faults;
use super::requests::Requests;

/// Per-region access check: accounting, region check, request faults, then s3s's default.
pub(crate) struct RegionAccess {
    pub(crate) region: String,
    pub(crate) faults: Faults,
    pub(crate) requests: Requests,
}

#[async_trait::async_trait]
impl S3Access for RegionAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let bucket = cx.s3_path().get_bucket_name();
        let operation = cx.s3_op().name();
        self.requests.record(&self.region, bucket, operation);

        let verdict = self.faults.judge(&self.region, bucket, operation);
        if !verdict.latency.is_zero() {
            tokio::time::sleep(verdict.latency).await;
        }
        if let Some(error) = verdict.error.and_then(aws_error::for_fault) {
            return Err(error);
        }

        // A client that fails over to another endpoint but keeps signing for the old
        // region must fail here as it fails against AWS.
        if let Some(signed_for) = signed_region(cx.headers())
            && signed_for != self.region
        {
            return Err(aws_error::wrong_region(signed_for, &self.region));
        }

        // s3s's default check: anonymous requests are denied.
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        }
        Ok(())
    }
}

/// The region in a SigV4 `Authorization` header's credential scope.
fn signed_region(headers: &hyper::HeaderMap) -> Option<&str> {
    let authorization = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (_, rest) = authorization.split_once("Credential=")?;
    let scope = rest.split([',', ' ']).next()?;
    // access-key/date/region/service/aws4_request
    scope.split('/').nth(2)
}

/// The sandbox's credentials: one access key, rejected otherwise as AWS rejects it.
pub(crate) struct SandboxAuth {
    inner: SimpleAuth,
}

impl SandboxAuth {
    /// Accepts exactly `access_key` with `secret_key`.
    pub(crate) fn new(access_key: &str, secret_key: &str) -> Self {
        Self {
            inner: SimpleAuth::from_single(access_key, secret_key),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for SandboxAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        // SimpleAuth answers `NotSignedUp`; AWS answers `InvalidAccessKeyId`.
        self.inner
            .lookup(access_key)
            .cloned()
            .ok_or_else(aws_error::invalid_access_key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_region_reads_the_credential_scope() {
        let mut headers = hyper::HeaderMap::new();
        assert_eq!(signed_region(&headers), None);
        headers.insert(
            hyper::header::AUTHORIZATION,
            hyper::header::HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3/aws4_request, \
                 SignedHeaders=host, Signature=abc",
            ),
        );
        assert_eq!(signed_region(&headers), Some("us-east-1"));
    }
}
