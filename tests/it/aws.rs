//! The endpoint source through the real AWS SDK over HTTP, never real AWS:
//! - moto's server on loopback for the wiring: endpoints created, found, deleted; moto stopped
//!   (answers kept); hubdns restarted while moto is down (answers from the state file);
//! - the demo's EC2 stand-in for real-shaped responses moto cannot produce (zonal names,
//!   wildcards, dual-stack), for injected throttling and 500s, and for a 2,000-endpoint run.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aws_sdk_ec2::{
    Client,
    config::{BehaviorVersion, Credentials, Region},
    types::{ResourceType, Tag, TagSpecification, VpcEndpointType},
};
use hickory_proto::{op::ResponseCode, rr::RecordType};
use hubdns::{
    config::Config,
    demo::{AwsReplay, Failure, Responses},
};

use crate::harness::{StubUpstream, TestServer, addresses, serve, tempdir, wait_for};

/// Environment for a hubdns child talking to a local stand-in: fixed credentials, and the
/// instance metadata service switched off so the SDK never looks for it.
pub(crate) const LOCAL_AWS_ENV: [(&str, &str); 5] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/hubdns-test"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/hubdns-test"),
];

/// moto's server on a free loopback port, stopped when dropped.
pub(crate) struct Moto {
    child: Option<Child>,
    pub(crate) url: String,
}

impl Moto {
    pub(crate) fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run moto_server ({e}): install it with `pip install 'moto[server]'` (scripts/test does)"));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto_server did not start listening");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child: Some(child), url: format!("http://127.0.0.1:{port}") }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// An EC2 client for moto: explicit region and credentials, no retries.
    pub(crate) fn ec2(&self) -> Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
            .build();
        Client::from_conf(config)
    }
}

impl Moto {
    pub(crate) fn route53(&self) -> aws_sdk_route53::Client {
        let config = aws_sdk_route53::Config::builder()
            .behavior_version(aws_sdk_route53::config::BehaviorVersion::latest())
            .region(aws_sdk_route53::config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_route53::config::Credentials::new("testing", "testing", None, None, "test"))
            .retry_config(aws_sdk_route53::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_route53::Client::from_conf(config)
    }
}

impl Moto {
    /// An SQS client for moto.
    pub(crate) fn sqs(&self) -> aws_sdk_sqs::Client {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "test"))
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A VPC with subnets in two AZs; returns the VPC id and the subnet ids.
pub(crate) async fn hub_vpc(ec2: &Client) -> (String, Vec<String>) {
    let vpc = ec2.create_vpc().cidr_block("10.10.0.0/16").send().await.expect("create vpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_owned();
    let mut subnets = Vec::new();
    for (cidr, az) in [("10.10.1.0/24", "us-east-1a"), ("10.10.2.0/24", "us-east-1b")] {
        let subnet = ec2.create_subnet().vpc_id(&vpc).cidr_block(cidr).availability_zone(az).send().await.expect("subnet");
        subnets.push(subnet.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_owned());
    }
    (vpc, subnets)
}

/// An interface endpoint with a `hubdns:alias` tag; returns its id and its ENIs' addresses.
pub(crate) async fn endpoint(ec2: &Client, vpc: &str, subnets: &[String], service: &str, alias: &str) -> (String, Vec<String>) {
    let created = ec2
        .create_vpc_endpoint()
        .vpc_id(vpc)
        .vpc_endpoint_type(VpcEndpointType::Interface)
        .service_name(service)
        .set_subnet_ids(Some(subnets.to_vec()))
        .private_dns_enabled(true)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::VpcEndpoint)
                .tags(Tag::builder().key("hubdns:alias").value(alias).build())
                .build(),
        )
        .send()
        .await
        .expect("create endpoint");
    let endpoint = created.vpc_endpoint().expect("endpoint");
    let enis = ec2
        .describe_network_interfaces()
        .set_network_interface_ids(Some(endpoint.network_interface_ids().to_vec()))
        .send()
        .await
        .expect("describe enis");
    let mut ips: Vec<String> =
        enis.network_interfaces().iter().filter_map(|e| e.private_ip_address().map(str::to_owned)).collect();
    ips.sort();
    assert_eq!(ips.len(), 2, "one ENI per subnet");
    (endpoint.vpc_endpoint_id().expect("id").to_owned(), ips)
}

