//! One inbound port: accept under the connection cap, recognise the protocol, hand the
//! connection to the HTTP or TCP proxy.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tracing::{Instrument, debug, info_span, warn};

use crate::{
    detect::{Protocol, decide},
    h1, http,
    lifecycle::Lifecycle,
    metrics::{Metrics, PortMetrics},
    peers::PeerTraffic,
    sensor::Sensor,
    tcp, upstream,
    workers::{self, Workers},
};

/// What a listener's connections share.
#[derive(Debug)]
pub struct Listener {
    /// The series of this inbound port.
    pub port: Arc<PortMetrics>,
    /// Where the app listens.
    pub app: SocketAddr,
    /// Idle HTTP/1 connections to the app, one pool per worker, shared by the client
    /// connections that worker serves.
    pub pools: Box<[upstream::Pool]>,
    /// Time a client has to make its protocol known and send a request head.
    pub header_timeout: Duration,
    /// Add `X-Forwarded-For`.
    pub x_forwarded_for: bool,
    /// Shutdown signals and task tracking.
    pub lifecycle: Lifecycle,
    /// All metrics (peers are per sidecar, not per port).
    pub metrics: Arc<Metrics>,
}

impl Listener {
    /// The idle app connections of the worker running the caller.
    pub fn pool(&self) -> &upstream::Pool {
        &self.pools[workers::current() % self.pools.len()]
    }
}

/// One accepted client connection, as the proxies see it.
#[derive(Debug)]
pub struct Client {
    /// The listener it came in on.
    pub listener: Arc<Listener>,
    /// The client's IP.
    pub ip: IpAddr,
    /// The client IP's counters.
    pub traffic: Arc<PeerTraffic>,
}

/// Accepts connections until draining starts. At the connection cap it stops accepting (new
/// clients wait in the kernel's backlog) until a connection closes.
pub async fn accept_loop(
    tcp: TcpListener,
    listener: Arc<Listener>,
    permits: Arc<Semaphore>,
    workers: Arc<Workers>,
) {
    let lifecycle = listener.lifecycle.clone();
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                listener.port.proxy_error("connection_limit");
                warn!(
                    port = listener.port.port(),
                    "connection limit reached, not accepting"
                );
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                    () = lifecycle.draining.cancelled() => return,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            () = lifecycle.draining.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Handed over as a plain socket, to be registered with the worker's event loop.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(error) => {
                        debug!(%error, %peer, "accepted connection lost before its hand-over");
                        continue;
                    }
                };
                let span = info_span!("conn", port = listener.port.port(), %peer);
                let listener = listener.clone();
                let task = async move {
                    match TcpStream::from_std(stream) {
                        Ok(stream) => serve(stream, peer, listener, permit).await,
                        Err(error) => debug!(%error, "connection not taken by its worker"),
                    }
                };
                workers.spawn(lifecycle.tracker.track_future(task.instrument(span)));
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(%error, "accept failed");
                listener.port.proxy_error("accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let ip = peer.ip().to_canonical();
    let traffic = listener.metrics.peers.connect(ip);
    let mut stream = Sensor::new(stream, traffic.clone());
    let lifecycle = listener.lifecycle.clone();
    let sniffed = tokio::select! {
        sniffed = sniff(&mut stream, listener.app, listener.header_timeout) => sniffed,
        () = lifecycle.stop.cancelled() => return,
    };
    let Sniffed {
        protocol,
        prefix,
        upstream,
    } = match sniffed {
        Ok(sniffed) => sniffed,
        Err(error) => {
            debug!(%error, "client connection failed before its protocol was known");
            return;
        }
    };
    debug!(protocol = protocol.label(), "protocol detected");
    let client = Arc::new(Client {
        listener,
        ip,
        traffic,
    });
    match protocol {
        Protocol::Opaque => tcp::forward(client, stream, prefix, upstream).await,
        Protocol::Http1 => h1::serve(client, stream, prefix, upstream).await,
        Protocol::Http2 => http::serve(client, stream, prefix, upstream).await,
    }
}

/// The outcome of protocol detection.
struct Sniffed {
    protocol: Protocol,
    /// The bytes read to decide, to be replayed.
    prefix: Bytes,
    /// The app connection, opened meanwhile.
    upstream: io::Result<TcpStream>,
}

/// Reads the client's first bytes until the protocol is known, while connecting to the app.
///
/// An app that speaks first (SMTP, MySQL, ...) makes the connection opaque at once; so does a
/// client that says nothing, or too little to decide, within the header timeout. Opaque bytes are
/// forwarded unchanged, so a wrong guess towards TCP loses only measurement, never data.
async fn sniff<I>(client: &mut I, app: SocketAddr, timeout: Duration) -> io::Result<Sniffed>
where
    I: tokio::io::AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let connect = upstream::connect(app);
    tokio::pin!(connect);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut upstream: Option<io::Result<TcpStream>> = None;
    let protocol = loop {
        let app_connected = matches!(upstream, Some(Ok(_)));
        tokio::select! {
            read = client.read_buf(&mut buf) => {
                if read? == 0 {
                    break Protocol::Opaque;
                }
                if let Some(protocol) = decide(&buf) {
                    break protocol;
                }
            }
            connected = &mut connect, if upstream.is_none() => upstream = Some(connected),
            _ = app_readable(&upstream), if app_connected => break Protocol::Opaque,
            () = &mut deadline => break Protocol::Opaque,
        }
    };
    let upstream = match upstream {
        Some(upstream) => upstream,
        None => connect.await,
    };
    Ok(Sniffed {
        protocol,
        prefix: buf.freeze(),
        upstream,
    })
}

async fn app_readable(upstream: &Option<io::Result<TcpStream>>) -> io::Result<()> {
    match upstream {
        Some(Ok(stream)) => stream.readable().await,
        _ => std::future::pending().await,
    }
}
