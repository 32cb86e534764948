//! A minimal HTTP client on hyper (the drill talks to Backstop over real HTTP, like
//! Prometheus and Alertmanager would).

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn new() -> Self {
        Self {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn get_text(
        &self,
        url: String,
    ) -> impl Future<Output = Result<Option<String>, String>> + use<> {
        let inner = self.inner.clone();
        async move {
            let uri: hyper::Uri = url
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
            let response = inner.get(uri).await.map_err(|e| e.to_string())?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(Some(String::from_utf8_lossy(&body.to_bytes()).into_owned()))
        }
    }

    pub async fn post_json(
        &self,
        url: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<String, String> {
        let request = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
        if status.is_success() {
            Ok(format!("{} {text}", status.as_u16()))
        } else {
            Err(format!("{} {text}", status.as_u16()))
        }
    }
}
