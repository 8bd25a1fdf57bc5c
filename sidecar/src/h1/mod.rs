//! The HTTP/1 proxy: request and response heads are parsed only to find where each message ends
//! and what to measure; the bytes themselves are forwarded as they came.
//!
//! So nothing is added or changed: header case, order and folding, chunk sizes and extensions,
//! trailers and interim responses all pass as sent. (One exception: a client that sends
//! `Expect: 100-continue` gets `100 Continue` from the sidecar as soon as the request head is
//! on its way to the app, as nginx and Envoy do; the app's own is then not passed on twice.) One task serves a client connection and the app connection its request is on,
//! so forwarding a request costs the four system calls it must (read and write on each side)
//! and no hand-off between tasks.
//!
//! - The request body streams to the app while the response streams back (never buffered
//!   whole); a request whose framing is ambiguous (`Transfer-Encoding` with `Content-Length`,
//!   differing lengths, a coding other than `chunked` last) is refused with a 400 rather than
//!   risk the app reading another message than the sidecar did.
//! - App connections come from the listener's idle [`Pool`](crate::upstream::Pool) and go back
//!   to it once a response is complete (an idle keep-alive client holds none). A request sent
//!   on a reused connection that the app had closed is sent once more on a new one, if it is
//!   idempotent and held whole.
//! - While a response is awaited, the client connection is watched: a client that goes away
//!   closes its app connection, which cancels the request.
//! - A `101 Switching Protocols` (or a 2xx to `CONNECT`) turns both connections into a byte
//!   tunnel, still counted per peer.
//! - A request head must arrive within the header timeout, counted from when the sidecar starts
//!   waiting for it; an idle keep-alive connection is closed when it runs out (not counted as an
//!   error). While draining, idle connections close, and a response in flight gets
//!   `connection: close` added so the client does not send another request.

pub mod framing;

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
    time::{Instant, Sleep},
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::debug;

use crate::{
    body::RequestRecord,
    class::Class,
    http::SIDECAR_ERROR_HEADER,
    listener::{Client, Listener},
    metrics::{PortMetrics, ProtocolLabel, ProtocolMetrics},
    sensor::Sensor,
    upstream::{self, Idle, Pool, UpstreamError},
};
use framing::{FramingError, Method, Remaining, RequestHead};

/// A request's record, holding its connection's series by reference.
type Record<'c> = RequestRecord<&'c ProtocolMetrics, &'c PortMetrics>;

/// The interim response a client sending `Expect: 100-continue` waits for.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Room a read into the client buffer gets.
const CLIENT_READ: usize = 8 * 1024;
/// Room a read into an app connection's buffer (or a request body pump) gets.
const BODY_READ: usize = 16 * 1024;
/// How much of the requests that follow the current one (pipelined) is read ahead.
const MAX_READ_AHEAD: usize = framing::MAX_HEAD;

