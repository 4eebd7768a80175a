//! A bounded load test on loopback: 60 s of dnsperf from four client networks at a steady
//! rate, one network flooding beside them (a sender in the test: dnsperf stalls once most of
//! its queries go unanswered), and 1,000 idle TCP connections held open all along.
//! The flooder must be limited, the others must lose nothing, UDP and new TCP connections must
//! keep working, and hubdns's resident memory must stay flat.
//!
//! Rates are modest (the test binary is a debug build, and dnsperf shares the two cores): the
//! point is the limiter's fairness under a flood, not throughput, which `bench/run` measures.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    time::Duration,
};

use hickory_proto::rr::RecordType;

use crate::harness::{StubUpstream, query, serve, standard_config, tcp_query, tempdir, udp_query};

/// How long dnsperf runs.
const SECONDS: u64 = 60;
/// Each well-behaved network's rate, and their number.
const CLIENT_QPS: u32 = 800;
const CLIENTS: u8 = 4;
/// The per-network limit: above the clients' rate, well below the flooder's.
const LIMIT_QPS: u32 = 1_000;
/// The bucket: four seconds of the limit. dnsperf keeps its average rate, so a client the
/// machine stalls for a second (the suite's other tests share these two cores) sends the
/// missed queries at once when it runs again; a one-second bucket would rightly drop some.
const BURST: u32 = 4 * LIMIT_QPS;
const FLOOD_QPS: u32 = 8_000;

/// Sends queries from `from` at [`FLOOD_QPS`] for `length`, never waiting for answers;
/// how many it sent and how many answers came back.
async fn flood(server: SocketAddr, from: IpAddr, length: Duration) -> (u64, u64) {
    let socket = std::sync::Arc::new(tokio::net::UdpSocket::bind(SocketAddr::new(from, 0)).await.expect("bind"));
    let reader = socket.clone();
    let answers = tokio::spawn(async move {
        let (mut answers, mut buf) = (0u64, [0u8; 1500]);
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), reader.recv(&mut buf)).await {
            answers += 1;
        }
        answers
    });
    let packet = query("txt.corp.example", RecordType::TXT).to_vec().expect("encode");
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0u64;
    while started.elapsed() < length {
        tick.tick().await;
        for _ in 0..FLOOD_QPS / 100 {
            if socket.send_to(&packet, server).await.is_ok() {
                sent += 1;
            }
        }
    }
    (sent, answers.await.expect("reader"))
}

/// hubdns's rate-limit and drop counters, from the admin listener its log names: what a
/// failure message needs to tell the limiter's drops from the machine's.
fn limited(logs: &crate::harness::Logs) -> String {
    let lines = logs.lock().map(|l| l.clone()).unwrap_or_default();
    let Some(admin) = lines
        .iter()
        .find(|l| l.contains("serving the admin API"))
        .and_then(|l| l.split("addr=").nth(1)?.split(' ').next()?.parse::<SocketAddr>().ok())
    else {
        return "(no admin address in the log)".into();
    };
    match hubdns::admin::probe(admin, "/metrics", Duration::from_secs(5)) {
        Ok((_, text)) => text.lines().filter(|l| l.starts_with("hubdns_rate_limited_total") || l.starts_with("hubdns_packets_dropped_total") || l.starts_with("hubdns_udp_send_failures_total")).collect::<Vec<_>>().join("\n"),
        Err(error) => format!("(/metrics: {error})"),
    }
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok()).expect("VmRSS")
}

