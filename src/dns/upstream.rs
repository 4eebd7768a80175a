//! Asking one upstream server: a query's bytes out, the matching response's bytes back.
//!
//! Each server gets [`LANES`] UDP sockets, opened on first use, each connected to the server
//! and bound to a port the kernel picks at random. A query goes out on a random lane with a
//! random ID; one task per lane reads every datagram that arrives and hands it to the query
//! waiting with that ID, once its question matches ours (RFC 5452 §4: ID, source and question
//! must all match; the connected socket makes the kernel drop datagrams from anyone but the
//! server). Long-lived sockets, as dnsdist keeps per backend, cost one `send` and one `recv`
//! per query instead of a socket's whole life, which is most of a forwarded query's price.
//!
//! A lost datagram is sent again, on another lane with a new ID, after `timeout`; `attempts`
//! in all. A response with TC=1 is asked again over TCP (RFC 7766 §5), on a connection of
//! its own. A refused connection (ICMP port unreachable on the connected socket) fails the
//! queries waiting on that lane at once instead of letting them time out.
//!
//! Nothing here reads past the header and the question: what the response says is the
//! forwarder's business ([`super::forwarder`]).

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    sync::oneshot,
    task::AbortHandle,
    time::timeout,
};

use crate::{dns::health::Failure, prepared::HEADER_LEN};

/// UDP sockets per upstream server.
pub const LANES: usize = 8;

/// Largest response read: a UDP datagram can be no larger.
const MAX_DATAGRAM: usize = 65_535;

/// One upstream server's sockets.
pub struct Exchange {
    addr: SocketAddr,
    timeout: Duration,
    attempts: usize,
    lanes: ArcSwapOption<Lanes>,
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

/// One socket and the queries waiting on it, by ID.
struct Lane {
    socket: UdpSocket,
    waiting: Mutex<HashMap<u16, Waiter>>,
}

/// A query sent: the question its response must repeat, and where to hand the response.
struct Waiter {
    question: Box<[u8]>,
    reply: oneshot::Sender<Vec<u8>>,
}

/// Why an exchange brought no response.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// No response in time, after every attempt.
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
    /// The sockets for `addr`, opened when first needed; each attempt waits `timeout`.
    pub fn new(addr: SocketAddr, timeout: Duration, attempts: usize) -> Self {
        Self { addr, timeout, attempts: attempts.max(1), lanes: ArcSwapOption::empty() }
    }

