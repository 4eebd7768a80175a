//! DNS protocol duties over the wire: EDNS, truncation, FORMERR / NOTIMP / REFUSED / BADVERS,
//! the allow list, ANY, and packets that must get no answer at all.

use std::{fmt::Write, net::Ipv4Addr};

use hickory_proto::{
    op::{Message, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name, RecordType},
};

use crate::harness::{StubUpstream, TestServer, query, udp_exchange, udp_query};

/// 100 A records at one name, and a 3 KB TXT: neither fits a 1232-byte UDP answer.
fn big_records() -> String {
    let mut out = String::from("[[records]]\nname = \"many.corp.example\"\ntype = \"A\"\nvalues = [");
    for i in 0..100 {
        let _ = write!(out, "\"10.99.0.{}\",", i + 1);
    }
    out.push_str("]\n\n[[records]]\nname = \"long.corp.example\"\ntype = \"TXT\"\nvalues = [");
    for i in 0..12 {
        let _ = write!(out, "\"{}\",", format!("{i:02}").repeat(125));
    }
    // 30 A records: about 550 bytes, more than 512 but well under 1232.
    out.push_str("]\n\n[[records]]\nname = \"mid.corp.example\"\ntype = \"A\"\nvalues = [");
    for i in 0..30 {
        let _ = write!(out, "\"10.98.0.{}\",", i + 1);
    }
    out.push_str("]\n");
    out
}

async fn server() -> (TestServer, StubUpstream) {
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    (TestServer::standard(upstream.addr, "", &big_records()).await, upstream)
}

#[tokio::test]
async fn edns_is_echoed_with_our_payload_cap() {
    let (hub, _upstream) = server().await;
    let mut q = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A);
    q.edns.as_mut().expect("query has EDNS").set_max_payload(4096);
    let answer = udp_query(hub.addr, &q).await;
    let edns = answer.edns.expect("OPT echoed");
    assert_eq!(edns.max_payload(), 1232, "payload capped at 1232");
    assert_eq!(edns.version(), 0);

    let mut plain = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A);
    plain.edns = None;
    let answer = udp_query(hub.addr, &plain).await;
    assert!(answer.edns.is_none(), "no OPT for a query without one");
}

#[tokio::test]
async fn udp_answers_that_do_not_fit_are_truncated_with_opt_and_tcp_has_everything() {
    let (hub, _upstream) = server().await;
    for (name, qtype, full) in [("many.corp.example.", RecordType::A, 100), ("long.corp.example.", RecordType::TXT, 12)] {
        let udp = hub.udp(name, qtype).await;
        assert!(udp.metadata.truncation, "{name}: TC=1 over UDP");
        assert!(udp.edns.is_some(), "{name}: the truncated answer keeps its OPT");
        assert!(udp.answers.is_empty(), "{name}: no partial RRset");
        assert_eq!(udp.queries.len(), 1, "{name}: question kept");
        let tcp = hub.tcp(name, qtype).await;
        assert!(!tcp.metadata.truncation, "{name}");
        assert_eq!(tcp.answers.len(), full, "{name}: everything over TCP");
    }
    // 30 records fit 1232 bytes but not the 512 of a client without EDNS.
    assert_eq!(hub.udp("mid.corp.example.", RecordType::A).await.answers.len(), 30);
    let mut classic = query("mid.corp.example.", RecordType::A);
    classic.edns = None;
    let answer = udp_query(hub.addr, &classic).await;
    assert!(answer.metadata.truncation, "512-byte limit without EDNS");
    assert!(answer.edns.is_none());
}

#[tokio::test]
async fn malformed_queries_get_formerr() {
    let (hub, _upstream) = server().await;
    // A valid header announcing one question, then half a name.
    let mut garbage = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).to_vec().expect("encodes");
    garbage.truncate(20);
    let answer = Message::from_vec(&udp_exchange(hub.addr, &garbage, None).await.expect("an answer")).expect("parses");
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(answer.metadata.id, u16::from_be_bytes([garbage[0], garbage[1]]));

    let mut two = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("internal-api.service.com.").expect("name"), RecordType::A));
    assert_eq!(udp_query(hub.addr, &two).await.metadata.response_code, ResponseCode::FormErr);

    let mut none = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A);
    none.queries.clear();
    assert_eq!(udp_query(hub.addr, &none).await.metadata.response_code, ResponseCode::FormErr);
}

