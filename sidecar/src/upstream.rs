//! The app side of a client connection.
//!
//! A connection to the app is opened while the client's first bytes are read and carries the
//! client's first request. After that the two protocols differ:
//!
//! - **HTTP/1**: a client connection holds an app connection only while one of its requests is in
//!   flight. When the response has been passed on whole, the app connection goes back to its
//!   listener's [`Pool`], and the next request (from this client connection or another) takes the
//!   most recently released one, or opens a new one. An idle keep-alive client thus costs no app
//!   connection (nor hyper's buffers for one), and the app sees about as many connections as
//!   there are requests in flight, as behind nginx's `keepalive` pool.
//! - **HTTP/2**: a client connection's streams are multiplexed on its own app HTTP/2 connection,
//!   which is closed with it.
//!
//! Either way, a request whose client goes away before its response is complete has its app
//! connection closed, which cancels it.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, PoisonError},
    time::Duration,
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpStream, sync::Mutex, task::AbortHandle};

/// How long connecting to the app may take (on loopback it is immediate or refused; this only
/// matters for a misconfigured `SNUG_APP_ADDR` that drops packets).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the app, giving up after [`CONNECT_TIMEOUT`].
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(connected) => connected,
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

/// The most idle HTTP/1 app connections a listener keeps; one released beyond that is closed.
pub const MAX_IDLE: usize = 64;

/// An HTTP/1 connection to the app. Dropping it closes it (and cancels a request in flight).
#[derive(Debug)]
pub struct AppConnection {
    sender: http1::SendRequest<Incoming>,
    driver: AbortHandle,
}

impl Drop for AppConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A listener's idle HTTP/1 connections to the app, most recently released on top.
#[derive(Debug, Default)]
pub struct Pool {
    idle: std::sync::Mutex<Vec<AppConnection>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<AppConnection>> {
        // The vector is consistent whatever a panicking holder was doing.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently released connection that the app has not closed.
    fn take(&self) -> Option<AppConnection> {
        let mut idle = self.lock();
        while let Some(connection) = idle.pop() {
            if !connection.sender.is_closed() {
                return Some(connection);
            }
        }
        None
    }

    fn put(&self, connection: AppConnection) {
        if connection.sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
    }
}

/// An HTTP/1 app connection lent to one request: [`release`](Lease::release) it once the
/// response has been passed on whole; dropped otherwise, it closes the connection.
#[derive(Debug)]
pub struct Lease {
    connection: AppConnection,
    pool: Arc<Pool>,
}

impl Lease {
    /// Gives the connection back to its pool for the next request.
    pub fn release(self) {
        let Lease { connection, pool } = self;
        pool.put(connection);
    }
}

/// The app's response head, and for HTTP/1 the connection it came on.
#[derive(Debug)]
pub struct Sent {
    /// The response; its body is still to be read from the app connection.
    pub response: Response<Incoming>,
    /// The HTTP/1 app connection, needed until the body ends (or the upgrade it carries does).
    pub lease: Option<Lease>,
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

/// The app side of one client connection.
pub struct Upstream {
    addr: SocketAddr,
    version: Version,
    pool: Arc<Pool>,
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
    /// The app at `addr`, with the result of the connection attempt already made; HTTP/1
    /// connections are shared through `pool`.
    pub fn new(
        addr: SocketAddr,
        version: Version,
        first: io::Result<TcpStream>,
        pool: Arc<Pool>,
    ) -> Self {
        Self {
            addr,
            version,
            pool,
            state: Mutex::new(State {
                first: Some(first),
                ..State::default()
            }),
        }
    }

    /// Forwards `req` and waits for the response head. A request the app connection had closed
    /// under it (an idle keep-alive connection the app dropped) is sent once more on a new one.
    pub async fn send(&self, req: Request<Incoming>) -> Result<Sent, UpstreamError> {
        match self.version {
            Version::Http1 => self.send_http1(req).await,
            Version::Http2 => self.send_http2(req).await,
        }
    }

    async fn send_http1(&self, mut req: Request<Incoming>) -> Result<Sent, UpstreamError> {
        let mut connection = self.checkout().await?;
        let mut retried = false;
        loop {
            match connection.sender.try_send_request(req).await {
                Ok(response) => {
                    let lease = Lease {
                        connection,
                        pool: self.pool.clone(),
                    };
                    return Ok(Sent {
                        response,
                        lease: Some(lease),
                    });
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !retried => {
                        retried = true;
                        req = unsent;
                        connection = self.open_http1(connect(self.addr).await).await?;
                    }
                    _ => return Err(UpstreamError::Request(error.into_error())),
                },
            }
        }
    }

    /// An HTTP/1 connection ready for a request: the first one, else an idle one, else a new one.
    async fn checkout(&self) -> Result<AppConnection, UpstreamError> {
        let first = self.state.lock().await.first.take();
        if let Some(first) = first {
            return self.open_http1(first).await;
        }
        while let Some(mut connection) = self.pool.take() {
            if connection.sender.ready().await.is_ok() {
                return Ok(connection);
            }
        }
        self.open_http1(connect(self.addr).await).await
    }

    async fn open_http1(
        &self,
        stream: io::Result<TcpStream>,
    ) -> Result<AppConnection, UpstreamError> {
        let stream = stream.map_err(UpstreamError::connect)?;
        // Latency matters more than packet count on a local hop.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .preserve_header_case(true)
            .title_case_headers(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Handshake)?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "app connection ended");
            }
        });
        Ok(AppConnection {
            sender,
            driver: driver.abort_handle(),
        })
    }

    async fn send_http2(&self, mut req: Request<Incoming>) -> Result<Sent, UpstreamError> {
        let mut retried = false;
        loop {
            let response = {
                let mut state = self.state.lock().await;
                self.ready_http2(&mut state).await?.try_send_request(req)
            };
            match response.await {
                Ok(response) => {
                    return Ok(Sent {
                        response,
                        lease: None,
                    });
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !retried => {
                        retried = true;
                        req = unsent;
                        self.state.lock().await.h2 = None;
                    }
                    _ => return Err(UpstreamError::Request(error.into_error())),
                },
            }
        }
    }

    /// The client connection's HTTP/2 app connection, (re)connecting if there is none.
    async fn ready_http2<'s>(
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
            let _ = stream.set_nodelay(true);
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
