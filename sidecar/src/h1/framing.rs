//! Where an HTTP/1 message ends (RFC 9112 §6), read from its head, and a scanner that finds the
//! end of a chunked body without changing a byte of it.
//!
//! The proxy forwards heads and bodies as the bytes that came; these functions only decide how
//! many of them belong to the message, which connection headers say, and what is refused
//! (ambiguous framing that could make the app read a different message than the sidecar did).

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};

/// Most header fields in a head (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// Largest head accepted, request or response.
pub const MAX_HEAD: usize = 64 * 1024;

/// Why a head or a chunked body cannot be forwarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    /// The head does not parse as HTTP/1.
    #[error("malformed head: {0}")]
    Head(httparse::Error),
    /// The head is over [`MAX_HEAD`] bytes.
    #[error("head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// `Content-Length` is not a number, or has differing values.
    #[error("invalid content-length")]
    Length,
    /// A request's `Transfer-Encoding` does not end in `chunked`, or comes with `Content-Length`.
    #[error("invalid transfer-encoding")]
    TransferEncoding,
    /// The chunked framing of a body is broken.
    #[error("malformed chunked body")]
    Chunk,
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// The request methods whose responses are framed differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `HEAD`: the response has no body whatever its head says.
    Head,
    /// `CONNECT`: a 2xx response turns the connection into a tunnel.
    Connect,
    /// Any other.
    Other,
}

/// What the proxy needs from a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// Length of the head in bytes, final empty line included.
    pub len: usize,
    /// The method, as far as framing cares.
    pub method: Method,
    /// How the body is delimited.
    pub body: Body,
    /// Whether the client lets the connection carry another request.
    pub keep_alive: bool,
    /// Whether the client asks for a protocol upgrade (`Upgrade` header).
    pub upgrade: bool,
    /// Whether the method is idempotent (RFC 9110 §9.2.2): safe to send again.
    pub idempotent: bool,
    /// Whether an HTTP/1.1 client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
}

/// What the proxy needs from a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Length of the head in bytes, final empty line included.
    pub len: usize,
    /// The status code.
    pub status: u16,
    /// How the body is delimited (given the request's method).
    pub body: Body,
    /// Whether the app lets the connection carry another request (never for a body delimited
    /// by closing, nor when the head says `Connection: close`).
    pub keep_alive: bool,
}

