//! Change events: AWS API calls that change what hubdns serves, read from an SQS queue, so a
//! change is served within seconds instead of at the next poll.
//!
//! An EventBridge rule sends "AWS API Call via CloudTrail" events to the queue (directly, or
//! through an SNS topic that fans out to one queue per instance: an SQS message reaches one
//! consumer, and every instance needs every event). These events exist only where a
//! CloudTrail trail records management events; EC2's arrive in the region of the call, Route
//! 53's in us-east-1 (CloudTrail user guide, "CloudTrail supported services"; EventBridge user
//! guide, "Events from AWS services"). The deploy kit builds the rule, queue and forwarding.
//!
//! [`change_from`] is the pure part: a message body → the [`Change`] it stands for, if it is
//! one of the calls below and succeeded (a call with an `errorCode` changed nothing). The
//! refresh loop hands each change to every source; a source it concerns fetches again at
//! once (see `Source::concerns`). The periodic poll stays as reconciliation: CloudTrail
//! delivery is best effort.
//!
//! [`consume`] long-polls the queue (20 s), hands every change on, and deletes every message
//! it received — unknown and malformed ones too, so none can block the queue. A failing
//! queue is retried with doubling backoff (1 s to 60 s) and counted; sources keep polling.

use std::{sync::Arc, time::Duration};

use aws_sdk_sqs::{Client, types::DeleteMessageBatchRequestEntry};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    config::EventsConfig,
    sources::aws::{sdk_config, sdk_message},
    status::{EventsStatus, StatusBoard},
};

/// The long poll: SQS's longest wait for a message (ReceiveMessage `WaitTimeSeconds`).
const WAIT_SECS: i32 = 20;

/// Longest wait between tries of a failing queue.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The AWS service a change happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// EC2: interface endpoints and their tags.
    Ec2,
    /// Route 53: private hosted zones and their records.
    Route53,
}

/// EC2 calls that change interface endpoints (and their `hubdns:alias` tags).
pub const EC2_CALLS: [&str; 7] = [
    "CreateVpcEndpoint",
    "ModifyVpcEndpoint",
    "DeleteVpcEndpoints",
    "AcceptVpcEndpointConnections",
    "RejectVpcEndpointConnections",
    "CreateTags",
    "DeleteTags",
];

/// Route 53 calls that change private zones.
pub const ROUTE53_CALLS: [&str; 5] =
    ["ChangeResourceRecordSets", "CreateHostedZone", "DeleteHostedZone", "AssociateVPCWithHostedZone", "DisassociateVPCFromHostedZone"];

/// One AWS API call that changed something hubdns may serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where it happened.
    pub service: Service,
    /// The API call (`CreateVpcEndpoint`).
    pub action: String,
    /// The account it changed (`recipientAccountId`).
    pub account: Option<String>,
    /// The region of the call (Route 53's are all in us-east-1).
    pub region: String,
    /// Interface endpoints it names (`vpce-…`).
    pub endpoint_ids: Vec<String>,
    /// Hosted zones it names, without `/hostedzone/`.
    pub zone_ids: Vec<String>,
}

