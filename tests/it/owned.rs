//! Owned names over the wire: authoritative answers, wildcards, aliases, CNAMEs, and the
//! NODATA / NXDOMAIN rules of RFC 2308.

use std::net::Ipv4Addr;

use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

use crate::harness::{StubUpstream, TestServer, addresses, soa_owner};

async fn server() -> (TestServer, StubUpstream) {
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    (TestServer::standard(upstream.addr, "", "").await, upstream)
}

#[tokio::test]
async fn endpoint_names_answer_authoritatively_over_udp_and_tcp() {
    let (hub, upstream) = server().await;
    for answer in [
        hub.udp("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).await,
        hub.tcp("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).await,
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative, "owned answers are AA");
        assert!(answer.metadata.recursion_available);
        assert_eq!(addresses(&answer), ["10.10.1.25", "10.10.2.41"]);
        assert!(answer.answers.iter().all(|r| r.ttl == 60), "default TTL 60");
    }
    let zonal = hub
        .udp("vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com.", RecordType::A)
        .await;
    assert_eq!(addresses(&zonal), ["10.10.1.25"], "zonal name: the ENI in that AZ only");
    assert!(upstream.names_seen().is_empty(), "owned names never reach the upstream");
}

#[tokio::test]
async fn names_match_case_insensitively_and_the_question_case_is_echoed() {
    let (hub, _upstream) = server().await;
    let asked = "SecretsManager.US-East-1.AmazonAWS.com.";
    let answer = hub.udp(asked, RecordType::A).await;
    assert_eq!(addresses(&answer), ["10.10.1.25", "10.10.2.41"]);
    assert_eq!(answer.queries[0].name().to_string(), asked, "0x20: question echoed byte for byte");
}

#[tokio::test]
async fn other_types_get_nodata_and_names_below_get_nxdomain_with_soa() {
    let (hub, upstream) = server().await;
    let owned = "secretsmanager.us-east-1.amazonaws.com.";
    let nodata = hub.udp(owned, RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert!(nodata.metadata.authoritative);
    assert_eq!(soa_owner(&nodata).as_deref(), Some(owned), "NODATA carries the SOA (RFC 2308)");

    let nx = hub.udp("nope.secretsmanager.us-east-1.amazonaws.com.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert_eq!(soa_owner(&nx).as_deref(), Some(owned));
    let soa = nx.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.clone()),
        _ => None,
    });
    let soa = soa.expect("SOA record");
    assert_eq!(soa.minimum, 60);
    assert_eq!(nx.authorities[0].ttl, 60);
    assert!(upstream.names_seen().is_empty(), "owned names and names below them are never forwarded");
}

#[tokio::test]
async fn wildcards_answer_every_name_below_them() {
    let (hub, upstream) = server().await;
    for name in ["my-bucket.s3.us-east-1.amazonaws.com.", "a.b.My-Bucket.s3.us-east-1.amazonaws.com."] {
        let answer = hub.udp(name, RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(answer.metadata.authoritative);
        assert_eq!(addresses(&answer), ["10.10.1.90"]);
        assert_eq!(
            answer.answers[0].name.to_string().to_lowercase(),
            name.to_lowercase(),
            "the wildcard answer is owned by the query name"
        );
    }
    let nodata = hub.udp("my-bucket.s3.us-east-1.amazonaws.com.", RecordType::TXT).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert_eq!(soa_owner(&nodata).as_deref(), Some("s3.us-east-1.amazonaws.com."));
    // The wildcard's base name is not covered by it: it is forwarded.
    let base = hub.udp("s3.us-east-1.amazonaws.com.", RecordType::A).await;
    assert!(!base.metadata.authoritative);
    assert_eq!(upstream.queries_for("s3.us-east-1.amazonaws.com."), 1);
}

#[tokio::test]
async fn aliases_answer_flattened_addresses() {
    let (hub, _upstream) = server().await;
    let answer = hub.udp("internal-api.service.com.", RecordType::A).await;
    assert_eq!(addresses(&answer), ["10.10.1.77", "10.10.2.78"]);
    assert!(answer.answers.iter().all(|r| r.record_type() == RecordType::A), "flattened: no CNAME");
    assert_eq!(answer.answers[0].name.to_string(), "internal-api.service.com.");

    let v4 = hub.udp("legacy.corp.example.", RecordType::A).await;
    assert_eq!(addresses(&v4), ["10.20.3.4"]);
    let v6 = hub.udp("legacy.corp.example.", RecordType::AAAA).await;
    assert_eq!(addresses(&v6), ["fd00::34"]);
}

#[tokio::test]
async fn static_record_types() {
    let (hub, _upstream) = server().await;
    let mx = hub.udp("mail.corp.example.", RecordType::MX).await;
    let mut exchanges: Vec<String> = mx.answers.iter().map(|r| r.data.to_string()).collect();
    exchanges.sort();
    assert_eq!(exchanges, ["10 mx1.corp.example.", "20 mx2.corp.example."]);
    let srv = hub.udp("_ldap._tcp.corp.example.", RecordType::SRV).await;
    assert_eq!(srv.answers[0].data.to_string(), "0 100 389 dc1.corp.example.");
    let ptr = hub.udp("4.3.20.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(ptr.answers[0].data.to_string(), "legacy.corp.example.");
    let txt = hub.udp("txt.corp.example.", RecordType::TXT).await;
    assert_eq!(txt.answers[0].data.to_string(), "v=spf1 -all");
}

#[tokio::test]
async fn cnames_are_followed_through_owned_names_and_then_upstream() {
    let (hub, upstream) = server().await;
    let inside = hub.udp("www.corp.example.", RecordType::A).await;
    assert_eq!(inside.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addresses(&inside), ["10.20.3.4"], "CNAME target answered from the table");
    assert!(inside.metadata.authoritative);

    let outside = hub.udp("out.corp.example.", RecordType::A).await;
    assert_eq!(outside.metadata.response_code, ResponseCode::NoError);
    assert_eq!(outside.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addresses(&outside), ["192.0.2.1"], "CNAME target outside the table is forwarded");
    assert_eq!(upstream.queries_for("www.fwd.test."), 1);

    let dangling = hub.udp("dangling.corp.example.", RecordType::A).await;
    assert_eq!(dangling.metadata.response_code, ResponseCode::NXDomain, "RCODE of the last name in the chain");
    assert_eq!(dangling.answers.len(), 1, "the CNAME itself is still answered");

    let cname_itself = hub.udp("www.corp.example.", RecordType::CNAME).await;
    assert_eq!(cname_itself.answers.len(), 1);
}

/// hickory's own stub resolver as the client, the way an application on a spoke VPC would
/// look names up through hubdns.
#[tokio::test]
async fn hickory_resolver_as_a_client() {
    use hickory_resolver::{
        TokioResolver,
        config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts},
        net::runtime::TokioRuntimeProvider,
    };
    let (hub, _upstream) = server().await;
    for protocol in [ConnectionConfig::udp(), ConnectionConfig::tcp()] {
        let mut connection = protocol;
        connection.port = hub.addr.port();
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![NameServerConfig::new(hub.addr.ip(), true, vec![connection])]),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .expect("client resolver");
        let ips = resolver.lookup_ip("internal-api.service.com.").await.expect("lookup");
        let mut ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
        ips.sort();
        assert_eq!(ips, ["10.10.1.77", "10.10.2.78"]);
        let v6 = resolver.lookup_ip("legacy.corp.example.").await.expect("lookup");
        assert_eq!(v6.iter().count(), 2, "A and AAAA both answered");
    }
}
