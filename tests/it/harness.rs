//! Test harness: hubdns started in-process on 127.0.0.1:0, a stub upstream DNS server of our
//! own on 127.0.0.x, and a small client that speaks real DNS over UDP and TCP.
//!
//! Every packet stays on loopback: upstreams are stubs started here, never the machine's
//! resolvers.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, CNAME, SOA},
    },
};
use hubdns::{config::Config, server::Server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

/// How long a test waits for any single answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Owned records every test server has, besides what a test adds.
pub const OWNED: &str = r#"
[[records]]
name = "secretsmanager.us-east-1.amazonaws.com"
type = "A"
values = ["10.10.1.25", "10.10.2.41"]

[[records]]
name = "vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com"
type = "A"
values = ["10.10.1.25"]

[[records]]
name = "vpce-0123456789abcdef0-k9x7w2pd.vpce-svc-0a9b8c7d6e5f43210.us-east-1.vpce.amazonaws.com"
type = "A"
values = ["10.10.1.77", "10.10.2.78"]

[[aliases]]
name = "internal-api.service.com"
target = "vpce-0123456789abcdef0-k9x7w2pd.vpce-svc-0a9b8c7d6e5f43210.us-east-1.vpce.amazonaws.com"

[[aliases]]
name = "legacy.corp.example"
addresses = ["10.20.3.4", "fd00::34"]

[[records]]
name = "*.s3.us-east-1.amazonaws.com"
type = "A"
values = ["10.10.1.90"]

[[records]]
name = "www.corp.example"
type = "CNAME"
values = ["legacy.corp.example."]

[[records]]
name = "out.corp.example"
type = "CNAME"
values = ["www.fwd.test."]

[[records]]
name = "dangling.corp.example"
type = "CNAME"
values = ["gone.legacy.corp.example."]

[[records]]
name = "mail.corp.example"
type = "MX"
values = ["10 mx1.corp.example.", "20 mx2.corp.example."]

[[records]]
name = "_ldap._tcp.corp.example"
type = "SRV"
values = ["0 100 389 dc1.corp.example."]

[[records]]
name = "4.3.20.10.in-addr.arpa"
type = "PTR"
values = ["legacy.corp.example."]

[[records]]
name = "txt.corp.example"
type = "TXT"
values = ["v=spf1 -all"]
"#;

/// A hubdns running in this process.
pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
}

impl TestServer {
    /// Starts hubdns on 127.0.0.1:0 with `config` (a whole TOML file).
    pub async fn start(config: &str) -> Self {
        let config = Config::parse(config, "test.toml").unwrap_or_else(|e| panic!("test config: {e}"));
        let server = hubdns::server::start(&config).await.expect("hubdns starts");
        let addr = server.addr();
        Self { server, addr }
    }

    /// The standard test server: the owned records above, default upstreams `upstream`, and
    /// `extra` TOML appended (more records, rules). `server` is the body of `[server]`.
    pub async fn standard(upstream: SocketAddr, server: &str, extra: &str) -> Self {
        Self::start(&standard_config(upstream, server, extra)).await
    }

    pub async fn udp(&self, name: &str, qtype: RecordType) -> Message {
        udp_query(self.addr, &query(name, qtype)).await
    }

    pub async fn tcp(&self, name: &str, qtype: RecordType) -> Message {
        tcp_query(self.addr, &query(name, qtype)).await
    }
}

/// A complete config: listen on 127.0.0.1:0, owned records, upstream stub.
pub fn standard_config(upstream: SocketAddr, server: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 2\n{server}\n\n\
         [forward]\nupstreams = [\"{upstream}\"]\ntimeout_ms = 300\nattempts = 1\ndeadline_ms = 1000\ncheck_signed_parents = false\n\n\
         {OWNED}\n{extra}\n"
    )
}

