//! DNS over TLS (RFC 7858) and over HTTPS (RFC 8484), asked by real clients:
//! - kdig (knot-dnsutils) over DoT, and over DoH with POST and GET (kdig speaks HTTP/2);
//!   curl over HTTP/1.1 and HTTP/2, for what kdig cannot show: the status codes of requests
//!   that are not DoH, the media type and `Cache-Control` (RFC 8484 §5.1);
//! - ALPN as negotiated by a rustls client: `dot` on DoT, `h2` then `http/1.1` on DoH;
//! - a client outside `server.allow` closed at accept, before any TLS byte;
//! - the certificate rotated three times (and once broken) under a continuous DoT load: no
//!   query fails, a connection opened before the first rotation answers after the last, new
//!   handshakes get the newest certificate, a broken pair leaves the last good one served.
//!
//! The query log's records over these transports are checked in `querylog`.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{
        self, ClientConfig, DigitallySignedStruct, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
    },
};

use crate::harness::{ANSWER_WAIT, StubUpstream, TestServer, addresses, query, tempdir};

const SECRETS: &str = "secretsmanager.us-east-1.amazonaws.com";

/// A hubdns with DoT and DoH on 127.0.0.1:0 and a fresh self-signed certificate for
/// localhost; `server` is more of `[server]`, `extra` more TOML.
pub async fn encrypted_server(upstream: SocketAddr, server: &str, extra: &str) -> (TestServer, PathBuf) {
    let dir = tempdir();
    let (cert, key) = hubdns::dns::tls::write_self_signed(&dir, &["localhost", "127.0.0.1"]).expect("certificate");
    let server = format!(
        "tls_listen = [\"127.0.0.1:0\"]\nhttps_listen = [\"127.0.0.1:0\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{server}",
        cert.display(),
        key.display()
    );
    (TestServer::standard(upstream, &server, extra).await, dir)
}

