//! What a backup Job prints, in the shape of the backup image's script and `xbcloud`'s
//! messages: the runbook's `kubectl logs --tail=100` shows these lines, and Backstop's
//! watcher classifies failures from them. The failure is real: it is the error aws-sdk-s3
//! returned when the simulated Job tried the upload.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// How an upload failed, as far as the log can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadFailure {
    /// The connection was refused or could not be made.
    Unreachable(String),
    /// The request timed out.
    Timeout,
    /// S3 answered with an error code.
    Service {
        /// The S3 error code (`AccessDenied`, `NoSuchBucket`, ...).
        code: String,
        /// The S3 error message.
        message: String,
    },
    /// Anything else.
    Other(String),
}

impl UploadFailure {
    /// Classifies an SDK error.
    pub fn from_sdk<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
        err: &SdkError<E, R>,
        endpoint: &str,
    ) -> Self {
        match err {
            SdkError::TimeoutError(_) => Self::Timeout,
            SdkError::DispatchFailure(d) if d.is_timeout() => Self::Timeout,
            SdkError::DispatchFailure(d) if d.is_io() => Self::Unreachable(endpoint.to_owned()),
            SdkError::DispatchFailure(_) => Self::Unreachable(endpoint.to_owned()),
            SdkError::ServiceError(s) => Self::Service {
                code: s.err().code().unwrap_or("Unknown").to_owned(),
                message: s.err().message().unwrap_or_default().to_owned(),
            },
            other => Self::Other(format!("{other:?}")),
        }
    }

    /// The `status.error` the operator records.
    pub fn status_error(&self) -> String {
        match self {
            Self::Unreachable(endpoint) => {
                format!("upload to {endpoint} failed: connection refused")
            }
            Self::Timeout => "upload failed: operation timed out".to_owned(),
            Self::Service { code, message } => format!("upload failed: {code}: {message}"),
            Self::Other(e) => format!("upload failed: {e}"),
        }
    }

    /// The `xbcloud` lines describing the failure.
    fn lines(&self, stamp: &str, object: &str) -> Vec<String> {
        let mut lines = match self {
            Self::Unreachable(endpoint) => vec![format!(
                "{stamp} xbcloud: Failed to connect to {endpoint}: Connection refused"
            )],
            Self::Timeout => vec![format!(
                "{stamp} xbcloud: Operation timed out after 300000 milliseconds with 0 bytes received"
            )],
            Self::Service { code, message } => vec![
                format!("{stamp} xbcloud: S3 error message: {message}"),
                format!("{stamp} xbcloud: S3 error code: {code}"),
            ],
            Self::Other(e) => vec![format!("{stamp} xbcloud: {e}")],
        };
        lines.push(format!(
            "{stamp} xbcloud: error: failed to upload chunk: {object}, size: 8388608"
        ));
        lines.push(format!(
            "{stamp} xbcloud: Upload failed: backup is incomplete."
        ));
        lines.push(format!("{stamp} xbcloud: Upload failed."));
        lines
    }
}

/// The log of a backup run: the script's preamble, then success or the failure's lines.
pub fn job_log(
    stamp: &str,
    bucket: &str,
    region: &str,
    endpoint: &str,
    dir: &str,
    failure: Option<&UploadFailure>,
) -> String {
    let mut lines = vec![
        "+ LIB_PATH=/usr/lib/pxc".to_owned(),
        "+ . /usr/lib/pxc/check-version.sh".to_owned(),
        format!("{stamp} [INFO] Backup to s3://{bucket}/{dir} started"),
        format!(
            "+ xbcloud put --storage=s3 --parallel=10 --md5 --s3-endpoint={endpoint} \
             --s3-region={region} --s3-bucket={bucket} {dir}"
        ),
        format!("{stamp} xtrabackup: recognized server arguments: --datadir=/var/lib/mysql"),
        format!("{stamp} [01] Streaming ./ibdata1"),
        format!("{stamp} [01]        ...done"),
    ];
    match failure {
        None => {
            lines.push(format!(
                "{stamp} xbcloud: successfully uploaded chunk: {dir}/xtrabackup_checkpoints.00000000000000000000, size: 150"
            ));
            lines.push(format!("{stamp} xbcloud: Upload completed."));
            lines.push(format!("{stamp} completed OK!"));
            lines.push("[INFO] Backup was finished successfully".to_owned());
        }
        Some(f) => {
            lines.extend(f.lines(
                stamp,
                &format!("{dir}/xtrabackup_checkpoints.00000000000000000000"),
            ));
            lines.push(format!(
                "{stamp} [ERROR] Backup was finished unsuccessfully"
            ));
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_logs_carry_the_s3_error() {
        let f = UploadFailure::Service {
            code: "AccessDenied".into(),
            message: "Access Denied".into(),
        };
        let log = job_log(
            "241124 10:00:00",
            "b",
            "us-west-2",
            "http://s3",
            "c-full",
            Some(&f),
        );
        assert!(log.contains("xbcloud: S3 error message: Access Denied"));
        assert!(log.contains("Upload failed: backup is incomplete."));
        assert!(!log.contains("completed OK!"));
        assert_eq!(
            f.status_error(),
            "upload failed: AccessDenied: Access Denied"
        );
    }

    #[test]
    fn success_logs_end_with_completed_ok() {
        let log = job_log(
            "241124 10:00:00",
            "b",
            "us-west-2",
            "http://s3",
            "c-full",
            None,
        );
        assert!(log.contains("completed OK!"));
    }
}
