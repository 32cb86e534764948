//! Serving an axum router over TLS (rustls) with graceful shutdown. axum's own `serve` speaks
//! plain TCP only, so this is the accept loop for HTTPS listeners: TLS handshake per
//! connection, HTTP/1.1 or HTTP/2 by ALPN, and on shutdown every open connection is asked to
//! finish its in-flight requests before the future completes.

use std::sync::Arc;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service as _;

/// Serves `router` over TLS on `listener` until `shutdown`, then waits for open connections to
/// finish their in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    mut tls: rustls::ServerConfig,
    shutdown: CancellationToken,
) {
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Accept errors (e.g. too many open files) are per connection; keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                router.clone().call(request)
            });
            let connection = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