/// Runs kdig; fails with how to install it if it is missing.
fn kdig(args: &[&str]) -> String {
    let output = Command::new("kdig")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kdig ({e}): install it with `apt-get install knot-dnsutils` (scripts/test does)"));
    assert!(output.status.success(), "kdig {args:?}: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with(';')).map(str::to_owned).collect();
    lines.sort();
    lines
}

/// What curl got: HTTP version, status, headers (lowercased names) and body.
struct Got {
    version: String,
    status: u16,
    headers: String,
    body: Vec<u8>,
}

fn curl(args: &[&str]) -> Got {
    let dir = tempdir();
    let (headers, body) = (dir.join("headers"), dir.join("body"));
    let output = Command::new("curl")
        .args(["-s", "--max-time", "5", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_version} %{http_code}"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl ({e}): install it with `apt-get install curl` (scripts/test does)"));
    let written = String::from_utf8_lossy(&output.stdout).into_owned();
    let (version, status) = written.split_once(' ').unwrap_or_else(|| panic!("curl {args:?}: {written} {}", String::from_utf8_lossy(&output.stderr)));
    Got {
        version: version.to_owned(),
        status: status.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&headers).unwrap_or_default().to_ascii_lowercase(),
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

fn base64url(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdig_and_curl_get_answers_over_dot_and_doh() {
    let upstream = StubUpstream::start("127.0.0.128", std::net::Ipv4Addr::new(192, 0, 2, 128)).await;
    let (hub, dir) = encrypted_server(upstream.addr, "", "").await;
    let dot = hub.server.tls_addrs()[0];
    let doh = hub.server.https_addrs()[0];
    let ca = format!("+tls-ca={}", dir.join("cert.pem").display());
    let checks = tokio::task::spawn_blocking(move || {
        let at = |addr: SocketAddr| [format!("@{}", addr.ip()), "-p".to_owned(), addr.port().to_string()];
        for (addr, how) in [(dot, "+tls"), (doh, "+https"), (doh, "+https-get")] {
            let mut args: Vec<String> = at(addr).to_vec();
            args.extend([how.to_owned(), ca.clone(), "+tls-hostname=localhost".to_owned(), "+short".to_owned()]);
            let ask = |name: &str, rtype: &str| {
                let mut a = args.clone();
                a.extend([name.to_owned(), rtype.to_owned()]);
                sorted_lines(&kdig(&a.iter().map(String::as_str).collect::<Vec<_>>()))
            };
            assert_eq!(ask(SECRETS, "A"), ["10.10.1.25", "10.10.2.41"], "{how}: an owned name");
            assert_eq!(ask("internal-api.service.com", "A"), ["10.10.1.77", "10.10.2.78"], "{how}: an alias");
            assert_eq!(ask("www.fwd.test", "A"), ["192.0.2.128"], "{how}: a forwarded name");
        }
        // A certificate kdig cannot verify is refused: the pinned CA is what made it pass.
        let refused = Command::new("kdig")
            .args([&format!("@{}", dot.ip()), "-p", &dot.port().to_string(), "+tls-ca", "+tls-hostname=localhost", "+short", SECRETS])
            .output()
            .expect("kdig runs");
        assert!(!String::from_utf8_lossy(&refused.stdout).contains("10.10.1.25"), "kdig verified a self-signed certificate against the system store");

        // HTTP/1.1 and HTTP/2 with curl: POST and GET, the media type and freshness.
        let url = format!("https://localhost:{}/dns-query", doh.port());
        let resolve = format!("localhost:{}:127.0.0.1", doh.port());
        let cacert = dir.join("cert.pem").display().to_string();
        let wire = query(SECRETS, RecordType::A).to_vec().expect("encodes");
        let body = dir.join("query.bin");
        std::fs::write(&body, &wire).expect("query file");
        let data = format!("@{}", body.display());
        for version in ["--http1.1", "--http2"] {
            let common = [version, "--resolve", &resolve, "--cacert", &cacert];
            let post = curl(&[&common[..], &["-H", "content-type: application/dns-message", "--data-binary", &data, &url]].concat());
            let get = curl(&[&common[..], &[&format!("{url}?dns={}", base64url(&wire))]].concat());
            for (got, how) in [(&post, "POST"), (&get, "GET")] {
                assert_eq!(got.status, 200, "{version} {how}");
                assert_eq!(got.version, if version == "--http1.1" { "1.1" } else { "2" }, "{version} {how}");
                assert!(got.headers.contains("content-type: application/dns-message"), "{version} {how}: {}", got.headers);
                // The owned records' TTL is 60 s (answers.ttl): the smallest in the answer.
                assert!(got.headers.contains("cache-control: max-age=60"), "{version} {how}: {}", got.headers);
                let message = Message::from_vec(&got.body).expect("a DNS message");
                assert_eq!(addresses(&message), ["10.10.1.25", "10.10.2.41"], "{version} {how}");
            }
            // What is not DoH gets an HTTP error, not a DNS one (RFC 8484 §4.2.1).
            let not_found = curl(&[&common[..], &[&format!("https://localhost:{}/other?dns={}", doh.port(), base64url(&wire))]].concat());
            assert_eq!(not_found.status, 404, "{version}: another path");
            let media = curl(&[&common[..], &["-H", "content-type: application/dns-json", "--data-binary", &data, &url]].concat());
            assert_eq!(media.status, 415, "{version}: another media type");
            let bad = curl(&[&common[..], &[&format!("{url}?dns=***")]].concat());
            assert_eq!(bad.status, 400, "{version}: not base64url");
            let missing = curl(&[&common[..], &[url.as_str()]].concat());
            assert_eq!(missing.status, 400, "{version}: no dns parameter");
            let put = curl(&[&common[..], &["-X", "PUT", "--data-binary", &data, &url]].concat());
            assert_eq!(put.status, 405, "{version}: PUT");
            assert!(put.headers.contains("allow: get, post"), "{}", put.headers);
        }
    })
    .await;
    if let Err(panic) = checks {
        std::panic::resume_unwind(panic.into_panic());
    }
    hub.server.stop().await;
}

/// Accepts any certificate and keeps what each handshake was shown: the tests see which
/// certificate hubdns presented, across rotations, without a CA.
#[derive(Debug, Default)]
pub struct Seen(Mutex<Vec<Vec<u8>>>);

impl ServerCertVerifier for Seen {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.lock().expect("seen").push(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// A TLS connection to `addr` from `from` (bound first) offering `alpn`, with the
/// certificates it was shown recorded in `seen`.
pub async fn tls_connect(addr: SocketAddr, from: IpAddr, alpn: &[&[u8]], seen: &Arc<Seen>) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket.connect(addr).await?;
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(seen.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    tokio::time::timeout(ANSWER_WAIT, TlsConnector::from(Arc::new(config)).connect(name, stream))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// One query over a DoT stream (RFC 7858: RFC 7766 framing).
pub async fn dot_exchange(stream: &mut TlsStream<TcpStream>, name: &str) -> std::io::Result<Message> {
    let bytes = query(name, RecordType::A).to_vec().map_err(std::io::Error::other)?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await?;
    let len = tokio::time::timeout(ANSWER_WAIT, stream.read_u16()).await.map_err(|_| std::io::Error::other("no answer"))??;
    let mut reply = vec![0; usize::from(len)];
    stream.read_exact(&mut reply).await?;
    Message::from_vec(&reply).map_err(std::io::Error::other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_is_negotiated_queries_per_connection_bound_and_clients_outside_the_allow_list_closed_at_accept() {
    let upstream = StubUpstream::start("127.0.0.129", std::net::Ipv4Addr::new(192, 0, 2, 129)).await;
    let (hub, _dir) = encrypted_server(upstream.addr, "allow = [\"127.0.0.2/32\"]\nqueries_per_connection = 3", "").await;
    let (dot, doh) = (hub.server.tls_addrs()[0], hub.server.https_addrs()[0]);
    let seen = Arc::new(Seen::default());
    let allowed: IpAddr = [127, 0, 0, 2].into();

    let mut stream = tls_connect(dot, allowed, &[b"dot"], &seen).await.expect("DoT handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"dot"[..]));
    let answer = dot_exchange(&mut stream, SECRETS).await.expect("answered over DoT");
    assert_eq!(addresses(&answer), ["10.10.1.25", "10.10.2.41"]);
    // queries_per_connection = 3: two more are answered, then the connection closes.
    for _ in 0..2 {
        dot_exchange(&mut stream, SECRETS).await.expect("within the connection's queries");
    }
    assert!(dot_exchange(&mut stream, SECRETS).await.is_err(), "a fourth query on one connection is not read");
    let h2 = tls_connect(doh, allowed, &[b"h2", b"http/1.1"], &seen).await.expect("DoH handshake");
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h1 = tls_connect(doh, allowed, &[b"http/1.1"], &seen).await.expect("DoH handshake");
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // From outside the allow list: the connection is closed before any TLS byte is sent.
    for addr in [dot, doh] {
        let plain = TcpSocket::new_v4().expect("socket");
        plain.bind(SocketAddr::new([127, 0, 0, 1].into(), 0)).expect("bind");
        let mut stream = plain.connect(addr).await.expect("TCP connects");
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(ANSWER_WAIT, stream.read(&mut buf)).await.expect("closed at once, not left idle");
        assert!(matches!(read, Ok(0) | Err(_)), "{addr}: a client outside the allow list got bytes: {read:?}");
        assert!(tls_connect(addr, [127, 0, 0, 1].into(), &[b"dot", b"h2"], &seen).await.is_err(), "{addr}: no handshake from outside");
    }
    hub.server.stop().await;
}

/// Rewrites the certificate and key in `dir` and waits until a new handshake is shown the
/// new certificate; returns its DER.
async fn rotate(dir: &Path, dot: SocketAddr, seen: &Arc<Seen>) -> Vec<u8> {
    hubdns::dns::tls::write_self_signed(dir, &["localhost", "127.0.0.1"]).expect("new certificate");
    let pem = std::fs::read(dir.join("cert.pem")).expect("cert");
    let der = CertificateDer::pem_slice_iter(&pem).next().expect("one").expect("parses").to_vec();
    for _ in 0..100 {
        let mut stream = tls_connect(dot, [127, 0, 0, 1].into(), &[b"dot"], seen).await.expect("handshake during rotation");
        if stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()) == Some(der.clone()) {
            let _ = stream.shutdown().await;
            return der;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the new certificate was not served within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_query() {
    let upstream = StubUpstream::start("127.0.0.130", std::net::Ipv4Addr::new(192, 0, 2, 130)).await;
    let (hub, dir) = encrypted_server(upstream.addr, "", "").await;
    let dot = hub.server.tls_addrs()[0];
    let seen = Arc::new(Seen::default());
    let me: IpAddr = [127, 0, 0, 1].into();

    // Opened before any rotation; asked again after the last.
    let mut kept = tls_connect(dot, me, &[b"dot"], &seen).await.expect("handshake");
    dot_exchange(&mut kept, SECRETS).await.expect("answered");

    // Two clients asking without pause, each opening a new connection every fifth query (a
    // handshake during each rotation), until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (stop, answered, failed, seen) = (stop.clone(), answered.clone(), failed.clone(), seen.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Relaxed) {
                let mut stream = match tls_connect(dot, me, &[b"dot"], &seen).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        failed.lock().expect("failed").push(format!("handshake: {error}"));
                        continue;
                    }
                };
                for _ in 0..5 {
                    match dot_exchange(&mut stream, SECRETS).await {
                        Ok(m) if m.metadata.response_code == ResponseCode::NoError && m.answers.len() == 2 => {
                            answered.fetch_add(1, Relaxed);
                        }
                        other => failed.lock().expect("failed").push(format!("query: {other:?}")),
                    }
                }
            }
        }));
    }
    let certificates = hub.server.live().certificates.clone().expect("the watch's counters");
    let mut served = Vec::new();
    for _ in 0..3 {
        served.push(rotate(&dir, dot, &seen).await);
    }
    // A broken pair (a key that is not the certificate's): the last good one stays.
    let other = tempdir();
    hubdns::dns::tls::write_self_signed(&other, &["localhost"]).expect("another pair");
    let failures_before = certificates.failures.load(Relaxed);
    std::fs::copy(other.join("key.pem"), dir.join("key.pem")).expect("mismatched key");
    for _ in 0..100 {
        if certificates.failures.load(Relaxed) > failures_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(certificates.failures.load(Relaxed) > failures_before, "the broken pair was noticed");
    let mut after = tls_connect(dot, me, &[b"dot"], &seen).await.expect("still serving");
    assert_eq!(after.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).as_ref(), served.last(), "the last good pair");
    dot_exchange(&mut after, SECRETS).await.expect("answered after the broken rotation");

    stop.store(true, Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let failed = failed.lock().expect("failed").clone();
    assert!(failed.is_empty(), "{} queries failed during rotation: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(answered.load(Relaxed) >= 20, "the load ran: {}", answered.load(Relaxed));
    assert_eq!(certificates.reloads.load(Relaxed), 3, "three rotations loaded");
    let answer = dot_exchange(&mut kept, SECRETS).await.expect("the connection opened before the rotations still answers");
    assert_eq!(addresses(&answer), ["10.10.1.25", "10.10.2.41"]);
    hub.server.stop().await;
}

/// `hubdns demo` as a user runs it (every port chosen by the system): it serves DoT and DoH
/// with a certificate it makes at start, and every `kdig` command it prints answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_dot_and_doh_and_its_printed_kdig_commands_work() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(crate::harness::HUBDNS)
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--tls", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("hubdns demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let child = crate::harness::Running(child);
    let printed = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let printed = tokio::time::timeout(Duration::from_secs(30), printed).await.expect("the demo printed its help").expect("join");
    let commands: Vec<Vec<String>> = printed
        .iter()
        .filter_map(|l| l.trim().strip_prefix("kdig "))
        .map(|l| l.split(" #").next().unwrap_or(l).split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(commands.len(), 3, "a DoT, a DoH POST and a DoH GET command: {printed:?}");
    let cert = commands[0].iter().find_map(|a| a.strip_prefix("+tls-ca=")).expect("the certificate's path").to_owned();
    assert!(Path::new(&cert).exists(), "the demo's certificate is where it says");
    let checked = tokio::task::spawn_blocking(move || {
        for command in &commands {
            let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
            args.insert(args.len() - 1, "+short");
            let want: &[&str] = if command.last().map(String::as_str) == Some(SECRETS) { &["10.10.1.25", "10.10.2.41"] } else { &["10.10.1.33"] };
            // The demo's sources load within a moment of start: ask until they have.
            let mut got = Vec::new();
            for _ in 0..50 {
                got = sorted_lines(&kdig(&args));
                if got == want {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            assert_eq!(got, want, "kdig {command:?}");
        }
    })
    .await;
    drop(child);
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// A DoH request whose body stops coming is answered 408 once the idle timeout passes, and its
/// connection slot comes back: with one connection allowed per client, the client can connect
/// again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doh_body_that_stops_coming_times_out_and_frees_its_slot() {
    let upstream = StubUpstream::start("127.0.0.132", std::net::Ipv4Addr::new(192, 0, 2, 132)).await;
    let (hub, _dir) = encrypted_server(upstream.addr, "tcp_idle_timeout_secs = 1\ntcp_max_connections_per_client = 1", "").await;
    let doh = hub.server.https_addrs()[0];
    let seen = Arc::new(Seen::default());
    let me: IpAddr = [127, 0, 0, 1].into();
    let mut stalled = tls_connect(doh, me, &[b"http/1.1"], &seen).await.expect("handshake");
    stalled
        .write_all(b"POST /dns-query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/dns-message\r\nContent-Length: 100\r\n\r\n\x12\x34")
        .await
        .expect("sends half a body");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut answer)).await.expect("the server ends the request");
    assert!(answer.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
    drop(stalled);
    // The slot is free again: a new connection from the same client is served.
    let mut next = None;
    for _ in 0..50 {
        if let Ok(mut stream) = tls_connect(hub.server.tls_addrs()[0], me, &[b"dot"], &seen).await
            && dot_exchange(&mut stream, SECRETS).await.is_ok()
        {
            next = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(next.is_some(), "the stalled request's connection slot was given back");
    hub.server.stop().await;
}