impl ResponseHead {
    /// An interim response (1xx other than 101): the final one follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// The framing headers of a head.
#[derive(Debug, Default)]
struct Framing {
    length: Option<u64>,
    /// `Some(true)` when `Transfer-Encoding` is present and ends in `chunked`.
    chunked: Option<bool>,
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    expect_continue: bool,
}

impl Framing {
    fn read(headers: &[httparse::Header<'_>]) -> Result<Self, FramingError> {
        let mut framing = Framing::default();
        for header in headers {
            let name = header.name;
            // One comparison per field: the names that matter differ in length.
            match name.len() {
                14 if name.eq_ignore_ascii_case("content-length") => {
                    for value in tokens(header.value) {
                        let length = parse_length(value).ok_or(FramingError::Length)?;
                        if framing.length.is_some_and(|seen| seen != length) {
                            return Err(FramingError::Length);
                        }
                        framing.length = Some(length);
                    }
                }
                17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                    // The last coding of the last field decides.
                    if let Some(last) = tokens(header.value).last() {
                        framing.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
                    }
                }
                10 if name.eq_ignore_ascii_case("connection") => {
                    for token in tokens(header.value) {
                        framing.close |= token.eq_ignore_ascii_case(b"close");
                        framing.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                7 if name.eq_ignore_ascii_case("upgrade") => framing.upgrade = true,
                6 if name.eq_ignore_ascii_case("expect") => {
                    framing.expect_continue |= header
                        .value
                        .trim_ascii()
                        .eq_ignore_ascii_case(b"100-continue");
                }
                _ => {}
            }
        }
        Ok(framing)
    }

    /// HTTP/1.1 is persistent unless closed; HTTP/1.0 only when it asks to be.
    fn keep_alive(&self, version: Option<u8>) -> bool {
        !self.close && (version == Some(1) || self.keep_alive)
    }
}

/// The comma-separated, trimmed, non-empty elements of a header value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The length of a parsed head, `None` while it is incomplete, or why it is refused.
fn head_len(
    parsed: httparse::Result<usize>,
    buffered: usize,
) -> Result<Option<usize>, FramingError> {
    match parsed {
        Ok(Status::Complete(len)) if len <= MAX_HEAD => Ok(Some(len)),
        Ok(Status::Partial) if buffered <= MAX_HEAD => Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => Err(FramingError::TooLarge),
        Err(error) => Err(FramingError::Head(error)),
    }
}

/// Room for a head's fields, left uninitialised (httparse fills what it parses): setting 100
/// empty fields for every head was a tenth of the proxy's own work per request.
fn no_headers<'b>() -> [MaybeUninit<Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Parses a request head at the start of `buf`: `None` while it is incomplete.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, FramingError> {
    let mut headers = no_headers();
    let mut request = httparse::Request::new(&mut []);
    let parsed = request.parse_with_uninit_headers(buf, &mut headers);
    let Some(len) = head_len(parsed, buf.len())? else {
        return Ok(None);
    };
    let framing = Framing::read(request.headers)?;
    let body = match (framing.chunked, framing.length) {
        // Both, or a coding other than chunked last: the app could see another message.
        (Some(_), Some(_)) | (Some(false), None) => return Err(FramingError::TransferEncoding),
        (Some(true), None) => Body::Chunked,
        (None, Some(0) | None) => Body::Empty,
        (None, Some(length)) => Body::Length(length),
    };
    let method = match request.method {
        Some("HEAD") => Method::Head,
        Some("CONNECT") => Method::Connect,
        _ => Method::Other,
    };
    let idempotent = matches!(
        request.method,
        Some("GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
    );
    Ok(Some(RequestHead {
        len,
        method,
        body,
        keep_alive: framing.keep_alive(request.version),
        upgrade: framing.upgrade,
        idempotent,
        expect_continue: framing.expect_continue
            && request.version == Some(1)
            && body != Body::Empty,
    }))
}

/// Parses a response head at the start of `buf`, answering a request made with `method`:
/// `None` while it is incomplete.
pub fn parse_response(buf: &[u8], method: Method) -> Result<Option<ResponseHead>, FramingError> {
    let mut headers = no_headers();
    let mut response = httparse::Response::new(&mut []);
    let parsed = ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    );
    let Some(len) = head_len(parsed, buf.len())? else {
        return Ok(None);
    };
    let status = response.code.unwrap_or_default();
    let framing = Framing::read(response.headers)?;
    let no_body = method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (method == Method::Connect && (200..300).contains(&status));
    let body = if no_body {
        Body::Empty
    } else {
        match (framing.chunked, framing.length) {
            (Some(true), _) => Body::Chunked,
            (Some(false), _) => Body::UntilClose,
            (None, Some(0)) => Body::Empty,
            (None, Some(length)) => Body::Length(length),
            (None, None) => Body::UntilClose,
        }
    };
    Ok(Some(ResponseHead {
        len,
        status,
        body,
        keep_alive: framing.keep_alive(response.version) && body != Body::UntilClose,
    }))
}

/// Progress through a body whose framing is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    /// This many bytes are still to come.
    Length(u64),
    /// A chunked body, at this point of its framing.
    Chunked(Chunked),
    /// Everything until the connection closes.
    UntilClose,
    /// The body is complete.
    Done,
}

impl Remaining {
    /// The whole of a body framed as `body`.
    pub fn of(body: Body) -> Self {
        match body {
            Body::Empty | Body::Length(0) => Remaining::Done,
            Body::Length(length) => Remaining::Length(length),
            Body::Chunked => Remaining::Chunked(Chunked::default()),
            Body::UntilClose => Remaining::UntilClose,
        }
    }