/// Serves one HTTP/1 client connection until it ends.
pub async fn serve(
    client: Arc<Client>,
    stream: Sensor<TcpStream>,
    prefix: Bytes,
    upstream: io::Result<TcpStream>,
) {
    let listener = &*client.listener;
    let metrics = listener.port.protocol(ProtocolLabel::Http1);
    let _open = metrics.open_connection();
    let metrics = &*metrics;
    let (mut stream, traffic) = stream.into_parts();
    let (reader, writer) = stream.split();
    let mut connection = Connection {
        client: &client,
        listener,
        pool: listener.pool(),
        metrics,
        reader: Sensor::new(reader, traffic.clone()),
        writer: Sensor::new(writer, traffic),
        buf: BytesMut::from(&prefix[..]),
        first: Some(upstream),
        cut: false,
    };
    tokio::select! {
        biased;
        () = connection.run() => {}
        () = listener.lifecycle.stop.cancelled() => {
            debug!("client connection closed at the end of the grace period");
        }
    }
    if connection.cut {
        drop(connection);
        // A reset, not a close: a body ended by closing must not look complete.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
}

/// What to do with the client connection after an exchange.
enum Next {
    /// Read the next request.
    Continue,
    /// Close it.
    Close,
}

/// How a request and its response went, when the response reached the client.
enum Exchange {
    /// The response is complete.
    Complete {
        /// The client connection may carry another request.
        keep_client: bool,
        /// The app connection may carry another request.
        keep_app: bool,
    },
    /// The app switched protocols: the connections are a tunnel now.
    Upgraded,
}

/// Why an exchange stopped short.
#[derive(Debug)]
enum Failure {
    /// The app closed or failed before sending a byte of its response.
    AppSilent(io::Error),
    /// The app's response head is malformed; nothing of it reached the client.
    BadResponse(FramingError),
    /// The app failed after the response head was passed on: the client's response is cut.
    AppCut,
    /// The client went away (or its connection failed): its request is cancelled.
    Client,
    /// The client's chunked request body is malformed.
    BadRequestBody,
}

struct Connection<'c> {
    client: &'c Client,
    listener: &'c Listener,
    /// The idle app connections of the worker serving this connection (it never moves).
    pool: &'c Pool,
    metrics: &'c ProtocolMetrics,
    reader: Sensor<ReadHalf<'c>>,
    writer: Sensor<WriteHalf<'c>>,
    /// What the client sent that is not forwarded yet.
    buf: BytesMut,
    /// The app connection opened while the protocol was detected, until a request takes it.
    first: Option<io::Result<TcpStream>>,
    /// A response was cut short by the app: the client connection is to be reset.
    cut: bool,
}

