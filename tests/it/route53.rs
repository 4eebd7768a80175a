//! The Route 53 source through the real SDK, never real AWS:
//! - against moto's server: a private zone associated with the hub VPC, every kind of record
//!   queried over DNS through hubdns, an alias to an interface endpoint created in moto and one
//!   to a load balancer resolved upstream. The zone has more than 300 record sets, so
//!   ListResourceRecordSets pages;
//! - against the demo's AWS stand-in (real-shaped XML): outages keep the zone, a restart serves
//!   it from the state file, unchanged zones are not re-read, and a repeating page token is
//!   refused rather than followed forever.

use std::{collections::BTreeSet, net::Ipv4Addr};

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetFailover, RrType, Vpc, VpcRegion,
};
use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

use hubdns::{
    demo::{AwsReplay, Failure, Responses},
    sources::route53::Route53Source,
};

use crate::{
    aws::{Moto, WAIT, endpoint, hub_vpc, local_config, start},
    harness::{StubUpstream, TestServer, addresses, soa_owner, tempdir, wait_for},
};

/// A load balancer's name, answered by the stub upstream: the target of an outside alias.
const ELB: &str = "dualstack.internal-hub-alb-1234567890.us-east-1.elb.amazonaws.com.";

/// Record sets past moto's page of 300.
const FILLER: usize = 320;

fn plain(name: &str, rtype: RrType, values: &[&str]) -> ResourceRecordSet {
    let mut set = ResourceRecordSet::builder().name(name).r#type(rtype).ttl(120);
    for v in values {
        set = set.resource_records(ResourceRecord::builder().value(*v).build().expect("value"));
    }
    set.build().expect("record set")
}

