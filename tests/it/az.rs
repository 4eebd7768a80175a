//! AZ-aware answers (issue 18), over the wire from clients bound to different loopback
//! addresses, each standing for a client in one Availability Zone:
//! - `prefer` puts the client's AZ's ENI addresses first, every time, on the fast path (UDP)
//!   and the full path (TCP with NSID) alike; aliases of endpoint names follow; zonal names
//!   do not change; `only` answers the client's AZ's addresses alone, and all of them when
//!   that AZ has none; a forwarder (`[[az.forwarders]]`) and an unplaced client get the
//!   addresses as listed; `/metrics`, `/explain` and the status page say what was done;
//! - clients placed by the subnets hubdns learns (moto's DescribeSubnets: moto maps AZ names
//!   to AZ IDs its own way), never by AZ name;
//! - two accounts whose AZ names mean different AZs (the stand-in: moto maps names to IDs
//!   alike in every account): a client is placed by its subnet's AZ ID;
//! - Route 53 AZ-affinity sets (read from the raw ListResourceRecordSets body, which the SDK
//!   drops) answer by the client's location, falling back from the AZ to the region to
//!   Global, and an unplaced client gets Global.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::{
    op::Message,
    rr::{
        RecordType,
        rdata::opt::{EdnsOption, NSIDPayload},
    },
};
use hubdns::demo::{AwsReplay, Responses};

use crate::{
    aws::{LOCAL_AWS_ENV, Moto, WAIT, hub_vpc, local_config, start},
    harness::{ANSWER_WAIT, StubUpstream, addresses_in_order, query, serve, tcp_exchange, udp_exchange, wait_for},
    sources::{config_text, endpoints_source},
};

const SECRETS: &str = "secretsmanager.us-east-1.amazonaws.com.";
const SECRETS_AZ1: &str = "10.10.1.25";
const SECRETS_AZ2: &str = "10.10.2.41";
const PROVIDER_ALIAS: &str = "internal-api.service.com.";
const ZONAL_AZ1: &str = "vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com.";

/// Asks over UDP from `from` (bound as the source address).
async fn ask_from(server: SocketAddr, from: &str, name: &str, qtype: RecordType) -> Message {
    let from: IpAddr = from.parse().expect("client address");
    let bytes = udp_exchange(server, &query(name, qtype).to_vec().expect("encodes"), Some(from)).await.expect("an answer");
    Message::from_vec(&bytes).expect("answer parses")
}

/// Asks over TCP from `from`, with NSID, so the full path answers.
async fn ask_full_path_from(server: SocketAddr, from: &str, name: &str) -> Message {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from.parse().expect("client address"), 0)).expect("bind");
    let mut stream = socket.connect(server).await.expect("connect");
    let mut message = query(name, RecordType::A);
    message.edns.as_mut().expect("edns").options_mut().insert(EdnsOption::NSID(NSIDPayload::new(Vec::new()).expect("empty")));
    let bytes = tcp_exchange(&mut stream, &message.to_vec().expect("encodes")).await.expect("answer");
    Message::from_vec(&bytes).expect("answer parses")
}

fn get(admin: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = hubdns::admin::probe(admin, path, ANSWER_WAIT).expect("admin answers");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body))
}

/// `hubdns_az_answers_total` by placement: (same_az, other_az, unknown_az).
fn az_answers(admin: SocketAddr) -> (u64, u64, u64) {
    let (_, body) = hubdns::admin::probe(admin, "/metrics", ANSWER_WAIT).expect("metrics");
    let count = |placement: &str| {
        let line = format!("hubdns_az_answers_total{{placement=\"{placement}\"}} ");
        body.lines().find_map(|l| l.strip_prefix(&line)).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("no {line} in\n{body}"))
    };
    (count("same_az"), count("other_az"), count("unknown_az"))
}

/// What was counted since `before`.
fn counted_since(admin: SocketAddr, before: (u64, u64, u64)) -> (u64, u64, u64) {
    let now = az_answers(admin);
    (now.0 - before.0, now.1 - before.1, now.2 - before.2)
}

