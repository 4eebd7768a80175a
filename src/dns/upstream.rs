//! Asking one upstream server: a query's bytes out, and the matching response handed to the
//! callback that waits for it.
//!
//! Each server gets [`LANES`] UDP sockets, opened on first use, each connected to the server
//! and bound to a port the kernel picks at random. A query goes out on a random lane with a
//! random ID; one task per lane reads every datagram that arrives and hands it to the query
//! waiting with that ID, once its question matches ours (RFC 5452 §4: ID, source and question
//! must all match; the connected socket makes the kernel drop datagrams from anyone but the
//! server). Sockets that live for many queries, as dnsdist keeps per backend, cost one `send`
//! and one `recv` per query instead of a socket's whole life; every [`ROTATE_EVERY`] queries
//! the whole set is replaced by new sockets on new random ports (RFC 5452 §9.2: source ports
//! an attacker cannot predict), the old ones kept until their last query is answered or times
//! out.
//!
//! Nothing waits in a task: [`Exchange::send`] is a non-blocking send plus an entry in the
//! lane's table, so the thread that read the client's query sends the upstream one itself, and
//! the response wakes only the lane's reader, which runs the callback there and then. That is
//! two wake-ups per forwarded query, as in Unbound, where a task per query would cost three.
//! [`Exchange::sweep`], called on a short tick, fails the queries whose time is up; a refused
//! connection (ICMP port unreachable on the connected socket) fails the queries waiting on that
//! lane at once.
//!
//! [`ask_tcp`] asks over TCP, for a response that came back with TC=1 (RFC 7766 §5).
//!
//! Nothing here reads past the header and the question: what the response says is the
//! forwarder's business ([`super::forwarder`]).

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest, unix::AsyncFd},
    net::TcpStream,
    task::AbortHandle,
    time::timeout,
};

use crate::{dns::health::Failure, prepared::HEADER_LEN};

/// UDP sockets per upstream server.
pub const LANES: usize = 8;

/// Queries sent on one set of lanes before it is replaced by sockets on new ports.
pub const ROTATE_EVERY: u64 = 2048;

/// How long replaced lanes stay open at least, though nothing waits on them.
const RETIRED_GRACE: Duration = Duration::from_secs(1);

/// Largest response read: a UDP datagram can be no larger.
const MAX_DATAGRAM: usize = 65_535;

/// What a query waiting on a lane is told: the response's bytes, or why there is none.
pub type Callback = Box<dyn FnOnce(Result<&[u8], ExchangeError>) + Send>;

/// One upstream server's sockets.
pub struct Exchange {
    addr: SocketAddr,
    lanes: ArcSwapOption<Lanes>,
    /// Queries sent, for the rotation.
    sent: std::sync::atomic::AtomicU64,
    /// Lanes replaced while queries still waited on them, and when they were replaced.
    retired: Mutex<Vec<(Arc<Lanes>, Instant)>>,
    /// The runtime it was made in, where its sockets and readers live ([`home_runtime`]).
    runtime: Option<tokio::runtime::Handle>,
}

/// The runtime the caller runs in, for what a forwarder starts later on behalf of whoever asks
/// first — its sockets and their readers, its sweeper — and the handler's prefetches, started
/// from the UDP threads, which have none. The refresh loop asks the forwarder too (the check for
/// signed parents, names answered from upstream), but runs on a runtime of its own, one
/// thread, that ends first on shutdown: started there, the readers of every client's
/// forwarded queries waited behind each refresh's parsing, and died with that runtime.
pub fn home_runtime() -> Option<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().ok()
}

/// The open sockets and the tasks reading them; dropping it stops the tasks.
struct Lanes {
    lanes: Vec<Arc<Lane>>,
    readers: Vec<AbortHandle>,
}

