//! Protocol detection from the first bytes a client sends.
//!
//! HTTP/1 is recognised only from a complete request line ending in ` HTTP/1.0` or ` HTTP/1.1`,
//! HTTP/2 only from the full prior-knowledge preface; anything else (TLS, database protocols,
//! Redis inline commands that happen to start with a word and a space) is opaque TCP, so a
//! protocol the sidecar does not speak is never answered with an HTTP error.

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (h2c), gRPC included.
    Http2,
    /// Anything else: bytes are copied both ways unchanged.
    Opaque,
}

impl Protocol {
    /// The `protocol` label value of connection-level series.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "h2",
            Protocol::Opaque => "tcp",
        }
    }
}

/// The HTTP/2 connection preface a prior-knowledge client starts with.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A request line longer than this is not waited for: the connection is opaque.
pub const MAX_REQUEST_LINE: usize = 8192;
/// Longest HTTP method recognised (`VERSION-CONTROL` has 15 letters).
const MAX_METHOD: usize = 20;

/// Decides the protocol from the bytes received so far, or `None` while more are needed.
pub fn decide(buf: &[u8]) -> Option<Protocol> {
    if buf.is_empty() {
        return None;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return (buf.len() >= H2_PREFACE.len()).then_some(Protocol::Http2);
    }
    let method = buf
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-' || **b == b'_')
        .count();
    if method == buf.len() {
        return (method > MAX_METHOD).then_some(Protocol::Opaque);
    }
    if method == 0 || method > MAX_METHOD || buf[method] != b' ' {
        return Some(Protocol::Opaque);
    }
    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
        return (buf.len() > MAX_REQUEST_LINE).then_some(Protocol::Opaque);
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") {
        Some(Protocol::Http1)
    } else {
        Some(Protocol::Opaque)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_http1_request_lines() {
        assert_eq!(decide(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(
            decide(b"POST /a?b=c HTTP/1.0\r\nHost: x\r\n\r\n"),
            Some(Protocol::Http1)
        );
        assert_eq!(decide(b"GET / HTTP/1.1\n"), Some(Protocol::Http1));
    }

    #[test]
    fn waits_for_a_whole_request_line_or_preface() {
        for partial in [&b"G"[..], b"GET", b"GET /index", b"PRI * HTTP/2", b"P"] {
            assert_eq!(
                decide(partial),
                None,
                "{:?}",
                String::from_utf8_lossy(partial)
            );
        }
        assert_eq!(decide(H2_PREFACE), Some(Protocol::Http2));
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(b"\0\0\x12\x04");
        assert_eq!(decide(&more), Some(Protocol::Http2));
    }

    #[test]
    fn everything_else_is_opaque() {
        let tls_hello = [0x16, 0x03, 0x01, 0x02, 0x00];
        let postgres_startup = [0, 0, 0, 8, 4, 210, 22, 47];
        for bytes in [
            &tls_hello[..],
            &postgres_startup,
            b"*1\r\n$4\r\nPING\r\n",
            b"PING\r\n",
            b"SET key value\r\n",
            b"GET / HTTP/2.0\r\n",
            b"get / HTTP/1.1\r\n",
        ] {
            assert_eq!(
                decide(bytes),
                Some(Protocol::Opaque),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = [b"GET /".as_slice(), &[b'a'; MAX_REQUEST_LINE]].concat();
        assert_eq!(decide(&long), Some(Protocol::Opaque));
    }
}
