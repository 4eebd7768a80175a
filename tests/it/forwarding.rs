//! Forwarding over the wire, against stub upstreams on 127.0.0.x: routing, caching, rcode and
//! SOA pass-through, deadlines, and what a forwarder must not do (hosts file, search list).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};

use crate::harness::{StubUpstream, TestServer, addresses, query, soa_owner, udp_query};

const STUB_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

async fn server() -> (TestServer, StubUpstream) {
    let upstream = StubUpstream::start("127.0.0.53", STUB_IP).await;
    (TestServer::standard(upstream.addr, "", "").await, upstream)
}

#[tokio::test]
async fn forwarded_answers_are_cached_and_ttls_count_down() {
    let (hub, upstream) = server().await;
    let first = hub.udp("www.fwd.test.", RecordType::A).await;
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert!(!first.metadata.authoritative, "forwarded answers are not AA");
    assert!(first.metadata.recursion_available);
    assert_eq!(addresses(&first), ["192.0.2.1"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = hub.udp("WWW.fwd.test.", RecordType::A).await;
    assert_eq!(addresses(&second), ["192.0.2.1"]);
    assert_eq!(upstream.queries_for("www.fwd.test."), 1, "second answer from the cache");
    assert!(second.answers[0].ttl < 300, "cached TTL counts down: {}", second.answers[0].ttl);

    let chained = hub.udp("cname.fwd.test.", RecordType::A).await;
    assert_eq!(chained.answers[0].record_type(), RecordType::CNAME, "upstream CNAME chain kept");
    assert_eq!(addresses(&chained), ["192.0.2.1"]);
    // The repeat comes from the pre-encoded answer cache: the same records, in the same order.
    let again = hub.udp("Cname.Fwd.Test.", RecordType::A).await;
    let strip = |m: &Message| m.answers.iter().map(|r| (r.name.to_lowercase(), r.data.clone())).collect::<Vec<_>>();
    assert_eq!(strip(&again), strip(&chained));
    assert_eq!(again.metadata.response_code, ResponseCode::NoError);
    assert_eq!(upstream.queries_for("cname.fwd.test."), 1);
}

#[tokio::test]
async fn cache_entries_expire_with_their_ttl() {
    let (hub, upstream) = server().await;
    hub.udp("short.fwd.test.", RecordType::A).await;
    hub.udp("short.fwd.test.", RecordType::A).await;
    assert_eq!(upstream.queries_for("short.fwd.test."), 1);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    hub.udp("short.fwd.test.", RecordType::A).await;
    assert_eq!(upstream.queries_for("short.fwd.test."), 2, "TTL 1 entry expired and was asked again");
}

#[tokio::test]
async fn upstream_nxdomain_and_nodata_pass_through_with_soa_and_are_cached() {
    let (hub, upstream) = server().await;
    for _ in 0..2 {
        let nx = hub.udp("missing.example.", RecordType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(soa_owner(&nx).as_deref(), Some("fwd.test."), "upstream SOA passed through");
        assert!(!nx.metadata.authoritative);
    }
    assert_eq!(upstream.queries_for("missing.example."), 1, "negative answer cached");

    for _ in 0..2 {
        let nodata = hub.udp("nodata.fwd.test.", RecordType::A).await;
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(soa_owner(&nodata).as_deref(), Some("fwd.test."));
    }
    assert_eq!(upstream.queries_for("nodata.fwd.test."), 1, "NODATA cached");
}

#[tokio::test]
async fn upstream_failures_become_servfail_within_the_deadline() {
    let (hub, _upstream) = server().await;
    let started = Instant::now();
    let slow = hub.udp("slow.fwd.test.", RecordType::A).await;
    let waited = started.elapsed();
    assert_eq!(slow.metadata.response_code, ResponseCode::ServFail);
    assert!(waited < Duration::from_millis(1500), "deadline 1000 ms, answered after {waited:?}");

    for name in ["servfail.fwd.test.", "refused.fwd.test."] {
        let answer = hub.udp(name, RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail, "{name}");
    }
}

#[tokio::test]
async fn rd_zero_for_a_name_we_do_not_own_is_refused() {
    let (hub, upstream) = server().await;
    let mut q = query("www.fwd.test.", RecordType::A);
    q.metadata.recursion_desired = false;
    let answer = udp_query(hub.addr, &q).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert_eq!(upstream.queries_for("www.fwd.test."), 0);
    // Owned names still answer without recursion.
    let mut q = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A);
    q.metadata.recursion_desired = false;
    assert_eq!(addresses(&udp_query(hub.addr, &q).await).len(), 2);
}

#[tokio::test]
async fn the_longest_matching_rule_wins() {
    let default = StubUpstream::start_with("127.0.0.61", Ipv4Addr::new(192, 0, 2, 1), &["a.other.test."]).await;
    let corp = StubUpstream::start_with("127.0.0.62", Ipv4Addr::new(192, 0, 2, 2), &["z.corp.test.", "y.x.corp.test."]).await;
    let deep = StubUpstream::start_with("127.0.0.63", Ipv4Addr::new(192, 0, 2, 3), &["y.x.corp.test."]).await;
    let rules = format!(
        "[[forward.rules]]\ndomain = \"corp.test\"\nupstreams = [\"{}\"]\n\n\
         [[forward.rules]]\ndomain = \"x.corp.test\"\nupstreams = [\"{}\"]\n",
        corp.addr, deep.addr
    );
    let hub = TestServer::standard(default.addr, "", &rules).await;
    assert_eq!(addresses(&hub.udp("z.corp.test.", RecordType::A).await), ["192.0.2.2"]);
    assert_eq!(addresses(&hub.udp("y.x.corp.test.", RecordType::A).await), ["192.0.2.3"]);
    assert_eq!(addresses(&hub.udp("a.other.test.", RecordType::A).await), ["192.0.2.1"]);
    assert_eq!(corp.queries_for("y.x.corp.test."), 0, "the shorter rule lost");
    assert_eq!(deep.queries_for("z.corp.test."), 0);
    assert_eq!(default.queries_for("z.corp.test."), 0);
}

/// Names in this machine's /etc/hosts other than the localhost ones.
fn hosts_file_names() -> Vec<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").expect("/etc/hosts is readable");
    hosts
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split_whitespace().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|name| !name.starts_with("localhost") && !name.starts_with("ip6-") && !name.contains(':'))
        .collect()
}

