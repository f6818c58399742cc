//! Serves the API's router over HTTP/1.1 with the limits a slow or greedy
//! client meets: a connection cap (one more is closed at once), a time to
//! send a request's head (also the longest an idle keep-alive connection
//! waits for its next request), a deadline for the whole request (body read
//! and answer worked out), and a time a response may wait for the client to
//! read it. Counted in `/metrics`.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use listen::CancellationToken;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// A request's head must arrive whole within this; an idle keep-alive
    /// connection is closed after it.
    pub header_timeout: Duration,
    /// A request's body read and its answer worked out within this, or 503.
    pub request_timeout: Duration,
    /// A response the client does not read for this long ends the connection.
    pub stall_timeout: Duration,
}

#[derive(Debug, Default)]
pub struct HttpCounters {
    pub connections: AtomicU64,
    pub open: AtomicU64,
    pub refused: AtomicU64,
    /// Connections closed for a head not sent in time (slow or idle clients).
    pub header_timeouts: AtomicU64,
    /// Requests answered 503: body and answer not done within the request timeout.
    pub request_timeouts: AtomicU64,
    /// Connections closed for a response the client did not read.
    pub stalled: AtomicU64,
}

impl HttpCounters {
    pub fn rows(&self) -> Vec<(&'static str, &'static str, u64)> {
        use listen::get;
        vec![
            (
                "http_connections",
                "HTTP connections accepted",
                get(&self.connections),
            ),
            (
                "http_connections_refused",
                "HTTP connections closed at once: the cap (--http-max-connections) was reached",
                get(&self.refused),
            ),
            (
                "http_header_timeouts",
                "HTTP connections closed: a request head not sent in time, or idle too long",
                get(&self.header_timeouts),
            ),
            (
                "http_request_timeouts",
                "HTTP requests answered 503: body and answer not done within the request timeout",
                get(&self.request_timeouts),
            ),
            (
                "http_stalled",
                "HTTP connections closed: the client did not read its response",
                get(&self.stalled),
            ),
        ]
    }
}

/// Serves `app` on `listener` until `stop`, then lets open requests finish.
pub async fn serve<L>(
    mut listener: L,
    app: axum::Router,
    limits: HttpLimits,
    counters: Arc<HttpCounters>,
    stop: CancellationToken,
) where
    L: axum::serve::Listener,
    L::Io: Unpin,
{
    let app = app.layer(axum::middleware::from_fn_with_state(
        (limits.request_timeout, counters.clone()),
        request_deadline,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut open = tokio::task::JoinSet::new();
    loop {
        let (io, _peer) = tokio::select! {
            c = listener.accept() => c,
            _ = stop.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            continue; // dropped: closed
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let (app, counters, stop) = (app.clone(), counters.clone(), stop.clone());
        open.spawn(async move {
            let _slot = slot;
            counters.open.fetch_add(1, Ordering::Relaxed);
            let io = StallGuard::new(io, limits.stall_timeout, counters.clone());
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
            let mut conn = std::pin::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r
                && e.is_timeout()
            {
                counters.header_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            counters.open.fetch_sub(1, Ordering::Relaxed);
        });
        // Reap finished connections as we go.
        while open.try_join_next().is_some() {}
    }
    while open.join_next().await.is_some() {}
}

async fn request_deadline(
    axum::extract::State((timeout, counters)): axum::extract::State<(Duration, Arc<HttpCounters>)>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            counters.request_timeouts.fetch_add(1, Ordering::Relaxed);
            axum::response::IntoResponse::into_response(web::ApiError::TimedOut(format!(
                "the request was not read and answered within {} s",
                timeout.as_secs()
            )))
        }
    }
}

/// An I/O stream whose writes fail once one has made no progress for
/// `timeout`: a client that stops reading its response. Reads are left to
/// the head timeout and the request deadline (hyper keeps a read pending
/// while a connection waits for its next request).
struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    waiting: bool,
    counters: Arc<HttpCounters>,
}

impl<T> StallGuard<T> {
    fn new(inner: T, timeout: Duration, counters: Arc<HttpCounters>) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
            counters,
        }
    }

    /// After a poll of the inner stream: on progress, clear the wait; when
    /// pending, start the clock (once) and fail when it runs out.
    fn check<R>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match r {
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    let at = Instant::now() + self.timeout;
                    self.deadline.as_mut().reset(at);
                }
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.counters.stalled.fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no progress: closing",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.waiting = false;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
