//! Every account of the organization (issue 16), in moto: an organization of three accounts,
//! each with an interface endpoint in a VPC of its own, read by a hubdns child process through
//! Organizations ListAccounts and a role assumed in each account. One variable,
//! AWS_ENDPOINT_URL, points every API (Organizations, STS, EC2) at moto.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::{
    aws::{LOCAL_AWS_ENV, Moto, endpoint, hub_vpc},
    harness::{ANSWER_WAIT, StubUpstream, addresses, query, serve, serve_file, udp_query, wait_for},
};

/// Settings for moto as account 123456789012 (moto's default): the management account.
async fn management(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// An EC2 client acting in `account`, through the role hubdns will assume there.
async fn ec2_in(base: &aws_config::SdkConfig, account: &str) -> aws_sdk_ec2::Client {
    let role = format!("arn:aws:iam::{account}:role/hubdns-read");
    let provider = aws_config::sts::AssumeRoleProvider::builder(role).session_name("setup").configure(base).build().await;
    aws_sdk_ec2::Client::new(&base.clone().into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build())
}

/// Creates an account in the organization; returns its id.
async fn new_account(org: &aws_sdk_organizations::Client, name: &str) -> String {
    let created = org.create_account().email(format!("{name}@example.com")).account_name(name).send().await.expect("create account");
    created.create_account_status().and_then(|s| s.account_id()).expect("account id").to_owned()
}

/// In `account`: a VPC and an endpoint tagged `hubdns:alias = <name>`; returns its ENIs' addresses.
async fn endpoint_in(base: &aws_config::SdkConfig, account: &str, name: &str) -> Vec<String> {
    let ec2 = ec2_in(base, account).await;
    let (vpc, subnets) = hub_vpc(&ec2).await;
    endpoint(&ec2, &vpc, &subnets, "com.amazonaws.us-east-1.kms", name).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_active_account_of_the_organization_is_read_and_followed() {
    let upstream = StubUpstream::start("127.0.0.97", Ipv4Addr::new(192, 0, 2, 97)).await;
    let moto = Moto::start();
    let base = management(&moto).await;
    let org = aws_sdk_organizations::Client::new(&base);
    org.create_organization().feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All).send().await.expect("organization");
    let accounts = ["123456789012".to_owned(), new_account(&org, "payments").await, new_account(&org, "analytics").await];
    let mut expected = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        let name = format!("svc{i}.corp.example.");
        expected.push((name.clone(), endpoint_in(&base, account, &name).await));
    }

    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [forward]\nupstreams = [\"{}\"]\ntimeout_ms = 300\nattempts = 1\ndeadline_ms = 1000\ncheck_signed_parents = false\n\n\
         [refresh]\ninterval_secs = 1\nmax_backoff_secs = 2\n\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\naccounts = \"organization\"\nrole_name = \"hubdns-read\"\n\
         alias_tag_domains = [\"corp.example\"]\nmax_attempts = 1\napi_timeout_secs = 5\n",
        upstream.addr
    );
    let env: Vec<(&str, &str)> = LOCAL_AWS_ENV.iter().copied().chain([("AWS_ENDPOINT_URL", moto.url.as_str())]).collect();
    let path = crate::harness::tempdir().join("hubdns.toml");
    std::fs::write(&path, &config).expect("write config");
    let (child, port, logs) = serve_file(&path, &env);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    for (name, ips) in &expected {
        let answer = wait_for(addr, name, RecordType::A, Duration::from_secs(15), |m| !m.answers.is_empty()).await;
        assert_eq!(&addresses(&answer), ips, "{name}: read in its own account; log:\n{}", logs.lock().expect("logs").join("\n"));
    }

    // The organization is listed another way now (a role in the management account): the
    // reload keeps every account's names while the new listing is made.
    let reloaded = config.replace("role_name = \"hubdns-read\"\n", "role_name = \"hubdns-read\"\norganization_role_arn = \"arn:aws:iam::123456789012:role/org-read\"\n");
    std::fs::write(&path, reloaded).expect("write config");
    let pid = child.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    for _ in 0..30 {
        for (name, ips) in &expected {
            assert_eq!(&addresses(&udp_query(addr, &query(name, RecordType::A)).await), ips, "{name} through the reload");
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    // A new account joins: read at the next listing.
    let newcomer = new_account(&org, "search").await;
    let ips = endpoint_in(&base, &newcomer, "svc3.corp.example.").await;
    let answer = wait_for(addr, "svc3.corp.example.", RecordType::A, ANSWER_WAIT, |m| !m.answers.is_empty()).await;
    assert_eq!(addresses(&answer), ips);

    // An account is closed (SUSPENDED): its task is dropped and its names go.
    org.close_account().account_id(&accounts[1]).send().await.expect("close");
    let gone = wait_for(addr, "svc1.corp.example.", RecordType::A, ANSWER_WAIT, |m| m.answers.is_empty()).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain, "forwarded now");
    let kept = udp_query(addr, &query("svc0.corp.example.", RecordType::A)).await;
    assert_eq!(addresses(&kept), expected[0].1, "the other accounts stay");
}

/// With only organization sources and Organizations unreachable, an instance is not ready
/// (it would serve none of the accounts' names) until the listing answers or
/// `ready_timeout_secs` passes; `/readyz` says what it waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_first_listing_of_the_organization() {
    let upstream = StubUpstream::start("127.0.0.101", Ipv4Addr::new(192, 0, 2, 101)).await;
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
         [forward]\nupstreams = [\"{}\"]\ncheck_signed_parents = false\n[refresh]\ninterval_secs = 1\nmax_backoff_secs = 1\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\naccounts = \"organization\"\nrole_name = \"hubdns-read\"\nmax_attempts = 1\napi_timeout_secs = 2\n",
        upstream.addr
    );
    // Nothing listens on 127.0.0.1:9: every Organizations call fails at once, on loopback.
    let env: Vec<(&str, &str)> = LOCAL_AWS_ENV.iter().copied().chain([("AWS_ENDPOINT_URL", "http://127.0.0.1:9")]).collect();
    let (_child, _port, _logs) = serve(&config, &env);
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = tokio::task::spawn_blocking(move || hubdns::admin::probe(admin, "/readyz", Duration::from_secs(5)).expect("readyz"))
        .await
        .expect("join");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("organization (own credentials)"), "{body}");
    let (_, metrics) = tokio::task::spawn_blocking(move || hubdns::admin::probe(admin, "/metrics", Duration::from_secs(5)).expect("metrics"))
        .await
        .expect("join");
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hubdns_organization_listing_failures_total{organization=\"own credentials\"} ")?.parse::<f64>().ok());
    assert!(failures.is_some_and(|n| n >= 1.0), "the failing listing is counted: {metrics}");
}
