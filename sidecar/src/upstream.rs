//! The app side of a client connection.
//!
//! A connection to the app is opened while the client's first bytes are read and carries the
//! client's first request. After that the two protocols differ:
//!
//! - **HTTP/1**: a client connection holds an app connection only while one of its requests is in
//!   flight. When the response has been passed on whole, the app connection goes back to its
//!   listener's [`Pool`], and the next request (from this client connection or another) takes the
//!   most recently released one, or opens a new one. An idle keep-alive client thus costs no app
//!   connection (nor a read buffer for one), and the app sees about as many connections as
//!   there are requests in flight, as behind nginx's `keepalive` pool.
//! - **HTTP/2**: a client connection's streams are multiplexed on its own app HTTP/2 connection,
//!   which is closed with it.
//!
//! Either way, a request whose client goes away before its response is complete has its app
//! connection closed, which cancels it.

use std::{io, net::SocketAddr, sync::PoisonError, time::Duration};

use bytes::BytesMut;
use http::{Request, Response};
use hyper::{body::Incoming, client::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpStream, sync::Mutex, task::AbortHandle};

/// How long connecting to the app may take (on loopback it is immediate or refused; this only
/// matters for a misconfigured `SNUG_APP_ADDR` that drops packets).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the app, giving up after [`CONNECT_TIMEOUT`]. Nagle's algorithm is off on the
/// connection: latency matters more than packet count on a local hop.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connecting to the app timed out",
        )),
    }
}

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
    /// The app closed the connection or failed before a complete response head.
    #[error("app failed the request: {0}")]
    Request(#[source] Box<dyn std::error::Error + Send + Sync>),
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

    /// The text body of the 502 the client gets.
    pub fn body(&self) -> String {
        format!("snug-sidecar: {self}\n")
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

/// The most idle HTTP/1 app connections a listener keeps per worker thread; one released beyond
/// that is closed.
pub const MAX_IDLE: usize = 64;

/// An idle HTTP/1 connection to the app, with its read buffer.
#[derive(Debug)]
pub struct Idle {
    /// The connection.
    pub stream: TcpStream,
    /// Its read buffer (empty: nothing unread came after the last response).
    pub buf: BytesMut,
}

/// A listener's idle HTTP/1 connections to the app, most recently released on top.
#[derive(Debug, Default)]
pub struct Pool {
    idle: std::sync::Mutex<Vec<Idle>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The vector is consistent whatever a panicking holder was doing.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently released connection that the app has not closed, as far as the
    /// sidecar has seen (a close still in flight is caught when the request is sent).
    pub fn take(&self) -> Option<Idle> {
        loop {
            let idle = self.lock().pop()?;
            let mut probe = [0u8; 1];
            // Readable while idle means closed (or talking out of turn): either way, not reusable.
            if let Err(error) = idle.stream.try_read(&mut probe)
                && error.kind() == io::ErrorKind::WouldBlock
            {
                return Some(idle);
            }
        }
    }

    /// Keeps `idle` for the next request, unless enough are kept already.
    pub fn put(&self, idle: Idle) {
        let mut pool = self.lock();
        if pool.len() < MAX_IDLE {
            pool.push(idle);
        }
    }
}

#[derive(Default)]
struct State {
    /// The connection opened while the client's protocol was being detected.
    first: Option<io::Result<TcpStream>>,
    /// The HTTP/2 app connection.
    h2: Option<http2::SendRequest<Incoming>>,
    /// The task driving the HTTP/2 app connection; aborted with this client connection.
    driver: Option<AbortHandle>,
}

/// The app side of one HTTP/2 client connection: its own HTTP/2 connection to the app.
pub struct Upstream {
    addr: SocketAddr,
    state: Mutex<State>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The app at `addr`, with the result of the connection attempt already made.
    pub fn new(addr: SocketAddr, first: io::Result<TcpStream>) -> Self {
        Self {
            addr,
            state: Mutex::new(State {
                first: Some(first),
                ..State::default()
            }),
        }
    }

    /// Forwards `req` and waits for the response head. A request the app connection had closed
    /// under it is sent once more on a new connection.
    pub async fn send(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut retried = false;
        loop {
            let response = {
                let mut state = self.state.lock().await;
                self.ready(&mut state).await?.try_send_request(req)
            };
            match response.await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !retried => {
                        retried = true;
                        req = unsent;
                        self.state.lock().await.h2 = None;
                    }
                    _ => return Err(UpstreamError::Request(error.into_error().into())),
                },
            }
        }
    }

    /// The client connection's HTTP/2 app connection, (re)connecting if there is none.
    async fn ready<'s>(
        &self,
        state: &'s mut State,
    ) -> Result<&'s mut http2::SendRequest<Incoming>, UpstreamError> {
        let alive = match &mut state.h2 {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !alive {
            let stream = match state.first.take() {
                Some(first) => first,
                None => connect(self.addr).await,
            }
            .map_err(UpstreamError::connect)?;
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .adaptive_window(true)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(UpstreamError::Handshake)?;
            let driver = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "app connection ended");
                }
            });
            if let Some(old) = state.driver.replace(driver.abort_handle()) {
                old.abort();
            }
            state.h2 = Some(sender);
        }
        // Set just above (or found alive); `ok_or` keeps the signature honest without a panic.
        state
            .h2
            .as_mut()
            .ok_or_else(|| UpstreamError::Unreachable(io::ErrorKind::NotConnected.into()))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // The client connection is gone: close its HTTP/2 app connection, cancelling its streams.
        if let Some(driver) = self.state.get_mut().driver.take() {
            driver.abort();
        }
    }
}