impl Connection<'_> {
    async fn run(&mut self) {
        let lifecycle = &self.listener.lifecycle;
        let mut draining = std::pin::pin!(lifecycle.draining.cancelled());
        let mut deadline = std::pin::pin!(tokio::time::sleep(self.listener.header_timeout));
        loop {
            let Some(head) = self.read_head(draining.as_mut(), deadline.as_mut()).await else {
                return;
            };
            match self.exchange(head).await {
                Next::Continue if !lifecycle.draining.is_cancelled() => {}
                Next::Continue | Next::Close => return,
            }
        }
    }

    /// The next request head, or `None` when the connection is done: closed, idle past the
    /// header timeout, drained while idle, or refused.
    async fn read_head(
        &mut self,
        mut draining: Pin<&mut WaitForCancellationFuture<'_>>,
        mut deadline: Pin<&mut Sleep>,
    ) -> Option<RequestHead> {
        // The timer is not reset per request: when it fires at an older deadline, it is set to
        // this one.
        let head_deadline = Instant::now() + self.listener.header_timeout;
        loop {
            if !self.buf.is_empty() {
                match framing::parse_request(&self.buf) {
                    Ok(Some(head)) => return Some(head),
                    Ok(None) => {}
                    Err(error) => {
                        self.refuse(&error).await;
                        return None;
                    }
                }
            }
            reserve(&mut self.buf, CLIENT_READ);
            tokio::select! {
                biased;
                read = self.reader.read_buf(&mut self.buf) => match read {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
                () = deadline.as_mut() => {
                    if Instant::now() < head_deadline {
                        deadline.as_mut().reset(head_deadline);
                        continue;
                    }
                    if !self.buf.is_empty() {
                        debug!("request head timed out");
                        self.listener.port.proxy_error("header_timeout");
                    }
                    return None;
                }
                () = draining.as_mut(), if self.buf.is_empty() => return None,
            }
        }
    }

    /// Answers a request the sidecar cannot forward, and closes.
    async fn refuse(&mut self, error: &FramingError) {
        debug!(%error, "request refused");
        self.listener.port.proxy_error("bad_request");
        let status = match error {
            FramingError::TooLarge => "431 Request Header Fields Too Large",
            _ => "400 Bad Request",
        };
        let response =
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = self.writer.write_all(response.as_bytes()).await;
        let _ = self.writer.shutdown().await;
    }

    /// Forwards one request and its response.
    async fn exchange(&mut self, head: RequestHead) -> Next {
        let mut record = RequestRecord::start(self.metrics, &*self.listener.port);
        self.client.traffic.requests.fetch_add(1, Ordering::Relaxed);

        // The head, and as much of the body as was read with it.
        let mut body = Remaining::of(head.body);
        let with_head = match body.take(&self.buf[head.len..]) {
            Ok(taken) => taken,
            Err(error) => {
                record.fail("bad_request");
                self.refuse(&error).await;
                return Next::Close;
            }
        };
        let mut request = self.buf.split_to(head.len + with_head);
        if self.listener.x_forwarded_for {
            let field = format!("x-forwarded-for: {}\r\n", self.client.ip);
            request = with_field(&request, head.len, field.as_bytes());
        }
        let held_whole = body.is_done();

        let (mut app, mut app_buf, mut reused) = match self.checkout().await {
            Ok(checked_out) => checked_out,
            Err(error) => {
                return self
                    .bad_gateway(record, &error, held_whole && head.keep_alive)
                    .await;
            }
        };
        let outcome = loop {
            let outcome = self
                .forward(&mut app, &mut app_buf, &request, body, &head, &mut record)
                .await;
            match outcome {
                // A new connection is not retried: `reused` is false once it is.
                Err(Failure::AppSilent(error)) if reused && head.idempotent && held_whole => {
                    // The app had closed the idle connection: once more, on a new one.
                    debug!(%error, "reused app connection failed; retrying");
                    reused = false;
                    match upstream::connect(self.listener.app).await {
                        Ok(stream) => {
                            app = stream;
                            app_buf.clear();
                        }
                        Err(error) => {
                            let error = UpstreamError::connect(error);
                            return self.bad_gateway(record, &error, head.keep_alive).await;
                        }
                    }
                }
                outcome => break outcome,
            }
        };
        match outcome {
            Ok(Exchange::Complete {
                keep_client,
                keep_app,
            }) => {
                if keep_app {
                    self.pool.put(Idle {
                        stream: app,
                        buf: app_buf,
                    });
                }
                if keep_client {
                    Next::Continue
                } else {
                    Next::Close
                }
            }
            Ok(Exchange::Upgraded) => {
                self.tunnel(app, app_buf).await;
                Next::Close
            }
            Err(Failure::AppSilent(error)) => {
                let error = UpstreamError::Request(error.into());
                self.bad_gateway(record, &error, false).await
            }
            Err(Failure::BadResponse(error)) => {
                let error = UpstreamError::Request(error.into());
                self.bad_gateway(record, &error, false).await
            }
            Err(Failure::AppCut) => {
                debug!("the app failed mid-response");
                record.fail("upstream_reset");
                self.cut = true;
                Next::Close
            }
            Err(Failure::BadRequestBody) => {
                debug!("malformed chunked request body");
                record.fail("bad_request");
                Next::Close
            }
            // Dropping the record counts the abort, then dropping the app connection cancels
            // (in that order, so the abort is counted by the time the app sees it).
            Err(Failure::Client) => {
                drop(record);
                Next::Close
            }
        }
    }

    /// An app connection for a request: the first one, else an idle one, else a new one. The
    /// flag says whether it was reused (and may have been closed by the app meanwhile).
    async fn checkout(&mut self) -> Result<(TcpStream, BytesMut, bool), UpstreamError> {
        let first = self.first.take();
        if first.is_none()
            && let Some(Idle { stream, buf }) = self.pool.take()
        {
            return Ok((stream, buf, true));
        }
        let stream = match first {
            Some(first) => first,
            None => upstream::connect(self.listener.app).await,
        }
        .map_err(UpstreamError::connect)?;
        Ok((stream, BytesMut::new(), false))
    }

    /// Sends `request` (head and what was read of its body) on `app`, streams the rest of the
    /// body to it while its response streams back to the client.
    async fn forward(
        &mut self,
        app: &mut TcpStream,
        app_buf: &mut BytesMut,
        request: &[u8],
        mut body: Remaining,
        head: &RequestHead,
        record: &mut Record<'_>,
    ) -> Result<Exchange, Failure> {
        let Connection {
            reader,
            writer,
            buf,
            listener,
            ..
        } = self;
        let (mut app_reader, mut app_writer) = app.split();
        app_writer
            .write_all(request)
            .await
            .map_err(Failure::AppSilent)?;
        // A client waiting for `100 Continue` gets it as the body starts towards the app (as
        // from nginx or Envoy); the app's own, if it sends one, is then not passed on twice.
        let continued = head.expect_continue && !body.is_done();
        if continued {
            writer
                .write_all(CONTINUE)
                .await
                .map_err(|_| Failure::Client)?;
        }
        let body_done = AtomicBool::new(body.is_done());
        let upload = async {
            if !body.is_done() {
                match copy_body(reader, &mut app_writer, buf, &mut body).await {
                    Ok(()) => body_done.store(true, Ordering::Relaxed),
                    // The app stopped reading the body: its response may still come.
                    Err(Copy::Write) => std::future::pending::<()>().await,
                    Err(Copy::Read) => return Failure::Client,
                    Err(Copy::Framing) => return Failure::BadRequestBody,
                }
            }
            watch(reader, buf).await
        };
        let download = respond(
            &mut app_reader,
            writer,
            app_buf,
            head.method,
            continued,
            record,
            &listener.lifecycle.draining,
        );
        let response = tokio::select! {
            biased;
            response = download => response?,
            failure = upload => return Err(failure),
        };
        if response.upgrade {
            return Ok(Exchange::Upgraded);
        }
        let whole = body_done.load(Ordering::Relaxed);
        let keep = response.keep_alive && head.keep_alive && whole;
        Ok(Exchange::Complete {
            keep_client: keep,
            keep_app: keep && app_buf.is_empty(),
        })
    }

    /// After a switch of protocols, copies bytes both ways until both sides are done.
    async fn tunnel(&mut self, mut app: TcpStream, app_buf: BytesMut) {
        let Connection {
            reader,
            writer,
            buf,
            ..
        } = self;
        let (mut app_reader, mut app_writer) = app.split();
        let up = async {
            app_writer.write_all(buf).await?;
            tokio::io::copy(reader, &mut app_writer).await?;
            app_writer.shutdown().await
        };
        let down = async {
            writer.write_all(&app_buf).await?;
            tokio::io::copy(&mut app_reader, writer).await?;
            writer.shutdown().await
        };
        if let Err(error) = tokio::try_join!(up, down) {
            debug!(%error, "upgraded connection ended with an error");
        }
    }

    /// Answers 502 for a request the app did not answer; `keep` when the connection can go on.
    async fn bad_gateway(&mut self, record: Record<'_>, error: &UpstreamError, keep: bool) -> Next {
        debug!(%error, "request not forwarded");
        record.bad_gateway(error.metric_label());
        let body = error.body();
        let response = format!(
            "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\n\
             {SIDECAR_ERROR_HEADER}: {}\r\ncontent-length: {}\r\n{}\r\n{body}",
            error.header_value(),
            body.len(),
            if keep { "" } else { "connection: close\r\n" },
        );
        match self.writer.write_all(response.as_bytes()).await {
            Ok(()) if keep => Next::Continue,
            _ => Next::Close,
        }
    }
}

