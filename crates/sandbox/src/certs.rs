//! Throwaway PKI for the sandbox: a CA and a serving certificate for `127.0.0.1` and
//! `localhost`, made fresh at every start. Clients trust the CA through the kubeconfig's
//! `certificate-authority-data`, exactly as with a real cluster.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Key or certificate generation failed.
    #[error("generating sandbox certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the generated pair.
    #[error("building the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A CA and a server certificate signed by it.
pub struct SandboxPki {
    /// The CA certificate, PEM (goes into kubeconfigs and trust stores).
    pub ca_pem: String,
    /// The serving certificate, PEM (for servers that read it from a file).
    pub server_cert_pem: String,
    /// The serving certificate's private key, PKCS#8 PEM.
    pub server_key_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl SandboxPki {
    /// Generates a new CA and a serving certificate for `127.0.0.1` and `localhost`.
    pub fn generate() -> Result<Self, CertError> {
        Self::generate_for("backstop sandbox", &[])
    }

    /// Like [`SandboxPki::generate`], the certificate named `common_name` and valid for
    /// `extra_names` too (a real kube-apiserver's `kubernetes.default.svc`).
    pub fn generate_for(common_name: &str, extra_names: &[&str]) -> Result<Self, CertError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "backstop sandbox CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let server_key = KeyPair::generate()?;
        let names: Vec<String> = ["127.0.0.1", "localhost"]
            .iter()
            .chain(extra_names)
            .map(|n| (*n).to_owned())
            .collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&server_key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            server_cert_pem: cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_cert: cert.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }

    /// A rustls server configuration presenting the serving certificate.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, CertError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        // An explicit provider: no reliance on a process-wide default being installed.
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ok(rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], key)?)
    }
}