impl Drop for Lanes {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// One socket and the queries waiting on it, by ID. The socket is registered for reading
/// only: registered for writing too (as tokio's `UdpSocket` is), every datagram sent would
/// wake a runtime thread when the kernel frees it (EPOLLOUT from `sock_wfree`).
struct Lane {
    socket: AsyncFd<std::net::UdpSocket>,
    waiting: Mutex<HashMap<u16, Waiter>>,
}

/// A query sent: the question its response must repeat, until when it waits, and its callback.
/// A waiter dropped untold (its socket closed under it) tells its callback so: every query
/// hears back exactly once.
struct Waiter {
    question: Box<[u8]>,
    expires: Instant,
    callback: Option<Callback>,
}

impl Waiter {
    fn tell(mut self, result: Result<&[u8], ExchangeError>) {
        if let Some(callback) = self.callback.take() {
            callback(result);
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(callback) = self.callback.take() {
            callback(Err(ExchangeError::Io(io::Error::other("upstream socket closed"))));
        }
    }
}

/// Why an exchange brought no response.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// No response in time.
    #[error("no response in time")]
    Timeout,
    /// The server refused the connection (nothing listens there).
    #[error("connection refused")]
    Refused,
    /// A socket error, or a TCP response that does not match the query.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl ExchangeError {
    /// How the failure counts against the server's health.
    pub fn failure(&self) -> Failure {
        match self {
            Self::Timeout => Failure::Timeout,
            Self::Refused | Self::Io(_) => Failure::Transport,
        }
    }
}

impl Exchange {
    /// The sockets for `addr`, opened when first needed.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, lanes: ArcSwapOption::empty(), sent: std::sync::atomic::AtomicU64::new(0), retired: Mutex::new(Vec::new()), runtime: home_runtime() }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `query` (a whole message; its ID is replaced) and leaves `callback` to be told of
    /// the response whose question is `query`'s, at `HEADER_LEN..HEADER_LEN + question_len`,
    /// or of a timeout at `expires`. Must run inside the runtime (the lanes' readers are its
    /// tasks). When the query cannot even be sent, the callback is given back with the error.
    pub fn send(&self, query: &mut [u8], question_len: usize, expires: Instant, callback: Callback) -> Result<(), (ExchangeError, Callback)> {
        let Some(question) = query.get(HEADER_LEN..HEADER_LEN + question_len) else {
            return Err((io::Error::other("no question").into(), callback));
        };
        // The name in lowercase (label lengths are below 64, so untouched); type and class as
        // they are — lowercasing their bytes would turn type 65 into 97.
        let mut question: Box<[u8]> = question.into();
        let name_len = question.len().saturating_sub(4);
        question[..name_len].make_ascii_lowercase();
        let lanes = match self.lanes() {
            Ok(lanes) => lanes,
            Err(error) => return Err((error, callback)),
        };
        let lane = &lanes.lanes[fastrand::usize(..lanes.lanes.len())];
        let id = {
            let mut waiting = lane.waiting.lock().unwrap_or_else(|e| e.into_inner());
            // 65,536 IDs and at most max_in_flight queries: a free one turns up at once.
            let id = std::iter::repeat_with(rand::random::<u16>).find(|id| !waiting.contains_key(id)).unwrap_or_default();
            waiting.insert(id, Waiter { question, expires, callback: Some(callback) });
            id
        };
        query[..2].copy_from_slice(&id.to_be_bytes());
        // A plain non-blocking send; the reactor is not asked about writing (see `Lane`).
        match lane.socket.get_ref().send(query) {
            Ok(_) => {
                if self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % ROTATE_EVERY == ROTATE_EVERY - 1 {
                    self.rotate(&lanes);
                }
                Ok(())
            }
            Err(error) => {
                let waiter = lane.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                match waiter.and_then(|mut w| w.callback.take()) {
                    Some(callback) => Err((refused_or_io(error), callback)),
                    // The reader failed it already (a refused connection): it has been told.
                    None => Ok(()),
                }
            }
        }
    }

