//! Listener behaviour and resource bounds: several UDP sockets per address, TCP idle timeout,
//! pipelining, the TCP connection cap, the in-flight forward bound, and shutdown.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use tokio::{io::AsyncReadExt, net::TcpStream};

use crate::harness::{StubUpstream, TestServer, addresses, query, tcp_exchange, udp_exchange};

async fn upstream() -> StubUpstream {
    StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await
}

/// UDP sockets bound to `port` on 127.0.0.1, from /proc/net/udp.
fn udp_sockets_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp is readable");
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).filter(|line| line.split_whitespace().nth(1) == Some(local.as_str())).count()
}

#[tokio::test]
async fn several_udp_sockets_share_the_address() {
    let upstream = upstream().await;
    let hub = TestServer::standard(upstream.addr, "", "").await; // standard: 2 sockets
    assert_eq!(udp_sockets_on(hub.addr.port()), 2);
    let four = TestServer::start(&crate::harness::standard_config(upstream.addr, "", "").replace(
        "udp_sockets_per_address = 2",
        "udp_sockets_per_address = 4",
    ))
    .await;
    assert_eq!(udp_sockets_on(four.addr.port()), 4, "SO_REUSEPORT group of 4");
    // Every socket answers: many queries from many source ports all get answers.
    for _ in 0..32 {
        assert_eq!(addresses(&four.udp("internal-api.service.com.", RecordType::A).await).len(), 2);
    }
}

#[tokio::test]
async fn tcp_carries_several_queries_and_closes_when_idle() {
    let upstream = upstream().await;
    let hub = TestServer::standard(upstream.addr, "tcp_idle_timeout_secs = 1", "").await;
    let mut stream = TcpStream::connect(hub.addr).await.expect("connect");
    for name in ["secretsmanager.us-east-1.amazonaws.com.", "internal-api.service.com.", "www.fwd.test."] {
        let bytes = tcp_exchange(&mut stream, &query(name, RecordType::A).to_vec().expect("encodes")).await.expect("answer");
        let answer = Message::from_vec(&bytes).expect("parses");
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "{name}");
    }
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "idle connection closed by the server");
    assert!(started.elapsed() >= Duration::from_millis(800), "not before the idle timeout");
}

#[tokio::test]
async fn tcp_connections_beyond_the_cap_are_closed() {
    let upstream = upstream().await;
    let hub = TestServer::standard(upstream.addr, "tcp_max_connections = 2", "").await;
    let q = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).to_vec().expect("encodes");
    let mut first = TcpStream::connect(hub.addr).await.expect("connect");
    let mut second = TcpStream::connect(hub.addr).await.expect("connect");
    tcp_exchange(&mut first, &q).await.expect("first served");
    tcp_exchange(&mut second, &q).await.expect("second served");
    let mut third = TcpStream::connect(hub.addr).await.expect("the kernel accepts the handshake");
    assert!(tcp_exchange(&mut third, &q).await.is_err(), "third connection is closed unanswered");
    // UDP is unaffected, and a slot frees when a connection ends.
    assert!(udp_exchange(hub.addr, &q, None).await.is_some());
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(hub.addr).await.expect("connect");
    tcp_exchange(&mut fourth, &q).await.expect("a freed slot is reused");
}

#[tokio::test]
async fn forwards_in_flight_are_bounded_and_owned_names_still_answer() {
    let upstream = upstream().await;
    let config = crate::harness::standard_config(upstream.addr, "", "").replace("deadline_ms = 1000", "deadline_ms = 1000\nmax_in_flight = 2");
    let hub = TestServer::start(&config).await;
    let slow = |n: usize| {
        let addr = hub.addr;
        tokio::spawn(async move {
            let q = query(&format!("slow.n{n}.fwd.test."), RecordType::A).to_vec().expect("encodes");
            udp_exchange(addr, &q, None).await
        })
    };
    let held = [slow(1), slow(2)];
    // Clients repeating a question under way wait for it without taking a slot.
    let repeats: Vec<_> = (0..20).map(|_| slow(1)).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let over = hub.udp("slow.n3.fwd.test.", RecordType::A).await;
    assert_eq!(over.metadata.response_code, ResponseCode::ServFail);
    // The held queries wait for the 1000 ms deadline; anything well below it is "at once".
    assert!(started.elapsed() < Duration::from_millis(700), "over the bound: SERVFAIL at once");
    let owned = hub.udp("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).await;
    assert_eq!(addresses(&owned).len(), 2, "owned names answer while forwards are saturated");
    for task in held {
        let bytes = task.await.expect("task").expect("held queries answered (SERVFAIL at the deadline)");
        assert_eq!(Message::from_vec(&bytes).expect("parses").metadata.response_code, ResponseCode::ServFail);
    }
    for task in repeats {
        let bytes = task.await.expect("task").expect("repeats answered with the question they waited for");
        assert_eq!(Message::from_vec(&bytes).expect("parses").metadata.response_code, ResponseCode::ServFail);
    }
    assert_eq!(upstream.queries_for("slow.n3.fwd.test."), 0, "the refused query never went upstream");
    assert_eq!(upstream.queries_for("slow.n1.fwd.test."), 1, "one upstream question for 21 clients");
}

#[tokio::test]
async fn stop_closes_the_listeners() {
    let upstream = upstream().await;
    let hub = TestServer::standard(upstream.addr, "", "").await;
    let addr = hub.addr;
    let q = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).to_vec().expect("encodes");
    assert!(udp_exchange(addr, &q, None).await.is_some());
    let stopping = std::time::Instant::now();
    hub.server.stop().await;
    // Within the grace period only if the UDP threads, blocked in recvfrom, were woken.
    assert!(stopping.elapsed() < Duration::from_secs(1), "stop took {:?}", stopping.elapsed());
    assert!(udp_exchange(addr, &q, None).await.is_none(), "no answer after stop");
    assert!(TcpStream::connect(addr).await.is_err(), "TCP listener closed");
}

