//! How an S3 client trusts its endpoint: the SDK's default (the system roots), a storage's
//! own CA bundle (`s3.caBundle`), or no verification at all (`verifyTLS: false`), the way
//! the operator's backup Job would reach the bucket.
//!
//! The SDK's HTTPS client can take a custom trust store but has no switch to skip
//! verification, and it parses the whole system root store again for every client it
//! builds (a probe cycle builds one per target: that parse was the largest single cost of
//! a cycle). So every case goes through one small HTTP client of our own: hyper-util's
//! pooled client over hyper-rustls with a rustls configuration we build, the system roots
//! parsed once per process. Each client still has its own connection pool, so every cycle
//! connects afresh, as the backup Job does. It reports connect failures and timeouts as
//! the SDK's own client does, so errors are classified the same way whichever client
//! carried the request.

use std::error::Error as StdError;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::body::SdkBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// How a client decides whether to trust the endpoint's certificate.
#[derive(Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's roots, as the SDK's default client trusts them.
    Default,
    /// Only the CA certificates of this PEM bundle (the storage's `caBundle`).
    CaBundle(Vec<u8>),
    /// No verification (`verifyTLS: false`): encrypted, but anyone may answer.
    Insecure,
}

impl std::fmt::Debug for Trust {
    // A bundle is kilobytes of base64; its size says enough in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("Default"),
            Self::CaBundle(pem) => write!(f, "CaBundle({} bytes)", pem.len()),
            Self::Insecure => f.write_str("Insecure"),
        }
    }
}

/// Why a trust setting cannot be turned into a client.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The bundle holds no certificate that parses.
    #[error("the CA bundle holds no PEM certificate")]
    EmptyBundle,
    /// A certificate of the bundle is malformed.
    #[error("the CA bundle holds a malformed certificate: {0}")]
    BadCertificate(String),
    /// rustls refused the configuration.
    #[error("building the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The TLS configuration that trusts the system's roots, built on first use and shared
/// after: parsing the roots costs far more than a probe's requests.
fn system_roots_config() -> Result<rustls::ClientConfig, TrustError> {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "reading the system's CA certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (_, unparsable) = roots.add_parsable_certificates(loaded.certs);
    if unparsable > 0 {
        tracing::warn!(unparsable, "system CA certificates skipped");
    }
    if roots.is_empty() {
        // Every https endpoint will then fail as a TLS error, which names the cause.
        tracing::warn!("no system CA certificates found: https endpoints cannot be verified");
    }
    let config = builder()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| config).clone())
}

fn builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, TrustError> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?)
}

/// The HTTP client for `trust`, with a connection pool of its own.
///
/// # Errors
///
/// [`TrustError`] when a CA bundle is empty or malformed.
pub fn http_client(trust: &Trust, connect_timeout: Duration) -> Result<TlsClient, TrustError> {
    let config = match trust {
        Trust::Default => system_roots_config()?,
        Trust::CaBundle(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TrustError::BadCertificate(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| TrustError::BadCertificate(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(TrustError::EmptyBundle);
            }
            builder()?
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
        Trust::Insecure => {
            let builder = builder()?;
            let provider = builder.crypto_provider().clone();
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        }
    };
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    let client = Client::builder(TokioExecutor::new()).build(https);
    Ok(TlsClient {
        client,
        insecure: matches!(trust, Trust::Insecure),
    })
}

/// An SDK HTTP client with its own TLS trust (see [`http_client`]).
#[derive(Clone)]
pub struct TlsClient {
    client: Client<hyper_rustls::HttpsConnector<TcpConnector>, SdkBody>,
    insecure: bool,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl HttpClient for TlsClient {
    // The connect timeout was fixed when the client was built, from the same settings the
    // SDK passes here, so one pooled client serves every call.
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for TlsClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let response = client.request(request).await.map_err(connector_error)?;
            Response::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Maps a hyper-util failure to the SDK's kinds: a timeout, an I/O failure (connect, TLS,
/// reset) or something else.
fn connector_error(error: hyper_util::client::legacy::Error) -> ConnectorError {
    let timed_out = std::iter::successors(error.source(), |e| (*e).source()).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    if timed_out {
        ConnectorError::timeout(error.into())
    } else if error.is_connect() {
        ConnectorError::io(error.into())
    } else {
        ConnectorError::other(error.into(), None)
    }
}

/// Accepts any certificate (`verifyTLS: false`) but still checks that the server holds the
/// key it presents, as an unverified TLS connection still must.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_roots_are_parsed_once_per_process() {
        let first = system_roots_config().unwrap();
        let second = system_roots_config().unwrap();
        // A clone of one configuration shares its verifier; a rebuilt one would not.
        assert!(Arc::ptr_eq(
            &first.crypto_provider().clone(),
            second.crypto_provider()
        ));
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let err = http_client(
            &Trust::CaBundle(b"not a certificate".to_vec()),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, TrustError::EmptyBundle), "{err}");
    }

    #[test]
    fn a_malformed_certificate_is_refused() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
        let err = http_client(&Trust::CaBundle(pem), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, TrustError::BadCertificate(_)), "{err}");
    }

    #[tokio::test]
    async fn insecure_and_bundle_clients_build() {
        // Building needs a runtime for hyper-util's pool; no request is sent.
        let client = http_client(&Trust::Insecure, Duration::from_secs(1)).unwrap();
        assert!(client.insecure);
        let client = http_client(&Trust::Default, Duration::from_secs(1)).unwrap();
        assert!(!client.insecure);
    }

    #[test]
    fn debug_does_not_print_the_bundle() {
        let text = format!("{:?}", Trust::CaBundle(b"-----BEGIN".to_vec()));
        assert_eq!(text, "CaBundle(10 bytes)");
    }
}