#[tokio::test]
async fn no_hosts_file_and_no_search_domains() {
    let (hub, upstream) = server().await;
    let hosts = hosts_file_names();
    assert!(!hosts.is_empty(), "this test needs a name other than localhost in /etc/hosts (the hostname usually is)");
    for host in &hosts {
        let fqdn = format!("{host}.");
        let answer = hub.udp(&fqdn, RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "{host}: upstream's answer, not /etc/hosts");
        assert!(addresses(&answer).is_empty(), "{host}");
        assert_eq!(upstream.queries_for(&fqdn), 1, "{host} went upstream");
    }
    // localhost. is answered by the resolver itself with loopback (RFC 6761), never upstream.
    let localhost = hub.udp("localhost.", RecordType::A).await;
    assert_eq!(addresses(&localhost), ["127.0.0.1"]);

    // A single-label name goes upstream exactly as asked: no search domain appended.
    let single = hub.udp("intranet.", RecordType::A).await;
    assert_eq!(single.metadata.response_code, ResponseCode::NXDomain);
    let mut expected: Vec<String> = hosts.iter().map(|h| format!("{h}.").to_lowercase()).collect();
    expected.push("intranet.".into());
    expected.sort();
    expected.dedup();
    let mut seen = upstream.names_seen();
    seen.sort();
    assert_eq!(seen, expected, "names go upstream exactly as asked");
}

