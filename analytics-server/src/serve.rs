//! The HTTP listener loop: accepts TCP connections up to a limit and serves each with hyper
//! (HTTP/1.1 and HTTP/2) under a header-read timeout and an idle timeout, then shuts down
//! gracefully.
//!
//! poem's own `Server` has neither a header-read timeout nor a connection limit, so a client
//! could hold sockets open forever with half-sent headers or idle keep-alive connections.
//! Here:
//!
//! - at most `max_connections` connections are open; while that many are, the loop stops
//!   accepting (new clients wait in the kernel's backlog) instead of failing them;
//! - a request head must arrive within `header_read_timeout` (hyper's timer, armed whenever
//!   the connection waits for a request head, so it also bounds half-sent heads);
//! - a connection on which no byte moved for `idle_timeout` while no request was in flight is
//!   closed;
//! - accept errors (`EMFILE` when out of file descriptors) back off instead of spinning.
//!
//! The request body read timeout is enforced by the middleware, which reads bodies.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::endpoint::BoxEndpoint;
use poem::http;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::ConnectionLimits;

/// Serves `ep` on `listener` until `shutdown` resolves; then stops accepting, lets open
/// connections finish their requests for at most `shutdown_timeout`, and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    ep: BoxEndpoint<'static, Response>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    shutdown_timeout: Duration,
) -> io::Result<()> {
    let ep = Arc::new(ep);
    let local = listener.local_addr()?;
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let open = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    let mut accept_errors = 0u32;
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => {
                    accept_errors = 0;
                    x
                }
                Err(e) => {
                    // EMFILE / ENFILE / ENOBUFS: wait for descriptors to free up rather
                    // than spinning on an accept that fails at once.
                    accept_errors = accept_errors.saturating_add(1);
                    if accept_errors == 1 || accept_errors.is_power_of_two() {
                        tracing::warn!(error = %e, failures = accept_errors, "accept failed; backing off");
                    }
                    let backoff = Duration::from_millis(10u64 << accept_errors.min(6));
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(backoff) => continue,
                    }
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            ep: ep.clone(),
            limits: limits.clone(),
            local,
            remote,
            stop: stop.clone(),
            hard_stop: hard_stop.clone(),
            open: open.clone(),
        };
        tracker.spawn(async move {
            conn.serve(stream).await;
            drop(permit);
        });
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = open.load(Ordering::SeqCst),
            "shutdown timeout reached; closing the remaining connections"
        );
        hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    }
    Ok(())
}

/// One accepted connection.
struct Conn {
    ep: Arc<BoxEndpoint<'static, Response>>,
    limits: ConnectionLimits,
    local: SocketAddr,
    remote: SocketAddr,
    stop: CancellationToken,
    hard_stop: CancellationToken,
    open: Arc<AtomicUsize>,
}

impl Conn {
    async fn serve(self, stream: TcpStream) {
        self.open.fetch_add(1, Ordering::SeqCst);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(ActivityIo {
            inner: stream,
            activity: activity.clone(),
        });
        let ep = self.ep.clone();
        let local = LocalAddr(Addr::SocketAddr(self.local));
        let remote = RemoteAddr(Addr::SocketAddr(self.remote));
        let in_flight = activity.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let ep = ep.clone();
            let local = local.clone();
            let remote = remote.clone();
            let guard = InFlight::start(in_flight.clone());
            async move {
                let req: poem::Request = (req, local, remote, http::uri::Scheme::HTTP).into();
                let resp = ep.get_response(req).await;
                drop(guard);
                Ok::<_, Infallible>(hyper::Response::from(resp))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(self.limits.hyper_max_buf_size())
            .max_headers(self.limits.hyper_max_headers());
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(128)
            .max_header_list_size(self.limits.hyper_max_buf_size() as u32);
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let idle_timeout = self.limits.idle_timeout;
        let reason = tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // Malformed heads, header-read timeouts and heads larger than hyper's
                    // buffer end here (hyper answers some of them itself, without a body).
                    tracing::info!(remote = %self.remote, error = %e, "connection closed with an error");
                }
                None
            }
            _ = self.stop.cancelled() => Some("shutdown"),
            _ = activity.idle_for(self.limits.header_read_timeout, idle_timeout) => Some("idle"),
        };
        if let Some(reason) = reason {
            tracing::debug!(remote = %self.remote, reason, "closing connection");
            conn.as_mut().graceful_shutdown();
            // An idle connection has no request in flight: a short grace is enough. On
            // shutdown in-flight requests may finish until the server's shutdown timeout.
            let grace = if reason == "idle" {
                Duration::from_secs(1)
            } else {
                Duration::MAX
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = self.hard_stop.cancelled() => {}
                _ = sleep_at_most(grace) => {}
            }
        }
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn sleep_at_most(d: Duration) {
    match Instant::now().checked_add(d) {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// When bytes last moved on a connection, and how many requests are being handled on it.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    read_any: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            read_any: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no byte moved for `timeout` while no request was in flight, or when
    /// a new connection sent nothing within `first_byte` (hyper's header timer only starts
    /// once the HTTP version has been detected from the first bytes).
    async fn idle_for(&self, first_byte: Duration, timeout: Duration) {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let first_ms = u64::try_from(first_byte.as_millis()).unwrap_or(u64::MAX);
        loop {
            let last = self.last_ms.load(Ordering::Relaxed);
            if !self.read_any.load(Ordering::Relaxed) {
                tokio::time::sleep_until(self.origin + Duration::from_millis(first_ms)).await;
                if !self.read_any.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            let deadline = self.origin + Duration::from_millis(last.saturating_add(timeout_ms));
            tokio::time::sleep_until(deadline).await;
            let moved = self.last_ms.load(Ordering::Relaxed) != last;
            if !moved && self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            if !moved {
                // A request is being handled (its own timeouts bound it): look again later.
                self.touch();
            }
        }
    }
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A socket that records when bytes last moved.
struct ActivityIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
            self.activity.read_any.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
