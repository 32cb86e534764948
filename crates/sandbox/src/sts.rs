//! A minimal STS for the sandbox: `GetCallerIdentity` (the runbook's
//! `aws sts get-caller-identity`) over the AWS query protocol. It accepts a request signed
//! with the sandbox's access key and refuses any other key with `InvalidClientTokenId`, as AWS
//! does. It reads the access key from the SigV4 `Authorization` header and does not check the
//! signature itself (the embedded S3 does, with the same keys).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio_util::sync::CancellationToken;

/// The account id the sandbox's identity reports.
pub const ACCOUNT: &str = "000000000000";

/// A running STS endpoint.
pub struct StsServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StsServer {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn answer(access_key: &str, headers: &HeaderMap, body: &Bytes) -> Response {
    let form = String::from_utf8_lossy(body);
    if !form
        .split('&')
        .any(|pair| pair == "Action=GetCallerIdentity")
    {
        return xml(
            StatusCode::BAD_REQUEST,
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code>\
             <Message>only GetCallerIdentity is served</Message></Error></ErrorResponse>"
                .to_owned(),
        );
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signed_by = authorization
        .split("Credential=")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    if signed_by != access_key {
        return xml(
            StatusCode::FORBIDDEN,
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
             <Type>Sender</Type><Code>InvalidClientTokenId</Code>\
             <Message>The security token included in the request is invalid.</Message>\
             </Error><RequestId>sandbox</RequestId></ErrorResponse>"
                .to_owned(),
        );
    }
    xml(
        StatusCode::OK,
        format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <GetCallerIdentityResult><Arn>arn:aws:iam::{ACCOUNT}:user/backstop-sandbox</Arn>\
             <UserId>{access_key}</UserId><Account>{ACCOUNT}</Account></GetCallerIdentityResult>\
             <ResponseMetadata><RequestId>sandbox</RequestId></ResponseMetadata>\
             </GetCallerIdentityResponse>"
        ),
    )
}

/// Starts the endpoint on 127.0.0.1 (a free port), accepting `access_key`.
///
/// # Errors
///
/// The I/O error when the port cannot be bound.
pub async fn start(access_key: &str) -> std::io::Result<StsServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let key = access_key.to_owned();
    let router = Router::new().route(
        "/",
        post(move |headers: HeaderMap, body: Bytes| {
            let key = key.clone();
            async move { answer(&key, &headers, &body) }
        }),
    );
    let (shutdown, task) = crate::serve::spawn(listener, router);
    Ok(StsServer {
        addr,
        shutdown,
        task: Some(task),
    })
}
