//! Opaque TCP: bytes copied both ways unchanged (half-closes included), counted by the client
//! connection's sensor, the connection's lifetime recorded when it ends.

use std::{io, sync::Arc, time::Instant};

use bytes::Bytes;
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tracing::debug;

use crate::{listener::Client, metrics::ProtocolLabel, sensor::Sensor, upstream::UpstreamError};

/// Forwards one opaque connection until both sides are done. An unreachable app closes the
/// client connection: TCP has no way to say why.
pub async fn forward(
    client: Arc<Client>,
    stream: Sensor<TcpStream>,
    prefix: Bytes,
    upstream: io::Result<TcpStream>,
) {
    let listener = &client.listener;
    let metrics = listener.port.protocol(ProtocolLabel::Tcp);
    let _open = metrics.open_connection();
    let started = Instant::now();
    let mut app = match upstream {
        Ok(app) => app,
        Err(error) => {
            let error = UpstreamError::connect(error);
            debug!(%error, "closing client connection");
            listener.port.proxy_error(error.metric_label());
            return;
        }
    };
    let mut stream = stream;
    // The bytes read to detect the protocol go first, the client's later bytes after them.
    let copied = async {
        app.write_all(&prefix).await?;
        tokio::io::copy_bidirectional(&mut stream, &mut app).await
    };
    tokio::select! {
        copied = copied => match copied {
            Ok((up, down)) => debug!(up, down, "connection closed"),
            Err(error) => debug!(%error, "connection ended with an error"),
        },
        () = listener.lifecycle.stop.cancelled() => debug!("closed at the end of the grace period"),
    }
    metrics.tcp_duration.observe(started.elapsed());
}
