//! Webhook authentication: a bearer token or basic-auth credentials read from files (mounted
//! Secrets), compared in constant time so the comparison leaks nothing about the secret.

use std::path::Path;

use base64::Engine as _;
use subtle::{Choice, ConstantTimeEq};

use crate::config::WebhookAuth;

/// Why the webhook's credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A credentials file could not be read.
    #[error("reading webhook credentials from {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A credentials file is empty or malformed.
    #[error("webhook credentials in {path} are invalid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The loaded credentials.
#[derive(Clone)]
pub struct Authenticator {
    bearer: Option<Vec<u8>>,
    basic: Option<Vec<u8>>,
    open: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("basic", &self.basic.as_ref().map(|_| "<redacted>"))
            .field("open", &self.open)
            .finish()
    }
}

fn read(path: &str) -> Result<Vec<u8>, AuthError> {
    let text = std::fs::read_to_string(Path::new(path)).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })?;
    // Secrets mounted from files often end with a newline that is not part of the secret.
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(AuthError::Invalid {
            path: path.to_owned(),
            reason: "the file is empty",
        });
    }
    Ok(trimmed.as_bytes().to_vec())
}

impl Authenticator {
    /// Loads the files named by `settings`.
    ///
    /// # Errors
    ///
    /// [`AuthError`] when a file cannot be read or holds nothing usable.
    pub fn load(settings: &WebhookAuth) -> Result<Self, AuthError> {
        let bearer = settings
            .bearer_token_file
            .as_deref()
            .map(read)
            .transpose()?;
        let basic = match settings.basic_auth_file.as_deref() {
            Some(path) => {
                let pair = read(path)?;
                if !pair.contains(&b':') {
                    return Err(AuthError::Invalid {
                        path: path.to_owned(),
                        reason: "expected user:password",
                    });
                }
                Some(pair)
            }
            None => None,
        };
        Ok(Self {
            bearer,
            basic,
            open: settings.allow_unauthenticated,
        })
    }

    /// Whether a request with this `Authorization` header value may pass.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        if self.open {
            return true;
        }
        let Some(header) = authorization else {
            return false;
        };
        if let (Some(expected), Some(token)) = (&self.bearer, strip_scheme(header, b"bearer"))
            && secret_matches(token, expected)
        {
            return true;
        }
        if let (Some(expected), Some(encoded)) = (&self.basic, strip_scheme(header, b"basic"))
            && let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(encoded)
            && secret_matches(&pair, expected)
        {
            return true;
        }
        false
    }
}

/// Whether `given` equals the secret `expected`, in time that depends only on the secret's
/// length. `subtle`'s slice `ct_eq` returns at once when the lengths differ, which tells a
/// caller the secret's length; here every byte of the secret is always compared (against 0
/// past the end of `given`) and the length check is folded in as one more constant-time bit.
fn secret_matches(given: &[u8], expected: &[u8]) -> bool {
    let mut equal: Choice = (given.len() as u64).ct_eq(&(expected.len() as u64));
    for (i, secret_byte) in expected.iter().enumerate() {
        let byte = given.get(i).copied().unwrap_or(0);
        equal &= byte.ct_eq(secret_byte);
    }
    bool::from(equal)
}

