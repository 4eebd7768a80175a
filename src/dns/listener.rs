//! Sockets and their loops, with the resource bounds a resolver on every query path needs.
//!
//! UDP: several sockets per address bound with SO_REUSEPORT, so the kernel spreads packets
//! over cores. Each socket has a thread of its own that blocks in `recvfrom` and answers owned
//! and cached names inline: one system call in, one out, no readiness polling and no task per
//! packet — the same cost per packet as the simplest echo server. A query that must go
//! upstream, holding one of the `forward.max_in_flight` slots, is sent upstream from that same
//! thread; the runtime thread that receives the upstream's answer sends the client's without
//! blocking (a full socket buffer drops it, as UDP may).
//!
//! TCP: one accept loop per address. A client outside `server.allow` is closed at accept;
//! at most `tcp_max_connections` connections in all and `tcp_max_connections_per_client`
//! from one address (extra ones are closed at once); a connection that is idle, or slow to
//! send a query it started, for `tcp_idle_timeout_secs` is closed; and one connection has at
//! most `tcp_forwards_per_connection` forwards in flight (it reads no further query until one
//! is answered), so a pipelining client cannot take every `forward.max_in_flight` slot.
//!
//! Before any of that, a UDP query passes the per-client rate limit ([`super::ratelimit`]):
//! dropped, or answered TC=1, when its network is over budget.
//!
//! Shutdown: cancelling the token stops every task at its next await, and [`wake_udp`] wakes
//! the UDP threads to see it; forwards in flight are tracked so the caller can let them finish.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    time::timeout,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use hickory_proto::op::ResponseCode;

use crate::{
    dns::{
        handler::{Outcome, Seen, SharedHandler, Transport},
        ratelimit::Verdict,
    },
    prepared::HEADER_LEN,
};

/// Kernel receive buffer asked for each UDP socket: absorbs bursts while a core is busy.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Responses one TCP connection may have waiting to be written; past it the connection stops
/// reading queries until the client reads its answers.
const TCP_PIPELINE_DEPTH: usize = 64;

/// Most bytes of responses one stream write carries (a TLS record holds 16 KiB).
const COALESCE: usize = 16 << 10;

/// How many times to pick a fresh port when binding port 0 finds the TCP side taken.
const PORT_ZERO_ATTEMPTS: usize = 16;

/// The sockets of one listen address, bound and ready to serve.
pub struct Bound {
    udp: Vec<UdpSocket>,
    tcp: TcpListener,
    addr: SocketAddr,
}

