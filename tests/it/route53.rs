//! The Route 53 source through the real SDK against moto's server: a private zone associated
//! with the hub VPC, every kind of record queried over DNS through hubdns, and an alias to an
//! interface endpoint created in moto. The zone has more than 300 record sets, so
//! ListResourceRecordSets pages.

use std::{collections::BTreeSet, net::Ipv4Addr};

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetFailover, RrType, Vpc, VpcRegion,
};
use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

use crate::{
    aws::{Moto, WAIT, endpoint, hub_vpc, local_config, start},
    harness::{StubUpstream, addresses, soa_owner, tempdir, wait_for},
};

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
    let upstream = StubUpstream::start("127.0.0.54", Ipv4Addr::new(192, 0, 2, 1)).await;
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

    // Whole-zone negative answers carry the zone's own SOA (from Route 53).
    let missing = hub.udp("missing.corp.example.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_owner(&missing).as_deref(), Some("corp.example."));
    let nodata = hub.udp("api.corp.example.", RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert_eq!(soa_owner(&nodata).as_deref(), Some("corp.example."));
    assert_eq!(hub.udp("corp.example.", RecordType::SOA).await.answers.len(), 1);
    assert_eq!(upstream.queries_for("missing.corp.example."), 0, "never forwarded");
    hub.server.stop().await;
}