/// Issue 15 item 5: 200 clients asking one uncached name at once send one upstream query, and
/// every one of them gets the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_asking_one_name_send_one_upstream_query() {
    let upstream = StubUpstream::start("127.0.0.54", STUB_IP).await;
    let hub = TestServer::standard(upstream.addr, "", "[admin]\nlisten = \"127.0.0.1:0\"\n").await;
    let addr = hub.addr;
    let clients: Vec<_> = (0..200)
        .map(|_| tokio::spawn(async move { udp_query(addr, &query("delay.fwd.test.", RecordType::A)).await }))
        .collect();
    for client in clients {
        let answer = client.await.expect("client");
        assert_eq!(addresses(&answer), ["192.0.2.1"], "{answer}");
    }
    assert_eq!(upstream.queries_for("delay.fwd.test."), 1, "one upstream query for 200 clients");
    let text = crate::harden::metrics(hub.server.admin_addr().expect("admin")).await;
    let coalesced = crate::harden::sample(&text, "hubdns_forward_coalesced_total");
    let series = "hubdns_queries_total{qtype=\"A\",rcode=\"NOERROR\",path=\"cache\"} ";
    let cached: f64 = text.lines().find_map(|l| l.strip_prefix(series)?.parse().ok()).unwrap_or(0.0);
    assert_eq!(coalesced + cached, 199.0, "the others waited for it, or came after it was cached");
    assert!(coalesced >= 1.0, "the 100 ms the upstream takes is ample for some to wait");
}

/// Issue 15 item 7: NSID (RFC 5001) answers `server.identity`, on owned and forwarded names;
/// a query without the option gets none.
#[tokio::test]
async fn nsid_names_the_instance() {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
    let upstream = StubUpstream::start("127.0.0.55", STUB_IP).await;
    let hub = TestServer::standard(upstream.addr, "identity = \"hub-a\"", "").await;
    for name in ["www.fwd.test.", "www.fwd.test.", "secretsmanager.us-east-1.amazonaws.com."] {
        let mut message = query(name, RecordType::A);
        let edns = message.edns.as_mut().expect("edns");
        edns.options_mut().insert(EdnsOption::NSID(NSIDPayload::new(Vec::new()).expect("empty")));
        let answer = udp_query(hub.addr, &message).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "{answer}");
        let nsid = answer.edns.as_ref().and_then(|e| e.options().get(EdnsCode::NSID).cloned());
        let Some(EdnsOption::NSID(payload)) = nsid else { panic!("{name}: no NSID in {answer:?}") };
        assert_eq!(payload.as_ref(), b"hub-a");
    }
    let plain = hub.udp("www.fwd.test.", RecordType::A).await;
    assert!(plain.edns.expect("edns").options().get(EdnsCode::NSID).is_none(), "only when asked");
    // NSID queries take the full path, which answers from the cache too.
    assert_eq!(upstream.queries_for("www.fwd.test."), 1, "asked upstream once");
    // dig +nsid reads it too.
    let out = crate::harness::dig(&["@127.0.0.1", "-p", &hub.addr.port().to_string(), "+nsid", "+norec", "secretsmanager.us-east-1.amazonaws.com", "A"]);
    assert!(out.contains("NSID: 68 75 62 2d 61 (\"hub-a\")"), "{out}");
}

/// Issue 15 (found by a breaking session): one name failing at the first upstream does not
/// send every other name to the second; only being marked down does.
#[tokio::test]
async fn one_failing_name_does_not_move_the_traffic_to_the_next_upstream() {
    let first = StubUpstream::start("127.0.0.56", Ipv4Addr::new(192, 0, 2, 56)).await;
    let second = StubUpstream::start("127.0.0.57", Ipv4Addr::new(192, 0, 2, 57)).await;
    let config = crate::harness::standard_config(first.addr, "", "")
        .replace(&format!("upstreams = [\"{}\"]", first.addr), &format!("upstreams = [\"{}\", \"{}\"]", first.addr, second.addr));
    let hub = TestServer::start(&config).await;
    let broken = hub.udp("servfail.one.fwd.test.", RecordType::A).await;
    assert_eq!(broken.metadata.response_code, ResponseCode::ServFail);
    assert_eq!((first.queries_for("servfail.one.fwd.test."), second.queries_for("servfail.one.fwd.test.")), (1, 1), "both tried");
    for n in 0..5 {
        let answer = hub.udp(&format!("after{n}.fwd.test."), RecordType::A).await;
        assert_eq!(addresses(&answer), ["192.0.2.56"], "the first upstream answers again");
    }
}
