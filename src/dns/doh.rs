//! DNS over HTTPS (RFC 8484) on hyper: HTTP/2 and HTTP/1.1 over TLS, GET and POST.
//!
//! - `GET <https_path>?dns=<base64url>` (§4.1: base64url without padding; padding is
//!   tolerated) and `POST <https_path>` with a body of `application/dns-message` (§4.1, §6).
//!   Other paths get 404, other methods 405 (HEAD too, without a body), another content type
//!   415, a body over 65535 bytes 413, a body slower than the idle timeout 408, a `dns` that
//!   is missing or not base64url 400 (§4.2.1: a query that is not a
//!   DNS message is an HTTP error, not a DNS one).
//! - The answer is the handler's, as over TCP (answers up to 65535 bytes, §6), sent as
//!   `application/dns-message` with `Cache-Control: max-age` set to the smallest TTL in it
//!   (§5.1), so an HTTP cache on the way keeps it no longer than DNS would.
//! - Bounds: the allow list and the shared connection caps at accept, the handshake and
//!   idleness within `tcp_idle_timeout_secs`, HTTP/2 streams per connection
//!   (`http2_max_streams`), and `queries_per_connection`, after which the connection is
//!   closed gracefully (HTTP/2 GOAWAY; HTTP/1.1 `Connection: close`).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpListener, sync::Notify};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use hickory_proto::op::Message;

use crate::{
    dns::{
        handler::{Outcome, Seen, SharedHandler, Transport},
        listener::{Admitted, StreamBounds, accept_loop},
        tls::{ALPN_DOH, Certificates, handshake},
    },
    prepared::HEADER_LEN,
};

/// The media type of a DNS message in HTTP (RFC 8484 §6).
pub const DNS_MESSAGE: &str = "application/dns-message";

/// The largest DNS message (RFC 8484 §6: a DoH message is at most 65535 bytes).
const MAX_MESSAGE: usize = 65_535;

/// What every DoH connection of one listener shares.
struct Site {
    handler: SharedHandler,
    path: String,
}

/// What one connection has done.
struct ConnState {
    src: SocketAddr,
    /// Requests being answered now.
    in_flight: AtomicUsize,
    /// Requests taken so far.
    taken: AtomicUsize,
    /// When the last request ended, as an offset from `opened`.
    last_ms: AtomicUsize,
    opened: Instant,
    /// Told when the connection has had its `queries_per_connection`.
    full: Notify,
    limit: usize,
    /// How long a request's body may take.
    idle: Duration,
}

impl ConnState {
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Relaxed) as u64);
        self.opened.elapsed().saturating_sub(last)
    }
}

/// Serves DoH on `listener` until shutdown, at `path`.
pub async fn serve(
    listener: TcpListener,
    certificates: Arc<Certificates>,
    handler: SharedHandler,
    path: String,
    (bounds, http2_streams): (StreamBounds, u32),
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let acceptor = TlsAcceptor::from(certificates.server_config(ALPN_DOH));
    let site = Arc::new(Site { handler: handler.clone(), path });
    let (b, s) = (bounds.clone(), shutdown.clone());
    accept_loop(listener, handler, bounds, "DoH", shutdown, tracker, move |stream, src, admitted| {
        let (acceptor, site, bounds, shutdown) = (acceptor.clone(), site.clone(), b.clone(), s.clone());
        async move {
            let Some(tls) = handshake(&acceptor, stream, bounds.idle, src, "DoH").await else { return };
            serve_connection(tls, src, site, &bounds, http2_streams, shutdown, admitted).await;
        }
    })
    .await;
}

/// One HTTP connection: hyper speaks HTTP/2 or HTTP/1.1 (whichever the client starts with);
/// this watches it for idleness, its query budget and shutdown.
async fn serve_connection<T>(
    tls: T,
    src: SocketAddr,
    site: Arc<Site>,
    bounds: &StreamBounds,
    http2_streams: u32,
    shutdown: CancellationToken,
    admitted: Admitted,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState {
        src,
        in_flight: AtomicUsize::new(0),
        taken: AtomicUsize::new(0),
        last_ms: AtomicUsize::new(0),
        opened: Instant::now(),
        full: Notify::new(),
        limit: bounds.queries,
        idle: bounds.idle,
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(bounds.idle);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(http2_streams);
    let service = {
        let state = state.clone();
        service_fn(move |request| answer(request, site.clone(), state.clone()))
    };
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let tick = bounds.idle.min(Duration::from_secs(1));
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%src, %error, "DoH connection ended");
                }
                break;
            }
            () = shutdown.cancelled(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = state.full.notified(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = tokio::time::sleep(tick) => match closing {
                // A client that will not finish closing is dropped after one more idle period.
                Some(since) if since.elapsed() >= bounds.idle => break,
                Some(_) => {}
                None if state.in_flight.load(Relaxed) == 0 && state.idle_for() >= bounds.idle => {
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                None => {}
            },
        }
    }
    drop(admitted);
}

/// One HTTP request: a DNS query out of it, the handler's answer back.
async fn answer(request: Request<Incoming>, site: Arc<Site>, state: Arc<ConnState>) -> Result<Response<Full<Bytes>>, Infallible> {
    let taken = state.taken.fetch_add(1, Relaxed) + 1;
    if taken >= state.limit {
        state.full.notify_one();
    }
    state.in_flight.fetch_add(1, Relaxed);
    let response = respond(request, &site, state.src, state.idle).await;
    state.in_flight.fetch_sub(1, Relaxed);
    state.last_ms.store(usize::try_from(state.opened.elapsed().as_millis()).unwrap_or(usize::MAX), Relaxed);
    Ok(response)
}

