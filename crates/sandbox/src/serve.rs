//! Serving a small axum router on a loopback listener until told to stop: what the sandbox's
//! helper endpoints (fault control, STS, the AWS Health API) share.

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` in a task; cancelling the returned token stops it
/// gracefully, and the task ends once it has.
pub fn spawn(
    listener: TcpListener,
    router: Router,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    (shutdown, task)
}