/// What a message body stands for: a change, nothing hubdns acts on (`Ok(None)`: another
/// event, another call, a failed call), or an error saying why it is not an event at all.
pub fn change_from(body: &str) -> Result<Option<Change>, String> {
    let mut event: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    // Through SNS without raw delivery, the event is the notification's `Message`.
    if event.get("Type").and_then(Value::as_str) == Some("Notification") {
        let inner = event.get("Message").and_then(Value::as_str).ok_or("an SNS notification without a Message")?;
        event = serde_json::from_str(inner).map_err(|e| format!("SNS Message is not JSON: {e}"))?;
    }
    if !event.is_object() {
        return Err("not an event object".into());
    }
    if event.get("detail-type").and_then(Value::as_str) != Some("AWS API Call via CloudTrail") {
        return Ok(None);
    }
    let detail = event.get("detail").filter(|d| d.is_object()).ok_or("an event without detail")?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let action = text(detail, "eventName").ok_or("an API call event without eventName")?;
    let service = match detail.get("eventSource").and_then(Value::as_str) {
        Some("ec2.amazonaws.com") if EC2_CALLS.contains(&action.as_str()) => Service::Ec2,
        Some("route53.amazonaws.com") if ROUTE53_CALLS.contains(&action.as_str()) => Service::Route53,
        _ => return Ok(None),
    };
    if detail.get("errorCode").is_some_and(|e| !e.is_null()) {
        return Ok(None); // the call failed: nothing changed
    }
    let mut change = Change {
        service,
        action,
        account: text(detail, "recipientAccountId").or_else(|| text(&event, "account")),
        region: text(detail, "awsRegion").or_else(|| text(&event, "region")).unwrap_or_default(),
        endpoint_ids: Vec::new(),
        zone_ids: Vec::new(),
    };
    for part in ["requestParameters", "responseElements"] {
        if let Some(value) = detail.get(part) {
            collect_ids(value, None, &mut change);
        }
    }
    change.endpoint_ids.sort();
    change.endpoint_ids.dedup();
    change.zone_ids.sort();
    change.zone_ids.dedup();
    // Tags change on every kind of resource; only an endpoint's matter here.
    if change.action.ends_with("Tags") && change.endpoint_ids.is_empty() {
        return Ok(None);
    }
    Ok(Some(change))
}

