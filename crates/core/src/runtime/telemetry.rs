//! Logging setup: tracing-subscriber with text or JSON output and an env-filter.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with span fields (namespace, cluster, run id) included.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter expression did not parse.
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        /// The expression.
        filter: String,
        /// The parse error.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Log targets whose debug output carries credentials, capped at `info` unless the filter
/// names them itself: the AWS SDK's orchestrator logs its whole config bag, S3 keys included
/// (the access key id in clear), at debug; the sandbox's S3 server logs each request's
/// `Authorization` header. So `--log debug` stays safe to paste into an issue.
pub const SECRET_BEARING_TARGETS: &[&str] = &["aws_smithy_runtime", "aws_sigv4", "s3s", "s3s_fs"];

/// `filter` with [`SECRET_BEARING_TARGETS`] capped at `info`, except those it names.
pub fn with_secret_caps(filter: &str) -> String {
    let mut full = filter.trim().to_owned();
    for target in SECRET_BEARING_TARGETS {
        let named = filter
            .split(',')
            .any(|d| d.trim().split(['=', '[']).next() == Some(*target));
        if !named {
            if !full.is_empty() {
                full.push(',');
            }
            full.push_str(target);
            full.push_str("=info");
        }
    }
    full
}

/// Installs the global subscriber writing to stderr. A second call is a no-op.
pub fn init(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    let env_filter =
        EnvFilter::try_new(with_secret_caps(filter)).map_err(|source| TelemetryError::Filter {
            filter: filter.to_owned(),
            source,
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    // try_init fails only when a subscriber is already installed (tests, embedding).
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bearing_targets_are_capped_unless_named() {
        let full = with_secret_caps("debug");
        assert_eq!(
            full,
            "debug,aws_smithy_runtime=info,aws_sigv4=info,s3s=info,s3s_fs=info"
        );
        assert!(EnvFilter::try_new(&full).is_ok());
        // Named by the user: their level stands.
        let full = with_secret_caps("info,s3s=trace, aws_sigv4[span]=debug");
        assert!(!full.contains("s3s=info"), "{full}");
        assert!(!full.contains("aws_sigv4=info"), "{full}");
        assert!(full.contains("s3s_fs=info"), "{full}");
        assert_eq!(
            with_secret_caps(""),
            "aws_smithy_runtime=info,aws_sigv4=info,s3s=info,s3s_fs=info"
        );
    }
}