/// A recursive query with EDNS (payload 1232), as a modern stub resolver sends it.
pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand_id();
    message.metadata.recursion_desired = true;
    // from_ascii keeps the case as written (from_str applies IDNA mapping, which lowercases).
    message.add_query(Query::query(Name::from_ascii(name).expect("test name"), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.edns = Some(edns);
    message
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(4242);
    NEXT.fetch_add(7, Ordering::Relaxed)
}

/// Sends `message` over UDP from an ephemeral loopback port and parses the answer.
pub async fn udp_query(server: SocketAddr, message: &Message) -> Message {
    let bytes = udp_exchange(server, &message.to_vec().expect("encodes"), None)
        .await
        .expect("an answer over UDP");
    let answer = Message::from_vec(&bytes).expect("answer parses");
    assert_eq!(answer.metadata.id, message.metadata.id, "answer id matches");
    answer
}

/// Sends raw bytes over UDP, optionally from a chosen source address; `None` if no answer
/// arrives within a second.
pub async fn udp_exchange(server: SocketAddr, bytes: &[u8], from: Option<IpAddr>) -> Option<Vec<u8>> {
    let bind = match (from, server) {
        (Some(ip), _) => SocketAddr::new(ip, 0),
        (None, SocketAddr::V4(_)) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        (None, SocketAddr::V6(_)) => "[::1]:0".parse().expect("constant"),
    };
    let socket = UdpSocket::bind(bind).await.expect("bind client socket");
    socket.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0u8; 65_535];
    match tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await {
        Ok(Ok((len, _))) => Some(buf[..len].to_vec()),
        _ => None,
    }
}

/// Sends `message` over a new TCP connection and parses the answer.
pub async fn tcp_query(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("TCP connect");
    let answer = tcp_exchange(&mut stream, &message.to_vec().expect("encodes")).await.expect("TCP answer");
    Message::from_vec(&answer).expect("answer parses")
}

/// One length-prefixed exchange on an open TCP connection.
pub async fn tcp_exchange(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = tokio::time::timeout(ANSWER_WAIT, stream.read_u16())
        .await
        .map_err(|_| std::io::Error::other("timeout"))??;
    let mut answer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

/// The A and AAAA addresses of an answer, as strings, sorted.
pub fn addresses(message: &Message) -> Vec<String> {
    let mut ips = addresses_in_order(message);
    ips.sort();
    ips
}

/// The A and AAAA addresses of an answer, as strings, in the order they came.
pub fn addresses_in_order(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The owner name of the SOA in the authority section, if any.
pub fn soa_owner(message: &Message) -> Option<String> {
    message
        .authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
        .map(|r| r.name.to_string())
}

/// How the stub answers names below `fwd.test.` (and everything else):
/// - `slow.*`: never answers; `delay.*`: answers after 100 ms; `servfail.*`: SERVFAIL;
///   `refused.*`: REFUSED;
/// - `nodata.fwd.test.`: NOERROR, no records, SOA;
/// - `cname.fwd.test.`: CNAME to `www.fwd.test.` plus its A;
/// - `short.fwd.test.`: A with TTL 1;
/// - any other name below `fwd.test.`, or a name in `extra`: A `answer_ip`, TTL 300;
/// - anything else: NXDOMAIN with the SOA of `fwd.test.` (minimum 300).
pub struct StubUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    /// While set, queries are counted but not answered: an upstream that went away.
    paused: Arc<std::sync::atomic::AtomicBool>,
}

impl StubUpstream {
    /// Starts the stub on `ip`:0, answering A queries with `answer_ip`.
    pub async fn start(ip: &str, answer_ip: Ipv4Addr) -> Self {
        Self::start_with(ip, answer_ip, &[]).await
    }

    /// Like [`StubUpstream::start`], also answering the names in `extra`.
    pub async fn start_with(ip: &str, answer_ip: Ipv4Addr, extra: &[&str]) -> Self {
        let socket = Arc::new(UdpSocket::bind((ip, 0)).await.expect("bind stub upstream"));
        let addr = socket.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let extra: Vec<String> = extra.iter().map(|s| s.to_lowercase()).collect();
        let log = seen.clone();
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let silent = paused.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((len, src)) = socket.recv_from(&mut buf).await else { return };
                let Ok(request) = Message::from_vec(&buf[..len]) else { continue };
                let Some(q) = request.queries.first().cloned() else { continue };
                let name = q.name().to_string().to_lowercase();
                *log.lock().expect("stub log").entry(name.clone()).or_insert(0) += 1;
                if name.starts_with("slow.") || silent.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                let response = stub_answer(&request, &q, &name, answer_ip, &extra).to_vec().expect("stub encodes");
                if name.starts_with("delay.") {
                    let socket = socket.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let _ = socket.send_to(&response, src).await;
                    });
                    continue;
                }
                let _ = socket.send_to(&response, src).await;
            }
        });
        Self { addr, seen, paused }
    }

    /// Stops answering (`true`) or answers again (`false`).
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many queries for `name` (any case, with final dot) reached the stub.
    pub fn queries_for(&self, name: &str) -> usize {
        self.seen.lock().expect("stub log").get(&name.to_lowercase()).copied().unwrap_or(0)
    }

    /// Every name the stub was asked for.
    pub fn names_seen(&self) -> Vec<String> {
        self.seen.lock().expect("stub log").keys().cloned().collect()
    }
}

