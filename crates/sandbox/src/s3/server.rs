//! One region's endpoint: the accept loop, its connections, and the connection faults.
//!
//! Each region runs one task that owns its listener and, in a `JoinSet`, every connection
//! it accepted. Owning both in one place is what makes connection faults exact: on
//! `Refuse` the task drops the listener (new connects get `ECONNREFUSED`) and aborts and
//! awaits every connection task (pooled keep-alive connections close rather than serve a
//! stale success) before it acknowledges the rule, and when the rule is lifted it binds
//! the same port again. `Hang` is decided per request in front of s3s, so requests on
//! connections that were already open hang too. Aborting the task (on drop) drops the
//! `JoinSet`, which aborts every connection with it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use s3s::service::S3Service;
use s3s::{HttpError, HttpResponse};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::faults::Faults;

/// How long a region that could not take its port back waits before trying again.
const REBIND_RETRY: Duration = Duration::from_millis(100);

/// Binds a listener on `addr`, reusing the address so a port just released can be taken
/// back while its old connections linger in `TIME_WAIT`.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Runs `region`'s endpoint on `listener` until `stop` is cancelled.
pub(crate) fn run(
    region: Arc<str>,
    listener: TcpListener,
    service: S3Service,
    faults: Faults,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    // Acknowledges the stop however the task ends (return, abort or panic), so a rule
    // change never waits for a region that is gone. It is made here, not inside the
    // future, because a task aborted before its first poll never runs its body.
    let stopped = StoppedGuard {
        region: region.clone(),
        faults: faults.clone(),
    };
    async move {
        let _stopped = stopped;
        accept_loop(region, listener, service, faults, stop).await;
    }
}

/// The endpoint's accept loop, applying connection faults as rules change.
async fn accept_loop(
    region: Arc<str>,
    listener: TcpListener,
    service: S3Service,
    faults: Faults,
    stop: CancellationToken,
) {
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::error!(%region, %error, "sandbox S3 listener has no address");
            return;
        }
    };
    let service = RegionService {
        region: region.clone(),
        s3: service,
        faults: faults.clone(),
    };
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    let mut changes = faults.subscribe();

    loop {
        let generation = *changes.borrow_and_update();
        let refused = faults.is_refused(&region);
        let mut bind_error = None;
        if refused {
            if listener.take().is_some() {
                tracing::info!(%region, %addr, "sandbox S3 endpoint refusing connections");
            }
            connections.shutdown().await;
        } else if listener.is_none() {
            match bind(addr) {
                Ok(bound) => {
                    tracing::info!(%region, %addr, "sandbox S3 endpoint accepting again");
                    listener = Some(bound);
                }
                Err(error) => {
                    tracing::warn!(%region, %addr, %error, "sandbox S3 endpoint cannot rebind");
                    bind_error = Some(error.to_string());
                }
            }
        }
        faults.acknowledge(&region, generation, bind_error.clone());

        tokio::select! {
            () = stop.cancelled() => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            accepted = accept(listener.as_ref()) => match accepted {
                Ok(stream) => {
                    connections.spawn(serve(stream, service.clone()));
                }
                Err(error) => {
                    tracing::debug!(%region, %error, "sandbox S3 accept failed");
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = tokio::time::sleep(REBIND_RETRY), if bind_error.is_some() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Accepts one connection, or waits forever while there is no listener.
async fn accept(listener: Option<&TcpListener>) -> io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// Serves HTTP/1.1 with keep-alive on one connection; S3 clients speak nothing else
/// over plain HTTP.
async fn serve(stream: TcpStream, service: RegionService) {
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = connection {
        tracing::debug!(%error, "sandbox S3 connection ended");
    }
}

/// s3s's service behind the region's `Hang` check.
#[derive(Clone)]
struct RegionService {
    region: Arc<str>,
    s3: S3Service,
    faults: Faults,
}

impl hyper::service::Service<hyper::Request<Incoming>> for RegionService {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if this.faults.is_hung(&this.region, true) {
                this.wait_until_released().await;
                // An error makes hyper close the connection without an answer, as a
                // frozen server's connection would eventually be reset.
                return Err(HttpError::new(Box::new(io::Error::other(
                    "hang released without an answer",
                ))));
            }
            hyper::service::Service::call(&this.s3, request).await
        })
    }
}

impl RegionService {
    /// Waits until no `Hang` rule applies to the region any more.
    async fn wait_until_released(&self) {
        let mut changes = self.faults.subscribe();
        while self.faults.is_hung(&self.region, false) {
            if changes.changed().await.is_err() {
                // The switchboard is gone, so nothing can release the request.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Tells the switchboard a region stopped when its task ends in any way.
struct StoppedGuard {
    region: Arc<str>,
    faults: Faults,
}

impl Drop for StoppedGuard {
    fn drop(&mut self) {
        self.faults.acknowledge_stopped(&self.region);
    }
}
