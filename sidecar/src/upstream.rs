//! The app side of one client connection.
//!
//! Each client connection gets its own connection to the app (opened while the client's first
//! bytes are read, then reused): an HTTP/1 client's keep-alive connection maps to one app
//! connection, an HTTP/2 client's streams are multiplexed on one app HTTP/2 connection. The app
//! thus sees the same connection pattern it would without the sidecar, and when the client goes
//! away its app connection is closed with it, which cancels whatever was in flight.

use std::{io, net::SocketAddr};

use futures::future::Either;
use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpStream, sync::Mutex, task::AbortHandle};

/// Why a request could not be forwarded to the app.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The app refused the connection (nothing listens on its port).
    #[error("app refused the connection: {0}")]
    Refused(#[source] io::Error),
    /// The app could not be reached for another reason.
    #[error("app unreachable: {0}")]
    Unreachable(#[source] io::Error),
    /// The HTTP handshake with the app failed.
    #[error("handshake with the app failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The app closed the connection or failed before a response.
    #[error("app failed the request: {0}")]
    Request(#[source] hyper::Error),
}

impl UpstreamError {
    /// The connect error as seen by the proxy.
    pub fn connect(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::ConnectionRefused {
            UpstreamError::Refused(error)
        } else {
            UpstreamError::Unreachable(error)
        }
    }

    /// The `kind` label of `snug_proxy_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            UpstreamError::Refused(_) => "upstream_refused",
            UpstreamError::Unreachable(_) => "upstream_unreachable",
            UpstreamError::Handshake(_) => "upstream_handshake",
            UpstreamError::Request(_) => "upstream_failed",
        }
    }

    /// The value of the `x-snug-sidecar-error` header of the 502 the client gets.
    pub fn header_value(&self) -> &'static str {
        match self {
            UpstreamError::Refused(_) => "upstream-refused",
            UpstreamError::Unreachable(_) => "upstream-unreachable",
            UpstreamError::Handshake(_) => "upstream-handshake",
            UpstreamError::Request(_) => "upstream-failed",
        }
    }
}

/// Which HTTP version the app connection speaks (the client's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

enum Sender {
    Http1(http1::SendRequest<Incoming>),
    Http2(http2::SendRequest<Incoming>),
}

#[derive(Default)]
struct State {
    /// The connection opened while the client's protocol was being detected.
    first: Option<io::Result<TcpStream>>,
    sender: Option<Sender>,
    /// The task driving the app connection; aborted with this client connection.
    driver: Option<AbortHandle>,
}

/// The app connection of one client connection.
pub struct Upstream {
    addr: SocketAddr,
    version: Version,
    state: Mutex<State>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The app at `addr`, with the result of the connection attempt already made.
    pub fn new(addr: SocketAddr, version: Version, first: io::Result<TcpStream>) -> Self {
        Self {
            addr,
            version,
            state: Mutex::new(State {
                first: Some(first),
                ..State::default()
            }),
        }
    }

    /// Forwards `req` and waits for the response head. A request the app connection had closed
    /// under it (an idle keep-alive connection the app dropped) is sent once more on a new one.
    pub async fn send(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut retried = false;
        loop {
            let response = {
                let mut state = self.state.lock().await;
                match self.ready(&mut state).await? {
                    Sender::Http1(sender) => Either::Left(sender.try_send_request(req)),
                    Sender::Http2(sender) => Either::Right(sender.try_send_request(req)),
                }
            };
            match response.await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !retried => {
                        retried = true;
                        req = unsent;
                        self.state.lock().await.sender = None;
                    }
                    _ => return Err(UpstreamError::Request(error.into_error())),
                },
            }
        }
    }

    /// A sender ready for a request, connecting to the app if there is none.
    async fn ready<'s>(&self, state: &'s mut State) -> Result<&'s mut Sender, UpstreamError> {
        let alive = match &mut state.sender {
            Some(Sender::Http1(sender)) => sender.ready().await.is_ok(),
            Some(Sender::Http2(sender)) => sender.ready().await.is_ok(),
            None => false,
        };
        if !alive {
            let stream = match state.first.take() {
                Some(first) => first,
                None => TcpStream::connect(self.addr).await,
            }
            .map_err(UpstreamError::connect)?;
            // Latency matters more than packet count on a local hop.
            let _ = stream.set_nodelay(true);
            let (sender, driver) = self.handshake(stream).await?;
            if let Some(old) = state.driver.replace(driver) {
                old.abort();
            }
            state.sender = Some(sender);
        }
        // Set just above (or found alive); `ok_or` keeps the signature honest without a panic.
        state
            .sender
            .as_mut()
            .ok_or_else(|| UpstreamError::Unreachable(io::ErrorKind::NotConnected.into()))
    }

    async fn handshake(&self, stream: TcpStream) -> Result<(Sender, AbortHandle), UpstreamError> {
        let io = TokioIo::new(stream);
        match self.version {
            Version::Http1 => {
                let (sender, connection) = http1::Builder::new()
                    .preserve_header_case(true)
                    .title_case_headers(false)
                    .handshake(io)
                    .await
                    .map_err(UpstreamError::Handshake)?;
                let driver = tokio::spawn(async move {
                    if let Err(error) = connection.with_upgrades().await {
                        tracing::debug!(%error, "app connection ended");
                    }
                });
                Ok((Sender::Http1(sender), driver.abort_handle()))
            }
            Version::Http2 => {
                let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                    .adaptive_window(true)
                    .handshake(io)
                    .await
                    .map_err(UpstreamError::Handshake)?;
                let driver = tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "app connection ended");
                    }
                });
                Ok((Sender::Http2(sender), driver.abort_handle()))
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // The client connection is gone: close the app connection, cancelling anything in flight.
        if let Some(driver) = self.state.get_mut().driver.take() {
            driver.abort();
        }
    }
}