/// The credentials after `scheme ` (the scheme is case-insensitive, per RFC 9110).
fn strip_scheme<'a>(header: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = header.split_at_checked(scheme.len())?;
    if !head.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    Some(rest.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(dir: &std::path::Path, bearer: Option<&str>, basic: Option<&str>) -> Authenticator {
        let mut settings = WebhookAuth::default();
        if let Some(t) = bearer {
            let p = dir.join("token");
            std::fs::write(&p, format!("{t}\n")).unwrap();
            settings.bearer_token_file = Some(p.display().to_string());
        }
        if let Some(b) = basic {
            let p = dir.join("basic");
            std::fs::write(&p, b).unwrap();
            settings.basic_auth_file = Some(p.display().to_string());
        }
        Authenticator::load(&settings).unwrap()
    }

    #[test]
    fn bearer_and_basic() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(dir.path(), Some("s3cret"), Some("am:pw"));
        assert!(a.allows(Some(b"Bearer s3cret")));
        assert!(a.allows(Some(b"bearer s3cret")));
        assert!(!a.allows(Some(b"Bearer s3cre")));
        assert!(!a.allows(Some(b"Bearer s3crett")));
        assert!(!a.allows(Some(b"Bearers3cret")));
        assert!(!a.allows(None));
        let good = base64::engine::general_purpose::STANDARD.encode("am:pw");
        let bad = base64::engine::general_purpose::STANDARD.encode("am:px");
        assert!(a.allows(Some(format!("Basic {good}").as_bytes())));
        assert!(!a.allows(Some(format!("Basic {bad}").as_bytes())));
        assert!(!a.allows(Some(b"Basic !!!")));
        let only_bearer = auth(dir.path(), Some("s3cret"), None);
        assert!(!only_bearer.allows(Some(format!("Basic {good}").as_bytes())));
    }

    #[test]
    fn secret_matches_only_the_exact_secret() {
        let secret = b"s3cret-token";
        assert!(secret_matches(secret, secret));
        // Every proper prefix, every extension and every single-byte change is refused.
        for len in 0..secret.len() {
            assert!(!secret_matches(&secret[..len], secret), "prefix of {len}");
        }
        assert!(!secret_matches(b"s3cret-token\0", secret));
        assert!(!secret_matches(b"s3cret-tokenX", secret));
        for i in 0..secret.len() {
            let mut wrong = secret.to_vec();
            wrong[i] ^= 0x01;
            assert!(!secret_matches(&wrong, secret), "byte {i} changed");
        }
        // A guess padded with the zeros compared past its end is still refused.
        assert!(!secret_matches(b"", b"\0"));
        assert!(!secret_matches(b"\0", b""));
        assert!(secret_matches(b"", b""));
    }

    /// The comparison is constant-time by construction, which no timing test can show
    /// reliably: so this reads the code. Outside the tests, the secrets (`expected`) are only
    /// ever compared by `secret_matches`, which uses `subtle`'s `ct_eq` and never `==`.
    #[test]
    fn credential_comparison_is_constant_time_in_code() {
        let source = include_str!("auth.rs");
        let code = source
            .split("#[cfg(test)]")
            .next()
            .expect("the file has code before its tests");
        let body = code
            .split("fn secret_matches(")
            .nth(1)
            .and_then(|rest| rest.split("\n}\n").next())
            .expect("secret_matches is defined");
        assert!(body.contains(".ct_eq("), "secret_matches must use subtle");
        for forbidden in ["==", "!=", ".eq(", "starts_with", "cmp("] {
            assert!(
                !body.contains(forbidden),
                "secret_matches uses {forbidden}: a short-circuiting comparison"
            );
        }
        for line in code.lines().filter(|l| l.contains("expected")) {
            for forbidden in ["==", "!=", ".eq(", "starts_with", "cmp("] {
                assert!(
                    !line.contains(forbidden),
                    "a secret is compared with {forbidden}: {line}"
                );
            }
        }
        assert_eq!(
            code.matches("secret_matches(").count(),
            3,
            "the bearer token and the basic pair both go through secret_matches"
        );
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = Authenticator::load(&WebhookAuth {
            bearer_token_file: Some(empty.display().to_string()),
            ..WebhookAuth::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = Authenticator::load(&WebhookAuth {
            basic_auth_file: Some(empty.display().to_string()),
            ..WebhookAuth::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = Authenticator::load(&WebhookAuth {
            bearer_token_file: Some("/nonexistent/token".into()),
            ..WebhookAuth::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/token"), "{e}");
    }
}
