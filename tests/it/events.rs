//! Change events (issue 16): an SQS queue in moto filled with EventBridge "AWS API Call via
//! CloudTrail" events, read by hubdns through the real SDK; the sources behind them are the
//! stand-in, polled every 300 s (the default with `[events]`), so only an event can explain a
//! change served within seconds.

use std::{net::Ipv4Addr, time::Duration};

use hickory_proto::rr::RecordType;
use hubdns::demo::{AwsReplay, Responses, cloudtrail_event};

use crate::{
    aws::{Moto, local_config, start},
    harness::{ANSWER_WAIT, StubUpstream, addresses, wait_for},
};

const SECRETS: &str = "secretsmanager.us-east-1.amazonaws.com.";
const SECRETS_ENDPOINT: &str = "vpce-0f1e2d3c4b5a69788";
const DEMO_ZONE: &str = "Z0C0RP5EXAMPLE1DEMO0";

/// The value of the sample `series` in exposition `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// An EC2 endpoint call on `id` in us-east-1, as CloudTrail records it.
fn endpoint_event(action: &str, id: &str) -> String {
    let request = format!(r#"{{"{action}Request":{{"VpcEndpointId":"{id}","AddSecurityGroupId":{{"content":"sg-0a1b2c3d4e5f60718","tag":1}}}}}}"#);
    cloudtrail_event("ec2.amazonaws.com", action, "us-east-1", &request, &format!(r#"{{"{action}Response":{{"return":true}}}}"#), None)
}

/// A ChangeResourceRecordSets on `zone`, as CloudTrail records it.
fn records_event(zone: &str) -> String {
    let request = format!(
        r#"{{"hostedZoneId":"{zone}","changeBatch":{{"changes":[{{"action":"UPSERT","resourceRecordSet":{{"name":"dc1.corp.example","type":"A","tTL":300,"resourceRecords":[{{"value":"10.20.3.6"}}]}}}}]}}}}"#
    );
    cloudtrail_event("route53.amazonaws.com", "ChangeResourceRecordSets", "us-east-1", &request, r#"{"changeInfo":{"status":"PENDING","id":"/change/C2682N5HXP0BZ4"}}"#, None)
}

/// hubdns config: the stand-in's endpoint and zone sources (no interval set: 300 s with
/// events), and the events queue at moto.
fn config_text(upstream: std::net::SocketAddr, replay: &str, moto: &str, queue: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [forward]\nupstreams = [\"{upstream}\"]\ntimeout_ms = 300\nattempts = 1\ndeadline_ms = 1000\ncheck_signed_parents = false\n\n\
         [events]\nqueue_url = \"{queue}\"\nregion = \"us-east-1\"\nendpoint_url = \"{moto}\"\nmax_attempts = 1\napi_timeout_secs = 5\n\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{replay}\"\napi_timeout_secs = 5\nmax_attempts = 1\n\n\
         [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\nendpoint_url = \"{replay}\"\napi_timeout_secs = 5\nmax_attempts = 1\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_serve_changes_in_seconds_and_no_message_blocks_the_queue() {
    let upstream = StubUpstream::start("127.0.0.96", Ipv4Addr::new(192, 0, 2, 96)).await;
    let moto = Moto::start();
    let sqs = moto.sqs();
    let queue = sqs.create_queue().queue_name("hubdns-events-a").send().await.expect("queue").queue_url().expect("url").to_owned();
    let send = |body: String| {
        let (sqs, queue) = (sqs.clone(), queue.clone());
        async move { sqs.send_message().queue_url(queue).message_body(body).send().await.expect("send") }
    };
    // The Secrets Manager endpoint is still pending at first: not published.
    let mut pending = Responses::demo();
    pending.describe_vpc_endpoints[0] = pending.describe_vpc_endpoints[0].replacen("<state>available</state>", "<state>pending</state>", 1);
    let replay = AwsReplay::start(pending.clone()).await.expect("stand-in");
    let config = local_config(&config_text(upstream.addr, &replay.url(), &moto.url, &queue));
    assert_eq!(config.interval_secs(), 300, "with events, the poll only reconciles");
    let hub = start(&config).await;
    let admin = hub.server.admin_addr().expect("admin");
    let mut ready = hub.server.readiness();
    tokio::time::timeout(Duration::from_secs(15), ready.wait_for(|r| *r)).await.expect("ready in time").expect("ready");
    assert!(hub.udp(SECRETS, RecordType::A).await.answers.is_empty(), "pending: not served");

    // CreateVpcEndpoint arrives while the endpoint is pending; it turns available later, with
    // no event of its own: the source keeps asking until it settles.
    let asked = replay.requests_for("DescribeVpcEndpoints");
    send(endpoint_event("CreateVpcEndpoint", SECRETS_ENDPOINT)).await;
    let waited = std::time::Instant::now();
    while replay.requests_for("DescribeVpcEndpoints") == asked {
        assert!(waited.elapsed() < ANSWER_WAIT, "the event asked for no fetch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replay.set_responses(Responses::demo());
    // A bound for a loaded machine, not a figure: the settling fetches back off between tries.
    let served = wait_for(hub.addr, SECRETS, RecordType::A, Duration::from_secs(30), |m| !m.answers.is_empty()).await;
    assert_eq!(addresses(&served), ["10.10.1.25", "10.10.2.41"]);

    // An ENI's address changes and ModifyVpcEndpoint says so.
    let mut moved = Responses::demo();
    moved.describe_network_interfaces = moved.describe_network_interfaces.replace("10.10.1.25", "10.10.1.26");
    replay.set_responses(moved.clone());
    let sent = std::time::Instant::now();
    send(endpoint_event("ModifyVpcEndpoint", SECRETS_ENDPOINT)).await;
    wait_for(hub.addr, SECRETS, RecordType::A, ANSWER_WAIT, |m| addresses(m).contains(&"10.10.1.26".to_owned())).await;
    eprintln!("endpoint event to answer: {:?}", sent.elapsed()); // a figure for the notes, not a check

    // A record's value is edited: the zone's record count stays, so only the event makes the
    // zone be read again (finding 7).
    let reads = replay.requests_for("ListResourceRecordSets");
    for pages in moved.route53.record_sets.values_mut() {
        for page in pages {
            *page = page.replace("10.20.3.5", "10.20.3.6");
        }
    }
    replay.set_responses(moved);
    let sent = std::time::Instant::now();
    send(records_event(DEMO_ZONE)).await;
    wait_for(hub.addr, "dc1.corp.example.", RecordType::A, ANSWER_WAIT, |m| addresses(m) == ["10.20.3.6"]).await;
    eprintln!("zone event to answer: {:?}", sent.elapsed());
    assert!(replay.requests_for("ListResourceRecordSets") > reads, "the zone was read again");

    // Garbage, another service's event, and a failed call: deleted, counted, and the next
    // real event still goes through.
    send("not an event".into()).await;
    send(cloudtrail_event("ec2.amazonaws.com", "RunInstances", "us-east-1", "{}", "null", None)).await;
    send(cloudtrail_event("ec2.amazonaws.com", "DeleteVpcEndpoints", "us-east-1", "{}", "null", Some("UnauthorizedOperation"))).await;
    let mut deleted = Responses::demo();
    deleted.describe_network_interfaces = deleted.describe_network_interfaces.replace("10.10.1.25", "10.10.1.27");
    replay.set_responses(deleted);
    send(endpoint_event("ModifyVpcEndpoint", SECRETS_ENDPOINT)).await;
    wait_for(hub.addr, SECRETS, RecordType::A, ANSWER_WAIT, |m| addresses(m).contains(&"10.10.1.27".to_owned())).await;
    let metrics = tokio::task::spawn_blocking(move || hubdns::admin::probe(admin, "/metrics", Duration::from_secs(5)).expect("metrics").1)
        .await
        .expect("join");
    assert_eq!(sample(&metrics, "hubdns_events_total{result=\"applied\"}"), Some(4.0), "{metrics}");
    assert_eq!(sample(&metrics, "hubdns_events_total{result=\"ignored\"}"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "hubdns_events_total{result=\"malformed\"}"), Some(1.0), "{metrics}");
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("attributes");
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| attributes.attributes().and_then(|a| a.get(&name)).cloned();
    assert_eq!(count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages).as_deref(), Some("0"), "every message deleted");
    assert_eq!(count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible).as_deref(), Some("0"));
    hub.server.stop().await;
}