#[tokio::test]
async fn an_upstream_that_is_hubdns_itself_is_refused_at_start() {
    // A free port, known in advance, so the config can name it as both listen and upstream.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    for listen in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        let config = format!("[server]\nlisten = [\"{listen}\"]\n[forward]\nupstreams = [\"127.0.0.1:{port}\"]\n");
        let config = hubdns::config::Config::parse(&config, "loop.toml").expect("valid config");
        let error = match hubdns::server::start(&config).await {
            Ok(_) => panic!("{listen}: a forwarding loop must not start"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("forwarding loop"), "{error}");
    }
}

#[tokio::test]
async fn pipelined_tcp_queries_are_answered_as_each_is_ready() {
    let upstream = upstream().await;
    let hub = TestServer::standard(upstream.addr, "", "").await;
    let mut stream = TcpStream::connect(hub.addr).await.expect("connect");
    let slow = query("slow.pipeline.fwd.test.", RecordType::A);
    let fast = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A);
    let mut both = Vec::new();
    for message in [&slow, &fast] {
        let bytes = message.to_vec().expect("encodes");
        both.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        both.extend_from_slice(&bytes);
    }
    let started = Instant::now();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &both).await.expect("write both queries at once");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let len = stream.read_u16().await.expect("length");
        let mut answer = vec![0u8; usize::from(len)];
        stream.read_exact(&mut answer).await.expect("answer");
        let answer = Message::from_vec(&answer).expect("parses");
        if answer.metadata.id == fast.metadata.id {
            // The slow forward takes the 1000 ms deadline; the owned answer must not wait for it.
            assert!(started.elapsed() < Duration::from_millis(800), "owned answer did not wait for the slow forward");
        }
        ids.push(answer.metadata.id);
    }
    assert_eq!(ids, [fast.metadata.id, slow.metadata.id], "answered out of order, as RFC 7766 allows");
}

/// Issue 15 item 6: one TCP connection pipelining forwards holds at most
/// `tcp_forwards_per_connection` of them (plus the one waiting for a place), so it cannot take
/// every `max_in_flight` slot: a query on another connection still goes upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tcp_connection_cannot_take_every_forward_slot() {
    let upstream = upstream().await;
    let config = crate::harness::standard_config(upstream.addr, "tcp_forwards_per_connection = 2", "[admin]\nlisten = \"127.0.0.1:0\"\n")
        .replace("deadline_ms = 1000", "deadline_ms = 3000\nmax_in_flight = 5")
        // The slow forwards stay in flight for the whole test.
        .replace("timeout_ms = 300", "timeout_ms = 3000");
    let hub = TestServer::start(&config).await;
    let admin = hub.server.admin_addr().expect("admin");
    let mut greedy = TcpStream::connect(hub.addr).await.expect("connect");
    let mut pipelined = Vec::new();
    for n in 0..20 {
        let bytes = query(&format!("slow.g{n}.fwd.test."), RecordType::A).to_vec().expect("encodes");
        pipelined.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        pipelined.extend_from_slice(&bytes);
    }
    tokio::io::AsyncWriteExt::write_all(&mut greedy, &pipelined).await.expect("write");
    // Give the connection time to read all 20 if nothing held it back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = crate::harden::metrics(admin).await;
    assert_eq!(crate::harden::sample(&text, "hubdns_forward_in_flight"), 2.0, "two forwarding; the third waits for a place");
    let other = hub.udp("www.fwd.test.", RecordType::A).await;
    assert_eq!(addresses(&other), ["192.0.2.1"], "another client still gets a forward slot");
    let asked = (0..20).filter(|n| upstream.queries_for(&format!("slow.g{n}.fwd.test.")) > 0).count();
    assert_eq!(asked, 2, "only two of the connection's forwards went upstream so far");
}