    /// Replaces `current` by lanes on new ports; `current` is kept until its queries are done.
    /// Should new sockets fail to open, the current ones serve on.
    fn rotate(&self, current: &Arc<Lanes>) {
        let fresh = match self.open_lanes() {
            Ok(fresh) => fresh,
            Err(error) => return tracing::debug!(upstream = %self.addr, %error, "cannot open new upstream sockets; keeping the old"),
        };
        let previous = self.lanes.compare_and_swap(current, Some(fresh));
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, current)) {
            self.retired.lock().unwrap_or_else(|e| e.into_inner()).push((current.clone(), Instant::now()));
        }
    }

    /// Tells every query whose time is up that it timed out, and closes retired lanes that no
    /// query waits on any more — not before [`RETIRED_GRACE`], so a send that picked them just
    /// before they were replaced has registered its query by then.
    pub fn sweep(&self, now: Instant) {
        let retired: Vec<Arc<Lanes>> = {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.retain(|(lanes, since)| {
                now < *since + RETIRED_GRACE || lanes.lanes.iter().any(|lane| !lane.waiting.lock().unwrap_or_else(|e| e.into_inner()).is_empty())
            });
            retired.iter().map(|(lanes, _)| lanes.clone()).collect()
        };
        for lanes in self.lanes.load_full().iter().chain(&retired) {
            Self::sweep_lanes(lanes, now);
        }
    }

    fn sweep_lanes(lanes: &Lanes, now: Instant) {
        for lane in &lanes.lanes {
            let expired: Vec<Waiter> = {
                let mut waiting = lane.waiting.lock().unwrap_or_else(|e| e.into_inner());
                if waiting.is_empty() {
                    continue;
                }
                let ids: Vec<u16> = waiting.iter().filter(|(_, w)| w.expires <= now).map(|(&id, _)| id).collect();
                ids.iter().filter_map(|id| waiting.remove(id)).collect()
            };
            for waiter in expired {
                waiter.tell(Err(ExchangeError::Timeout));
            }
        }
    }

    /// The lanes, opened now if they are not yet.
    fn lanes(&self) -> Result<Arc<Lanes>, ExchangeError> {
        if let Some(lanes) = self.lanes.load_full() {
            return Ok(lanes);
        }
        let lanes = self.open_lanes()?;
        // Two first queries at once may both open lanes: the first stored wins, the other's
        // readers stop when it is dropped.
        let previous = self.lanes.compare_and_swap(&None::<Arc<Lanes>>, Some(lanes.clone()));
        Ok(match &*previous {
            Some(theirs) => theirs.clone(),
            None => lanes,
        })
    }

    /// A new set of lanes, each a socket on a new random port with its reader started.
    fn open_lanes(&self) -> Result<Arc<Lanes>, ExchangeError> {
        // In the runtime the exchange was made in, whoever asks: the sockets register with
        // its reactor, the readers are its tasks.
        let _home = self.runtime.as_ref().map(tokio::runtime::Handle::enter);
        let mut lanes = Vec::with_capacity(LANES);
        let mut readers = Vec::with_capacity(LANES);
        for _ in 0..LANES {
            let lane = Arc::new(Lane { socket: connected_socket(self.addr)?, waiting: Mutex::new(HashMap::new()) });
            readers.push(tokio::spawn(lane.clone().read()).abort_handle());
            lanes.push(lane);
        }
        Ok(Arc::new(Lanes { lanes, readers }))
    }
}

impl Lane {
    /// Reads the socket for as long as the lane lives, handing each response to its query.
    async fn read(self: Arc<Self>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            // ERROR too: a refused connection shows as an error on the socket, not as data.
            let received = match self.socket.ready(Interest::READABLE | Interest::ERROR).await {
                Ok(mut ready) => match ready.try_io(|socket| socket.get_ref().recv(&mut buf)) {
                    Ok(received) => received,
                    Err(_would_block) => continue,
                },
                Err(error) => Err(error),
            };
            match received {
                Ok(len) => self.deliver(&buf[..len]),
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                    // ICMP port unreachable: nothing listens there. Fail everyone waiting.
                    let waiting: Vec<Waiter> = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, w)| w).collect();
                    for waiter in waiting {
                        waiter.tell(Err(ExchangeError::Refused));
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "upstream socket read failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Hands `packet` to the query with its ID, if its question is that query's; anything
    /// else (late, spoofed, garbled) is dropped and the query goes on waiting.
    fn deliver(&self, packet: &[u8]) {
        let Some(id) = packet.first_chunk::<2>().map(|id| u16::from_be_bytes(*id)) else { return };
        let waiter = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.get(&id) {
                Some(waiter) if matches(packet, id, &waiter.question) => waiting.remove(&id),
                _ => None,
            }
        };
        if let Some(waiter) = waiter {
            waiter.tell(Ok(packet));
        }
    }
}