async fn respond(request: Request<Incoming>, site: &Site, src: SocketAddr, idle: Duration) -> Response<Full<Bytes>> {
    // HEAD gets the status a GET would, without a body (RFC 9110 §9.3.2; HTTP/2 resets a
    // stream whose HEAD response carries one).
    if request.method() == Method::HEAD {
        let code = if request.uri().path() == site.path { StatusCode::METHOD_NOT_ALLOWED } else { StatusCode::NOT_FOUND };
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = code;
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
        return response;
    }
    if request.uri().path() != site.path {
        return status(StatusCode::NOT_FOUND, "not a DoH path");
    }
    let query = match *request.method() {
        Method::GET => match request.uri().query().and_then(dns_parameter) {
            Some(query) => query,
            None => return status(StatusCode::BAD_REQUEST, "GET needs ?dns= with a base64url DNS message (RFC 8484 §4.1)"),
        },
        Method::POST => {
            let media = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let dns_message = is_dns_message(media);
            let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            if declared.is_some_and(|len| len > MAX_MESSAGE) {
                return status(StatusCode::PAYLOAD_TOO_LARGE, "a DNS message is at most 65535 bytes");
            }
            // Read before any answer, even a refusal: an HTTP/2 client still sending its body
            // when the stream is reset reports an error instead of the status. A body that
            // does not arrive within the idle timeout ends the request: a stalled one would
            // otherwise hold its connection, and a connection slot, for ever.
            let body = tokio::time::timeout(idle, Limited::new(request.into_body(), MAX_MESSAGE).collect()).await;
            match body {
                Err(_) => return status(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time"),
                Ok(Err(_)) => return status(StatusCode::PAYLOAD_TOO_LARGE, "a DNS message is at most 65535 bytes"),
                Ok(Ok(_)) if !dns_message => return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "POST needs Content-Type: application/dns-message"),
                Ok(Ok(body)) => body.to_bytes().to_vec(),
            }
        }
        _ => {
            let _ = tokio::time::timeout(idle, Limited::new(request.into_body(), MAX_MESSAGE).collect()).await;
            let mut response = status(StatusCode::METHOD_NOT_ALLOWED, "GET or POST");
            response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
            return response;
        }
    };
    if query.len() < HEADER_LEN {
        return status(StatusCode::BAD_REQUEST, "not a DNS message");
    }
    let started = Instant::now();
    let handler = site.handler.load_full();
    let mut reply = Vec::new();
    let reply = match handler.handle(&query, src, Transport::Https, &mut reply) {
        Outcome::Reply(served) => {
            let seen = Seen { src, transport: Transport::Https, question: query.get(HEADER_LEN..).unwrap_or_default(), reply: &reply };
            handler.observe(served, seen, started);
            reply
        }
        Outcome::Forward(job) => handler.forward(job).await,
        Outcome::Drop => {
            handler.observe_drop();
            return status(StatusCode::BAD_REQUEST, "not a DNS query");
        }
    };
    if reply.is_empty() {
        return status(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let ttl = min_ttl(&reply);
    let mut response = Response::new(Full::new(Bytes::from(reply)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(DNS_MESSAGE));
    if let Some(ttl) = ttl {
        // Digits only: always a valid header value.
        if let Ok(value) = header::HeaderValue::from_str(&format!("max-age={ttl}")) {
            headers.insert(header::CACHE_CONTROL, value);
        }
    }
    response
}

fn status(code: StatusCode, why: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(why.as_bytes())));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    response
}

/// Whether a Content-Type names `application/dns-message` (parameters and case aside).
fn is_dns_message(media: &str) -> bool {
    media.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(DNS_MESSAGE))
}

/// The DNS message in a GET's `dns` parameter (RFC 8484 §4.1: base64url, no padding).
pub fn dns_parameter(query: &str) -> Option<Vec<u8>> {
    let value = query.split('&').find_map(|pair| pair.strip_prefix("dns="))?;
    data_encoding::BASE64URL_NOPAD.decode(value.trim_end_matches('=').as_bytes()).ok()
}

/// The freshness of an answer (RFC 8484 §5.1): the smallest TTL of its answer and authority
/// records; `None` for a message with none (a bare error) or one that does not parse.
fn min_ttl(reply: &[u8]) -> Option<u32> {
    let message = Message::from_vec(reply).ok()?;
    message.answers.iter().chain(message.authorities.iter()).map(|r| r.ttl).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_parameters_are_base64url_with_or_without_padding() {
        // RFC 8484 §4.1.1's example: a query for www.example.com A, ID 0.
        let example = "AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB";
        let decoded = dns_parameter(&format!("ct&dns={example}")).expect("decodes");
        assert_eq!(&decoded[..4], &[0, 0, 1, 0]);
        assert_eq!(decoded.len(), 33);
        assert_eq!(dns_parameter(&format!("dns={example}==")), Some(decoded));
        assert_eq!(dns_parameter("dns=+/+/"), None, "base64, not base64url");
        assert_eq!(dns_parameter("name=x"), None);
    }

    #[test]
    fn content_types() {
        assert!(is_dns_message("application/dns-message"));
        assert!(is_dns_message("Application/DNS-Message; charset=binary"));
        assert!(!is_dns_message("application/dns-json"));
        assert!(!is_dns_message(""));
    }
}
