//! The admin HTTP listener, and the probe that asks it.
//!
//! - `/healthz` says the process answers; `/readyz` says it is ready for DNS traffic: every
//!   listener is bound (the admin listener starts after them) and every source has answered,
//!   fresh or from the state file, or kept failing for `refresh.ready_timeout_secs`; the body
//!   names the sources still without an answer. Orchestrators probe these — Kubernetes directly, Docker's
//!   HEALTHCHECK through `hubdns health`, which needs no curl in a minimal image.
//! - `/metrics`: Prometheus text ([`prometheus`]).
//! - `/records`: every owned record with its provenance; `/explain?name=…&type=…`: why a name
//!   answers as it does ([`crate::explain`]); `/status.json`: the status page's data ([`views`]).
//! - `/`: the status page — sources, endpoints, forwarding, and a search box that calls
//!   `/explain` (`page.html`, one self-contained file: no external scripts or fonts).
//!
//! The listener is off unless `admin.listen` is set, and it is not authenticated: bind it to
//! loopback or a management network.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use hickory_proto::rr::RecordType;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{live::Live, status::ZoneState};

pub mod prometheus;
pub mod views;

/// The status page.
const PAGE: &str = include_str!("page.html");

/// The routes.
fn router(live: Arc<Live>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/records", get(|State(live): State<Arc<Live>>| async move { Json(views::records(&live.snapshot.load())) }))
        .route("/status.json", get(|State(live): State<Arc<Live>>| async move { Json(views::status(&live)) }))
        .route("/explain", get(explain))
        .with_state(live)
}

async fn metrics(State(live): State<Arc<Live>>) -> Response {
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], prometheus::render(&live)).into_response()
}

/// `/explain`'s parameters.
#[derive(Deserialize)]
struct ExplainParams {
    name: String,
    #[serde(rename = "type", default)]
    qtype: Option<String>,
    /// The client to answer as (`[az]` affinity): an IP address.
    #[serde(default)]
    client: Option<String>,
}

async fn explain(State(live): State<Arc<Live>>, Query(params): Query<ExplainParams>) -> Response {
    let qtype = match params.qtype.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(RecordType::A),
        Some(text) => crate::explain::parse_type(text).ok_or_else(|| format!("`{text}` is not a record type")),
    };
    let client = match params.client.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(text) => text.parse::<std::net::IpAddr>().map(Some).map_err(|_| format!("`{text}` is not an IP address")),
    };
    let handler = live.handler.load();
    let explained = qtype
        .and_then(|qtype| Ok((qtype, client?)))
        .and_then(|(qtype, client)| crate::explain::explain(&live.snapshot.load(), handler.forwarder(), &params.name, qtype, client));
    match explained {
        Ok(explanation) => Json(explanation).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": error }))).into_response(),
    }
}

/// 200 once ready; the body names the sources whose first answer is still missing (which,
/// once ready, are those that kept failing past `refresh.ready_timeout_secs`).
/// A zone file that did not load is named too, but does not make the server unready: every
/// instance reads the same file, and taking them all out of service would fail every name,
/// not one zone's (BIND, too, serves on without it).
async fn readyz(State(live): State<Arc<Live>>) -> (StatusCode, String) {
    let ready = *live.ready.borrow();
    let (waiting, zones) = {
        let board = live.board.lock();
        let zones: Vec<String> = board.config.zones.iter().filter(|z| z.state != ZoneState::Loaded).map(|z| format!("{} ({})", z.file, z.state.as_str())).collect();
        (board.unanswered.join(" "), zones.join(" "))
    };
    let zones = match zones.is_empty() {
        true => String::new(),
        false => format!("; zone files not loaded: {zones}"),
    };
    match (ready, waiting.is_empty()) {
        (true, true) => (StatusCode::OK, format!("ready{zones}\n")),
        (true, false) => (StatusCode::OK, format!("ready; still no first answer from: {waiting}{zones}\n")),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: waiting for the first answer of: {waiting}{zones}\n")),
    }
}

/// Serves the admin routes on `listener` until `shutdown` is cancelled.
pub fn serve(listener: TcpListener, live: Arc<Live>, shutdown: &CancellationToken, tracker: &TaskTracker) {
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let app = router(live);
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
