//! HTTPS serving (`server.tls`): the endpoints over TLS, client certificates required when a
//! client CA is configured, and clear errors for unusable files.

use backstop::config::{self, Config, TlsConfig};
use backstop::runtime::app::App;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_util::sync::CancellationToken;

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_pem: String,
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["alertmanager".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), server.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        client_pem: format!("{}{}", client.pem(), client_key.serialize_pem()),
        dir,
    }
}

fn config(pki: &Pki, client_ca: bool) -> Config {
    let mut c = config::load_str("responder:\n  auth:\n    allow_unauthenticated: true\n").unwrap();
    c.server.listen = "127.0.0.1:0".to_owned();
    let path = |f: &str| pki.dir.path().join(f).display().to_string();
    c.server.tls = Some(TlsConfig {
        cert_file: path("tls.crt"),
        key_file: path("tls.key"),
        client_ca_file: client_ca.then(|| path("ca.crt")),
    });
    c
}

fn client(pki: &Pki, identity: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap());
    if identity {
        b = b.identity(reqwest::Identity::from_pem(pki.client_pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn serve(
    config: Config,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), backstop::Error>>,
) {
    let app = App::bind(config).await.unwrap();
    let port = app.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.serve(stop.clone()));
    (format!("127.0.0.1:{port}"), stop, task)
}

#[tokio::test]
async fn serves_https_and_requires_client_certificates_when_configured() {
    backstop::install_crypto_provider();
    let pki = pki();
    let (addr, stop, task) = serve(config(&pki, false)).await;
    let ok = client(&pki, false)
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "plain HTTP is not served"
    );
    stop.cancel();
    task.await.unwrap().unwrap();

    let (addr, stop, task) = serve(config(&pki, true)).await;
    assert!(
        client(&pki, false)
            .get(format!("https://{addr}/healthz"))
            .send()
            .await
            .is_err(),
        "no client certificate, no connection"
    );
    let ok = client(&pki, true)
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn unusable_files_fail_at_start_naming_the_file() {
    backstop::install_crypto_provider();
    let pki = pki();
    let mut c = config(&pki, false);
    c.server.tls.as_mut().unwrap().key_file = "/nonexistent/tls.key".into();
    let e = App::bind(c).await.err().unwrap().to_string();
    assert!(
        e.contains("server.tls.key_file: /nonexistent/tls.key"),
        "{e}"
    );
    let mut c = config(&pki, true);
    let empty = pki.dir.path().join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    c.server.tls.as_mut().unwrap().client_ca_file = Some(empty.display().to_string());
    let e = App::bind(c).await.err().unwrap().to_string();
    assert!(
        e.contains("client_ca_file") && e.contains("no PEM certificate"),
        "{e}"
    );
}
