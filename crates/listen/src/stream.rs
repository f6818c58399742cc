//! HEP over TCP and TLS: the accept loop with its bounds (connection cap,
//! backoff on accept errors, handshake, idle and frame timeouts) and the
//! per-connection framing loop.
use std::sync::Arc;
use std::time::Duration;

use hep::StreamFramer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{Accept, Counters, MAX_GARBAGE, QueueSender, Weigh, add, handle, inc};

/// Bounds on stream connections; every refusal and cut is counted.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Connections open at once (TCP and TLS each); one more is closed at once.
    pub max_connections: usize,
    /// A connection sending nothing this long is closed.
    pub idle_timeout: Duration,
    /// A HEP frame must arrive whole within this long of its first byte
    /// (a slow-loris sender trickling bytes is cut off).
    pub frame_timeout: Duration,
    /// A TLS handshake must finish within this long.
    pub handshake_timeout: Duration,
    /// Longest pause after failing accept calls (out of file descriptors):
    /// the pause doubles from 10 ms up to this.
    pub max_accept_backoff: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_accept_backoff: Duration::from_secs(1),
        }
    }
}

/// Read buffer per connection: frames longer than it are assembled by the framer.
const READ_BUFFER: usize = 16 * 1024;

/// Pause after the `failures`-th accept error in a row: 10 ms doubling, capped.
pub fn accept_backoff(failures: u32, max: Duration) -> Duration {
    Duration::from_millis(10)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max)
}

/// Where the accept loop gets connections from: a TCP listener, or a test's fake.
pub trait Incoming: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(
        &mut self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, std::net::SocketAddr)>> + Send;
}

impl Incoming for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Stream, std::net::SocketAddr)> {
        TcpListener::accept(self).await
    }
}

/// HEP over TCP (`tls` None) or TLS, until `stop`.
pub async fn run_stream<I: Incoming, T: Weigh + Send + 'static>(
    mut incoming: I,
    tls: Option<TlsAcceptor>,
    tx: QueueSender<T>,
    accept: impl Accept<T>,
    counters: Arc<Counters>,
    limits: StreamLimits,
    stop: CancellationToken,
) {
    let accept = Arc::new(accept);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut failures = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            r = incoming.accept() => match r {
                Ok(c) => { failures = 0; c }
                Err(e) => {
                    // EMFILE and the like: retrying at once would spin; pause, longer each time.
                    failures += 1;
                    inc(&counters.accept_errors);
                    let pause = accept_backoff(failures, limits.max_accept_backoff);
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(error = %e, failures, ?pause, "accepting a HEP connection failed");
                    }
                    tokio::select! { _ = tokio::time::sleep(pause) => {}, _ = stop.cancelled() => return }
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            inc(&counters.connections_refused);
            tracing::debug!(%peer, "connection cap reached; closing");
            continue;
        };
        inc(&counters.tcp_connections);
        let (tx, counters, stop, accept, tls, limits) = (
            tx.clone(),
            counters.clone(),
            stop.clone(),
            accept.clone(),
            tls.clone(),
            limits.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            counters
                .open_connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = match tls {
                None => serve_stream(stream, &tx, &*accept, &counters, &limits, &stop).await,
                Some(tls) => {
                    match tokio::time::timeout(limits.handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(s)) => {
                            inc(&counters.tls_connections);
                            serve_stream(s, &tx, &*accept, &counters, &limits, &stop).await
                        }
                        Ok(Err(e)) => {
                            inc(&counters.tls_handshake_failures);
                            Err(e)
                        }
                        Err(_) => {
                            inc(&counters.tls_handshake_failures);
                            Err(std::io::Error::other("TLS handshake timed out"))
                        }
                    }
                }
            };
            counters
                .open_connections
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "HEP connection ended");
            }
        });
    }
}

async fn serve_stream<S: AsyncRead + Unpin, T: Weigh>(
    mut stream: S,
    tx: &QueueSender<T>,
    accept: &impl Accept<T>,
    counters: &Counters,
    limits: &StreamLimits,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut garbage_seen = 0;
    let mut last_read = Instant::now();
    // When the frame still incomplete began arriving.
    let mut partial_since: Option<Instant> = None;
    loop {
        let idle_at = last_read + limits.idle_timeout;
        let deadline = partial_since.map_or(idle_at, |p| idle_at.min(p + limits.frame_timeout));
        let n = tokio::select! {
            r = stream.read(&mut buf) => r?,
            _ = tokio::time::sleep_until(deadline) => {
                if partial_since.is_some_and(|p| p + limits.frame_timeout <= Instant::now()) {
                    inc(&counters.slow_closed);
                    return Err(std::io::Error::other("HEP frame not complete in time; closing"));
                }
                inc(&counters.idle_closed);
                return Err(std::io::Error::other("connection idle; closing"));
            }
            _ = stop.cancelled() => 0,
        };
        if n == 0 {
            return Ok(());
        }
        last_read = Instant::now();
        framer.push(&buf[..n]);
        let mut framed = false;
        while let Some(frame) = framer.next_frame() {
            framed = true;
            if let Some(item) = handle(frame, counters, accept) {
                // TCP can push back: wait for room rather than drop.
                if tx.send(item).await.is_err() {
                    inc(&counters.dropped);
                    return Ok(());
                }
            }
        }
        partial_since = match (framer.buffered(), framed, partial_since) {
            (0, _, _) => None,
            // A frame completed: what is left is the start of the next one.
            (_, true, _) | (_, _, None) => Some(last_read),
            (_, false, since) => since,
        };
        let stats = framer.stats();
        add(
            &counters.tcp_garbage_bytes,
            stats.garbage_bytes - garbage_seen,
        );
        garbage_seen = stats.garbage_bytes;
        if stats.garbage_since_frame > MAX_GARBAGE {
            inc(&counters.invalid);
            return Err(std::io::Error::other("too much non-HEP data; closing"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let max = Duration::from_secs(1);
        let pauses: Vec<u128> = (1..=9)
            .map(|f| accept_backoff(f, max).as_millis())
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(accept_backoff(u32::MAX, max), max);
    }
}

/// File descriptors kept for everything but HEP connections: the lake's files,
/// HTTP clients, object-store connections.
pub const RESERVED_FDS: u64 = 256;

/// Raises the soft open-files limit to the hard one and returns the connection
/// cap that fits in it: `listeners` stream listeners of `wanted` connections
/// each, plus [`RESERVED_FDS`]. A flood of connections then meets the cap, never
/// the descriptor limit (where accepts fail and writing Parquet does too).
pub fn fit_connections(wanted: usize, listeners: usize) -> usize {
    match raise_open_files_limit() {
        Some(limit) => connection_cap(wanted, listeners, limit),
        None => wanted,
    }
}

/// Pure rule behind [`fit_connections`].
pub fn connection_cap(wanted: usize, listeners: usize, open_files: u64) -> usize {
    let room = open_files.saturating_sub(RESERVED_FDS) / listeners.max(1) as u64;
    wanted.min(room.max(1) as usize)
}

#[cfg(target_os = "linux")]
fn raise_open_files_limit() -> Option<u64> {
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return None;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                l.rlim_cur = l.rlim_max;
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is u64 here, not on every target
        Some(l.rlim_cur as u64)
    }
}

#[cfg(not(target_os = "linux"))]
fn raise_open_files_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod fd_tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_everything_else() {
        assert_eq!(connection_cap(1024, 2, 1024), 384);
        assert_eq!(connection_cap(1024, 1, 1 << 20), 1024);
        assert_eq!(connection_cap(1024, 2, 100), 1);
    }
}