    /// Takes the body's part of `bytes` (what came next on the connection): returns how many
    /// of them belong to the body. Bytes after its end are left for the next message.
    pub fn take(&mut self, bytes: &[u8]) -> Result<usize, FramingError> {
        match self {
            Remaining::Done => Ok(0),
            Remaining::UntilClose => Ok(bytes.len()),
            Remaining::Length(left) => {
                let taken = up_to(*left, bytes.len());
                *left -= taken as u64;
                if *left == 0 {
                    *self = Remaining::Done;
                }
                Ok(taken)
            }
            Remaining::Chunked(chunked) => {
                let taken = chunked.scan(bytes)?;
                if *chunked == Chunked::Done {
                    *self = Remaining::Done;
                }
                Ok(taken)
            }
        }
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        *self == Remaining::Done
    }
}

/// How many of `available` bytes a body with `left` bytes still to come takes.
fn up_to(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |left| left.min(available))
}

/// Where a chunked body's scanner stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunked {
    /// Reading a chunk-size line's hex digits.
    #[default]
    SizeStart,
    /// In the hex digits of a chunk size.
    Size {
        /// The size read so far.
        size: u64,
        /// Hex digits read.
        digits: u8,
    },
    /// In chunk extensions (or whitespace) after the size.
    Extension {
        /// The chunk's size.
        size: u64,
    },
    /// After the CR of a size line.
    SizeLf {
        /// The chunk's size.
        size: u64,
    },
    /// In a chunk's data.
    Data {
        /// Bytes of the chunk still to come.
        left: u64,
    },
    /// Expecting the CR after a chunk's data.
    DataCr,
    /// Expecting the LF after a chunk's data.
    DataLf,
    /// At the start of a trailer line (an empty one ends the body).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// After a CR in the trailer section; `end` when the line was empty.
    TrailerLf {
        /// The empty line that ends the body.
        end: bool,
    },
    /// The body is complete.
    Done,
}

impl Chunked {
    /// Scans `bytes`, which continue the body: returns how many belong to it (all of them unless
    /// the body ends inside).
    pub fn scan(&mut self, bytes: &[u8]) -> Result<usize, FramingError> {
        let mut at = 0;
        while at < bytes.len() {
            if let Chunked::Data { left } = *self {
                let taken = up_to(left, bytes.len() - at);
                at += taken;
                let left = left - taken as u64;
                *self = if left == 0 {
                    Chunked::DataCr
                } else {
                    Chunked::Data { left }
                };
                continue;
            }
            if *self == Chunked::Done {
                break;
            }
            let byte = bytes[at];
            at += 1;
            *self = self.step(byte).ok_or(FramingError::Chunk)?;
        }
        Ok(at)
    }