/// hubdns config text with one vpc_endpoints source at `url`, refreshing every second.
fn source_config(upstream: SocketAddr, url: &str, state_file: &std::path::Path) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n\
         [forward]\nupstreams = [\"{upstream}\"]\ntimeout_ms = 300\nattempts = 1\ndeadline_ms = 1000\n\n\
         [refresh]\ninterval_secs = 1\nmax_backoff_secs = 4\nstate_file = \"{}\"\n\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\napi_timeout_secs = 1\nmax_attempts = 1\n\
         alias_tag_domains = [\"corp.example\"]\n",
        state_file.display()
    )
}

/// Parses `text` and gives its sources fixed local credentials (in-process servers only).
pub(crate) fn local_config(text: &str) -> Config {
    let mut config = Config::parse(text, "aws-test.toml").expect("valid config");
    for source in &mut config.sources.vpc_endpoints {
        source.get_mut().static_credentials = true;
    }
    for source in &mut config.sources.route53 {
        source.get_mut().static_credentials = true;
    }
    if let Some(events) = &mut config.events {
        events.static_credentials = true;
    }
    config
}

pub(crate) async fn start(config: &Config) -> TestServer {
    let server = hubdns::server::start(config).await.expect("hubdns starts");
    let addr = server.addr();
    TestServer { server, addr }
}

