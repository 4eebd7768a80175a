//! The admin HTTP listener, and the probe that asks it.
//!
//! `/healthz` says the process answers; `/readyz` says it is ready for DNS traffic: every
//! listener is bound (the admin listener starts after them) and every source has answered,
//! fresh or from the state file. Orchestrators probe these — Kubernetes directly, Docker's
//! HEALTHCHECK through `hubdns health`, which needs no curl in a minimal image.
//!
//! The listener is off unless `admin.listen` is set, and it is not authenticated: bind it to
//! loopback or a management network.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// What the handlers read.
#[derive(Clone)]
struct AdminState {
    ready: watch::Receiver<bool>,
}

/// The routes.
fn router(ready: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState { ready })
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    match *state.ready.borrow() {
        true => (StatusCode::OK, "ready\n"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not ready: waiting for every source's first answer\n"),
    }
}

/// Serves the admin routes on `listener` until `shutdown` is cancelled.
pub fn serve(listener: TcpListener, ready: watch::Receiver<bool>, shutdown: &CancellationToken, tracker: &TaskTracker) {
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let app = router(ready);
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(%error, "admin listener failed; DNS service goes on");
        }
    });
}

/// Asks `path` of the admin listener at `addr`: the status code and body. Plain HTTP/1.0 over
/// std, so `hubdns health` needs no runtime and no HTTP client.
pub fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.take(1 << 20).read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response from {addr}")))?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}