impl Bound {
    /// Binds `sockets` UDP sockets and one TCP listener on `addr`. With port 0, UDP and TCP
    /// get the same free port.
    pub fn bind(addr: SocketAddr, sockets: usize) -> io::Result<Self> {
        let attempts = if addr.port() == 0 { PORT_ZERO_ATTEMPTS } else { 1 };
        let mut last_error = None;
        for _ in 0..attempts {
            match Self::try_bind(addr, sockets.max(1)) {
                Ok(bound) => return Ok(bound),
                Err(error) if error.kind() == io::ErrorKind::AddrInUse && addr.port() == 0 => {
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no port found")))
    }

    fn try_bind(addr: SocketAddr, sockets: usize) -> io::Result<Self> {
        let first = udp_socket(addr)?;
        let addr = first.local_addr()?;
        let mut udp = vec![first];
        for _ in 1..sockets {
            udp.push(udp_socket(addr)?);
        }
        let tcp = tcp_listener(addr)?;
        Ok(Self { udp, tcp, addr })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts every loop of this address on `tracker`. Returns the UDP sockets, which the
    /// caller must pass to [`wake_udp`] after cancelling `shutdown`.
    pub fn serve(self, handler: SharedHandler, bounds: &StreamBounds, shutdown: &CancellationToken, tracker: &TaskTracker) -> Vec<Arc<UdpSocket>> {
        let udp: Vec<Arc<UdpSocket>> = self.udp.into_iter().map(Arc::new).collect();
        for socket in &udp {
            let (socket, handler, shutdown, tasks) = (socket.clone(), handler.clone(), shutdown.clone(), tracker.clone());
            tracker.spawn_blocking(move || serve_udp(&socket, &handler, &shutdown, &tasks));
        }
        tracker.spawn(serve_tcp(self.tcp, handler, bounds.clone(), shutdown.clone(), tracker.clone()));
        udp
    }
}

/// A blocking UDP socket: its thread sleeps in `recvfrom` until a packet or shutdown comes.
fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // The kernel may grant less (net.core.rmem_max); that is fine.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A TCP listener on `addr` (the DoT and DoH listeners' too).
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Wakes the threads blocked in `recvfrom` on `sockets` so they see the cancelled token.
/// Shutting a socket's read side does that — Linux wakes readers even of an unconnected UDP
/// socket, while reporting ENOTCONN — and every later read returns at once.
pub fn wake_udp(sockets: &[Arc<UdpSocket>]) {
    for socket in sockets {
        let _ = SockRef::from(&**socket).shutdown(std::net::Shutdown::Read);
    }
}

/// One UDP socket's thread: receive, answer, send, until shutdown.
fn serve_udp(socket: &Arc<UdpSocket>, handler: &SharedHandler, shutdown: &CancellationToken, tracker: &TaskTracker) {
    let runtime = tokio::runtime::Handle::current();
    // One buffer for queries, reused: the largest datagram there can be; and one for replies.
    let mut buf = vec![0u8; 65_535];
    let mut reply = Vec::with_capacity(4096);
    while !shutdown.is_cancelled() {
        let (len, src) = match socket.recv_from(&mut buf) {
            Ok((0, _)) if shutdown.is_cancelled() => break,
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "UDP receive failed");
                continue;
            }
        };
        let started = Instant::now();
        let query = &buf[..len];
        // The handler of this moment: a reload swaps in another for the next packet.
        let handler = handler.load();
        match handler.admit(src, started) {
            Verdict::Allow => {}
            Verdict::Drop => continue,
            Verdict::Slip => {
                if handler.truncated(query, src, &mut reply) && !send_udp(socket, &reply, src, 0) {
                    handler.observe_send_failed();
                }
                continue;
            }
        }
        match handler.handle(query, src, Transport::Udp, &mut reply) {
            Outcome::Reply(served) if served.rcode == ResponseCode::Refused && !handler.admit_refused(src, started) => {}
            Outcome::Reply(served) => {
                if !send_udp(socket, &reply, src, 0) {
                    handler.observe_send_failed();
                }
                let seen = Seen { src, transport: Transport::Udp, question: query.get(HEADER_LEN..).unwrap_or_default(), reply: &reply };
                handler.observe(served, seen, started);
            }
            Outcome::Forward(job) => {
                // The upstream query is sent from this thread; the answer is sent from the
                // runtime thread that receives it. The token keeps shutdown waiting for it.
                let _runtime = runtime.enter();
                let (socket, handler, token) = (socket.clone(), arc_swap::Guard::into_inner(handler), tracker.token());
                handler.start_forward(job, move |bytes| {
                    // Never block the runtime: a full send buffer drops the answer (counted).
                    let sent = send_udp(&socket, &bytes, src, libc::MSG_DONTWAIT);
                    drop(token);
                    sent
                });
            }
            Outcome::Drop => handler.observe_drop(),
        }
    }
}

/// TCP connections open per client address, bounded.
pub struct ClientSlots {
    open: Mutex<HashMap<IpAddr, usize>>,
    limit: usize,
}

/// One connection's place in [`ClientSlots`], given back when dropped.
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl ClientSlots {
    /// At most `limit` connections per client address.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { open: Mutex::new(HashMap::new()), limit })
    }

    /// A place for one more connection from `ip`, or `None` if it has `limit` open.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot { slots: self.clone(), ip })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Sends one UDP answer; `false` (logged at debug) if the kernel refused it.
fn send_udp(socket: &UdpSocket, bytes: &[u8], to: SocketAddr, flags: libc::c_int) -> bool {
    match SockRef::from(socket).send_to_with_flags(bytes, &to.into(), flags) {
        Ok(_) => true,
        Err(error) => {
            tracing::debug!(%to, %error, "UDP send failed");
            false
        }
    }
}

/// The bounds every stream connection shares, TCP, DoT and DoH alike: one pool of
/// `tcp_max_connections`, `tcp_max_connections_per_client` from one address, the idle
/// timeout, and `queries_per_connection`.
#[derive(Clone)]
pub struct StreamBounds {
    /// Connections open in all.
    pub slots: Arc<Semaphore>,
    /// Connections open per client address.
    pub per_client: Arc<ClientSlots>,
    /// How long a connection may be idle, or slow to finish a query or handshake.
    pub idle: Duration,
    /// Most queries one connection may send.
    pub queries: usize,
}

/// A connection's places among the [`StreamBounds`], given back when it closes.
pub struct Admitted {
    _total: OwnedSemaphorePermit,
    _client: ClientSlot,
}

impl StreamBounds {
    /// The places a new connection from `src` takes; `None` (and the caller closes it) for a
    /// client outside `server.allow` or over a bound. `what` names the listener in the log.
    pub fn admit(&self, handler: &SharedHandler, src: SocketAddr, what: &str) -> Option<Admitted> {
        if !handler.load().allows(src.ip()) {
            tracing::debug!(%src, "{what} connection closed: client outside server.allow");
            return None;
        }
        let Some(client) = self.per_client.take(src.ip()) else {
            tracing::debug!(%src, "{what} connection closed: tcp_max_connections_per_client reached");
            return None;
        };
        let Ok(total) = self.slots.clone().try_acquire_owned() else {
            tracing::debug!(%src, "{what} connection closed: tcp_max_connections reached");
            return None;
        };
        Some(Admitted { _total: total, _client: client })
    }
}

/// Accepts connections on `listener` until shutdown, closing at once those [`StreamBounds::admit`]
/// refuses, and runs `serve` on a task of its own for each other one.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    handler: SharedHandler,
    bounds: StreamBounds,
    what: &'static str,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, Admitted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, src) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "{what} accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = bounds.admit(&handler, src, what) else { continue };
        let _ = stream.set_nodelay(true);
        tracker.spawn(serve(stream, src, admitted));
    }
}

