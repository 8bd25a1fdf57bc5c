//! Readiness as the kubelet decides it, against the pod's loopback address: the container's
//! readinessProbe (httpGet or tcpSocket) until it passes. A container without a probe counts as
//! ready once each declared TCP port accepts connections — the kubelet would call it ready at
//! once, but then a test would race the process's start-up.

use std::{net::Ipv4Addr, time::Duration};

use k8s_openapi::{api::core::v1::Container, apimachinery::pkg::util::intstr::IntOrString};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const PERIOD: Duration = Duration::from_millis(200);

/// Resolves once the container is ready; never resolves for a probe that keeps failing.
pub async fn until_ready(container: &Container, ip: Ipv4Addr) {
    loop {
        if ready(container, ip).await {
            return;
        }
        tokio::time::sleep(PERIOD).await;
    }
}

async fn ready(container: &Container, ip: Ipv4Addr) -> bool {
    let Some(probe) = &container.readiness_probe else {
        for port in container.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") == "TCP"
                && TcpStream::connect((ip, port.container_port as u16))
                    .await
                    .is_err()
            {
                return false;
            }
        }
        return true;
    };
    if let Some(http) = &probe.http_get {
        let Some(port) = port_number(container, &http.port) else {
            return false;
        };
        return http_ok(ip, port, http.path.as_deref().unwrap_or("/")).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port_number(container, &tcp.port) else {
            return false;
        };
        return TcpStream::connect((ip, port)).await.is_ok();
    }
    // exec and grpc probes cannot run here: ready once started.
    true
}

/// A probe's port: a number, or the name of one of the container's own ports.
pub fn port_number(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// A 2xx or 3xx answer to `GET path`, as the kubelet's HTTP probe requires.
async fn http_ok(ip: Ipv4Addr, port: u16, path: &str) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect((ip, port)).await.ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.20\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        let code: u16 = std::str::from_utf8(&head[9..12]).ok()?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