/// The demo's recordings (EC2 and Route 53) on a stand-in, and hubdns reading them with
/// `az` appended to its config.
async fn demo_hub(stub_ip: &str, az: &str) -> (StubUpstream, AwsReplay, crate::harness::TestServer, SocketAddr) {
    let upstream = StubUpstream::start(stub_ip, std::net::Ipv4Addr::new(192, 0, 2, 1)).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in");
    let sources = format!(
        "{}[[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\nendpoint_url = \"{}\"\napi_timeout_secs = 2\nmax_attempts = 1\n\n\
         [[aliases]]\nname = \"internal-api.service.com\"\ntarget = \"vpce-0123456789abcdef0\"\n\n{az}",
        endpoints_source("us-east-1", &replay.url(), 2),
        replay.url()
    );
    let hub = start(&local_config(&config_text(upstream.addr, "127.0.0.1:0", "", &sources))).await;
    let admin = hub.server.admin_addr().expect("admin");
    wait_for(hub.addr, PROVIDER_ALIAS, RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    wait_for(hub.addr, "cache.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    (upstream, replay, hub, admin)
}

const DEMO_AZ: &str = "[az]\naffinity = \"prefer\"\n\n\
    [[az.clients]]\ncidr = \"127.0.0.1/32\"\naz_id = \"use1-az1\"\nregion = \"us-east-1\"\n\n\
    [[az.clients]]\ncidr = \"127.0.0.2/32\"\naz_id = \"use1-az2\"\nregion = \"us-east-1\"\n\n\
    [[az.clients]]\ncidr = \"127.0.0.4/32\"\naz_id = \"use1-az4\"\nregion = \"us-east-1\"\n\n\
    [[az.clients]]\ncidr = \"127.0.0.5/32\"\naz_id = \"use1-az4\"\n\n\
    [[az.forwarders]]\ncidr = \"127.0.0.3/32\"\n\n\
    [[az.names]]\nname = \"internal-api.service.com\"\naffinity = \"only\"\n\n\
    [[az.names]]\nname = \"*.s3.us-east-1.amazonaws.com\"\naffinity = \"only\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_its_own_azs_addresses_first_or_alone() {
    let (_upstream, _replay, hub, admin) = demo_hub("127.0.0.117", DEMO_AZ).await;
    let before = az_answers(admin);
    let unplaced = "127.0.0.9";
    let listed = addresses_in_order(&ask_from(hub.addr, unplaced, SECRETS, RecordType::A).await);
    assert_eq!(listed.len(), 2, "{listed:?}");

    // prefer: the client's AZ first, every time, on both paths.
    for _ in 0..10 {
        assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.0.2", SECRETS, RecordType::A).await), [SECRETS_AZ2, SECRETS_AZ1]);
        assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.0.1", SECRETS, RecordType::A).await), [SECRETS_AZ1, SECRETS_AZ2]);
    }
    assert_eq!(addresses_in_order(&ask_full_path_from(hub.addr, "127.0.0.2", SECRETS).await), [SECRETS_AZ2, SECRETS_AZ1], "full path");
    assert_eq!(addresses_in_order(&ask_full_path_from(hub.addr, "127.0.0.1", SECRETS).await), [SECRETS_AZ1, SECRETS_AZ2], "full path");
    // A zonal name is one AZ's already.
    assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.0.2", ZONAL_AZ1, RecordType::A).await), [SECRETS_AZ1]);
    // A Route 53 alias and a config CNAME chain to the endpoint name follow it.
    let secrets_alias = ask_from(hub.addr, "127.0.0.2", "secrets.corp.example.", RecordType::A).await;
    assert_eq!(addresses_in_order(&secrets_alias), [SECRETS_AZ2, SECRETS_AZ1], "through the zone's CNAME");
    let provider_internal = ask_from(hub.addr, "127.0.0.2", "internal-api.corp.example.", RecordType::A).await;
    assert_eq!(addresses_in_order(&provider_internal), ["10.10.2.78", "10.10.1.77"], "a Route 53 alias of the endpoint name");

    // only (by name): the client's AZ's alone; its AZ has none → all; a forwarder → all, as listed.
    assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.0.2", PROVIDER_ALIAS, RecordType::A).await), ["10.10.2.78"]);
    assert_eq!(addresses_in_order(&ask_full_path_from(hub.addr, "127.0.0.1", PROVIDER_ALIAS).await), ["10.10.1.77"], "full path");
    let provider_listed = addresses_in_order(&ask_from(hub.addr, unplaced, PROVIDER_ALIAS, RecordType::A).await);
    assert_eq!(provider_listed.len(), 2);
    assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.0.4", PROVIDER_ALIAS, RecordType::A).await), provider_listed, "use1-az4 has none");
    assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.0.3", PROVIDER_ALIAS, RecordType::A).await), provider_listed, "a forwarder");
    assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.0.3", SECRETS, RecordType::A).await), listed, "a forwarder: as listed");

    // What was done, counted: 20 + 2 (full path) + 2 (chain and alias) + 2 (only) in the
    // client's AZ; 1 with none there; the unplaced client's 2 and the forwarder's 2 unknown.
    assert_eq!(counted_since(admin, before), (26, 1, 4));

    // A `*.` pattern covers the wildcard it names (S3's interface endpoint names).
    assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.0.2", "my-bucket.s3.us-east-1.amazonaws.com.", RecordType::A).await), ["10.10.2.91"]);
    assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.0.1", "my-bucket.s3.us-east-1.amazonaws.com.", RecordType::A).await), ["10.10.1.90"]);

    // explain: the client's AZ, who placed it, and the order it gets.
    let e = get(admin, &format!("/explain?name={SECRETS}&client=127.0.0.2"));
    assert_eq!(e["az"]["client_az"], "use1-az2", "{e}");
    assert_eq!(e["az"]["choice"], "same_az");
    assert_eq!(e["az"]["affinity"], "prefer");
    assert!(e["az"]["placed_by"].as_str().expect("placed").contains("az.clients"), "{e}");
    let data: Vec<&str> = e["records"].as_array().expect("records").iter().filter_map(|r| r["data"].as_str()).collect();
    assert_eq!(data, [SECRETS_AZ2, SECRETS_AZ1]);
    let forwarder = get(admin, &format!("/explain?name={PROVIDER_ALIAS}&client=127.0.0.3"));
    assert_eq!((forwarder["az"]["choice"].as_str(), forwarder["az"]["client_az"].as_str()), (Some("unknown_az"), None), "{forwarder}");
    let bad = hubdns::admin::probe(admin, &format!("/explain?name={SECRETS}&client=nope"), ANSWER_WAIT).expect("answers");
    assert_eq!(bad.0, 400, "{}", bad.1);

    // The status page lists where clients are, the subnets learned from DescribeSubnets included.
    let status = get(admin, "/status.json");
    let placements = status["az"]["placements"].as_array().expect("placements");
    let find = |cidr: &str| placements.iter().find(|p| p["cidr"] == cidr).unwrap_or_else(|| panic!("{cidr} in {placements:?}"));
    assert_eq!((find("10.10.2.0/24")["az_id"].as_str(), find("10.10.2.0/24")["kind"].as_str()), (Some("use1-az2"), Some("subnet")));
    assert_eq!(find("2600:1f18:6a2b:e101::/64")["az_id"], "use1-az1");
    assert_eq!((find("127.0.0.3/32")["az_id"].as_str(), find("127.0.0.3/32")["kind"].as_str()), (None, Some("forwarder")));
    let interfaces = status["sources"][0]["endpoints"].as_array().expect("endpoints").iter().flat_map(|e| e["interfaces"].as_array().cloned().unwrap_or_default());
    assert!(interfaces.clone().all(|i| i["az_id"].as_str().is_some_and(|z| z.starts_with("use1-az"))), "ENIs carry AZ IDs");
    hub.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53_az_affinity_sets_answer_by_the_clients_location() {
    let (_upstream, _replay, hub, admin) = demo_hub("127.0.0.118", DEMO_AZ).await;
    let before = az_answers(admin);
    let cache = "cache.corp.example.";
    // The set for the client's AZ; another AZ of the region → the Region set; a client
    // whose region is not known matches no Region set → Global; unplaced or forwarder → Global.
    for (client, expected) in [
        ("127.0.0.1", "10.20.4.11"),
        ("127.0.0.2", "10.20.4.12"),
        ("127.0.0.4", "10.20.4.10"),
        ("127.0.0.5", "10.20.4.1"),
        ("127.0.0.9", "10.20.4.1"),
        ("127.0.0.3", "10.20.4.1"),
    ] {
        for _ in 0..3 {
            let answer = ask_from(hub.addr, client, cache, RecordType::A).await;
            assert_eq!(addresses_in_order(&answer), [expected], "from {client}");
            assert!(answer.metadata.authoritative);
        }
    }
    // explain answers as dig does: the set chosen for that client, and why.
    for (client, ip, location, choice) in [
        ("127.0.0.2", "10.20.4.12", "AvailabilityZone use1-az2", "same_az"),
        ("127.0.0.4", "10.20.4.10", "Region us-east-1", "other_az"),
        ("127.0.0.9", "10.20.4.1", "Global global", "unknown_az"),
    ] {
        let e = get(admin, &format!("/explain?name={cache}&client={client}"));
        let data: Vec<&str> = e["records"].as_array().expect("records").iter().filter_map(|r| r["data"].as_str()).collect();
        assert_eq!(data, [ip], "{e}");
        assert_eq!((e["az"]["zones"][0].as_str(), e["az"]["choice"].as_str()), (Some(location), Some(choice)), "{e}");
        assert!(e["reason"].as_str().is_some_and(|r| r.contains("AZ-affinity") && r.contains(location)), "{e}");
    }
    let e = get(admin, &format!("/explain?name={cache}&client=127.0.0.2"));
    assert!(e.to_string().contains("location=AvailabilityZone:use1-az2"), "provenance names the location: {e}");
    // Same AZ: the two AZ sets' clients (6); other location: 127.0.0.4 and .5 (6); unknown: 6.
    assert_eq!(counted_since(admin, before), (6, 6, 6));
    hub.server.stop().await;
}

/// Clients placed by the subnets hubdns learns from moto's DescribeSubnets, which maps AZ
/// names to AZ IDs its own way (us-east-1a is use1-az6 there): the ENI in the client's AZ
/// ID comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnets_learned_from_describe_subnets_place_clients_by_az_id() {
    let upstream = StubUpstream::start("127.0.0.119", std::net::Ipv4Addr::new(192, 0, 2, 1)).await;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (vpc, subnets) = hub_vpc(&ec2).await;
    crate::aws::endpoint(&ec2, &vpc, &subnets, "com.amazonaws.us-east-1.secretsmanager", "secrets.corp.example").await;
    // moto draws ENI addresses at random: which is in which subnet, as EC2 says.
    let enis = ec2.describe_network_interfaces().send().await.expect("describe enis");
    let in_subnet = |subnet: &str| {
        let eni = enis.network_interfaces().iter().find(|e| e.subnet_id() == Some(subnet)).expect("an ENI in each subnet");
        eni.private_ip_address().expect("address").to_owned()
    };
    let (a_ip, b_ip) = (in_subnet(&subnets[0]), in_subnet(&subnets[1]));
    // A spoke VPC whose subnets hold the loopback clients (moto does not check the range).
    let spoke = ec2.create_vpc().cidr_block("127.0.0.0/16").send().await.expect("spoke vpc");
    let spoke = spoke.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_owned();
    for (cidr, az) in [("127.0.6.0/24", "us-east-1a"), ("127.0.1.0/24", "us-east-1b")] {
        ec2.create_subnet().vpc_id(&spoke).cidr_block(cidr).availability_zone(az).send().await.expect("spoke subnet");
    }
    let sources = format!("{}alias_tag_domains = [\"corp.example\"]\n\n[az]\naffinity = \"prefer\"\n", endpoints_source("us-east-1", &moto.url, 2));
    let hub = start(&local_config(&config_text(upstream.addr, "127.0.0.1:0", "", &sources))).await;
    let admin = hub.server.admin_addr().expect("admin");
    wait_for(hub.addr, "secrets.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    // The hub's us-east-1a subnet (use1-az6 in moto) holds one ENI, its us-east-1b (use1-az1) the other.
    for _ in 0..5 {
        assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.6.9", "secrets.corp.example.", RecordType::A).await), [a_ip.clone(), b_ip.clone()]);
        assert_eq!(addresses_in_order(&ask_from(hub.addr, "127.0.1.9", "secrets.corp.example.", RecordType::A).await), [b_ip.clone(), a_ip.clone()]);
    }
    let e = get(admin, "/explain?name=secrets.corp.example&client=127.0.1.9");
    assert_eq!(e["az"]["client_az"], "use1-az1", "moto's us-east-1b: {e}");
    assert!(e["az"]["placed_by"].as_str().expect("placed").contains(&spoke), "placed by the spoke's subnet: {e}");
    hub.server.stop().await;
}

/// Two accounts whose AZ names mean different AZs: in the spoke account, us-east-1a is
/// use1-az2. A client in that account's us-east-1a subnet gets the hub's use1-az2 ENI first
/// (the hub account calls that AZ us-east-1b). hubdns runs as a process so its STS calls (the
/// spoke's role) reach the stand-in through AWS_ENDPOINT_URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_naming_azs_differently_are_matched_by_az_id() {
    const SPOKE: &str = "222233334444";
    let upstream = StubUpstream::start("127.0.0.120", std::net::Ipv4Addr::new(192, 0, 2, 1)).await;
    let mut responses = Responses::demo();
    // The spoke account's own VPC: its us-east-1a is use1-az2, its us-east-1b use1-az1.
    responses.subnets_by_account.insert(
        SPOKE.to_owned(),
        spoke_subnets(&[("subnet-0s1", "127.0.21.0/24", "us-east-1a", "use1-az2"), ("subnet-0s2", "127.0.22.0/24", "us-east-1b", "use1-az1")]),
    );
    let replay = AwsReplay::start(responses).await.expect("stand-in");
    let url = replay.url();
    let sources = format!(
        "[refresh]\ninterval_secs = 1\n\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_attempts = 1\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\n\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_attempts = 1\nvpc_ids = [\"vpc-0b0b0b0b0b0b0b0b0\"]\naccounts = [\"{SPOKE}\"]\nrole_name = \"hubdns-read\"\n\n\
         [az]\naffinity = \"prefer\"\n"
    );
    let (_hubdns, addr) = serve_process(upstream.addr, &sources, ("AWS_ENDPOINT_URL", &url));
    // Until the spoke's subnets are learned its clients are unplaced; wait for the order.
    let first = |m: &Message| addresses_in_order(m).first().map(String::as_str) == Some(SECRETS_AZ2);
    let mut placed = None;
    for _ in 0..150 {
        let answer = ask_from(addr, "127.0.21.9", SECRETS, RecordType::A).await;
        if first(&answer) {
            placed = Some(answer);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(placed.is_some(), "the spoke's us-east-1a client never got use1-az2's ENI first");
    for _ in 0..5 {
        assert_eq!(addresses_in_order(&ask_from(addr, "127.0.21.9", SECRETS, RecordType::A).await), [SECRETS_AZ2, SECRETS_AZ1], "spoke us-east-1a = use1-az2");
        assert_eq!(addresses_in_order(&ask_from(addr, "127.0.22.9", SECRETS, RecordType::A).await), [SECRETS_AZ1, SECRETS_AZ2], "spoke us-east-1b = use1-az1");
    }
}

/// hubdns as a process forwarding to `upstream`, with `sources` appended and `endpoint` (an
/// SDK endpoint variable: STS's, or instance metadata's) pointing at the stand-in, so those
/// calls stay off the test process's environment.
fn serve_process(upstream: SocketAddr, sources: &str, endpoint: (&str, &str)) -> (crate::harness::Running, SocketAddr) {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n\
         [forward]\nupstreams = [\"{upstream}\"]\ncheck_signed_parents = false\n\n{sources}"
    );
    let mut env = LOCAL_AWS_ENV.to_vec();
    env.push(endpoint);
    let (running, port, _logs) = serve(&text, &env);
    (running, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A DescribeSubnets body for a spoke VPC, shaped like the demo's recording.
fn spoke_subnets(subnets: &[(&str, &str, &str, &str)]) -> String {
    let items: String = subnets
        .iter()
        .map(|(id, cidr, name, az_id)| {
            format!(
                "<item><subnetId>{id}</subnetId><state>available</state><ownerId>{{{{account}}}}</ownerId><vpcId>vpc-0b0b0b0b0b0b0b0b0</vpcId>\
                 <cidrBlock>{cidr}</cidrBlock><ipv6CidrBlockAssociationSet/><availableIpAddressCount>251</availableIpAddressCount>\
                 <availabilityZone>{name}</availabilityZone><availabilityZoneId>{az_id}</availabilityZoneId><defaultForAz>false</defaultForAz>\
                 <mapPublicIpOnLaunch>false</mapPublicIpOnLaunch><tagSet/></item>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeSubnetsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId><subnetSet>{items}</subnetSet></DescribeSubnetsResponse>"
    )
}

/// `az.default = "instance"`: clients nothing else places are in the hubdns instance's own AZ,
/// as instance metadata (IMDSv2, the stand-in's) says at start: use1-az2 here, so its ENI comes
/// first, and the Route 53 AZ-affinity set for use1-az2 answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instances_own_az_places_everyone_else() {
    let upstream = StubUpstream::start("127.0.0.121", std::net::Ipv4Addr::new(192, 0, 2, 1)).await;
    let mut responses = Responses::demo();
    responses.instance_placement = Some(("use1-az2".to_owned(), "us-east-1".to_owned()));
    let replay = AwsReplay::start(responses).await.expect("stand-in");
    let url = replay.url();
    let sources = format!(
        "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_attempts = 1\n\n\
         [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\nendpoint_url = \"{url}\"\nmax_attempts = 1\n\n\
         [az]\naffinity = \"prefer\"\ndefault = \"instance\"\n"
    );
    let (_hubdns, addr) = serve_process(upstream.addr, &sources, ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url));
    wait_for(addr, "cache.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    wait_for(addr, SECRETS, RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    for _ in 0..5 {
        assert_eq!(addresses_in_order(&ask_from(addr, "127.0.0.9", SECRETS, RecordType::A).await), [SECRETS_AZ2, SECRETS_AZ1]);
        assert_eq!(addresses_in_order(&ask_from(addr, "127.0.0.9", "cache.corp.example.", RecordType::A).await), ["10.20.4.12"]);
    }
    assert!(replay.requests_for("api/token") >= 1, "IMDSv2: a session token first");
}

/// The subnets learned survive a restart and a failing DescribeSubnets: the state file keeps
/// them, and the source keeps them while the call fails, so a client in the hub's use1-az2
/// subnet stays placed (and the source goes on serving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_subnets_survive_a_restart_while_describe_subnets_fails() {
    let upstream = StubUpstream::start("127.0.0.122", std::net::Ipv4Addr::new(192, 0, 2, 1)).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in");
    let state = crate::harness::tempdir().join("state.json");
    let sources = format!("{}[az]\naffinity = \"prefer\"\n", endpoints_source("us-east-1", &replay.url(), 2));
    let text = config_text(upstream.addr, "127.0.0.1:0", &format!("state_file = \"{}\"", state.display()), &sources);
    let placed = |admin| {
        let e = get(admin, &format!("/explain?name={SECRETS}&client=10.10.2.7"));
        (e["az"]["client_az"].as_str().map(str::to_owned), e["records"][0]["data"].as_str().map(str::to_owned))
    };
    let first = start(&local_config(&text)).await;
    let admin = first.server.admin_addr().expect("admin");
    wait_for(first.addr, SECRETS, RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    assert_eq!(placed(admin), (Some("use1-az2".into()), Some(SECRETS_AZ2.into())), "placed by subnet-0b22…");
    first.server.stop().await;

    replay.fail_action("DescribeSubnets", Some(hubdns::demo::Failure::Throttle));
    let calls = replay.requests_for("DescribeSubnets");
    let second = start(&local_config(&text)).await;
    let admin = second.server.admin_addr().expect("admin");
    assert_eq!(placed(admin), (Some("use1-az2".into()), Some(SECRETS_AZ2.into())), "from the state file");
    // Two more refreshes, each with DescribeSubnets failing.
    for _ in 0..100 {
        if replay.requests_for("DescribeSubnets") >= calls + 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(replay.requests_for("DescribeSubnets") >= calls + 2, "DescribeSubnets asked again");
    let status = get(admin, "/status.json");
    assert!(status["sources"][0]["last_error"].is_null(), "the source itself goes on: {}", status["sources"][0]);
    assert!(status["sources"][0]["skipped"].to_string().contains("DescribeSubnets"), "the failure is reported");
    assert_eq!(placed(admin), (Some("use1-az2".into()), Some(SECRETS_AZ2.into())), "the last subnets kept");
    second.server.stop().await;
}