async fn serve_tcp(listener: TcpListener, handler: SharedHandler, bounds: StreamBounds, shutdown: CancellationToken, tracker: TaskTracker) {
    let (h, b, s, t) = (handler.clone(), bounds.clone(), shutdown.clone(), tracker.clone());
    accept_loop(listener, handler, bounds, "TCP", shutdown, tracker, move |stream, src, admitted| {
        let conn = Conn { src, transport: Transport::Tcp, idle: b.idle, queries: b.queries };
        let (handler, shutdown, tracker) = (h.clone(), s.clone(), t.clone());
        async move {
            let (reader, writer) = stream.into_split();
            serve_stream(reader, writer, conn, handler, shutdown, tracker).await;
            drop(admitted);
        }
    })
    .await;
}

/// One stream connection's facts and bounds.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    /// The client.
    pub src: SocketAddr,
    /// TCP or TLS.
    pub transport: Transport,
    /// Idle (and slow-query) timeout.
    pub idle: Duration,
    /// Most queries it may send.
    pub queries: usize,
}

/// One stream of DNS over TCP (RFC 7766), or over TLS (RFC 7858 §3.3: the same framing):
/// length-prefixed queries, read in order and answered as soon as each answer is ready —
/// owned names at once, forwards when upstream replies — so a slow upstream does not hold back
/// the pipelined queries behind it. After `conn.queries` queries it reads no more, and closes
/// once they are answered. Public for the fuzz target, which feeds it in-memory streams.
pub async fn serve_stream<R, W>(
    mut reader: R,
    writer: W,
    conn: Conn,
    handler: SharedHandler,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let Conn { src, transport, idle, queries } = conn;
    let (responses, pending) = mpsc::channel::<Vec<u8>>(TCP_PIPELINE_DEPTH);
    let forwards = Arc::new(Semaphore::new(handler.load().tcp_forwards_per_connection()));
    let read_queries = async move {
        let mut query = Vec::with_capacity(512);
        for _ in 0..queries {
            let len = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                len = timeout(idle, reader.read_u16()) => match len {
                    Ok(Ok(len)) => usize::from(len),
                    _ => return, // idle, closed by the client, or reset
                },
            };
            query.resize(len, 0);
            // A client that starts a query must finish it promptly (slowloris).
            if !matches!(timeout(idle, reader.read_exact(&mut query)).await, Ok(Ok(_))) {
                return;
            }
            let started = Instant::now();
            let mut reply = Vec::new();
            let handler = handler.load_full();
            match handler.handle(&query, src, transport, &mut reply) {
                Outcome::Reply(served) => {
                    let seen = Seen { src, transport, question: query.get(HEADER_LEN..).unwrap_or_default(), reply: &reply };
                    handler.observe(served, seen, started);
                    if responses.send(reply).await.is_err() {
                        return;
                    }
                }
                Outcome::Forward(job) => {
                    // Wait for one of this connection's forwards to end before taking another.
                    let Ok(forward) = forwards.clone().acquire_owned().await else { return };
                    let responses = responses.clone();
                    tracker.spawn(async move {
                        let response = handler.forward(job).await;
                        // Empty only if the forwarder was torn down mid-question: send nothing.
                        if !response.is_empty() {
                            let _ = responses.send(response).await;
                        }
                        drop(forward);
                    });
                }
                Outcome::Drop => handler.observe_drop(),
            }
        }
    };
    // Ends when the reader and every forward it started have dropped their senders.
    tokio::join!(read_queries, write_responses(writer, pending, idle));
}

/// Writes each response with its length prefix; a client that stops reading is dropped.
/// Responses ready together go out in one write — one system call, and over TLS one record —
/// up to [`COALESCE`] bytes.
async fn write_responses<W: AsyncWrite + Unpin>(mut writer: W, mut pending: mpsc::Receiver<Vec<u8>>, idle: Duration) {
    let mut framed = Vec::with_capacity(4096);
    while let Some(first) = pending.recv().await {
        framed.clear();
        let mut next = Some(first);
        while let Some(response) = next {
            // Responses are at most 65535 bytes: the handler encodes TCP answers with that limit.
            if let Ok(prefix) = u16::try_from(response.len()) {
                framed.extend_from_slice(&prefix.to_be_bytes());
                framed.extend_from_slice(&response);
            }
            next = if framed.len() < COALESCE { pending.try_recv().ok() } else { None };
        }
        if !matches!(timeout(idle, writer.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_the_kernel_refuses_is_reported_not_ignored() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(send_udp(&socket, b"answer", peer.local_addr().expect("addr"), 0));
        // An IPv4 socket cannot send to an IPv6 address: the caller must hear of it.
        assert!(!send_udp(&socket, b"answer", "[::1]:53".parse().expect("addr"), libc::MSG_DONTWAIT));
    }
}