#[tokio::test]
async fn responses_and_runt_packets_get_no_answer() {
    let (hub, _upstream) = server().await;
    let mut response = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    assert!(udp_exchange(hub.addr, &response.to_vec().expect("encodes"), None).await.is_none(), "QR=1: no reflection");
    assert!(udp_exchange(hub.addr, &[0x12, 0x34, 0x01], None).await.is_none(), "shorter than a header");
}

#[tokio::test]
async fn unknown_opcodes_get_notimp_and_edns1_gets_badvers() {
    let (hub, _upstream) = server().await;
    let mut status = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(udp_query(hub.addr, &status).await.metadata.response_code, ResponseCode::NotImp);

    let mut v1 = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A);
    v1.edns.as_mut().expect("EDNS").set_version(1);
    let answer = udp_query(hub.addr, &v1).await;
    // BADVERS shares code 16 with BADSIG; hickory decodes 16 as BADSIG.
    assert_eq!(u16::from(answer.metadata.response_code), 16, "BADVERS");
    assert_eq!(answer.edns.expect("OPT carries BADVERS").version(), 0);
}

#[tokio::test]
async fn zone_transfers_and_other_classes_are_refused() {
    let (hub, upstream) = server().await;
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let udp = hub.udp("secretsmanager.us-east-1.amazonaws.com.", qtype).await;
        assert_eq!(udp.metadata.response_code, ResponseCode::Refused, "{qtype} over UDP");
        let tcp = hub.tcp("secretsmanager.us-east-1.amazonaws.com.", qtype).await;
        assert_eq!(tcp.metadata.response_code, ResponseCode::Refused, "{qtype} over TCP");
    }
    let mut chaos = query("www.fwd.test.", RecordType::A);
    let mut q = Query::query(Name::from_ascii("www.fwd.test.").expect("name"), RecordType::A);
    q.set_query_class(DNSClass::CH);
    chaos.queries = vec![q];
    assert_eq!(udp_query(hub.addr, &chaos).await.metadata.response_code, ResponseCode::Refused);
    assert!(upstream.names_seen().is_empty());
}

#[tokio::test]
async fn any_gets_a_minimal_answer() {
    let (hub, upstream) = server().await;
    let owned = hub.udp("legacy.corp.example.", RecordType::ANY).await;
    assert_eq!(owned.metadata.response_code, ResponseCode::NoError);
    let types: std::collections::HashSet<RecordType> = owned.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "one RRset, not everything (RFC 8482): {types:?}");

    // A name not owned is the upstream's to answer, ANY included (issue 14 item 12: no
    // invented HINFO, which claimed even nonexistent names exist).
    let other = hub.udp("www.fwd.test.", RecordType::ANY).await;
    assert!(other.answers.iter().all(|r| r.record_type() != RecordType::HINFO), "{:?}", other.answers);
    assert!(upstream.names_seen().iter().any(|n| n.eq_ignore_ascii_case("www.fwd.test.")), "ANY is forwarded");
}

#[tokio::test]
async fn clients_outside_the_allow_list_are_refused() {
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    let hub = TestServer::standard(upstream.addr, "allow = [\"127.0.0.1/32\"]", "").await;
    let q = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).to_vec().expect("encodes");
    let bytes = udp_exchange(hub.addr, &q, Some("127.0.0.2".parse().expect("ip"))).await.expect("an answer");
    let refused = Message::from_vec(&bytes).expect("parses");
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(refused.answers.is_empty());
    let allowed = Message::from_vec(&udp_exchange(hub.addr, &q, Some("127.0.0.1".parse().expect("ip"))).await.expect("answer"))
        .expect("parses");
    assert_eq!(allowed.answers.len(), 2);

    // IPv6 loopback, excluded by an allow list without ::1.
    let v6 = TestServer::start(
        &crate::harness::standard_config(upstream.addr, "allow = [\"127.0.0.0/8\"]", "")
            .replace("listen = [\"127.0.0.1:0\"]", "listen = [\"[::1]:0\"]"),
    )
    .await;
    let answer = udp_query(v6.addr, &query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    // Issue 15 item 6: over TCP the connection is closed at accept, before it holds a slot.
    let mut stream = tokio::net::TcpStream::connect(v6.addr).await.expect("the kernel accepts");
    let q = query("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).to_vec().expect("encodes");
    let answer = crate::harness::tcp_exchange(&mut stream, &q).await;
    assert!(answer.is_err(), "closed without an answer: {answer:?}");
    assert!(upstream.names_seen().is_empty());
}
