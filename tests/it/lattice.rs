//! Resource and service-network endpoints (issue 17), through the real SDK against the
//! stand-in: EC2's DescribeVpcEndpointAssociations (query XML) and VPC Lattice's
//! GetResourceConfiguration and ListServiceNetworkServiceAssociations (REST JSON), recorded in
//! `config/demo-aws/`.
//! - a resource endpoint answers its own `vpc-lattice-rsc` name and its verified custom
//!   domain (`proxy.egress.example`) with its ENIs, authoritatively;
//! - a service-network endpoint answers its association's `vpc-lattice-svcs` name, and the
//!   service's custom domain (`orders.svc.example`) only under `unverified_domains`, with
//!   what the upstream says of the association's name;
//! - a failed association is left out with its reason;
//! - VPC Lattice failing (throttled, hung) never stops EC2's changes, and each item keeps its
//!   last answer; on a cold start without Lattice, what needs no verification status is still
//!   served;
//! - an unverified custom domain is not served under `ALL_DOMAINS` without `unverified_domains`.

use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use hubdns::demo::{AwsReplay, Failure, Responses};

use crate::{
    aws::{local_config, start},
    harness::{ANSWER_WAIT, StubUpstream, TestServer, addresses, wait_for},
    sources::{config_text, edit_endpoint, get},
};

const PROXY: &str = "proxy.egress.example.";
const PROXY_IPS: [&str; 2] = ["10.10.1.60", "10.10.2.61"];
const RSC: &str = "vpce-0e5c7a9b1d3f50011.rcfg-0e1d2c3b4a5f60789.4232ccc.vpc-lattice-rsc.us-east-1.on.aws.";
const SNSA: &str = "vpce-0f3e5d7c9b1a20022-snsa-07b06c66e01bdd93f.7d67968.vpc-lattice-svcs.us-east-1.on.aws.";
const ORDERS: &str = "orders.svc.example.";
/// What the stub upstream (public DNS, for the test) answers for the association's name.
const SNSA_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 212);

/// A vpc_endpoints source reading EC2 and VPC Lattice from `replay`, with `extra` settings.
fn source(replay: &AwsReplay, extra: &str) -> String {
    format!(
        "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nlattice_endpoint_url = \"{url}\"\nmax_attempts = 1\napi_timeout_secs = 2\n{extra}\n",
        url = replay.url()
    )
}

async fn start_hub(upstream: SocketAddr, replay: &AwsReplay, extra: &str) -> (TestServer, SocketAddr) {
    let config = local_config(&config_text(upstream, "127.0.0.1:0", "", &source(replay, extra)));
    let hub = start(&config).await;
    let admin = hub.server.admin_addr().expect("admin");
    (hub, admin)
}

/// The demo's recordings on a stand-in, a stub upstream on `stub_ip` answering the service's
/// association name, and hubdns serving them with `svc.example` allowed, once it answers
/// the service's custom domain.
async fn serving_demo(stub_ip: &str) -> (StubUpstream, AwsReplay, TestServer, SocketAddr) {
    let upstream = StubUpstream::start_with(stub_ip, SNSA_IP, &[SNSA]).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in");
    let (hub, admin) = start_hub(upstream.addr, &replay, "unverified_domains = [\"svc.example\"]").await;
    wait_for(hub.addr, ORDERS, RecordType::A, ANSWER_WAIT, |m| !addresses(m).is_empty()).await;
    (upstream, replay, hub, admin)
}

/// The demo's recordings with the Secrets Manager endpoint's first ENI moved to `ip`.
fn secrets_moved_to(ip: &str) -> Responses {
    let mut moved = Responses::demo();
    moved.describe_network_interfaces = moved.describe_network_interfaces.replace("10.10.1.25", ip);
    moved
}

fn parse_status(body: &str) -> serde_json::Value {
    serde_json::from_str(body).expect("status JSON")
}

