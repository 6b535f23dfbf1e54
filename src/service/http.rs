//! The HTTP server `swarm run --metrics` and `swarm serve` answer on: axum on a tokio
//! runtime of one thread of its own, so that the swarm's threads never run async code.
//! Addresses are loopback unless the user names another.

use super::control::Views;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A bad `--listen` or `--metrics` address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Not `HOST:PORT` or `PORT`.
    #[error("{0:?}: expected PORT, HOST:PORT or [IPV6]:PORT")]
    BadAddress(String),
    /// It could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime could not start.
    #[error("cannot start the HTTP thread: {0}")]
    Runtime(std::io::Error),
}

/// `PORT` (on loopback), `HOST:PORT` or `[IPV6]:PORT`; `localhost` is loopback.
pub fn parse_addr(s: &str) -> Result<SocketAddr, HttpError> {
    let bad = || HttpError::BadAddress(s.to_string());
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().map_err(|_| bad())
}

/// How long requests in progress may take to end once the server is stopped.
pub const GRACE: Duration = Duration::from_secs(5);

/// A running server; dropping it stops it (requests in progress get [`GRACE`] to end).
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` now (so that a taken port is an error here) and serves `router` on a
    /// thread of its own.
    pub fn start(addr: SocketAddr, router: Router) -> Result<Server, HttpError> {
        let std_listener =
            std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
        let bound = std_listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|source| HttpError::Bind { addr, source })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HttpError::Runtime)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("swarm-http".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
                    let told = stopping.clone();
                    let served = axum::serve(listener, router).with_graceful_shutdown(async move {
                        let _ = rx.await;
                        told.notify_one();
                    });
                    // Requests in progress get GRACE to end; a client that stops reading a
                    // stream does not keep the server (and its swarm) from stopping.
                    let grace = async {
                        stopping.notified().await;
                        tokio::time::sleep(GRACE).await;
                    };
                    tokio::select! {
                        served = served => {
                            if let Err(e) = served {
                                tracing::warn!(error = %e, "HTTP server stopped");
                            }
                        }
                        () = grace => tracing::warn!("HTTP connections still open after the grace period: closed"),
                    }
                });
                // Blocking work still running (a file being read for a stream) is let go.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(HttpError::Runtime)?;
        Ok(Server {
            addr: bound,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `GET /metrics` from the observer behind `views`.
pub fn metrics_router(views: Views) -> Router {
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| metrics(views.clone(), headers)),
    )
}

/// The exposition of the current view: OpenMetrics to a client that accepts it (as
/// Prometheus does), the classic text format to others.
pub async fn metrics(views: Views, headers: HeaderMap) -> axum::response::Response {
    let open = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    // The observer answers within microseconds; asking it blocks this one thread only.
    match tokio::task::spawn_blocking(move || views.get()).await {
        Ok(Some(v)) if open => (
            [(CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
            super::metrics::encode(&v),
        )
            .into_response(),
        Ok(Some(v)) => (
            [(CONTENT_TYPE, super::metrics::CLASSIC_CONTENT_TYPE)],
            super::metrics::to_classic(&super::metrics::encode(&v)),
        )
            .into_response(),
        _ => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the swarm is stopping\n",
        )
            .into_response(),
    }
}
