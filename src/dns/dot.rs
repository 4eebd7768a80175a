//! DNS over TLS (RFC 7858): a TLS handshake, then the same RFC 7766 stream TCP serves
//! ([`super::listener::serve_stream`]), under the same bounds.
//!
//! The allow list and the connection caps are checked at accept, before the handshake costs
//! anything; the handshake must finish within the idle timeout (RFC 7858 §3.4 asks servers to
//! bound it). ALPN `dot` is offered; a client that offers none is served as well.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::dns::{
    handler::{SharedHandler, Transport},
    listener::{Conn, StreamBounds, accept_loop, serve_stream},
    tls::{ALPN_DOT, Certificates, handshake},
};

/// Serves DoT on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    certificates: Arc<Certificates>,
    handler: SharedHandler,
    bounds: StreamBounds,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let acceptor = TlsAcceptor::from(certificates.server_config(ALPN_DOT));
    let (h, b, s, t) = (handler.clone(), bounds.clone(), shutdown.clone(), tracker.clone());
    accept_loop(listener, handler, bounds, "DoT", shutdown, tracker, move |stream, src, admitted| {
        let conn = Conn { src, transport: Transport::Tls, idle: b.idle, queries: b.queries };
        let (acceptor, handler, shutdown, tracker) = (acceptor.clone(), h.clone(), s.clone(), t.clone());
        async move {
            let Some(tls) = handshake(&acceptor, stream, conn.idle, src, "DoT").await else { return };
            let (reader, writer) = tokio::io::split(tls);
            serve_stream(reader, writer, conn, handler, shutdown, tracker).await;
            drop(admitted);
        }
    })
    .await;
}