/// The endpoint `id`'s summary on the status page.
fn endpoint<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["sources"][0]["endpoints"].as_array().expect("endpoints").iter().find(|e| e["id"] == id).expect("endpoint listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_and_service_network_endpoints_answer_their_own_and_custom_names() {
    let upstream = StubUpstream::start_with("127.0.0.110", SNSA_IP, &[SNSA]).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in");
    let (hub, admin) = start_hub(upstream.addr, &replay, "unverified_domains = [\"svc.example\"]").await;

    let proxy = wait_for(hub.addr, PROXY, RecordType::A, ANSWER_WAIT, |m| !addresses(m).is_empty()).await;
    assert_eq!(addresses(&proxy), PROXY_IPS, "both ENIs of the resource endpoint");
    assert!(proxy.metadata.authoritative, "owned: aa");
    assert_eq!(addresses(&hub.udp(RSC, RecordType::A).await), PROXY_IPS, "the endpoint's own name");
    assert_eq!(hub.udp(PROXY, RecordType::AAAA).await.metadata.response_code, ResponseCode::NoError, "IPv4 endpoint: NODATA for AAAA");

    let orders = wait_for(hub.addr, ORDERS, RecordType::A, ANSWER_WAIT, |m| !addresses(m).is_empty()).await;
    assert_eq!(addresses(&orders), ["10.10.1.212"], "answered as the association's own name");
    assert!(orders.metadata.authoritative);
    assert_eq!(addresses(&hub.udp(SNSA, RecordType::A).await), ["10.10.1.212"]);
    // The DNS resource's own name is the provider's; nothing makes it resolve to the endpoint.
    let target = hub.udp("squid.internal.egress-provider.example.", RecordType::A).await;
    assert!(!target.metadata.authoritative && addresses(&target).is_empty(), "{target:?}");

    let (_, body) = get(admin, "/status.json").await;
    let status = parse_status(&body);
    let resource = endpoint(&status, "vpce-0e5c7a9b1d3f50011");
    assert_eq!(resource["kind"], "Resource");
    let proxy_domain = resource["domains"].as_array().expect("domains").iter().find(|d| d["name"] == "proxy.egress.example").expect("listed");
    assert_eq!((proxy_domain["verification"].as_str(), proxy_domain["served"].as_bool()), (Some("VERIFIED"), Some(true)));
    let network = endpoint(&status, "vpce-0f3e5d7c9b1a20022");
    assert_eq!(network["kind"], "ServiceNetwork");
    assert_eq!(network["domains"][0]["why"], "under unverified_domains");
    let skipped = status["sources"][0]["skipped"].to_string();
    assert!(skipped.contains("ResourceConfigurationNotActive"), "the failed association, with its reason: {skipped}");

    let (_, explain) = get(admin, "/explain?name=proxy.egress.example").await;
    for part in ["type=Resource", "association=vpce-rsc-asc-0a810ca6ac8866bf9", "verification=VERIFIED"] {
        assert!(explain.contains(part), "{part} in {explain}");
    }
    hub.server.stop().await;

    // Without unverified_domains the service's custom domain — never verified — is not served.
    let (hub, _admin) = start_hub(upstream.addr, &replay, "").await;
    wait_for(hub.addr, PROXY, RecordType::A, ANSWER_WAIT, |m| addresses(m) == PROXY_IPS).await;
    assert_eq!(addresses(&hub.udp(SNSA, RecordType::A).await), ["10.10.1.212"], "its own name still is");
    assert!(!hub.udp(ORDERS, RecordType::A).await.metadata.authoritative, "not owned: forwarded");
    hub.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lattice_failing_keeps_each_items_last_answer_and_never_stops_ec2() {
    let (upstream, replay, hub, admin) = serving_demo("127.0.0.111").await;

    // Lattice throttles from now on; EC2 moves the Secrets Manager ENI to another address.
    replay.fail_lattice_with(Some(Failure::Throttle));
    replay.set_responses(secrets_moved_to("10.10.1.26"));
    let secrets = "secretsmanager.us-east-1.amazonaws.com.";
    wait_for(hub.addr, secrets, RecordType::A, ANSWER_WAIT, |m| addresses(m).contains(&"10.10.1.26".to_owned())).await;
    assert!(replay.requests_for("GetResourceConfiguration") >= 2, "Lattice was asked while throttling");
    assert_eq!(addresses(&hub.udp(PROXY, RecordType::A).await), PROXY_IPS, "kept");
    assert_eq!(addresses(&hub.udp(ORDERS, RecordType::A).await), ["10.10.1.212"], "kept");
    let (_, body) = get(admin, "/status.json").await;
    let status = parse_status(&body);
    assert!(status["sources"][0]["last_error"].is_null(), "the EC2 source is healthy: {}", status["sources"][0]);
    assert!(status["sources"][0]["skipped"].to_string().contains("last answer kept"));

    // Lattice takes the requests and never answers: a fetch waits one attempt's timeout for
    // it (2 s here), no more, and EC2's next change is served.
    replay.fail_lattice_with(Some(Failure::Hang));
    replay.set_responses(secrets_moved_to("10.10.1.27"));
    wait_for(hub.addr, secrets, RecordType::A, ANSWER_WAIT, |m| addresses(m).contains(&"10.10.1.27".to_owned())).await;
    assert_eq!(addresses(&hub.udp(PROXY, RecordType::A).await), PROXY_IPS, "kept through the hang");
    assert_eq!(addresses(&hub.udp(ORDERS, RecordType::A).await), ["10.10.1.212"], "kept through the hang");
    replay.fail_lattice_with(Some(Failure::Throttle));
    hub.server.stop().await;

    // A cold start while Lattice fails: the private DNS entry under VERIFIED_DOMAINS_ONLY is
    // verified by AWS's own rule; the service's custom domain is unknown, so left out.
    let (hub, admin) = start_hub(upstream.addr, &replay, "unverified_domains = [\"svc.example\"]").await;
    wait_for(hub.addr, PROXY, RecordType::A, ANSWER_WAIT, |m| addresses(m) == PROXY_IPS).await;
    assert_eq!(addresses(&hub.udp(SNSA, RecordType::A).await), ["10.10.1.212"]);
    assert!(!hub.udp(ORDERS, RecordType::A).await.metadata.authoritative);
    let (_, body) = get(admin, "/status.json").await;
    let status = parse_status(&body);
    let domain = &endpoint(&status, "vpce-0f3e5d7c9b1a20022")["domains"];
    assert!(domain.as_array().is_some_and(Vec::is_empty), "the service's custom domain is unknown: {domain}");
    assert!(body.contains("ListServiceNetworkServiceAssociations failed"), "and the reason is shown");
    hub.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_custom_domain_needs_unverified_domains_even_under_all_domains() {
    let upstream = StubUpstream::start_with("127.0.0.112", SNSA_IP, &[SNSA]).await;
    let mut responses = Responses::demo();
    let endpoints = &mut responses.describe_vpc_endpoints[0];
    *endpoints = edit_endpoint(endpoints, "vpce-0e5c7a9b1d3f50011", ">VERIFIED_DOMAINS_ONLY<", ">ALL_DOMAINS<");
    for json in responses.lattice.resource_configurations.values_mut() {
        *json = json.replace("\"VERIFIED\"", "\"PENDING\"");
    }
    let replay = AwsReplay::start(responses).await.expect("stand-in");

    let (hub, admin) = start_hub(upstream.addr, &replay, "").await;
    wait_for(hub.addr, RSC, RecordType::A, ANSWER_WAIT, |m| addresses(m) == PROXY_IPS).await;
    assert!(!hub.udp(PROXY, RecordType::A).await.metadata.authoritative, "AWS serves it in one VPC; hubdns would serve every client");
    let (_, body) = get(admin, "/status.json").await;
    let status = parse_status(&body);
    let domain = &endpoint(&status, "vpce-0e5c7a9b1d3f50011")["domains"][0];
    assert_eq!((domain["verification"].as_str(), domain["served"].as_bool()), (Some("PENDING"), Some(false)), "{domain}");
    hub.server.stop().await;

    let (hub, _admin) = start_hub(upstream.addr, &replay, "unverified_domains = [\"egress.example\"]").await;
    wait_for(hub.addr, PROXY, RecordType::A, ANSWER_WAIT, |m| addresses(m) == PROXY_IPS).await;
    hub.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_association_call_failing_never_stops_interface_endpoints() {
    let (upstream, replay, hub, admin) = serving_demo("127.0.0.113").await;

    // The role lacks ec2:DescribeVpcEndpointAssociations (an upgrade without the new policy).
    replay.fail_action("DescribeVpcEndpointAssociations", Some(Failure::ExpiredCredentials));
    replay.set_responses(secrets_moved_to("10.10.1.26"));
    let secrets = "secretsmanager.us-east-1.amazonaws.com.";
    wait_for(hub.addr, secrets, RecordType::A, ANSWER_WAIT, |m| addresses(m).contains(&"10.10.1.26".to_owned())).await;
    assert_eq!(addresses(&hub.udp(PROXY, RecordType::A).await), PROXY_IPS, "the last associations are kept");
    assert_eq!(addresses(&hub.udp(ORDERS, RecordType::A).await), ["10.10.1.212"]);
    let (_, body) = get(admin, "/status.json").await;
    let status = parse_status(&body);
    assert!(status["sources"][0]["last_error"].is_null(), "{}", status["sources"][0]);
    assert!(status["sources"][0]["skipped"].to_string().contains("DescribeVpcEndpointAssociations"));
    hub.server.stop().await;

    // A cold start: the interface endpoints are served all the same.
    let (hub, _admin) = start_hub(upstream.addr, &replay, "").await;
    wait_for(hub.addr, secrets, RecordType::A, ANSWER_WAIT, |m| addresses(m).contains(&"10.10.1.26".to_owned())).await;
    hub.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_what_lattice_and_the_upstream_said_last() {
    let upstream = StubUpstream::start_with("127.0.0.114", SNSA_IP, &[SNSA]).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in");
    let state = crate::harness::tempdir().join("state.json");
    let extra = "unverified_domains = [\"svc.example\"]\n";
    let text = config_text(upstream.addr, "127.0.0.1:0", &format!("state_file = \"{}\"", state.display()), &source(&replay, extra));
    let hub = start(&local_config(&text)).await;
    wait_for(hub.addr, ORDERS, RecordType::A, ANSWER_WAIT, |m| !addresses(m).is_empty()).await;
    hub.server.stop().await;

    // Restarted while VPC Lattice throttles and public DNS does not answer: what they said
    // last (kept in the state file) stays through fetch after fetch.
    upstream.pause(true);
    replay.fail_lattice_with(Some(Failure::Throttle));
    let asked = replay.requests_for("ListServiceNetworkServiceAssociations");
    let hub = start(&local_config(&text)).await;
    let waited = std::time::Instant::now();
    while replay.requests_for("ListServiceNetworkServiceAssociations") < asked + 2 {
        assert!(waited.elapsed() < ANSWER_WAIT * 2, "the source fetched twice");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(addresses(&hub.udp(ORDERS, RecordType::A).await), ["10.10.1.212"], "the service's domain, from what Lattice said before");
    assert_eq!(addresses(&hub.udp(SNSA, RecordType::A).await), ["10.10.1.212"], "the upstream's last answer");
    assert_eq!(addresses(&hub.udp(PROXY, RecordType::A).await), PROXY_IPS);
    hub.server.stop().await;

    // Restarted again, DescribeVpcEndpointAssociations failing too: the associations the state
    // file keeps name the endpoints.
    replay.fail_action("DescribeVpcEndpointAssociations", Some(Failure::ServerError));
    let asked = replay.requests_for("DescribeVpcEndpoints");
    let hub = start(&local_config(&text)).await;
    while replay.requests_for("DescribeVpcEndpoints") < asked + 2 {
        assert!(waited.elapsed() < ANSWER_WAIT * 4, "the source fetched twice");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(addresses(&hub.udp(PROXY, RecordType::A).await), PROXY_IPS, "from the associations the state file kept");
    assert_eq!(addresses(&hub.udp(ORDERS, RecordType::A).await), ["10.10.1.212"]);
    hub.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associations_are_read_page_by_page() {
    let upstream = StubUpstream::start_with("127.0.0.115", SNSA_IP, &[SNSA]).await;
    let mut responses = Responses::demo();
    let whole = responses.describe_vpc_endpoint_associations.remove(0);
    let (head, rest) = whole.split_once("<item>").expect("an association");
    let (first, others) = rest.split_once("        <item>").expect("two associations");
    let tail = "    </vpcEndpointAssociationSet>\n</DescribeVpcEndpointAssociationsResponse>\n";
    let first_page = format!("{head}<item>{first}{tail}").replace("</vpcEndpointAssociationSet>", "</vpcEndpointAssociationSet>\n    <nextToken>page-1</nextToken>");
    let second_page = format!("{}<item>{others}", head);
    responses.describe_vpc_endpoint_associations = vec![first_page, second_page];
    let replay = AwsReplay::start(responses).await.expect("stand-in");
    let (hub, _admin) = start_hub(upstream.addr, &replay, "unverified_domains = [\"svc.example\"]").await;
    wait_for(hub.addr, PROXY, RecordType::A, ANSWER_WAIT, |m| addresses(m) == PROXY_IPS).await;
    wait_for(hub.addr, ORDERS, RecordType::A, ANSWER_WAIT, |m| addresses(m) == ["10.10.1.212"]).await;
    assert!(replay.requests_for("DescribeVpcEndpointAssociations") >= 2, "the second page was asked for");
    hub.server.stop().await;
}

/// Two accounts' resource endpoints with one custom domain name: the first source keeps it
/// alone; the status page and explain say the other lost it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_domain_two_sources_publish_is_the_first_sources() {
    let upstream = StubUpstream::start_with("127.0.0.116", SNSA_IP, &[SNSA]).await;
    let first = AwsReplay::start(Responses::demo()).await.expect("stand-in");
    let mut other = Responses::demo();
    other.describe_network_interfaces = other.describe_network_interfaces.replace("10.10.1.60", "10.30.1.60").replace("10.10.2.61", "10.30.2.61");
    let second = AwsReplay::start(other).await.expect("stand-in");
    let sources = format!("{}{}", source(&first, ""), source(&second, "").replace("us-east-1", "us-west-2"));
    let hub = start(&local_config(&config_text(upstream.addr, "127.0.0.1:0", "", &sources))).await;
    let admin = hub.server.admin_addr().expect("admin");
    let mut ready = hub.server.readiness();
    tokio::time::timeout(ANSWER_WAIT * 2, ready.wait_for(|r| *r)).await.expect("ready in time").expect("ready");
    wait_for(hub.addr, PROXY, RecordType::A, ANSWER_WAIT, |m| !addresses(m).is_empty()).await;
    assert_eq!(addresses(&hub.udp(PROXY, RecordType::A).await), PROXY_IPS, "the first source's endpoint alone");

    let (_, body) = get(admin, "/status.json").await;
    let status = parse_status(&body);
    let lost = status["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["id"].as_str().is_some_and(|id| id.contains("us-west-2")))
        .and_then(|s| s["endpoints"].as_array()?.iter().find(|e| e["id"] == "vpce-0e5c7a9b1d3f50011").cloned())
        .expect("the second source's resource endpoint");
    assert_eq!((lost["domains"][0]["served"].as_bool(), lost["domains"][0]["why"].as_str()), (Some(false), Some("another source keeps it (explain shows which)")));
    let (_, explain) = get(admin, "/explain?name=proxy.egress.example").await;
    assert!(explain.contains("region=us-west-2"), "the loser is listed as outvoted: {explain}");
    hub.server.stop().await;
}
