//! HEP over UDP and TCP: decode, stamp, hand to the writer queue.
use std::net::SocketAddr;
use std::sync::Arc;

use hep::{HepMessage, StreamFramer};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, add, inc};

/// A TCP peer sending this much garbage without one valid frame is cut off.
const MAX_GARBAGE: u64 = 64 * 1024;

/// HEPv1 carries no timestamp: the receiver's clock stands in.
fn stamp(mut m: HepMessage) -> HepMessage {
    if m.time_sec == 0 && m.time_usec == 0 {
        let now = chrono::Utc::now().timestamp_micros();
        m.time_sec = (now / 1_000_000) as u32;
        m.time_usec = (now % 1_000_000) as u32;
    }
    m
}

fn decode(buf: &[u8], metrics: &Metrics) -> Option<HepMessage> {
    inc(&metrics.received);
    match hep::decode(buf) {
        Ok(m) => {
            inc(&metrics.decoded);
            Some(stamp(m))
        }
        Err(e) => {
            inc(&metrics.invalid);
            tracing::debug!(error = %e, "invalid HEP packet dropped");
            None
        }
    }
}

/// Binds a UDP socket with a large receive buffer: bursts queue in the
/// kernel instead of being dropped while the writer is busy.
pub fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = s.set_recv_buffer_size(recv_buffer) {
        tracing::warn!(error = %e, "could not set UDP receive buffer");
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    let got = s.recv_buffer_size().unwrap_or(0);
    if got < recv_buffer {
        tracing::warn!(wanted = recv_buffer, got, "UDP receive buffer capped by the kernel (raise net.core.rmem_max)");
    }
    UdpSocket::from_std(s.into())
}

pub async fn run_udp(sock: UdpSocket, tx: mpsc::Sender<HepMessage>, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, _)) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "UDP receive failed");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        if let Some(m) = decode(&buf[..n], &metrics) {
            // UDP cannot push back: when the queue is full the message is lost, and counted.
            if tx.try_send(m).is_err() {
                inc(&metrics.dropped);
            }
        }
    }
}

pub async fn run_tcp(listener: TcpListener, tx: mpsc::Sender<HepMessage>, metrics: Arc<Metrics>, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        inc(&metrics.tcp_connections);
        let (tx, metrics, stop) = (tx.clone(), metrics.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_stream(stream, &tx, &metrics, &stop).await {
                tracing::debug!(%peer, error = %e, "TCP connection ended");
            }
        });
    }
}

async fn serve_stream(mut stream: TcpStream, tx: &mpsc::Sender<HepMessage>, metrics: &Metrics, stop: &CancellationToken) -> std::io::Result<()> {
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut garbage_seen = 0;
    loop {
        let n = tokio::select! {
            r = stream.read(&mut buf) => r?,
            _ = stop.cancelled() => 0,
        };
        if n == 0 {
            return Ok(());
        }
        framer.push(&buf[..n]);
        while let Some(frame) = framer.next_frame() {
            if let Some(m) = decode(frame, metrics) {
                // TCP can push back: wait for room rather than drop.
                if tx.send(m).await.is_err() {
                    inc(&metrics.dropped);
                    return Ok(());
                }
            }
        }
        let stats = framer.stats();
        add(&metrics.tcp_garbage_bytes, stats.garbage_bytes - garbage_seen);
        garbage_seen = stats.garbage_bytes;
        if stats.garbage_since_frame > MAX_GARBAGE {
            inc(&metrics.invalid);
            return Err(std::io::Error::other("too much non-HEP data; closing"));
        }
    }
}
