//! Why a backup failed, read from its Job pod's log (the runbook's `kubectl logs --tail=100`)
//! and the backup's `status.error`. The first matching rule wins, most specific first, so a
//! log that mentions both a refused connection and a timeout is `s3_unreachable`.

/// A bounded set of failure causes (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureCause {
    /// S3 refused access (403 AccessDenied).
    S3AccessDenied,
    /// The bucket does not exist (404 NoSuchBucket).
    S3NoSuchBucket,
    /// The keys are wrong, unknown or expired.
    S3Credentials,
    /// S3 could not be reached (refused, DNS, TLS).
    S3Unreachable,
    /// An operation timed out.
    Timeout,
    /// Anything else.
    Other,
}

impl FailureCause {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3AccessDenied => "s3_access_denied",
            Self::S3NoSuchBucket => "s3_no_such_bucket",
            Self::S3Credentials => "s3_credentials",
            Self::S3Unreachable => "s3_unreachable",
            Self::Timeout => "timeout",
            Self::Other => "other",
        }
    }

    /// Every cause, for pre-registering series.
    pub const ALL: [Self; 6] = [
        Self::S3AccessDenied,
        Self::S3NoSuchBucket,
        Self::S3Credentials,
        Self::S3Unreachable,
        Self::Timeout,
        Self::Other,
    ];
}

const RULES: &[(FailureCause, &[&str])] = &[
    (
        FailureCause::S3Credentials,
        &[
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "expiredtoken",
            "invalidtoken",
            "the aws access key id you provided does not exist",
            "request signature we calculated does not match",
        ],
    ),
    (
        FailureCause::S3AccessDenied,
        &["accessdenied", "access denied", "403 forbidden"],
    ),
    (
        FailureCause::S3NoSuchBucket,
        &["nosuchbucket", "the specified bucket does not exist"],
    ),
    (
        FailureCause::S3Unreachable,
        &[
            "connection refused",
            "failed to connect",
            "could not resolve host",
            "couldn't resolve host",
            "name or service not known",
            "no route to host",
            "ssl connect error",
            "certificate verify failed",
        ],
    ),
    (
        FailureCause::Timeout,
        &[
            "timed out",
            "timeout",
            "deadline exceeded",
            "deadlineexceeded",
        ],
    ),
];

/// Classifies a failure from the pod log and `status.error`.
pub fn classify(log: &str, status_error: Option<&str>) -> FailureCause {
    let text = format!("{}\n{}", status_error.unwrap_or_default(), log).to_lowercase();
    RULES
        .iter()
        .find(|(_, needles)| needles.iter().any(|n| text.contains(n)))
        .map_or(FailureCause::Other, |(cause, _)| *cause)
}

/// The last `n` lines of `log`, for Events and structured logs.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xbcloud_failures_are_classified() {
        let cases = [
            (
                "xbcloud: S3 error message: Access Denied",
                FailureCause::S3AccessDenied,
            ),
            (
                "xbcloud: S3 error code: NoSuchBucket",
                FailureCause::S3NoSuchBucket,
            ),
            (
                "xbcloud: S3 error code: InvalidAccessKeyId",
                FailureCause::S3Credentials,
            ),
            (
                "xbcloud: S3 error code: SignatureDoesNotMatch",
                FailureCause::S3Credentials,
            ),
            (
                "xbcloud: Failed to connect to s3.amazonaws.com port 443: Connection refused",
                FailureCause::S3Unreachable,
            ),
            (
                "curl: (6) Could not resolve host: s3.example",
                FailureCause::S3Unreachable,
            ),
            (
                "xbcloud: Operation timed out after 300000 milliseconds",
                FailureCause::Timeout,
            ),
            (
                "xtrabackup: Error: cannot open ./ibdata1",
                FailureCause::Other,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(classify(line, None), expected, "{line}");
        }
    }

    #[test]
    fn status_error_counts_too_and_credentials_beat_access_denied() {
        assert_eq!(
            classify("", Some("upload failed: AccessDenied: Access Denied")),
            FailureCause::S3AccessDenied
        );
        // An InvalidAccessKeyId answer is a 403 too; the specific cause wins.
        assert_eq!(
            classify("403 Forbidden\nInvalidAccessKeyId", None),
            FailureCause::S3Credentials
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