/// Asks `server` over a TCP connection of its own (for a response that was truncated), within
/// `wait`. `query`'s ID is replaced; the question is at `HEADER_LEN..HEADER_LEN + question_len`.
pub async fn ask_tcp(server: SocketAddr, mut query: Vec<u8>, question_len: usize, wait: Duration) -> Result<Vec<u8>, ExchangeError> {
    let mut question: Vec<u8> = query.get(HEADER_LEN..HEADER_LEN + question_len).ok_or_else(|| io::Error::other("no question"))?.to_vec();
    let name_len = question.len().saturating_sub(4);
    question[..name_len].make_ascii_lowercase();
    let id: u16 = rand::random();
    query[..2].copy_from_slice(&id.to_be_bytes());
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.map_err(refused_or_io)?;
        let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
        let mut framed = Vec::with_capacity(2 + query.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&query);
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await?;
        let mut response = vec![0; usize::from(len)];
        stream.read_exact(&mut response).await?;
        match matches(&response, id, &question) {
            true => Ok(response),
            false => Err(io::Error::other("TCP response does not match the query").into()),
        }
    };
    timeout(wait, exchange).await.unwrap_or(Err(ExchangeError::Timeout))
}

/// Whether `packet` is a response with `id` and one question equal to `question` (lowercase;
/// the name compared without regard to case, type and class exactly).
fn matches(packet: &[u8], id: u16, question: &[u8]) -> bool {
    let Some(header) = packet.get(..HEADER_LEN) else { return false };
    let Some(echoed) = packet.get(HEADER_LEN..HEADER_LEN + question.len()) else { return false };
    let name_len = question.len().saturating_sub(4);
    header[..2] == id.to_be_bytes()
        && header[2] & 0x80 != 0
        && header[4..6] == [0, 1]
        && echoed[..name_len].eq_ignore_ascii_case(&question[..name_len])
        && echoed[name_len..] == question[name_len..]
}

/// Whether a response has the TC bit.
pub fn truncated(response: &[u8]) -> bool {
    response.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

fn refused_or_io(error: io::Error) -> ExchangeError {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ExchangeError::Refused,
        _ => ExchangeError::Io(error),
    }
}

