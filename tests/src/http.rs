//! A plain HTTP client for tests that talk to pods, optionally from a given local address
//! (so the callee sees that address as the peer).

use std::{net::IpAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::error::{Error, Result};

/// A response's status, headers and body.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body, as text.
    pub body: String,
}

/// `GET url`, from `from` when given.
pub async fn get(url: &str, from: Option<IpAddr>) -> Result<Response> {
    let fail = |reason: String| Error::Command {
        command: format!("GET {url}"),
        reason,
    };
    let uri: http::Uri = url.parse().map_err(|e| fail(format!("{e}")))?;
    let mut connector = HttpConnector::new();
    connector.set_local_address(from);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .map_err(|_| fail("no answer in 30 s".into()))?
        .map_err(|e| fail(format!("{e:?}")))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(format!("{e}")))?
        .to_bytes();
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