    /// Sends `query` (a whole message; its ID is replaced) and returns the response. The
    /// question of `query`, at `HEADER_LEN..HEADER_LEN + question_len`, must come back.
    pub async fn ask(&self, query: &mut [u8], question_len: usize) -> Result<Vec<u8>, ExchangeError> {
        let question = query.get(HEADER_LEN..HEADER_LEN + question_len).ok_or_else(|| io::Error::other("no question"))?;
        // The name in lowercase (label lengths are below 64, so untouched); type and class as
        // they are — lowercasing their bytes would turn type 65 into 97.
        let mut question = question.to_vec();
        let name_len = question.len().saturating_sub(4);
        question[..name_len].make_ascii_lowercase();
        let lanes = self.lanes()?;
        let mut last = ExchangeError::Timeout;
        for _ in 0..self.attempts {
            let lane = &lanes.lanes[fastrand::usize(..lanes.lanes.len())];
            match lane.ask(query, &question, self.timeout).await {
                Ok(response) if truncated(&response) => return self.ask_tcp(query, &question).await,
                Ok(response) => return Ok(response),
                Err(ExchangeError::Timeout) => last = ExchangeError::Timeout,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    /// The query again over a TCP connection of its own.
    async fn ask_tcp(&self, query: &mut [u8], question: &[u8]) -> Result<Vec<u8>, ExchangeError> {
        let id: u16 = rand::random();
        query[..2].copy_from_slice(&id.to_be_bytes());
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await.map_err(refused_or_io)?;
            let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
            let mut framed = Vec::with_capacity(2 + query.len());
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(query);
            stream.write_all(&framed).await?;
            let len = stream.read_u16().await?;
            let mut response = vec![0; usize::from(len)];
            stream.read_exact(&mut response).await?;
            match matches(&response, id, question) {
                true => Ok(response),
                false => Err(io::Error::other("TCP response does not match the query").into()),
            }
        };
        timeout(self.timeout, exchange).await.unwrap_or(Err(ExchangeError::Timeout))
    }

    /// The lanes, opened now if they are not yet.
    fn lanes(&self) -> Result<Arc<Lanes>, ExchangeError> {
        if let Some(lanes) = self.lanes.load_full() {
            return Ok(lanes);
        }
        let mut lanes = Vec::with_capacity(LANES);
        let mut readers = Vec::with_capacity(LANES);
        for _ in 0..LANES {
            let lane = Arc::new(Lane { socket: connected_socket(self.addr)?, waiting: Mutex::new(HashMap::new()) });
            readers.push(tokio::spawn(lane.clone().read()).abort_handle());
            lanes.push(lane);
        }
        let lanes = Arc::new(Lanes { lanes, readers });
        // Two first queries at once may both open lanes: the first stored wins, the other's
        // readers stop when it is dropped.
        let previous = self.lanes.compare_and_swap(&None::<Arc<Lanes>>, Some(lanes.clone()));
        Ok(match &*previous {
            Some(theirs) => theirs.clone(),
            None => lanes,
        })
    }
}

impl Lane {
    /// One attempt: a fresh ID, the query sent, the matching response awaited.
    async fn ask(&self, query: &mut [u8], question: &[u8], wait: Duration) -> Result<Vec<u8>, ExchangeError> {
        let (reply, response) = oneshot::channel();
        let id = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            // 65,536 IDs and at most max_in_flight queries: a free one turns up at once.
            let id = std::iter::repeat_with(rand::random::<u16>).find(|id| !waiting.contains_key(id)).unwrap_or_default();
            waiting.insert(id, Waiter { question: question.into(), reply });
            id
        };
        let _forget = Forget { lane: self, id };
        query[..2].copy_from_slice(&id.to_be_bytes());
        self.socket.send(query).await.map_err(refused_or_io)?;
        match timeout(wait, response).await {
            Ok(Ok(bytes)) => Ok(bytes),
            // The reader dropped the sender: the server refused the connection.
            Ok(Err(_)) => Err(ExchangeError::Refused),
            Err(_) => Err(ExchangeError::Timeout),
        }
    }

    /// Reads the socket for as long as the lane lives, handing each response to its query.
    async fn read(self: Arc<Self>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match self.socket.recv(&mut buf).await {
                Ok(len) => self.deliver(&buf[..len]),
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                    // ICMP port unreachable: nothing listens there. Fail everyone waiting.
                    self.waiting.lock().unwrap_or_else(|e| e.into_inner()).clear();
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
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let Some(waiter) = waiting.get(&id) else { return };
        if !matches(packet, id, &waiter.question) {
            return;
        }
        if let Some(waiter) = waiting.remove(&id) {
            drop(waiting);
            let _ = waiter.reply.send(packet.to_vec());
        }
    }
}

/// Removes a query's entry when its attempt ends, however it ends.
struct Forget<'a> {
    lane: &'a Lane,
    id: u16,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.lane.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
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
fn truncated(response: &[u8]) -> bool {
    response.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

fn refused_or_io(error: io::Error) -> ExchangeError {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ExchangeError::Refused,
        _ => ExchangeError::Io(error),
    }
}

/// A UDP socket on a random local port, connected to `server`.
fn connected_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let local: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = std::net::UdpSocket::bind((local, 0))?;
    socket.connect(server)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUESTION: &[u8] = b"\x03www\x07example\x00\x00\x41\x00\x01";

    fn response(id: u16, question: &[u8]) -> Vec<u8> {
        let mut packet = id.to_be_bytes().to_vec();
        packet.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(question);
        packet
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

    /// A server that answers the first copy of each query only after `ignore` more have come,
    /// echoing the query as a response: it proves retries get new IDs and late answers to
    /// old IDs are not taken.
    #[tokio::test]
    async fn lost_datagrams_are_sent_again_and_spoofs_ignored() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        let seen = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut ids = Vec::new();
            // First attempt: send a spoof with the wrong question, then drop the query.
            let (_, from) = server.recv_from(&mut buf).expect("first");
            ids.push(u16::from_be_bytes([buf[0], buf[1]]));
            let spoof = response(ids[0], b"\x04evil\x07example\x00\x00\x41\x00\x01");
            server.send_to(&spoof, from).expect("spoof");
            // Second attempt: answer it.
            let (len, from) = server.recv_from(&mut buf).expect("second");
            ids.push(u16::from_be_bytes([buf[0], buf[1]]));
            buf[2] |= 0x80;
            server.send_to(&buf[..len], from).expect("answer");
            ids
        });
        let exchange = Exchange::new(addr, Duration::from_millis(300), 2);
        let mut query = response(0, QUESTION);
        query[2] = 0x01;
        let answer = exchange.ask(&mut query, QUESTION.len()).await.expect("answered on the second attempt");
        let ids = seen.join().expect("server");
        assert_eq!(u16::from_be_bytes([answer[0], answer[1]]), ids[1], "the second attempt's answer, not the spoof");
        assert_eq!(&answer[HEADER_LEN..], QUESTION);
    }

    #[tokio::test]
    async fn a_refused_connection_fails_at_once() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let exchange = Exchange::new(addr, Duration::from_secs(30), 3);
        let mut query = response(0, QUESTION);
        let error = exchange.ask(&mut query, QUESTION.len()).await.expect_err("nothing listens");
        assert!(matches!(error, ExchangeError::Refused), "{error}");
    }
}