fn stub_answer(request: &Message, q: &Query, name: &str, answer_ip: Ipv4Addr, extra: &[String]) -> Message {
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_query(q.clone());
    if let Some(edns) = &request.edns {
        let mut e = Edns::new();
        e.set_max_payload(edns.max_payload().min(1232));
        response.edns = Some(e);
    }
    let zone = Name::from_str("fwd.test.").expect("constant");
    let soa = Record::from_rdata(
        zone.clone(),
        300,
        RData::SOA(SOA::new(
            Name::from_str("ns.fwd.test.").expect("constant"),
            Name::from_str("admin.fwd.test.").expect("constant"),
            1,
            3600,
            600,
            86400,
            300,
        )),
    );
    let a = |owner: &Name, ttl: u32| Record::from_rdata(owner.clone(), ttl, RData::A(A(answer_ip)));
    let qname = q.name().clone();
    let ours = name.ends_with(".fwd.test.") || extra.iter().any(|e| e == name);
    if name.starts_with("servfail.") {
        response.metadata.response_code = ResponseCode::ServFail;
    } else if name.starts_with("refused.") {
        response.metadata.response_code = ResponseCode::Refused;
    } else if name == "nodata.fwd.test." || (ours && q.query_type() != RecordType::A) {
        response.add_authority(soa);
    } else if name == "cname.fwd.test." {
        let www = Name::from_str("www.fwd.test.").expect("constant");
        response.add_answer(Record::from_rdata(qname, 300, RData::CNAME(CNAME(www.clone()))));
        response.add_answer(a(&www, 300));
    } else if name.starts_with("short") && ours {
        response.add_answer(a(&qname, 1));
    } else if name.starts_with("ttl5.") && ours {
        response.add_answer(a(&qname, 5));
    } else if ours {
        response.add_answer(a(&qname, 300));
    } else {
        response.metadata.response_code = ResponseCode::NXDomain;
        response.add_authority(soa);
    }
    response
}

/// Runs `dig` with `args`; fails the test with install instructions if dig is missing.
pub fn dig(args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run dig ({e}): install it with `apt-get install bind9-dnsutils` (scripts/test does)"));
    assert!(output.status.success(), "dig {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The hubdns binary built for these tests.
pub const HUBDNS: &str = env!("CARGO_BIN_EXE_hubdns");

/// A fresh temporary directory for this test.
pub fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("hubdns-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A `hubdns serve` child process, killed when dropped so a failing test leaves none behind.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every log line a child has written so far.
pub type Logs = Arc<Mutex<Vec<String>>>;

/// Starts `hubdns serve` with `config` and extra environment `env`, waits until it serves,
/// and returns it with its DNS port and its log lines (collected as they come).
pub fn serve(config: &str, env: &[(&str, &str)]) -> (Running, u16, Logs) {
    let path = tempdir().join("hubdns.toml");
    std::fs::write(&path, config).expect("write config");
    serve_file(&path, env)
}

/// [`serve`] with the config file at `path`, which the test may rewrite to reload.
pub fn serve_file(path: &std::path::Path, env: &[(&str, &str)]) -> (Running, u16, Logs) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(HUBDNS)
        .args(["serve", "--config"])
        .arg(path)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hubdns starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let child = Running(child);
    let logs: Logs = Arc::new(Mutex::new(Vec::new()));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // "serving DNS over UDP and TCP addr=127.0.0.1:PORT" (or `"addr":"…"` in JSON logs)
            // names the bound port.
            if line.contains("serving DNS")
                && let Some(port) = line
                    .split("addr=")
                    .nth(1)
                    .or_else(|| line.split("\"addr\":\"").nth(1))
                    .and_then(|a| a.split([' ', '"']).next())
                    .and_then(|a| a.rsplit(':').next())
            {
                let _ = port_tx.send(port.parse::<u16>().ok());
            }
            sink.lock().expect("log sink").push(line);
        }
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("hubdns did not start serving; log:\n{}", logs.lock().expect("logs").join("\n")));
    (child, port, logs)
}

/// Asks `addr` for `name` until `done` holds for the answer, or panics after `limit`.
pub async fn wait_for(addr: SocketAddr, name: &str, qtype: RecordType, limit: Duration, done: impl Fn(&Message) -> bool) -> Message {
    let started = std::time::Instant::now();
    loop {
        let answer = udp_query(addr, &query(name, qtype)).await;
        if done(&answer) {
            return answer;
        }
        assert!(started.elapsed() < limit, "{name}: condition not met within {limit:?}; last answer:\n{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