fn create(set: ResourceRecordSet) -> Change {
    Change::builder().action(ChangeAction::Create).resource_record_set(set).build().expect("change")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_zone_is_served_whole_with_aliases_and_routing_policies() {
    let upstream = StubUpstream::start_with("127.0.0.54", Ipv4Addr::new(192, 0, 2, 1), &[ELB]).await;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (vpc, subnets) = hub_vpc(&ec2).await;
    let (endpoint_id, endpoint_ips) =
        endpoint(&ec2, &vpc, &subnets, "com.amazonaws.us-east-1.secretsmanager", "secrets.corp.example").await;
    let described = ec2.describe_vpc_endpoints().vpc_endpoint_ids(&endpoint_id).send().await.expect("describe");
    let endpoint_dns = described.vpc_endpoints()[0].dns_entries()[0].dns_name().expect("dns name").to_owned();

    let route53 = moto.route53();
    let zone = route53
        .create_hosted_zone()
        .name("corp.example")
        .caller_reference("hubdns-test")
        .vpc(Vpc::builder().vpc_id(&vpc).vpc_region(VpcRegion::UsEast1).build())
        .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).build())
        .send()
        .await
        .expect("create zone");
    let zone_id = zone.hosted_zone().expect("zone").id().to_owned();

    let weighted = |id: &str, weight: i64, ip: &str| {
        ResourceRecordSet::builder()
            .name("blue-green.corp.example.")
            .r#type(RrType::A)
            .ttl(60)
            .set_identifier(id)
            .weight(weight)
            .resource_records(ResourceRecord::builder().value(ip).build().expect("value"))
            .build()
            .expect("weighted")
    };
    let failover = |id: &str, role: ResourceRecordSetFailover, ip: &str| {
        ResourceRecordSet::builder()
            .name("db.corp.example.")
            .r#type(RrType::A)
            .ttl(60)
            .set_identifier(id)
            .failover(role)
            .resource_records(ResourceRecord::builder().value(ip).build().expect("value"))
            .build()
            .expect("failover")
    };
    // moto writes the zone's SOA value as a Python dict's text; put a real one, as AWS has.
    let soa = plain("corp.example.", RrType::Soa, &["ns-2048.awsdns-64.com. hostmaster.example.com. 1 7200 900 1209600 86400"]);
    let mut changes = vec![
        Change::builder().action(ChangeAction::Upsert).resource_record_set(soa).build().expect("change"),
        create(plain("api.corp.example.", RrType::A, &["10.20.0.10", "10.20.0.11"])),
        create(plain("www.corp.example.", RrType::Cname, &["api.corp.example."])),
        create(plain("corp.example.", RrType::Txt, &["\"v=spf1 -all\""])),
        create(plain("corp.example.", RrType::Mx, &["10 mail.corp.example."])),
        create(plain("_ldap._tcp.corp.example.", RrType::Srv, &["0 10 389 dc1.corp.example."])),
        create(plain("\\052.apps.corp.example.", RrType::A, &["10.20.9.9"])),
        create(plain("lab.corp.example.", RrType::Ns, &["ns1.lab-dns.example.", "ns2.lab-dns.example."])),
        create(weighted("blue", 1, "10.20.1.1")),
        create(weighted("green", 1, "10.20.1.2")),
        create(failover("primary", ResourceRecordSetFailover::Primary, "10.20.2.1")),
        create(failover("secondary", ResourceRecordSetFailover::Secondary, "10.20.2.2")),
        create(
            ResourceRecordSet::builder()
                .name("internal-api.corp.example.")
                .r#type(RrType::A)
                .alias_target(
                    AliasTarget::builder()
                        .hosted_zone_id("Z7HUB22UULQXV")
                        .dns_name(&endpoint_dns)
                        .evaluate_target_health(false)
                        .build()
                        .expect("alias"),
                )
                .build()
                .expect("alias set"),
        ),
        create(
            ResourceRecordSet::builder()
                .name("app.corp.example.")
                .r#type(RrType::A)
                .alias_target(
                    AliasTarget::builder()
                        .hosted_zone_id("Z35SXDOTRQ7X7K")
                        .dns_name(ELB)
                        .evaluate_target_health(true)
                        .build()
                        .expect("alias"),
                )
                .build()
                .expect("alias set"),
        ),
    ];
    changes.extend((0..FILLER).map(|i| create(plain(&format!("h{i}.corp.example."), RrType::A, &[&format!("10.21.{}.{}", i / 256, i % 256)]))));
    route53
        .change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(ChangeBatch::builder().set_changes(Some(changes)).build().expect("batch"))
        .send()
        .await
        .expect("change records");

    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n\
         [forward]\nupstreams = [\"{}\"]\ntimeout_ms = 300\nattempts = 1\ndeadline_ms = 1000\n\n\
         [refresh]\ninterval_secs = 1\nmax_backoff_secs = 4\nstate_file = \"{}\"\n\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_attempts = 1\n\n\
         [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"{vpc}\"]\nendpoint_url = \"{url}\"\nmax_attempts = 1\n",
        upstream.addr,
        tempdir().join("state.json").display(),
        url = moto.url,
    );
    let config = local_config(&text);
    let hub = start(&config).await;

    let api = wait_for(hub.addr, "api.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    assert_eq!(addresses(&api), ["10.20.0.10", "10.20.0.11"]);
    assert!(api.metadata.authoritative);
    let last = hub.udp(&format!("h{}.corp.example.", FILLER - 1), RecordType::A).await;
    assert_eq!(addresses(&last), [format!("10.21.{}.{}", (FILLER - 1) / 256, (FILLER - 1) % 256)], "past the first page");

    let www = hub.udp("www.corp.example.", RecordType::A).await;
    assert_eq!(www.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addresses(&www), ["10.20.0.10", "10.20.0.11"], "CNAME followed inside the zone");
    let txt = hub.udp("corp.example.", RecordType::TXT).await;
    assert!(matches!(&txt.answers[0].data, RData::TXT(t) if t.to_string().contains("v=spf1")), "{txt:?}");
    assert_eq!(hub.udp("corp.example.", RecordType::MX).await.answers.len(), 1);
    assert_eq!(hub.udp("_ldap._tcp.corp.example.", RecordType::SRV).await.answers.len(), 1);
    assert_eq!(addresses(&hub.udp("anything.apps.corp.example.", RecordType::A).await), ["10.20.9.9"], "wildcard");
    assert_eq!(addresses(&hub.udp("db.corp.example.", RecordType::A).await), ["10.20.2.1"], "failover: primary");
    let mut drawn = BTreeSet::new();
    for _ in 0..40 {
        drawn.extend(addresses(&hub.udp("blue-green.corp.example.", RecordType::A).await));
    }
    assert_eq!(drawn, BTreeSet::from(["10.20.1.1".to_owned(), "10.20.1.2".to_owned()]), "weighted: both drawn");

    let alias = wait_for(hub.addr, "internal-api.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    assert_eq!(addresses(&alias), endpoint_ips, "alias to the endpoint → its ENI addresses");

    // An alias to a load balancer: resolved upstream at refresh, TTL capped at the interval.
    let app = wait_for(hub.addr, "app.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    assert_eq!(addresses(&app), ["192.0.2.1"]);
    assert!(app.answers[0].ttl <= 1, "upstream said 300; capped at interval_secs = 1: {app:?}");
    assert!(app.metadata.authoritative, "served as the zone's own record");
    assert!(upstream.queries_for(ELB) > 0, "resolved through the forwarder");

    // Whole-zone negative answers carry the zone's own SOA (from Route 53).
    let missing = hub.udp("missing.corp.example.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_owner(&missing).as_deref(), Some("corp.example."));
    let nodata = hub.udp("api.corp.example.", RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert_eq!(soa_owner(&nodata).as_deref(), Some("corp.example."));
    assert_eq!(hub.udp("corp.example.", RecordType::SOA).await.answers.len(), 1);
    assert_eq!(upstream.queries_for("missing.corp.example."), 0, "never forwarded");
    // A delegation inside the zone is forwarded, as a resolver in the VPC would follow it.
    let delegated = hub.udp("host.lab.corp.example.", RecordType::A).await;
    assert!(!delegated.metadata.authoritative, "{delegated:?}");
    assert_eq!(upstream.queries_for("host.lab.corp.example."), 1, "forwarded below the delegation");
    hub.server.stop().await;
}

/// hubdns config text with the demo's endpoint and zone sources at `url`, refreshing every second.
fn stand_in_config(upstream: std::net::SocketAddr, url: &str, state_file: &std::path::Path) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n\
         [forward]\nupstreams = [\"{upstream}\"]\ntimeout_ms = 300\nattempts = 1\ndeadline_ms = 1000\n\n\
         [refresh]\ninterval_secs = 1\nmax_backoff_secs = 2\nstate_file = \"{}\"\n\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\napi_timeout_secs = 1\nmax_attempts = 1\n\n\
         [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\nendpoint_url = \"{url}\"\napi_timeout_secs = 1\nmax_attempts = 1\n",
        state_file.display()
    )
}

/// Every address `name` answers with over `tries` queries (weighted answers vary per query).
async fn drawn(hub: &TestServer, name: &str, tries: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..tries {
        seen.extend(addresses(&hub.udp(name, RecordType::A).await));
    }
    seen
}

/// What the demo zone must answer, whether fresh, through an outage, or from the state file.
async fn assert_demo_zone(hub: &TestServer, when: &str) {
    let api = BTreeSet::from(["10.20.1.10".to_owned(), "10.20.1.11".to_owned()]);
    assert_eq!(addresses(&hub.udp("internal-api.corp.example.", RecordType::A).await), ["10.10.1.77", "10.10.2.78"], "{when}: alias to the endpoint");
    // Weights 90/10: 200 draws miss the light one with probability 0.9^200 ≈ 7e-10.
    assert_eq!(drawn(hub, "api.corp.example.", 200).await, api, "{when}: weighted");
    assert_eq!(drawn(hub, "www.corp.example.", 200).await, api, "{when}: an alias to weighted records stays weighted");
    assert_eq!(addresses(&hub.udp("db.corp.example.", RecordType::A).await), ["10.20.2.10"], "{when}: failover primary");
    assert_eq!(addresses(&hub.udp("x.apps.corp.example.", RecordType::A).await), ["10.20.9.9"], "{when}: wildcard");
    let missing = hub.udp("missing.corp.example.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain, "{when}");
    assert_eq!(soa_owner(&missing).as_deref(), Some("corp.example."), "{when}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_survive_route53_outages_and_restart_from_the_state_file() {
    let upstream = StubUpstream::start("127.0.0.55", Ipv4Addr::new(192, 0, 2, 1)).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in starts");
    let state_file = tempdir().join("state.json");
    let config = local_config(&stand_in_config(upstream.addr, &replay.url(), &state_file));
    let hub = start(&config).await;
    wait_for(hub.addr, "internal-api.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    assert_demo_zone(&hub, "fresh").await;

    // Route 53 throttles, then fails: the zone stays as it was.
    for failure in [Failure::Throttle, Failure::ServerError] {
        replay.fail_with(Some(failure));
        let before = replay.requests_for("ListHostedZonesByVPC");
        // Backoff is at most 2 s (with jitter); the bound is for a loaded machine, not a figure.
        let asked = std::time::Instant::now();
        while replay.requests_for("ListHostedZonesByVPC") <= before && asked.elapsed() < std::time::Duration::from_secs(15) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(replay.requests_for("ListHostedZonesByVPC") > before, "{failure:?}: the source kept asking");
        assert_demo_zone(&hub, &format!("{failure:?}")).await;
    }
    hub.server.stop().await;

    // Restart while AWS still fails: the zone comes from the state file, weights and aliases included.
    let state = std::fs::read_to_string(&state_file).expect("state file written");
    assert!(state.contains("\"route53/us-east-1\"") && state.contains("\"green\""), "zone and weights kept: {state}");
    let hub = start(&config).await;
    assert!(hub.server.is_ready(), "ready from the state file, before AWS answers");
    assert_demo_zone(&hub, "restored").await;
    hub.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_zones_are_not_reread_and_a_repeating_token_is_refused() {
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in starts");
    let upstream = "127.0.0.1:9".parse().expect("constant");
    let config = local_config(&stand_in_config(upstream, &replay.url(), &tempdir().join("state.json")));
    let settings = config.sources.route53[0].get_ref().clone();
    let source = Route53Source::new(settings.clone(), 0.5).await;
    let reads = || replay.requests_for("ListResourceRecordSets");

    let (first, _) = source.zones().await.expect("first fetch");
    assert_eq!((first.len(), first[0].record_sets.len()), (1, 18), "the demo zone, whole");
    assert_eq!(reads(), 1);
    let (second, _) = source.zones().await.expect("second fetch");
    assert_eq!((reads(), replay.requests_for("GetHostedZone")), (1, 2), "same record count: not re-read");
    assert_eq!(second[0].record_sets.len(), 18, "served from the last read");

    // The zone changes: its record count moves, so the next fetch reads it again.
    let mut changed = Responses::demo();
    for xml in changed.route53.hosted_zones.values_mut() {
        *xml = xml.replace("<ResourceRecordSetCount>18<", "<ResourceRecordSetCount>19<");
    }
    replay.set_responses(changed);
    source.zones().await.expect("third fetch");
    assert_eq!(reads(), 2, "count changed: re-read");

    // reread_secs = 0: every fetch reads every zone, whatever its count says.
    let always = Route53Source::new(hubdns::config::Route53Config { reread_secs: 0, ..settings.clone() }, 0.5).await;
    always.zones().await.expect("fetch");
    always.zones().await.expect("fetch");
    assert_eq!(reads(), 4);

    // A page that names itself as the next one: refused after two calls, not followed forever.
    let mut looping = Responses::demo();
    let truncated = |xml: &str| {
        xml.replace(
            "<IsTruncated>false</IsTruncated>",
            "<IsTruncated>true</IsTruncated><NextRecordName>dc1.corp.example.</NextRecordName><NextRecordType>A</NextRecordType>",
        )
    };
    for pages in looping.route53.record_sets.values_mut() {
        let page = truncated(&pages[0]);
        *pages = vec![page.clone(), page];
    }
    replay.set_responses(looping);
    let fresh = Route53Source::new(settings, 0.5).await;
    let error = tokio::time::timeout(std::time::Duration::from_secs(10), fresh.zones())
        .await
        .expect("the fetch ends instead of following the token forever")
        .expect_err("a repeating token is an error");
    assert!(error.to_string().contains("next-record token repeats"), "{error}");
    assert_eq!(reads(), 6, "two pages read, then stopped");
}
