//! The query log, field by field against Route 53 Resolver's query-log schema ("Values that
//! appear in VPC Resolver query logs" and its example record in the Route 53 Developer
//! Guide): the same keys, the same JSON types (`srcport` a string, `answers` objects of
//! `Rdata`/`Type`/`Class`), the same spellings (`NOERROR`, `IN`, names with their final dot,
//! whole-second UTC timestamps), for queries over UDP, TCP, DoT and DoH.
//!
//! The client's VPC comes from the subnets hubdns learns (moto's DescribeSubnets, with
//! affinity off: the query log alone asks for them); a client in no known subnet gets empty
//! `vpc_id`, `account_id` and `region`, never hubdns's own.
//!
//! As a process: the log written to a file, one query in `query_sample`, and the file reopened
//! on SIGUSR1 after logrotate moved it away.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;
use serde_json::Value;
use tokio::net::{TcpSocket, UdpSocket};

use crate::{
    aws::{Moto, WAIT, hub_vpc, local_config, start},
    encrypted::{Seen, dot_exchange, tls_connect},
    harness::{StubUpstream, query, serve, tcp_exchange, tempdir, udp_query, wait_for},
    sources::{config_text, endpoints_source},
};

/// The keys of Resolver's example record, less the three of Route 53 Resolver DNS Firewall,
/// which hubdns has no part of.
const RESOLVER_KEYS: [&str; 14] = [
    "account_id",
    "answers",
    "query_class",
    "query_name",
    "query_timestamp",
    "query_type",
    "rcode",
    "region",
    "srcaddr",
    "srcids",
    "srcport",
    "transport",
    "version",
    "vpc_id",
];