/// A UDP socket on a random local port, connected to `server`, registered for reading.
fn connected_socket(server: SocketAddr) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    let local: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = std::net::UdpSocket::bind((local, 0))?;
    socket.connect(server)?;
    socket.set_nonblocking(true)?;
    // SAFETY: the AsyncFd owns the socket, so its descriptor stays open and the same for the
    // AsyncFd's whole life; nothing here hands the socket out or swaps it.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE | Interest::ERROR) }.map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    const QUESTION: &[u8] = b"\x03www\x07example\x00\x00\x41\x00\x01";

    fn response(id: u16, question: &[u8]) -> Vec<u8> {
        let mut packet = id.to_be_bytes().to_vec();
        packet.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(question);
        packet
    }

    /// Sends `query` on `exchange` and waits for what the callback is told.
    async fn ask(exchange: &Exchange, query: &mut [u8], expires: Instant) -> Result<Vec<u8>, String> {
        let (tx, rx) = oneshot::channel();
        let callback: Callback = Box::new(move |result| {
            let _ = tx.send(result.map(<[u8]>::to_vec).map_err(|e| e.to_string()));
        });
        if let Err((error, _)) = exchange.send(query, QUESTION.len(), expires, callback) {
            return Err(error.to_string());
        }
        let sweeping = async {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                exchange.sweep(Instant::now());
            }
        };
        tokio::select! {
            told = rx => told.expect("the callback is always called"),
            () = sweeping => unreachable!(),
        }
    }

    #[test]
    fn a_response_must_repeat_id_and_question() {
        assert!(matches(&response(7, QUESTION), 7, QUESTION));
        assert!(matches(&response(7, b"\x03WWW\x07Example\x00\x00\x41\x00\x01"), 7, QUESTION), "case of the name");
        assert!(!matches(&response(8, QUESTION), 7, QUESTION), "another ID");
        assert!(!matches(&response(7, b"\x03www\x07example\x00\x00\x61\x00\x01"), 7, QUESTION), "type 97, not 65");
        assert!(!matches(&response(7, b"\x03xxx\x07example\x00\x00\x41\x00\x01"), 7, QUESTION), "another name");
        let mut query = response(7, QUESTION);
        query[2] &= 0x7F;
        assert!(!matches(&query, 7, QUESTION), "not a response");
        assert!(!matches(&response(7, QUESTION)[..20], 7, QUESTION), "cut short");
    }

    /// A server that answers a spoof (right ID, wrong question) and then the real response:
    /// the spoof is ignored; a query it never answers times out by the sweep.
    #[tokio::test]
    async fn spoofs_are_ignored_and_silence_times_out() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        let answering = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (len, from) = server.recv_from(&mut buf).expect("query");
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            server.send_to(&response(id, b"\x04evil\x07example\x00\x00\x41\x00\x01"), from).expect("spoof");
            buf[2] |= 0x80;
            server.send_to(&buf[..len], from).expect("answer");
            // The second query goes unanswered.
            server.recv_from(&mut buf).expect("second query");
            id
        });
        let exchange = Exchange::new(addr);
        let mut query = response(0, QUESTION);
        query[2] = 0x01;
        let answer = ask(&exchange, &mut query, Instant::now() + Duration::from_secs(5)).await.expect("answered");
        assert_eq!(&answer[HEADER_LEN..], QUESTION, "the real response, not the spoof");
        let silent = ask(&exchange, &mut query, Instant::now() + Duration::from_millis(100)).await;
        assert_eq!(silent.expect_err("unanswered"), "no response in time");
        let id = answering.join().expect("server");
        assert_eq!(u16::from_be_bytes([answer[0], answer[1]]), id);
    }

    /// RFC 5452 §9.2: the source ports change as queries go by, and no answer is lost when they
    /// do.
    #[tokio::test]
    async fn source_ports_rotate_without_losing_answers() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        let total = 2 * ROTATE_EVERY as usize + 10;
        let echo = std::thread::spawn(move || {
            let mut ports = std::collections::BTreeSet::new();
            let mut buf = [0u8; 512];
            for _ in 0..total {
                let (len, from) = server.recv_from(&mut buf).expect("query");
                ports.insert(from.port());
                buf[2] |= 0x80;
                server.send_to(&buf[..len], from).expect("answer");
            }
            ports
        });
        let exchange = Exchange::new(addr);
        for _ in 0..total {
            let mut query = response(0, QUESTION);
            query[2] = 0x01;
            ask(&exchange, &mut query, Instant::now() + Duration::from_secs(5)).await.expect("every query answered");
        }
        let ports = echo.join().expect("server");
        assert!(ports.len() > 2 * LANES, "{} ports: the lanes were replaced at least twice", ports.len());
        exchange.sweep(Instant::now() + RETIRED_GRACE);
        assert!(exchange.retired.lock().expect("lock").is_empty(), "retired lanes with nothing waiting are closed");
    }

    #[tokio::test]
    async fn a_refused_connection_fails_at_once() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let exchange = Exchange::new(addr);
        let mut query = response(0, QUESTION);
        let error = ask(&exchange, &mut query, Instant::now() + Duration::from_secs(30)).await.expect_err("nothing listens");
        assert_eq!(error, "connection refused");
    }
}
