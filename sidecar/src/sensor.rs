//! Counts the bytes a client connection carries, as they move: every read from the client adds to
//! the peer's received bytes, every write to it adds to the peer's sent bytes, so the counters
//! advance while a long connection is open, not only when it closes.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::peers::PeerTraffic;

pin_project_lite::pin_project! {
    /// A client connection whose traffic is counted into its peer's counters.
    #[derive(Debug)]
    pub struct Sensor<I> {
        #[pin]
        io: I,
        peer: Arc<PeerTraffic>,
    }
}

impl<I> Sensor<I> {
    /// Counts `io`'s traffic into `peer`.
    pub fn new(io: I, peer: Arc<PeerTraffic>) -> Self {
        Self { io, peer }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &I {
        &self.io
    }

    /// The wrapped I/O and the peer's counters.
    pub fn into_parts(self) -> (I, Arc<PeerTraffic>) {
        (self.io, self.peer)
    }
}

impl<I: AsyncRead> AsyncRead for Sensor<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.io.poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.peer.received.fetch_add(read as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<I: AsyncWrite> AsyncWrite for Sensor<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.peer.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            this.peer.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn counts_both_directions_as_they_happen() {
        let peer = Arc::new(PeerTraffic::default());
        let (near, mut far) = tokio::io::duplex(64);
        let mut sensor = Sensor::new(near, peer.clone());

        far.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        sensor.read_exact(&mut buf).await.unwrap();
        assert_eq!(peer.received.load(Ordering::Relaxed), 5);

        sensor.write_all(b"and goodbye").await.unwrap();
        assert_eq!(peer.sent.load(Ordering::Relaxed), 11);
        let mut echoed = [0u8; 11];
        far.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"and goodbye");
    }
}