    fn step(self, byte: u8) -> Option<Chunked> {
        let hex = |b: u8| (b as char).to_digit(16).map(u64::from);
        Some(match (self, byte) {
            (Chunked::SizeStart, b) => Chunked::Size {
                size: hex(b)?,
                digits: 1,
            },
            (Chunked::Size { size, digits }, b) if hex(b).is_some() => {
                if digits >= 15 {
                    return None;
                }
                Chunked::Size {
                    size: size * 16 + hex(b)?,
                    digits: digits + 1,
                }
            }
            (Chunked::Size { size, .. } | Chunked::Extension { size }, b'\r') => {
                Chunked::SizeLf { size }
            }
            (Chunked::Size { size, .. }, b';' | b' ' | b'\t') => Chunked::Extension { size },
            (Chunked::Extension { .. }, b'\n') => return None,
            (Chunked::Extension { size }, _) => Chunked::Extension { size },
            (Chunked::SizeLf { size: 0 }, b'\n') => Chunked::TrailerStart,
            (Chunked::SizeLf { size }, b'\n') => Chunked::Data { left: size },
            (Chunked::DataCr, b'\r') => Chunked::DataLf,
            (Chunked::DataLf, b'\n') => Chunked::SizeStart,
            (Chunked::TrailerStart, b'\r') => Chunked::TrailerLf { end: true },
            (Chunked::TrailerStart | Chunked::Trailer, b'\n') => return None,
            (Chunked::Trailer, b'\r') => Chunked::TrailerLf { end: false },
            (Chunked::TrailerStart | Chunked::Trailer, _) => Chunked::Trailer,
            (Chunked::TrailerLf { end: true }, b'\n') => Chunked::Done,
            (Chunked::TrailerLf { end: false }, b'\n') => Chunked::TrailerStart,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Option<RequestHead>, FramingError> {
        parse_request(text.as_bytes())
    }

    fn response(text: &str, method: Method) -> ResponseHead {
        parse_response(text.as_bytes(), method).unwrap().unwrap()
    }

    #[test]
    fn request_bodies_are_framed_by_length_or_chunked_coding() {
        let get = request("GET / HTTP/1.1\r\nHost: a\r\n\r\nnext")
            .unwrap()
            .unwrap();
        assert_eq!((get.len, get.body, get.keep_alive), (27, Body::Empty, true));
        let post = request("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(post.body, Body::Length(5));
        let chunked = request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!(chunked.unwrap().unwrap().body, Body::Chunked);
        assert_eq!(request("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    #[test]
    fn ambiguous_request_framing_is_refused() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ] {
            assert!(request(head).is_err(), "{head}");
        }
        assert!(matches!(
            request("GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(FramingError::Head(_))
        ));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(request(&huge), Err(FramingError::TooLarge));
    }

    #[test]
    fn connection_persistence_follows_version_and_connection_tokens() {
        let keep = |head: &str| request(head).unwrap().unwrap().keep_alive;
        assert!(keep("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep(
            "GET / HTTP/1.1\r\nConnection: Upgrade, close\r\n\r\n"
        ));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        let upgrade = request("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        assert!(upgrade.unwrap().unwrap().upgrade);
        let expect = |head: &str| request(head).unwrap().unwrap().expect_continue;
        assert!(expect(
            "PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"
        ));
        assert!(
            !expect("PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"),
            "no body to wait for"
        );
        assert!(!expect(
            "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
        ));
    }

    #[test]
    fn response_bodies_follow_method_status_and_headers() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(response(ok, Method::Other).body, Body::Length(5));
        assert_eq!(response(ok, Method::Head).body, Body::Empty);
        assert_eq!(response(ok, Method::Connect).body, Body::Empty);
        let no_content = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(response(no_content, Method::Other).body, Body::Empty);
        let interim = response("HTTP/1.1 100 Continue\r\n\r\n", Method::Other);
        assert!(interim.is_interim() && interim.body == Body::Empty);
        assert!(!response("HTTP/1.1 101 Switching\r\n\r\n", Method::Other).is_interim());
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(response(chunked, Method::Other).body, Body::Chunked);
        let until_close = response("HTTP/1.1 200 OK\r\n\r\n", Method::Other);
        assert_eq!(until_close.body, Body::UntilClose);
        assert!(
            !until_close.keep_alive,
            "a body ended by close ends the connection"
        );
        let closing = response(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::Other,
        );
        assert!(!closing.keep_alive);
    }

    #[test]
    fn chunked_scanner_stops_exactly_at_the_end_of_the_body_in_any_split() {
        let body =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n";
        let mut stream = body.to_vec();
        stream.extend_from_slice(b"GET /next");
        for split in 0..stream.len() {
            let mut remaining = Remaining::of(Body::Chunked);
            let first = remaining.take(&stream[..split]).unwrap();
            let second = remaining.take(&stream[first..]).unwrap();
            assert_eq!(first + second, body.len(), "split at {split}");
            assert!(remaining.is_done());
        }
        let mut plain = Remaining::of(Body::Chunked);
        assert_eq!(plain.take(b"0\r\n\r\nrest"), Ok(5));
        assert!(plain.is_done());
    }

    #[test]
    fn broken_chunked_framing_is_an_error() {
        for broken in [
            &b"x\r\n"[..],
            b"5\r\nhelloX",
            b"5\nhello",
            b"1234567890abcdef0\r\n",
            b"0\r\nT: x\n",
        ] {
            let mut remaining = Remaining::of(Body::Chunked);
            assert_eq!(
                remaining.take(broken),
                Err(FramingError::Chunk),
                "{broken:?}"
            );
        }
    }

    #[test]
    fn a_length_body_takes_only_its_bytes() {
        let mut remaining = Remaining::of(Body::Length(4));
        assert_eq!(remaining.take(b"ab"), Ok(2));
        assert_eq!(remaining.take(b"cdGET"), Ok(2));
        assert!(remaining.is_done());
        assert_eq!(Remaining::of(Body::Length(0)), Remaining::Done);
    }
}
