//! The accept loop serving an axum router, over TLS (rustls) or plain TCP, with graceful
//! shutdown. axum's own `serve` neither speaks TLS nor bounds how long a client may take
//! to send its request headers, so a slowloris client could hold connections open forever;
//! here the TLS handshake and the request headers each get a deadline, HTTP/1.1 or HTTP/2
//! is picked by ALPN (TLS) or preface (plain), and on shutdown every open connection is
//! asked to finish its in-flight requests before the future completes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service as _;

/// How long a client may take to complete the TLS handshake, and to send a request's
/// headers, before its connection is closed. Generous for any real client.
pub const HANDSHAKE_AND_HEADERS: Duration = Duration::from_secs(10);

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
    accept_loop(
        listener,
        router,
        Some(acceptor),
        HANDSHAKE_AND_HEADERS,
        shutdown,
    )
    .await;
}

/// Serves `router` over plain TCP on `listener` until `shutdown`, closing connections whose
/// request headers take longer than `header_timeout`; then waits for open connections to
/// finish their in-flight requests.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    accept_loop(listener, router, None, header_timeout, shutdown).await;
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    deadline: Duration,
    shutdown: CancellationToken,
) {
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
        let tls = tls.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                router.clone().call(request)
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(deadline);
            let result = match tls {
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
                None => {
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