/// `message` (a head of `head_len` bytes and what follows it) with the header field line
/// `field` (CRLF included) added last in the head.
fn with_field(message: &[u8], head_len: usize, field: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(message.len() + field.len());
    // The head ends in the empty line: insert before it.
    out.extend_from_slice(&message[..head_len - 2]);
    out.extend_from_slice(field);
    out.extend_from_slice(&message[head_len - 2..]);
    out
}

/// Makes room for a read of about `chunk` bytes.
fn reserve(buf: &mut BytesMut, chunk: usize) {
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
}

/// Which side of [`copy_body`] failed.
enum Copy {
    /// Reading: the sender went away (or closed mid-body).
    Read,
    /// Writing: the receiver went away.
    Write,
    /// The body's chunked framing is broken.
    Framing,
}

/// Streams the rest of a body (what `buf` holds first, then what `from` sends) to `to`, up to its
/// end, leaving what follows it in `buf`.
async fn copy_body<R, W>(
    from: &mut R,
    to: &mut W,
    buf: &mut BytesMut,
    rest: &mut Remaining,
) -> Result<(), Copy>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while !rest.is_done() {
        if buf.is_empty() {
            reserve(buf, BODY_READ);
            match from.read_buf(buf).await {
                Ok(0) if *rest == Remaining::UntilClose => return Ok(()),
                Ok(0) | Err(_) => return Err(Copy::Read),
                Ok(_) => {}
            }
        }
        let taken = rest.take(buf).map_err(|_| Copy::Framing)?;
        to.write_all(&buf[..taken]).await.map_err(|_| Copy::Write)?;
        buf.advance(taken);
    }
    Ok(())
}