/// Collects endpoint ids (any string shaped `vpce-<hex>`, wherever EC2's request or response
/// puts it) and, for Route 53, zone ids (`hostedZoneId`, and `id` in a request or a
/// `hostedZone`).
fn collect_ids(value: &Value, key: Option<&str>, change: &mut Change) {
    match value {
        Value::String(s) => {
            if is_endpoint_id(s) {
                change.endpoint_ids.push(s.clone());
            }
            if change.service == Service::Route53 && matches!(key, Some("hostedZoneId" | "id")) {
                let id = s.trim_start_matches("/hostedzone/");
                if !id.is_empty() && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
                    change.zone_ids.push(id.to_owned());
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_ids(item, key, change)),
        Value::Object(map) => map.iter().for_each(|(k, v)| collect_ids(v, Some(k), change)),
        _ => {}
    }
}

/// `vpce-` and 8 to 17 hex digits: an endpoint, not an endpoint service (`vpce-svc-…`).
fn is_endpoint_id(s: &str) -> bool {
    s.strip_prefix("vpce-").is_some_and(|hex| (8..=17).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Long-polls the queue of `config` until `cancel`, handing each change to `changes`.
/// `flowing` says whether the queue answered the last time it was read: while it does not,
/// sources poll at the interval they would have without events.
pub async fn consume(
    config: EventsConfig,
    changes: mpsc::UnboundedSender<Arc<Change>>,
    board: Arc<StatusBoard>,
    flowing: tokio::sync::watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let run = async {
        let mut access = config.access();
        // An attempt lasts the long poll plus the configured API timeout.
        access.api_timeout_secs += u64::from(WAIT_SECS.unsigned_abs());
        let client: Client = crate::with_endpoint!(aws_sdk_sqs, &sdk_config(&access).await, config.endpoint_url.as_deref());
        let mut failures = 0u32;
        loop {
            match receive(&client, &config.queue_url, &changes, &board).await {
                Ok(()) => {
                    failures = 0;
                    flowing.send_if_modified(|f| !std::mem::replace(f, true));
                }
                Err(error) => {
                    failures += 1;
                    flowing.send_if_modified(|f| std::mem::replace(f, false));
                    let wait = Duration::from_secs(1 << failures.saturating_sub(1).min(6)).min(MAX_BACKOFF);
                    tracing::warn!(queue = %config.queue_url, %error, retry_in_secs = wait.as_secs(), "cannot read the events queue; sources keep polling");
                    update(&board, |s| {
                        s.failures += 1;
                        s.last_error = Some(error);
                    });
                    tokio::time::sleep(wait).await;
                }
            }
        }
    };
    board.lock().events = Some(EventsStatus { queue_url: config.queue_url.clone(), ..EventsStatus::default() });
    tokio::select! {
        () = cancel.cancelled() => {}
        () = run => {}
    }
}

/// One long poll: receives up to 10 messages, hands their changes on, deletes them all.
async fn receive(client: &Client, queue: &str, changes: &mpsc::UnboundedSender<Arc<Change>>, board: &StatusBoard) -> Result<(), String> {
    let received = client
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(WAIT_SECS)
        .send()
        .await
        .map_err(|e| format!("ReceiveMessage: {}", sdk_message(&e)))?;
    update(board, |s| {
        s.last_receive = Some(std::time::SystemTime::now());
        s.last_error = None;
    });
    let mut done = Vec::new();
    for (i, message) in received.messages().iter().enumerate() {
        let outcome = change_from(message.body().unwrap_or(""));
        match &outcome {
            Ok(Some(change)) => {
                tracing::info!(action = %change.action, account = ?change.account, region = %change.region, endpoints = ?change.endpoint_ids, zones = ?change.zone_ids, "change event");
                let _ = changes.send(Arc::new(change.clone()));
            }
            Ok(None) => tracing::debug!(message = ?message.message_id(), "event ignored: not a change hubdns serves"),
            Err(reason) => tracing::warn!(message = ?message.message_id(), %reason, "message on the events queue is not an event; deleted"),
        }
        update(board, |s| match outcome {
            Ok(Some(_)) => s.applied += 1,
            Ok(None) => s.ignored += 1,
            Err(_) => s.malformed += 1,
        });
        if let Some(handle) = message.receipt_handle() {
            done.push(DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(handle).build().map_err(|e| e.to_string())?);
        }
    }
    if !done.is_empty() {
        // A message not deleted comes back after its visibility timeout: handled twice, which
        // costs one more fetch and nothing else.
        let deleted = client.delete_message_batch().queue_url(queue).set_entries(Some(done)).send().await;
        if let Err(error) = deleted {
            tracing::warn!(%queue, error = %sdk_message(&error), "cannot delete handled messages; they will be handled again");
        }
    }
    Ok(())
}

fn update(board: &StatusBoard, change: impl FnOnce(&mut EventsStatus)) {
    if let Some(status) = board.lock().events.as_mut() {
        change(status);
    }
}

#[cfg(test)]
mod tests {
    //! Message bodies shaped like EventBridge's "AWS API Call via CloudTrail" events
    //! ([`crate::demo::cloudtrail_event`]).

    use super::*;
    use crate::demo::cloudtrail_event as event;

    #[test]
    fn endpoint_calls_name_their_endpoints_account_and_region() {
        let created = event(
            "ec2.amazonaws.com",
            "CreateVpcEndpoint",
            "eu-west-1",
            r#"{"CreateVpcEndpointRequest":{"VpcId":"vpc-0a1b2c3d4e5f60718","ServiceName":"com.amazonaws.vpce.eu-west-1.vpce-svc-0a9b8c7d6e5f43210","VpcEndpointType":"Interface"}}"#,
            r#"{"CreateVpcEndpointResponse":{"vpcEndpoint":{"vpcEndpointId":"vpce-0123456789abcdef0","state":"pendingAcceptance"}}}"#,
            None,
        );
        let change = change_from(&created).unwrap().unwrap();
        assert_eq!(change.service, Service::Ec2);
        assert_eq!((change.account.as_deref(), change.region.as_str()), (Some("222233334444"), "eu-west-1"));
        assert_eq!(change.endpoint_ids, ["vpce-0123456789abcdef0"], "the service id vpce-svc-… is not an endpoint");

        let deleted = event(
            "ec2.amazonaws.com",
            "DeleteVpcEndpoints",
            "eu-west-1",
            r#"{"DeleteVpcEndpointsRequest":{"VpcEndpointId":{"content":"vpce-04c0ffee5a1e2b3c4","tag":1}}}"#,
            r#"{"DeleteVpcEndpointsResponse":{"unsuccessful":""}}"#,
            None,
        );
        assert_eq!(change_from(&deleted).unwrap().unwrap().endpoint_ids, ["vpce-04c0ffee5a1e2b3c4"]);
    }

    #[test]
    fn tags_on_other_resources_failed_calls_and_other_events_are_ignored() {
        let tags = |id: &str| {
            event(
                "ec2.amazonaws.com",
                "CreateTags",
                "us-east-1",
                &format!(r#"{{"resourcesSet":{{"items":[{{"resourceId":"{id}"}}]}},"tagSet":{{"items":[{{"key":"hubdns:alias","value":"kms.corp.example"}}]}}}}"#),
                "null",
                None,
            )
        };
        assert!(change_from(&tags("vpce-04c0ffee5a1e2b3c4")).unwrap().is_some());
        assert_eq!(change_from(&tags("i-0123456789abcdef0")).unwrap(), None, "an instance's tags");
        let failed = event("ec2.amazonaws.com", "CreateVpcEndpoint", "us-east-1", "{}", "null", Some("UnauthorizedOperation"));
        assert_eq!(change_from(&failed).unwrap(), None);
        let other = event("ec2.amazonaws.com", "RunInstances", "us-east-1", "{}", "null", None);
        assert_eq!(change_from(&other).unwrap(), None);
        let state_change = r#"{"version":"0","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}"#;
        assert_eq!(change_from(state_change).unwrap(), None);
    }

    #[test]
    fn zone_calls_name_their_zones() {
        let records = event(
            "route53.amazonaws.com",
            "ChangeResourceRecordSets",
            "us-east-1",
            r#"{"hostedZoneId":"Z0C0RP5EXAMPLE1DEMO0","changeBatch":{"changes":[{"action":"UPSERT","resourceRecordSet":{"name":"dc1.corp.example","type":"A","tTL":300,"resourceRecords":[{"value":"10.20.3.6"}]}}]}}"#,
            r#"{"changeInfo":{"status":"PENDING","id":"/change/C2682N5HXP0BZ4","submittedAt":"Dec 5, 2026 7:00:00 AM"}}"#,
            None,
        );
        let change = change_from(&records).unwrap().unwrap();
        assert_eq!((change.service, change.zone_ids.as_slice()), (Service::Route53, ["Z0C0RP5EXAMPLE1DEMO0".to_owned()].as_slice()));
        let created = event(
            "route53.amazonaws.com",
            "CreateHostedZone",
            "us-east-1",
            r#"{"name":"new.corp.example","vPC":{"vPCRegion":"us-east-1","vPCId":"vpc-0a1b2c3d4e5f60718"},"callerReference":"x","hostedZoneConfig":{"privateZone":true}}"#,
            r#"{"hostedZone":{"id":"/hostedzone/Z0NEW5EXAMPLE3DEMO00","name":"new.corp.example."},"changeInfo":{"id":"/change/C1"}}"#,
            None,
        );
        assert_eq!(change_from(&created).unwrap().unwrap().zone_ids, ["Z0NEW5EXAMPLE3DEMO00"], "the change id is not a zone");
    }

    #[test]
    fn sns_envelopes_are_opened_and_garbage_is_an_error() {
        let inner = event("route53.amazonaws.com", "DeleteHostedZone", "us-east-1", r#"{"id":"Z0OTHER5EXAMPLE2DEMO"}"#, "null", None);
        let envelope = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:111122223333:hubdns-events", "Message": inner}).to_string();
        assert_eq!(change_from(&envelope).unwrap().unwrap().zone_ids, ["Z0OTHER5EXAMPLE2DEMO"]);
        assert!(change_from("not json").is_err());
        assert!(change_from("[1,2]").is_err());
        assert!(change_from(r#"{"detail-type":"AWS API Call via CloudTrail"}"#).is_err(), "no detail");
    }
}
