//! HEP over UDP, TCP and TLS, shared by `hepop serve` and `edge-relay`:
//! sockets, stream framing, connection bounds, auth keys, validation,
//! counters, and the flags that configure them. What becomes of a valid
//! packet is the caller's `accept` function: the server stamps and stores the
//! decoded message, the relay forwards the raw bytes.
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hep::HepMessage;
use tokio::net::{TcpListener, UdpSocket};
pub use tokio_util::sync::CancellationToken;

pub mod args;

/// Log lines to stderr, filtered by `RUST_LOG` (default info); colour codes
/// only for a terminal, so journald and log files get plain lines. Every
/// binary but the Lambdas (which log for CloudWatch) starts with this.
pub fn init_logs() {
    init_logs_filtered("info");
}

/// [`init_logs`] with another filter when `RUST_LOG` is not set.
pub fn init_logs_filtered(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
pub mod auth;
pub mod queue;
pub mod stream;
pub mod tls;

pub use auth::{AuthKeyError, AuthKeys, KeyCheck};
pub use queue::{QueueGauge, QueueReceiver, QueueSender, Room, Weigh, queue};
pub use stream::{Incoming, StreamLimits, run_stream};

/// A TCP peer sending this much garbage without one valid frame is cut off.
pub const MAX_GARBAGE: u64 = 64 * 1024;

#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams and stream frames taken in.
    pub received: AtomicU64,
    /// Of those, decoded into HEP messages.
    pub decoded: AtomicU64,
    /// Malformed: counted and dropped.
    pub invalid: AtomicU64,
    /// Valid but refused by `accept` (e.g. auth key not allowed).
    pub rejected: AtomicU64,
    /// Accepted but lost before reaching storage (queue full, storage failing).
    pub dropped: AtomicU64,
    /// Stream connections accepted (TCP and TLS).
    pub tcp_connections: AtomicU64,
    /// Of those, TLS handshakes completed.
    pub tls_connections: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Connections closed at once: the connection cap was reached.
    pub connections_refused: AtomicU64,
    /// Closed after sending nothing for the idle timeout.
    pub idle_closed: AtomicU64,
    /// Closed for trickling a frame slower than the frame timeout.
    pub slow_closed: AtomicU64,
    /// Failed accept calls (each followed by a growing pause).
    pub accept_errors: AtomicU64,
    /// Bytes skipped on TCP streams while resynchronising on the HEP magic.
    pub tcp_garbage_bytes: AtomicU64,
    /// Stream connections open now (a gauge).
    pub open_connections: AtomicU64,
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Counters {
    pub fn rows(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![
            (
                "received",
                "HEP datagrams and stream frames received",
                get(&self.received),
            ),
            ("decoded", "HEP messages decoded", get(&self.decoded)),
            ("invalid", "malformed packets dropped", get(&self.invalid)),
            (
                "rejected",
                "valid packets refused (auth key not allowed)",
                get(&self.rejected),
            ),
            (
                "dropped",
                "accepted messages lost before storage",
                get(&self.dropped),
            ),
            (
                "tcp_connections",
                "TCP connections accepted",
                get(&self.tcp_connections),
            ),
            (
                "tls_connections",
                "TLS handshakes completed",
                get(&self.tls_connections),
            ),
            (
                "tls_handshake_failures",
                "TLS handshakes failed or timed out",
                get(&self.tls_handshake_failures),
            ),
            (
                "connections_refused",
                "stream connections closed at once: connection cap reached",
                get(&self.connections_refused),
            ),
            (
                "idle_closed",
                "stream connections closed after the idle timeout",
                get(&self.idle_closed),
            ),
            (
                "slow_closed",
                "stream connections closed for a frame slower than the frame timeout",
                get(&self.slow_closed),
            ),
            (
                "accept_errors",
                "failed accept calls (each followed by a pause)",
                get(&self.accept_errors),
            ),
            (
                "tcp_garbage_bytes",
                "bytes skipped resynchronising TCP streams",
                get(&self.tcp_garbage_bytes),
            ),
        ]
    }

    pub fn gauges(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![(
            "open_connections",
            "HEP stream connections open",
            get(&self.open_connections),
        )]
    }
}

/// Prometheus text for counters named `<prefix>_<name>_total`.
pub fn prometheus(
    prefix: &str,
    counters: &[(&str, &str, u64)],
    gauges: &[(&str, &str, u64)],
) -> String {
    let mut out = String::new();
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {prefix}_{name}_total {help}\n# TYPE {prefix}_{name}_total counter\n{prefix}_{name}_total {v}"
        );
    }
    for (name, help, v) in gauges {
        let _ = writeln!(
            out,
            "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} gauge\n{prefix}_{name} {v}"
        );
    }
    out
}

/// What to do with each valid packet: Some(item) to queue, None to reject.
pub trait Accept<T>: Fn(&[u8], HepMessage) -> Option<T> + Send + Sync + 'static {}
impl<T, F: Fn(&[u8], HepMessage) -> Option<T> + Send + Sync + 'static> Accept<T> for F {}

pub(crate) fn handle<T>(buf: &[u8], counters: &Counters, accept: &impl Accept<T>) -> Option<T> {
    inc(&counters.received);
    match hep::decode(buf) {
        Ok(m) => {
            inc(&counters.decoded);
            let item = accept(buf, m);
            if item.is_none() {
                inc(&counters.rejected);
            }
            item
        }
        Err(e) => {
            inc(&counters.invalid);
            tracing::debug!(error = %e, "invalid HEP packet dropped");
            None
        }
    }
}

/// Binds a UDP socket with a large receive buffer: bursts queue in the
/// kernel instead of being dropped while the consumer is busy.
pub fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = s.set_recv_buffer_size(recv_buffer) {
        tracing::warn!(error = %e, "could not set UDP receive buffer");
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    // Linux reports twice the usable size it granted.
    let got = s.recv_buffer_size().unwrap_or(0);
    if got < recv_buffer {
        tracing::warn!(
            wanted = recv_buffer,
            got,
            "UDP receive buffer capped by the kernel (raise net.core.rmem_max)"
        );
    }
    UdpSocket::from_std(s.into())
}

/// Binds UDP and TCP on one port number. Asked for port 0, UDP picks a free
/// port and TCP may find that number taken (by any TCP socket, an outgoing
/// connection's local port included): then both are picked again.
pub async fn bind_udp_and_tcp(
    addr: SocketAddr,
    recv_buffer: usize,
) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut tries = 0;
    loop {
        let udp = bind_udp(addr, recv_buffer)?;
        match bind_tcp_beside(&udp).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && tries < 20 => {
                tries += 1;
                tracing::debug!(error = %e, "the UDP port's number is taken for TCP; picking another");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Binds TCP on the port UDP got, so both share one number.
pub async fn bind_tcp_beside(udp: &UdpSocket) -> std::io::Result<TcpListener> {
    let addr = udp.local_addr()?;
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("binding TCP {addr}: {e}"),
        )),
    }
}

pub async fn run_udp<T: Weigh + Send + 'static>(
    sock: UdpSocket,
    tx: QueueSender<T>,
    accept: impl Accept<T>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
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
        if let Some(item) = handle(&buf[..n], &counters, &accept) {
            // UDP cannot push back: when the queue is full the message is lost, and counted.
            if tx.try_send(item).is_err() {
                inc(&counters.dropped);
            }
        }
    }
}