/// Reads ahead what the client sends next (pipelined requests) while a response is awaited;
/// returns when the client goes away.
async fn watch(reader: &mut Sensor<ReadHalf<'_>>, buf: &mut BytesMut) -> Failure {
    loop {
        if buf.len() >= MAX_READ_AHEAD {
            // Enough read ahead: the client waits in the kernel's buffers.
            return std::future::pending().await;
        }
        reserve(buf, CLIENT_READ);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Failure::Client,
            Ok(_) => {}
        }
    }
}

/// What the final response said about the connections.
struct Response {
    keep_alive: bool,
    upgrade: bool,
}

/// Passes the app's response (interim ones included) to the client, measuring it.
async fn respond(
    app: &mut ReadHalf<'_>,
    client: &mut Sensor<WriteHalf<'_>>,
    buf: &mut BytesMut,
    method: Method,
    continued: bool,
    record: &mut Record<'_>,
    draining: &CancellationToken,
) -> Result<Response, Failure> {
    let mut sent_any = false;
    loop {
        let head = loop {
            match framing::parse_response(buf, method) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(error) => return Err(Failure::BadResponse(error)),
            }
            reserve(buf, BODY_READ);
            let failed = match app.read_buf(buf).await {
                Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "closed without a response"),
                Ok(_) => continue,
                Err(error) => error,
            };
            return Err(match (sent_any, buf.is_empty()) {
                (true, _) => Failure::AppCut,
                (false, true) => Failure::AppSilent(failed),
                (false, false) => Failure::BadResponse(FramingError::Head(httparse::Error::Status)),
            });
        };
        if head.is_interim() {
            if !(continued && head.status == 100) {
                client
                    .write_all(&buf[..head.len])
                    .await
                    .map_err(|_| Failure::Client)?;
            }
            buf.advance(head.len);
            sent_any = true;
            continue;
        }
        record.headers_sent();
        let mut rest = Remaining::of(head.body);
        let taken = rest.take(&buf[head.len..]).map_err(Failure::BadResponse)?;
        // Draining: tell the client not to send another request on this connection. (A
        // response that keeps the connection alive does not say `close` already.)
        let close = head.keep_alive && draining.is_cancelled();
        if close {
            let message = &buf[..head.len + taken];
            let out = with_field(message, head.len, b"connection: close\r\n");
            client.write_all(&out).await
        } else {
            client.write_all(&buf[..head.len + taken]).await
        }
        .map_err(|_| Failure::Client)?;
        buf.advance(head.len + taken);
        copy_body(app, client, buf, &mut rest)
            .await
            .map_err(|error| match error {
                Copy::Write => Failure::Client,
                Copy::Read | Copy::Framing => Failure::AppCut,
            })?;
        record.finish(Class::of_code(head.status));
        let upgrade = head.status == 101 || (method == Method::Connect && head.status / 100 == 2);
        // A body delimited by closing already made `keep_alive` false.
        return Ok(Response {
            keep_alive: head.keep_alive && !close,
            upgrade,
        });
    }
}