pub(crate) const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_endpoints_are_served_refreshed_and_survive_outages_and_restarts() {
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    let mut moto = Moto::start();
    let ec2 = moto.ec2();
    let (vpc, subnets) = hub_vpc(&ec2).await;
    let (_secrets, secrets_ips) = endpoint(&ec2, &vpc, &subnets, "com.amazonaws.us-east-1.secretsmanager", "secrets.corp.example").await;
    let (kms, kms_ips) = endpoint(&ec2, &vpc, &subnets, "com.amazonaws.us-east-1.kms", "kms.corp.example").await;

    let state_file = tempdir().join("state.json");
    let config = local_config(&source_config(upstream.addr, &moto.url, &state_file));
    let started = Instant::now();
    let hub = start(&config).await;
    let answer = wait_for(hub.addr, "secrets.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    eprintln!("moto: first endpoint answer {:?} after start", started.elapsed());
    assert_eq!(addresses(&answer), secrets_ips, "tag alias → every ENI of the endpoint");
    assert!(answer.metadata.authoritative);
    // The service's private DNS name (DescribeVpcEndpointServices), for both endpoints.
    let private = hub.udp("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).await;
    assert_eq!(addresses(&private), secrets_ips);
    assert_eq!(addresses(&hub.udp("kms.us-east-1.amazonaws.com.", RecordType::A).await), kms_ips);
    assert!(hub.server.is_ready());

    // An endpoint deleted in AWS goes away at the next refresh.
    ec2.delete_vpc_endpoints().vpc_endpoint_ids(&kms).send().await.expect("delete endpoint");
    let gone = wait_for(hub.addr, "kms.corp.example.", RecordType::A, WAIT, |m| m.answers.is_empty()).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain, "forwarded now, and upstream has no such name");
    assert!(!gone.metadata.authoritative);
    assert_eq!(addresses(&hub.udp("secrets.corp.example.", RecordType::A).await), secrets_ips);

    // AWS unreachable: every answer stays.
    moto.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["secrets.corp.example.", "secretsmanager.us-east-1.amazonaws.com."] {
        let kept = hub.udp(name, RecordType::A).await;
        assert_eq!(addresses(&kept), secrets_ips, "{name} kept through the outage");
    }
    hub.server.stop().await;

    // Restart while AWS is still unreachable: answers come from the state file at once.
    let state = std::fs::read_to_string(&state_file).expect("state file written");
    assert!(state.contains("secrets.corp.example") && !state.contains("kms.corp.example"), "{state}");
    let hub = start(&config).await;
    assert!(hub.server.is_ready(), "ready from the state file, before AWS answers");
    let answer = hub.udp("secrets.corp.example.", RecordType::A).await;
    assert_eq!(addresses(&answer), secrets_ips, "served from the state file");
    hub.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_shaped_responses_through_the_sdk() {
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in starts");
    let text = source_config(upstream.addr, &replay.url(), &tempdir().join("state.json"))
        + "\n[[aliases]]\nname = \"internal-api.service.com\"\ntarget = \"vpce-0123456789abcdef0\"\n\n\
           [[aliases]]\nname = \"secrets.corp.example\"\ntarget = \"com.amazonaws.us-east-1.secretsmanager\"\n";
    let hub = start(&local_config(&text)).await;
    let sm = wait_for(hub.addr, "secretsmanager.us-east-1.amazonaws.com.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    // Until the first fetch lands that name is not ours and goes upstream; none of the owned
    // names asked below may. (Refreshes themselves resolve service-network endpoint names
    // through the upstream, so the upstream's log grows; only the owned names count.)
    let sm_forwarded = upstream.queries_for("secretsmanager.us-east-1.amazonaws.com.");
    assert_eq!(addresses(&sm), ["10.10.1.25", "10.10.2.41"]);
    let zonal = hub.udp("vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1b.secretsmanager.us-east-1.vpce.amazonaws.com.", RecordType::A).await;
    assert_eq!(addresses(&zonal), ["10.10.2.41"]);
    let bucket = hub.udp("logs.my-bucket.s3.us-east-1.amazonaws.com.", RecordType::AAAA).await;
    assert_eq!(addresses(&bucket), ["2600:1f18:6a2b:e101::5a", "2600:1f18:6a2b:e102::5b"]);
    let zonal_wild = hub.udp("b.vpce-0aa11bb22cc33dd44-q1w2e3r4-us-east-1a.s3.us-east-1.vpce.amazonaws.com.", RecordType::A).await;
    assert_eq!(addresses(&zonal_wild), ["10.10.1.90"]);
    assert_eq!(addresses(&hub.udp("internal-api.service.com.", RecordType::A).await), ["10.10.1.77", "10.10.2.78"], "alias by endpoint id");
    assert_eq!(addresses(&hub.udp("secrets.corp.example.", RecordType::A).await), ["10.10.1.25", "10.10.2.41"], "alias by service name");
    assert_eq!(addresses(&hub.udp("kms.corp.example.", RecordType::A).await), ["10.10.1.33"], "hubdns:alias tag");
    let kms_v6 = hub.udp("kms.us-east-1.amazonaws.com.", RecordType::AAAA).await;
    assert!(kms_v6.answers.is_empty() && kms_v6.metadata.authoritative, "IPv4-only endpoint: NODATA for AAAA");
    let owned = [
        "vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1b.secretsmanager.us-east-1.vpce.amazonaws.com.",
        "logs.my-bucket.s3.us-east-1.amazonaws.com.",
        "b.vpce-0aa11bb22cc33dd44-q1w2e3r4-us-east-1a.s3.us-east-1.vpce.amazonaws.com.",
        "internal-api.service.com.",
        "secrets.corp.example.",
        "kms.corp.example.",
        "kms.us-east-1.amazonaws.com.",
    ];
    assert_eq!(addresses(&hub.udp("secretsmanager.us-east-1.amazonaws.com.", RecordType::A).await).len(), 2);
    assert_eq!(upstream.queries_for("secretsmanager.us-east-1.amazonaws.com."), sm_forwarded, "owned now");
    let leaked: Vec<&str> = owned.into_iter().filter(|n| upstream.queries_for(n) > 0).collect();
    assert!(leaked.is_empty(), "owned names were forwarded: {leaked:?}");
}

/// Lines of `logs` that contain every one of `parts`.
fn lines_with(logs: &crate::harness::Logs, parts: &[&str]) -> Vec<String> {
    logs.lock().expect("logs").iter().filter(|l| parts.iter().all(|p| l.contains(p))).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_keep_answers_and_back_off() {
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in starts");
    let text = source_config(upstream.addr, &replay.url(), &tempdir().join("state.json"));
    let (_hubdns, port, logs) = serve(&text, &LOCAL_AWS_ENV);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let before = wait_for(addr, "kms.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;

    replay.fail_with(Some(Failure::Throttle));
    let requests_before = replay.requests();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let during = replay.requests() - requests_before;
    let kept = crate::harness::udp_query(addr, &crate::harness::query("kms.corp.example.", RecordType::A)).await;
    assert_eq!(addresses(&kept), addresses(&before), "answers unchanged while AWS throttles");
    // Interval 1 s, doubling backoff: about 1 + 2 + 4 s between attempts, so 3 or 4 attempts
    // in 7 s, where a source without backoff would have tried 7 times.
    assert!((2..=4).contains(&during), "{during} requests in 7 s of throttling");
    let failures = lines_with(&logs, &["source refresh failed", "RequestLimitExceeded"]);
    assert!(failures.len() >= 2, "throttling is logged:\n{}", logs.lock().expect("logs").join("\n"));
    let waits: Vec<f32> = failures
        .iter()
        .filter_map(|l| l.split("retry_in_secs=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(waits.windows(2).all(|w| w[1] > w[0]), "backoff grows: {waits:?}");

    // Server errors, expired credentials, and an API that stops answering: same rules.
    for (failure, logged) in [(Failure::ServerError, "InternalError"), (Failure::ExpiredCredentials, "AuthFailure"), (Failure::Hang, "timeout")] {
        replay.fail_with(Some(failure));
        let started = Instant::now();
        while lines_with(&logs, &["source refresh failed", logged]).is_empty() {
            assert!(started.elapsed() < Duration::from_secs(20), "{failure:?} not logged as {logged}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let kept = crate::harness::udp_query(addr, &crate::harness::query("kms.corp.example.", RecordType::A)).await;
        assert_eq!(addresses(&kept), addresses(&before), "{failure:?}: answers unchanged");
    }

    // Recovery: the next attempt succeeds and the failure count resets.
    replay.fail_with(None);
    let refreshed_before = lines_with(&logs, &["source refreshed"]).len();
    let started = Instant::now();
    while lines_with(&logs, &["source refreshed"]).len() == refreshed_before {
        assert!(started.elapsed() < Duration::from_secs(15), "source did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Endpoints per DescribeVpcEndpoints page (EC2 returns up to 1,000; smaller pages exercise
/// the SDK paginator with a few thousand endpoints).
const PAGE: usize = 500;

/// `count` interface endpoints, two ENIs each (one per AZ), as DescribeVpcEndpoints (in pages
/// of [`PAGE`]) and DescribeNetworkInterfaces return them.
fn many_endpoints(count: usize) -> Responses {
    let mut pages = Vec::new();
    let mut endpoints = String::new();
    let mut enis = String::new();
    for i in 0..count {
        let id = format!("vpce-{i:017x}");
        let (a, b) = (format!("eni-{:017x}", 2 * i), format!("eni-{:017x}", 2 * i + 1));
        let svc = format!("vpce-svc-{i:017x}");
        let regional = format!("{id}-abcd1234.{svc}.us-east-1.vpce.amazonaws.com");
        endpoints.push_str(&format!(
            "<item><vpcEndpointId>{id}</vpcEndpointId><vpcEndpointType>Interface</vpcEndpointType><vpcId>vpc-0a1b2c3d4e5f60718</vpcId>\
             <serviceName>com.amazonaws.vpce.us-east-1.{svc}</serviceName><state>available</state><ipAddressType>ipv4</ipAddressType>\
             <privateDnsEnabled>false</privateDnsEnabled><networkInterfaceIdSet><item>{a}</item><item>{b}</item></networkInterfaceIdSet>\
             <dnsEntrySet><item><dnsName>{regional}</dnsName><hostedZoneId>Z7HUB3ZSPD4E8</hostedZoneId></item>\
             <item><dnsName>{id}-abcd1234-us-east-1a.{svc}.us-east-1.vpce.amazonaws.com</dnsName><hostedZoneId>Z7HUB3ZSPD4E8</hostedZoneId></item>\
             <item><dnsName>{id}-abcd1234-us-east-1b.{svc}.us-east-1.vpce.amazonaws.com</dnsName><hostedZoneId>Z7HUB3ZSPD4E8</hostedZoneId></item></dnsEntrySet>\
             <tagSet><item><key>hubdns:alias</key><value>svc{i}.corp.example</value></item></tagSet><ownerId>111122223333</ownerId></item>"
        ));
        if (i + 1) % PAGE == 0 || i + 1 == count {
            let next = if i + 1 == count { String::new() } else { format!("<nextToken>page-{}</nextToken>", pages.len() + 1) };
            pages.push(format!(
                "<DescribeVpcEndpointsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><vpcEndpointSet>{}</vpcEndpointSet>{next}</DescribeVpcEndpointsResponse>",
                std::mem::take(&mut endpoints)
            ));
        }
        for (eni, az, ip) in [(&a, "us-east-1a", format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)), (&b, "us-east-1b", format!("10.{}.{}.{}", 200 + i / 65536, (i / 256) % 256, i % 256))] {
            enis.push_str(&format!(
                "<item><networkInterfaceId>{eni}</networkInterfaceId><vpcId>vpc-0a1b2c3d4e5f60718</vpcId><availabilityZone>{az}</availabilityZone>\
                 <privateIpAddress>{ip}</privateIpAddress><interfaceType>vpc_endpoint</interfaceType><status>in-use</status></item>"
            ));
        }
    }
    Responses {
        describe_vpc_endpoints: pages,
        describe_network_interfaces: format!("<DescribeNetworkInterfacesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><networkInterfaceSet>{enis}</networkInterfaceSet></DescribeNetworkInterfacesResponse>"),
        describe_vpc_endpoint_services: "<DescribeVpcEndpointServicesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><serviceDetailSet/></DescribeVpcEndpointServicesResponse>".into(),
        route53: Default::default(),
        ..Responses::demo()
    }
}

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok()).expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_endpoints() {
    const COUNT: usize = 2_000;
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    let replay = AwsReplay::start(many_endpoints(COUNT)).await.expect("stand-in starts");
    let text = source_config(upstream.addr, &replay.url(), &tempdir().join("state.json")).replace("interval_secs = 1", "interval_secs = 30").replace("max_backoff_secs = 4", "max_backoff_secs = 60");
    let (hubdns, port, logs) = serve(&text, &LOCAL_AWS_ENV);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let last = format!("svc{}.corp.example.", COUNT - 1);
    wait_for(addr, &last, RecordType::A, Duration::from_secs(60), |m| m.answers.len() == 2).await;
    for i in (0..COUNT).step_by(97) {
        let name = format!("vpce-{i:017x}-abcd1234-us-east-1b.vpce-svc-{i:017x}.us-east-1.vpce.amazonaws.com.");
        assert_eq!(crate::harness::udp_query(addr, &crate::harness::query(&name, RecordType::A)).await.answers.len(), 1, "{name}");
    }
    // The last endpoint sits on the last of four pages: its answer above shows the SDK
    // paginator followed every nextToken.
    let refreshed = lines_with(&logs, &["source refreshed", "endpoints=2000"]);
    let took = refreshed.first().and_then(|l| l.split("took_ms=").nth(1)?.split_whitespace().next().map(str::to_owned));
    let records = refreshed.first().and_then(|l| l.split(" records=").nth(1)?.split_whitespace().next().map(str::to_owned));
    eprintln!(
        "scale: {COUNT} endpoints, {} records, sync {} ms, resident memory {} KiB",
        records.unwrap_or_default(),
        took.unwrap_or_default(),
        rss_kib(hubdns.0.id())
    );
    assert!(!refreshed.is_empty(), "the refresh log names 2000 endpoints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_does_not_affect_the_others_and_a_corrupt_state_file_is_ignored() {
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    let good = AwsReplay::start(Responses::demo()).await.expect("stand-in starts");
    let bad = AwsReplay::start(many_endpoints(3)).await.expect("stand-in starts");
    bad.fail_with(Some(Failure::ServerError));
    let state_file = tempdir().join("state.json");
    std::fs::write(&state_file, b"{\"format\": \"hubdns-state/1\", \"sources\": {\"vpc_endpoints/us-east-1\": [").expect("write");
    let text = source_config(upstream.addr, &good.url(), &state_file)
        + &format!(
            "\n[[sources.vpc_endpoints]]\nregion = \"eu-west-1\"\nendpoint_url = \"{}\"\nmax_attempts = 1\nalias_tag_domains = [\"corp.example\"]\n",
            bad.url()
        );
    let hub = start(&local_config(&text)).await;
    wait_for(hub.addr, "kms.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    assert!(!hub.server.is_ready(), "not ready while one source has never answered");
    assert!(hub.udp("svc0.corp.example.", RecordType::A).await.answers.is_empty());

    bad.fail_with(None);
    wait_for(hub.addr, "svc0.corp.example.", RecordType::A, WAIT, |m| m.answers.len() == 2).await;
    assert_eq!(addresses(&hub.udp("kms.corp.example.", RecordType::A).await), ["10.10.1.33"]);
    let mut readiness = hub.server.readiness();
    tokio::time::timeout(WAIT, readiness.wait_for(|ready| *ready)).await.expect("ready in time").expect("ready");
    let state = std::fs::read_to_string(&state_file).expect("state file rewritten");
    assert!(state.contains("vpc_endpoints/eu-west-1") && state.contains("vpc_endpoints/us-east-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_role_assumption_and_vpc_and_tag_filters() {
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (hub_vpc_id, hub_subnets) = hub_vpc(&ec2).await;
    let other = ec2.create_vpc().cidr_block("10.20.0.0/16").send().await.expect("vpc");
    let other = other.vpc().and_then(|v| v.vpc_id()).expect("id").to_owned();
    let other_subnets = [
        ec2.create_subnet().vpc_id(&other).cidr_block("10.20.1.0/24").availability_zone("us-east-1a").send().await.expect("subnet"),
        ec2.create_subnet().vpc_id(&other).cidr_block("10.20.2.0/24").availability_zone("us-east-1b").send().await.expect("subnet"),
    ]
    .iter()
    .map(|s| s.subnet().and_then(|s| s.subnet_id()).expect("id").to_owned())
    .collect::<Vec<_>>();
    let (_, hub_ips) = endpoint(&ec2, &hub_vpc_id, &hub_subnets, "com.amazonaws.us-east-1.sqs", "queue.corp.example").await;
    endpoint(&ec2, &other, &other_subnets, "com.amazonaws.us-east-1.sns", "topic.corp.example").await;

    let text = source_config(upstream.addr, &moto.url, &tempdir().join("state.json")).replace(
        "max_attempts = 1\n",
        &format!(
            "max_attempts = 1\nrole_arn = \"arn:aws:iam::123456789012:role/hubdns-read\"\nvpc_ids = [\"{hub_vpc_id}\"]\n\
             tags = {{ \"hubdns:alias\" = \"queue.corp.example\" }}\n"
        ),
    );
    // A child process: the role is assumed through STS, which the SDK's standard setting
    // AWS_ENDPOINT_URL points at moto (a source's endpoint_url is for its own API only).
    let env: Vec<(&str, &str)> = LOCAL_AWS_ENV.iter().copied().chain([("AWS_ENDPOINT_URL", moto.url.as_str())]).collect();
    let (_child, port, _logs) = serve(&text, &env);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let answer = wait_for(addr, "queue.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    assert_eq!(addresses(&answer), hub_ips, "found through the assumed role");
    let other = crate::harness::udp_query(addr, &crate::harness::query("topic.corp.example.", RecordType::A)).await;
    assert!(other.answers.is_empty(), "other VPC filtered out");
}