/// The log's lines, parsed, once at least `count` are there (or after `WAIT`).
async fn lines(path: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let parsed: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
        if parsed.len() >= count || Instant::now() > deadline {
            return parsed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks one record against the schema, and its query and client.
fn check_record(line: &Value, name: &str, answers: &[&str], client: SocketAddr, transport: &str, vpc: Option<(&str, &str)>) {
    let keys: BTreeSet<&str> = line.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(keys, RESOLVER_KEYS.into_iter().collect(), "{line}");
    assert_eq!(line["version"], "1.100000", "{line}");
    let (vpc_id, account) = vpc.unwrap_or_default();
    assert_eq!(line["vpc_id"], vpc_id, "{line}");
    assert_eq!(line["account_id"], account, "{line}");
    assert_eq!(line["region"], if vpc.is_some() { "us-east-1" } else { "" }, "{line}");
    let stamp = line["query_timestamp"].as_str().expect("a string");
    assert!(stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "ISO 8601, whole seconds, UTC: {line}");
    assert_eq!(line["query_name"], name, "{line}");
    assert_eq!((line["query_type"].as_str(), line["query_class"].as_str(), line["rcode"].as_str()), (Some("A"), Some("IN"), Some("NOERROR")), "{line}");
    let got: BTreeSet<&str> = line["answers"].as_array().expect("answers").iter().map(|a| a["Rdata"].as_str().expect("Rdata")).collect();
    assert_eq!(got, answers.iter().copied().collect(), "{line}");
    for answer in line["answers"].as_array().expect("answers") {
        assert_eq!((answer["Type"].as_str(), answer["Class"].as_str()), (Some("A"), Some("IN")), "{line}");
        assert_eq!(answer.as_object().map(|o| o.len()), Some(3), "{line}");
    }
    assert_eq!(line["srcaddr"], client.ip().to_string(), "{line}");
    let port = line["srcport"].as_str().expect("srcport is a string, as Resolver writes it");
    if client.port() != 0 {
        assert_eq!(port, client.port().to_string(), "{line}");
    } else {
        assert!(port.parse::<u16>().is_ok(), "{line}");
    }
    assert_eq!(line["transport"], transport, "{line}");
    assert_eq!(line["srcids"], serde_json::json!({"instance": ""}), "the client instance is not known: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_log_records_follow_resolvers_schema_over_every_transport() {
    let upstream = StubUpstream::start("127.0.0.131", Ipv4Addr::new(192, 0, 2, 131)).await;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (vpc, subnets) = hub_vpc(&ec2).await;
    crate::aws::endpoint(&ec2, &vpc, &subnets, "com.amazonaws.us-east-1.secretsmanager", "secrets.corp.example").await;
    let spoke = ec2.create_vpc().cidr_block("127.0.0.0/16").send().await.expect("spoke vpc");
    let spoke = spoke.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_owned();
    ec2.create_subnet().vpc_id(&spoke).cidr_block("127.0.6.0/24").availability_zone("us-east-1a").send().await.expect("spoke subnet");

    let dir = tempdir();
    let (cert, key) = hubdns::dns::tls::write_self_signed(&dir, &["localhost", "127.0.0.1"]).expect("certificate");
    let log = dir.join("queries.log");
    let sources = format!(
        "{}alias_tag_domains = [\"corp.example\"]\n\n[log]\nqueries = \"{}\"\n",
        endpoints_source("us-east-1", &moto.url, 2),
        log.display()
    );
    let mut text = config_text(upstream.addr, "127.0.0.1:0", "", &sources);
    text = text.replacen(
        "udp_sockets_per_address = 1\n",
        &format!(
            "udp_sockets_per_address = 1\ntls_listen = [\"127.0.0.1:0\"]\nhttps_listen = [\"127.0.0.1:0\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        1,
    );
    let hub = start(&local_config(&text)).await;
    let name = "secrets.corp.example.";
    let first = wait_for(hub.addr, name, RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    let answers: Vec<String> = crate::harness::addresses(&first);
    let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
    // The subnets come with the same inventory as the endpoints: wait until the spoke's
    // client is placed (the status page lists the placements).
    let admin = hub.server.admin_addr().expect("admin");
    let placed = Instant::now();
    let status = || hubdns::admin::probe(admin, "/status.json", Duration::from_secs(3)).map(|(_, body)| body).unwrap_or_default();
    while !status().contains("127.0.6.0/24") {
        assert!(placed.elapsed() < WAIT, "the spoke subnet was never learned: {}", status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let inside: IpAddr = [127, 0, 6, 9].into();
    let udp = UdpSocket::bind((inside, 0)).await.expect("bind");
    let udp_client = udp.local_addr().expect("addr");
    udp.send_to(&query(name, RecordType::A).to_vec().expect("encodes"), hub.addr).await.expect("send");
    let mut buf = vec![0; 4096];
    tokio::time::timeout(WAIT, udp.recv_from(&mut buf)).await.expect("UDP answer").expect("received");

    let tcp = TcpSocket::new_v4().expect("socket");
    tcp.bind(SocketAddr::new(inside, 0)).expect("bind");
    let mut stream = tcp.connect(hub.addr).await.expect("connects");
    let tcp_client = stream.local_addr().expect("addr");
    tcp_exchange(&mut stream, &query(name, RecordType::A).to_vec().expect("encodes")).await.expect("TCP answer");

    let mut tls = tls_connect(hub.server.tls_addrs()[0], inside, &[b"dot"], &Arc::new(Seen::default())).await.expect("DoT");
    let dot_client = tls.get_ref().0.local_addr().expect("addr");
    dot_exchange(&mut tls, name).await.expect("DoT answer");

    let doh = hub.server.https_addrs()[0];
    let wire = query(name, RecordType::A).to_vec().expect("encodes");
    let url = format!("https://127.0.0.1:{}/dns-query?dns={}", doh.port(), data_encoding::BASE64URL_NOPAD.encode(&wire));
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "5", "--interface", "127.0.6.9", "--cacert"])
        .arg(&cert)
        .arg(&url)
        .status()
        .expect("curl runs (apt-get install curl: scripts/test does)");
    assert!(status.success());

    // And one from outside every subnet the sources know.
    let outside = UdpSocket::bind(("127.0.0.1", 0)).await.expect("bind");
    let outside_client = outside.local_addr().expect("addr");
    outside.send_to(&query(name, RecordType::A).to_vec().expect("encodes"), hub.addr).await.expect("send");
    tokio::time::timeout(WAIT, outside.recv_from(&mut buf)).await.expect("UDP answer").expect("received");

    // Each client's record, found by its address, port and transport (the writer takes what
    // waits every 20 ms: wait for all of them).
    let wanted = [("UDP", udp_client), ("TCP", tcp_client), ("DoT", dot_client), ("UDP", outside_client)];
    let deadline = Instant::now() + WAIT;
    let records = loop {
        let records = lines(&log, 0).await;
        let found = |transport: &str, client: SocketAddr| {
            records.iter().any(|l| l["transport"] == transport && l["srcaddr"] == client.ip().to_string() && l["srcport"].as_str() == Some(client.port().to_string().as_str()))
        };
        let doh = records.iter().any(|l| l["transport"] == "DoH" && l["srcaddr"] == "127.0.6.9");
        if (doh && wanted.iter().all(|(t, c)| found(t, *c))) || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by = |transport: &str, client: SocketAddr| -> &Value {
        records
            .iter()
            .find(|l| l["transport"] == transport && l["srcaddr"] == client.ip().to_string() && (client.port() == 0 || l["srcport"].as_str() == Some(client.port().to_string().as_str())))
            .unwrap_or_else(|| panic!("no {transport} record from {client}: {records:?}"))
    };
    let in_spoke = Some((spoke.as_str(), "123456789012"));
    check_record(by("UDP", udp_client), name, &answers, udp_client, "UDP", in_spoke);
    check_record(by("TCP", tcp_client), name, &answers, tcp_client, "TCP", in_spoke);
    check_record(by("DoT", dot_client), name, &answers, dot_client, "DoT", in_spoke);
    check_record(by("DoH", SocketAddr::new(inside, 0)), name, &answers, SocketAddr::new(inside, 0), "DoH", in_spoke);
    check_record(by("UDP", outside_client), name, &answers, outside_client, "UDP", None);
    hub.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_log_file_is_sampled_and_reopened_on_sigusr1() {
    let upstream = StubUpstream::start("127.0.0.66", Ipv4Addr::new(192, 0, 2, 66)).await;
    let dir = tempdir();
    let log = dir.join("queries.log");
    let config = crate::harness::standard_config(upstream.addr, "", &format!("[log]\nqueries = \"{}\"\nquery_sample = 2\n", log.display()));
    let (child, port, _logs) = serve(&config, &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..5 {
        udp_query(addr, &query("txt.corp.example", RecordType::TXT)).await;
        udp_query(addr, &query("www.log.test", RecordType::A)).await;
    }
    let written = lines(&log, 5).await;
    assert_eq!(written.len(), 5, "one query in two: {written:?}");
    for line in &written {
        let expected = match line["query_name"].as_str() {
            Some("txt.corp.example.") => ("TXT", "NOERROR"),
            Some("www.log.test.") => ("A", "NXDOMAIN"),
            _ => panic!("unexpected name: {line}"),
        };
        assert_eq!((line["query_type"].as_str(), line["rcode"].as_str()), (Some(expected.0), Some(expected.1)), "{line}");
        assert_eq!((line["srcaddr"].as_str(), line["transport"].as_str()), (Some("127.0.0.1"), Some("UDP")), "{line}");
    }

    // logrotate: move the file away, then SIGUSR1; later lines go to a new file.
    let rotated = dir.join("queries.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-USR1", &pid]).status().expect("kill runs").success());
    let deadline = Instant::now() + WAIT;
    while !log.exists() {
        assert!(Instant::now() < deadline, "no new file after SIGUSR1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        udp_query(addr, &query("txt.corp.example", RecordType::TXT)).await;
    }
    assert!(lines(&log, 2).await.len() >= 2, "lines go to the new file");
    assert!(lines(&rotated, 0).await.len() >= 5, "the rotated file keeps what it had");
    // Still alive and answering: SIGUSR1 is handled, not fatal.
    assert!(!udp_query(addr, &query("txt.corp.example", RecordType::TXT)).await.answers.is_empty());
    drop(child);
}