/// dnsperf's count after `label:` ("Queries sent:", "Queries lost:", …).
fn count(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` in dnsperf's report:\n{report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_limited_while_steady_clients_lose_nothing_and_memory_stays_flat() {
    assert!(
        Command::new("dnsperf").arg("-h").stderr(Stdio::null()).stdout(Stdio::null()).status().is_ok(),
        "dnsperf not found: install Debian's dnsperf (scripts/test does)"
    );
    let upstream = StubUpstream::start("127.0.0.91", Ipv4Addr::new(192, 0, 2, 91)).await;
    let config = standard_config(
        upstream.addr,
        "tcp_max_connections = 1100\ntcp_max_connections_per_client = 50\ntcp_idle_timeout_secs = 120",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n[rate_limit]\nqps = {LIMIT_QPS}\nburst = {BURST}\nslip = 0\nexempt = []\n"),
    );
    let (child, port, logs) = serve(&config, &[]);
    let pid = child.0.id();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    // Owned names and forwarded ones (the stub answers *.fwd.test; the cache keeps them).
    let data = tempdir().join("queries.txt");
    let mut lines = Vec::new();
    for i in 0..200 {
        lines.push(format!("n{i}.fwd.test A"));
    }
    for _ in 0..200 {
        lines.extend(["secretsmanager.us-east-1.amazonaws.com A", "txt.corp.example TXT", "internal-api.service.com A", "nope.secretsmanager.us-east-1.amazonaws.com A"].map(String::from));
    }
    std::fs::write(&data, lines.join("\n") + "\n").expect("write queries");

    // 1,000 idle TCP connections, 50 per source address.
    let mut idle = Vec::new();
    for i in 0..1000u32 {
        let ip = IpAddr::from([127, 0, 5, u8::try_from(i / 50 + 1).expect("small")]);
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(ip, 0)).expect("bind");
        idle.push(socket.connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A flooder has many queries lost, each outstanding until its timeout: let it have enough
    // in flight to keep flooding.
    let dnsperf = |source: String, qps: u32, outstanding: u32, timeout: u32| {
        Command::new("dnsperf")
            .args(["-s", "127.0.0.1", "-p", &port.to_string(), "-a", &source, "-d"])
            .arg(&data)
            .args(["-l", &SECONDS.to_string(), "-Q", &qps.to_string(), "-t", &timeout.to_string(), "-q", &outstanding.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsperf starts")
    };
    let clients: Vec<_> = (1..=CLIENTS).map(|n| dnsperf(format!("127.0.{n}.1"), CLIENT_QPS, 200, 2)).collect();
    let flooder = tokio::spawn(flood(addr, "127.0.9.1".parse().expect("ip"), Duration::from_secs(SECONDS)));

    // Memory after warm-up, then at the end.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let rss_early = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(SECONDS - 15 - 5)).await;
    // Mid-flood, UDP and a new TCP connection still answer.
    assert_eq!(udp_query(addr, &query("txt.corp.example", RecordType::TXT)).await.answers.len(), 1, "UDP during the flood");
    assert_eq!(tcp_query(addr, &query("txt.corp.example", RecordType::TXT)).await.answers.len(), 1, "new TCP during the flood");
    let rss_late = rss_kib(pid);

    let (flood_sent, flood_answered) = flooder.await.expect("flooder");
    let steady: Vec<String> = tokio::task::spawn_blocking(move || {
        clients
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().expect("dnsperf ends");
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .collect()
    })
    .await
    .expect("join");
    for (n, report) in steady.iter().enumerate() {
        let sent = count(report, "Queries sent:");
        assert!(sent >= u64::from(CLIENT_QPS) * (SECONDS - 2), "client {n} sent {sent}:\n{report}");
        assert_eq!(count(report, "Queries lost:"), 0, "client {n} lost queries:\n{report}\nhubdns counted:\n{}", limited(&logs));
    }
    let budget = u64::from(LIMIT_QPS) * (SECONDS + 2) + u64::from(BURST);
    assert!(flood_sent > 3 * budget, "the flooder flooded: {flood_sent} sent");
    assert!(flood_answered <= budget, "the flooder got {flood_answered} answers, over its budget {budget}");
    assert!(flood_answered >= budget / 2, "the flooder still got its share: {flood_answered}");
    let growth = rss_late.saturating_sub(rss_early);
    assert!(growth < rss_early / 10 + 4096, "RSS grew from {rss_early} KiB to {rss_late} KiB under steady load");
    eprintln!(
        "load: {CLIENTS} clients x {CLIENT_QPS} qps, 0 lost; flooder {flood_sent} sent, {flood_answered} answered (budget {budget}); RSS {rss_early} -> {rss_late} KiB"
    );
    drop(idle);
}
