//! The demo's stand-in for the AWS APIs: a loopback HTTP server that answers the EC2 calls
//! of the endpoint source (DescribeVpcEndpoints, DescribeNetworkInterfaces,
//! DescribeVpcEndpointServices) and the Route 53 calls of the zone source
//! (ListHostedZonesByVPC, GetHostedZone, ListResourceRecordSets) with recorded, real-shaped
//! XML responses (`config/demo-aws/`).
//!
//! It also answers STS AssumeRole with credentials that name the role's account, and fills
//! `{{account}}` and `{{region}}` in a recording with the account and region a request was
//! signed for, so one recording stands for many accounts and regions (`bench/scale`).
//!
//! `hubdns demo` points its sources at it, so the demo runs the production path end to end —
//! SDK, HTTP, XML parsing, conversion, refresh loop — without AWS. Tests use it too: to serve
//! responses shaped like real AWS (DnsEntries, DnsOptions, a repeating Route 53 page token)
//! that moto cannot produce, to count calls, and to answer with throttling or server errors on
//! demand. This file holds the HTTP server; `ec2` and `route53` hold each API's answers.

mod ec2;
mod imds;
mod lattice;
mod route53;

use std::{
    collections::{BTreeMap, HashMap},
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
    },
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

use toml::Spanned;

use crate::config::{Config, ForwardRule, Upstream};

/// Largest request the stand-in reads (EC2 Query requests are small form posts).
const MAX_REQUEST: usize = 1 << 20;

/// The recorded response body for each EC2 action the endpoint source calls.
#[derive(Debug, Clone)]
pub struct Responses {
    /// DescribeVpcEndpoints, page by page: page `i` (from 0) ends with
    /// `<nextToken>page-{i+1}</nextToken>` when another follows, and the request carrying
    /// `NextToken=page-{i+1}` gets the next one, as EC2 pages.
    pub describe_vpc_endpoints: Vec<String>,
    /// DescribeNetworkInterfaces for every ENI; a request with a `network-interface-id`
    /// filter gets only the ENIs it names, as EC2 answers.
    pub describe_network_interfaces: String,
    /// DescribeVpcEndpointServices.
    pub describe_vpc_endpoint_services: String,
    /// DescribeSubnets: the hub VPC's subnets.
    pub describe_subnets: String,
    /// The instance metadata service's placement of "this instance" (AZ ID, region); `None`:
    /// its placement paths answer 404.
    pub instance_placement: Option<(String, String)>,
    /// DescribeSubnets as other accounts answer it (an account's AZ names map to AZ IDs its
    /// own way), by account id; the others get `describe_subnets`.
    pub subnets_by_account: BTreeMap<String, String>,
    /// DescribeVpcEndpointAssociations for every endpoint, page by page (chained by
    /// `<nextToken>page-{i+1}</nextToken>` as DescribeVpcEndpoints); a request with a
    /// `vpc-endpoint-id` filter gets only those endpoints' associations, as EC2 answers.
    pub describe_vpc_endpoint_associations: Vec<String>,
    /// The Route 53 side.
    pub route53: Route53Responses,
    /// The VPC Lattice side.
    pub lattice: LatticeResponses,
}

/// Recorded VPC Lattice responses (REST JSON).
#[derive(Debug, Clone, Default)]
pub struct LatticeResponses {
    /// GetResourceConfiguration by resource configuration id (`rcfg-…`); another id gets HTTP
    /// 404 `ResourceNotFoundException`.
    pub resource_configurations: BTreeMap<String, String>,
    /// ListServiceNetworkServiceAssociations by service network id (`sn-…`).
    pub service_network_services: BTreeMap<String, String>,
}

impl LatticeResponses {
    /// The demo's: the egress proxy's resource configuration (custom domain name
    /// `proxy.egress.example`, verified) and the service network with the `orders` service
    /// (custom domain name `orders.svc.example`).
    pub fn demo() -> Self {
        Self {
            resource_configurations: BTreeMap::from([(
                "rcfg-0e1d2c3b4a5f60789".to_owned(),
                include_str!("../../config/demo-aws/lattice/GetResourceConfiguration.json").into(),
            )]),
            service_network_services: BTreeMap::from([(
                "sn-0a1b2c3d4e5f60718".to_owned(),
                include_str!("../../config/demo-aws/lattice/ListServiceNetworkServiceAssociations.json").into(),
            )]),
        }
    }
}

/// The demo's stand-in for public DNS of the names VPC Lattice gives service-network
/// endpoints (`….vpc-lattice-svcs.us-east-1.on.aws`): AWS publishes them publicly with the
/// endpoint's private addresses, which EC2 does not say per name.
pub const DEMO_LATTICE_DNS: &str = include_str!("../../config/demo-aws/lattice/public-dns.toml");

/// Recorded Route 53 responses.
#[derive(Debug, Clone, Default)]
pub struct Route53Responses {
    /// ListHostedZonesByVPC by VPC id; another VPC gets an empty list, as Route 53 answers.
    pub zones_by_vpc: BTreeMap<String, String>,
    /// GetHostedZone by zone id (without `/hostedzone/`).
    pub hosted_zones: BTreeMap<String, String>,
    /// ListResourceRecordSets by zone id, page by page: a request whose `name` parameter is
    /// the `<NextRecordName>` of page `i` gets page `i + 1`, as Route 53 pages.
    pub record_sets: BTreeMap<String, Vec<String>>,
}

impl Route53Responses {
    /// The demo's private hosted zone `corp.example.`, associated with the hub VPC.
    pub fn demo() -> Self {
        let zone = "Z0C0RP5EXAMPLE1DEMO0".to_owned();
        Self {
            zones_by_vpc: BTreeMap::from([(
                "vpc-0a1b2c3d4e5f60718".to_owned(),
                include_str!("../../config/demo-aws/route53/ListHostedZonesByVPC.xml").into(),
            )]),
            hosted_zones: BTreeMap::from([(zone.clone(), include_str!("../../config/demo-aws/route53/GetHostedZone.xml").into())]),
            record_sets: BTreeMap::from([(zone, vec![include_str!("../../config/demo-aws/route53/ListResourceRecordSets.xml").into()])]),
        }
    }
}

impl Responses {
    /// The demo's recordings: a hub VPC in us-east-1 with Secrets Manager, a provider's
    /// service, S3 (dual-stack, wildcards), KMS (with a `hubdns:alias` tag), a resource
    /// endpoint to an egress proxy and a service-network endpoint, one endpoint pending
    /// acceptance and one Gateway endpoint; and the private zone `corp.example.` with an
    /// alias to the provider's endpoint, weighted, failover and wildcard records.
    pub fn demo() -> Self {
        Self {
            describe_vpc_endpoints: vec![include_str!("../../config/demo-aws/DescribeVpcEndpoints.xml").into()],
            describe_network_interfaces: include_str!("../../config/demo-aws/DescribeNetworkInterfaces.xml").into(),
            describe_vpc_endpoint_services: include_str!("../../config/demo-aws/DescribeVpcEndpointServices.xml").into(),
            describe_subnets: include_str!("../../config/demo-aws/DescribeSubnets.xml").into(),
            subnets_by_account: BTreeMap::new(),
            instance_placement: Some(("use1-az1".to_owned(), "us-east-1".to_owned())),
            describe_vpc_endpoint_associations: vec![include_str!("../../config/demo-aws/DescribeVpcEndpointAssociations.xml").into()],
            route53: Route53Responses::demo(),
            lattice: LatticeResponses::demo(),
        }
    }
}

/// An error the stand-in can answer with instead of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Throttling: EC2's HTTP 503 `RequestLimitExceeded`, Route 53's HTTP 400 `Throttling`.
    Throttle,
    /// HTTP 500 `InternalError` (EC2) or `InternalFailure` (Route 53).
    ServerError,
    /// Expired or revoked credentials: EC2's HTTP 401 `AuthFailure`, Route 53's HTTP 403
    /// `InvalidClientTokenId`.
    ExpiredCredentials,
    /// Read the request and never answer: the SDK's attempt timeout has to end it.
    Hang,
}

/// A running stand-in.
pub struct AwsReplay {
    addr: SocketAddr,
    state: Arc<ReplayState>,
}

struct ReplayState {
    responses: Mutex<Responses>,
    failure: Mutex<Option<Failure>>,
    /// Failures for some API actions alone, by action.
    action_failures: Mutex<HashMap<String, Failure>>,
    /// Requests by API action.
    requests: Mutex<HashMap<String, usize>>,
}

/// One HTTP request, as far as the responders need it.
struct Request {
    /// The request target: path and query.
    target: String,
    body: String,
    /// The account and region the request was signed for (see [`Request::signer`]).
    signer: (String, String),
}

impl AwsReplay {
    /// Serves `responses` on 127.0.0.1 at a free port until the process ends.
    pub async fn start(responses: Responses) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ReplayState {
            responses: Mutex::new(responses),
            failure: Mutex::new(None),
            action_failures: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Ok(Self { addr, state })
    }

    /// The `endpoint_url` to give the source.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer every request with `failure` from now on (`None`: data again).
    pub fn fail_with(&self, failure: Option<Failure>) {
        if let Ok(mut slot) = self.state.failure.lock() {
            *slot = failure;
        }
    }

    /// Answer VPC Lattice requests alone with `failure` from now on (`None`: data again).
    pub fn fail_lattice_with(&self, failure: Option<Failure>) {
        for action in ["GetResourceConfiguration", "ListServiceNetworkServiceAssociations"] {
            self.fail_action(action, failure);
        }
    }

    /// Answer requests for API `action` alone with `failure` from now on (`None`: data again).
    pub fn fail_action(&self, action: &str, failure: Option<Failure>) {
        if let Ok(mut failures) = self.state.action_failures.lock() {
            match failure {
                Some(failure) => failures.insert(action.to_owned(), failure),
                None => failures.remove(action),
            };
        }
    }

    /// Replace the recorded responses (an endpoint deleted, say).
    pub fn set_responses(&self, responses: Responses) {
        if let Ok(mut slot) = self.state.responses.lock() {
            *slot = responses;
        }
    }

    /// How many API requests have arrived.
    pub fn requests(&self) -> usize {
        self.state.requests.lock().map_or(0, |counts| counts.values().sum())
    }

    /// How many requests for `action` (`DescribeVpcEndpoints`, `ListResourceRecordSets`, …)
    /// have arrived.
    pub fn requests_for(&self, action: &str) -> usize {
        self.state.requests.lock().map_or(0, |counts| counts.get(action).copied().unwrap_or(0))
    }
}

/// An EventBridge "AWS API Call via CloudTrail" event as JSON text, as it arrives on an SQS
/// queue: the event envelope (EventBridge user guide, "Events from AWS services") around a
/// CloudTrail record (CloudTrail user guide, "CloudTrail record contents"). `request` and
/// `response` are JSON text for `requestParameters` and `responseElements`; `error`, when
/// set, is the call's `errorCode`. The call was made in account 111122223333 on resources of
/// account 222233334444 (`recipientAccountId`).
pub fn cloudtrail_event(source: &str, name: &str, region: &str, request: &str, response: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!(",\"errorCode\":\"{e}\",\"errorMessage\":\"You are not authorized to perform this operation.\"")).unwrap_or_default();
    let service = source.split('.').next().unwrap_or("");
    format!(
        r#"{{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"AWS API Call via CloudTrail","source":"aws.{service}","account":"222233334444","time":"2026-12-05T07:00:00Z","region":"{region}","resources":[],"detail":{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:ops","arn":"arn:aws:sts::111122223333:assumed-role/ops/alice","accountId":"111122223333"}},"eventTime":"2026-12-05T07:00:00Z","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"203.0.113.10","userAgent":"aws-cli/2.15.0","requestParameters":{request},"responseElements":{response},"requestID":"1f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9","eventID":"9b8a7c6d-5e4f-4321-8fed-cba987654321","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"222233334444","eventCategory":"Management"{error}}}}}"#
    )
}

/// Points every AWS source of `config` at a stand-in serving the demo's recordings, with
/// fixed local credentials (nothing leaves the machine).
pub async fn attach(config: &mut Config) -> io::Result<Attached> {
    let replay = AwsReplay::start(Responses::demo()).await?;
    for source in &mut config.sources.vpc_endpoints {
        let source = source.get_mut();
        source.endpoint_url = Some(replay.url());
        source.lattice_endpoint_url = Some(replay.url());
        source.static_credentials = true;
    }
    for source in &mut config.sources.route53 {
        let source = source.get_mut();
        source.endpoint_url = Some(replay.url());
        source.static_credentials = true;
    }
    // Public DNS for the service-network endpoint's names: a second server on loopback,
    // which the demo forwards those domains to.
    let dns_config = Config::parse(DEMO_LATTICE_DNS, "config/demo-aws/lattice/public-dns.toml").map_err(io::Error::other)?;
    let dns = crate::server::start(&dns_config).await.map_err(io::Error::other)?;
    for domain in ["vpc-lattice-svcs.us-east-1.on.aws", "vpc-lattice-rsc.us-east-1.on.aws"] {
        let domain = domain.parse().map_err(io::Error::other)?;
        let rule = ForwardRule { domain, upstreams: vec![Upstream::Addr(dns.addr())], trust_ad: false, from_zone: false };
        config.forward.rules.push(Spanned::new(0..0, rule));
    }
    Ok(Attached { replay, _dns: dns })
}

/// The demo's stand-ins, running: the AWS APIs (what it dereferences to), and public DNS for
/// Lattice's names.
pub struct Attached {
    replay: AwsReplay,
    _dns: crate::server::Server,
}

impl std::ops::Deref for Attached {
    type Target = AwsReplay;

    fn deref(&self) -> &AwsReplay {
        &self.replay
    }
}

/// One keep-alive HTTP/1.1 connection from the SDK.
async fn serve(stream: TcpStream, state: Arc<ReplayState>) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    loop {
        let Ok(Some(request)) = read_request(&mut reader).await else { return };
        if let Ok(mut counts) = state.requests.lock() {
            *counts.entry(request.action().to_owned()).or_default() += 1;
        }
        let failure = state.failure.lock().ok().and_then(|f| *f).or_else(|| state.action_failures.lock().ok()?.get(request.action()).copied());
        if failure == Some(Failure::Hang) {
            // Hold the connection open without a word until the client gives up on it.
            let mut sink = [0u8; 1];
            let _ = reader.read(&mut sink).await;
            return;
        }
        if imds::is_imds(&request.target) {
            let Ok(responses) = state.responses.lock().map(|r| imds::respond(&request.target, &r)) else { return };
            let (status, body, extra) = responses;
            let head = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n", body.len());
            if writer.write_all(head.as_bytes()).await.is_err() || writer.write_all(body.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let (status, xml) = respond(&request, failure, &state);
        // VPC Lattice speaks REST JSON and names an error in a header; EC2 and Route 53, XML.
        let kind = match request.is_lattice() {
            true => {
                let error = lattice_error_type(status, &xml).map(|e| format!("x-amzn-ErrorType: {e}\r\n")).unwrap_or_default();
                format!("application/json\r\n{error}")
            }
            false => "text/xml;charset=UTF-8\r\n".to_owned(),
        };
        let head = format!("HTTP/1.1 {status}\r\nContent-Type: {kind}Content-Length: {}\r\nServer: hubdns-demo-aws\r\n\r\n", xml.len());
        if writer.write_all(head.as_bytes()).await.is_err() || writer.write_all(xml.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one request, or `None` when the client closed the connection.
async fn read_request(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> io::Result<Option<Request>> {
    let mut length = 0usize;
    let mut line = String::new();
    let mut target = None;
    let mut signer = (DEFAULT_ACCOUNT.to_owned(), "us-east-1".to_owned());
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            if target.is_none() {
                continue; // stray CRLF between requests
            }
            break;
        }
        if target.is_none() {
            // The request line: `GET /2013-04-01/hostedzone/Z1 HTTP/1.1`.
            target = Some(header.split(' ').nth(1).unwrap_or("/").to_owned());
            continue;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|_| io::Error::other("bad content-length"))?;
            } else if name.eq_ignore_ascii_case("authorization") {
                signer = Request::signer(value.trim());
            }
        }
    }
    if length > MAX_REQUEST {
        return Err(io::Error::other("request too large"));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    Ok(Some(Request { target: target.unwrap_or_default(), body, signer }))
}

impl Request {
    /// The account and region a SigV4 `Authorization` header was signed for: the region from
    /// the credential scope (`Credential=AKID/date/region/service/aws4_request`), the account
    /// from an access key the stand-in's AssumeRole handed out ([`sts_assume_role`]), else
    /// [`DEFAULT_ACCOUNT`].
    fn signer(authorization: &str) -> (String, String) {
        let scope = authorization.split("Credential=").nth(1).unwrap_or("").split(',').next().unwrap_or("");
        let mut parts = scope.split('/');
        let key = parts.next().unwrap_or("");
        let region = parts.nth(1).filter(|r| !r.is_empty()).unwrap_or("us-east-1");
        let account = key.strip_prefix(ASSUMED_KEY_PREFIX).filter(|a| a.len() == 12).unwrap_or(DEFAULT_ACCOUNT);
        (account.to_owned(), region.to_owned())
    }

    fn is_route53(&self) -> bool {
        route53::is_route53(&self.target)
    }

    fn is_lattice(&self) -> bool {
        lattice::is_lattice(&self.target)
    }

    /// The API action it calls.
    fn action(&self) -> &str {
        if imds::is_imds(&self.target) {
            return imds::action(&self.target);
        }
        if self.is_lattice() {
            return lattice::action(&self.target);
        }
        match self.is_route53() {
            true => route53::action(&self.target),
            false => ec2::action(&self.body),
        }
    }
}

/// The status line and XML for `request`, or for `failure`.
fn respond(request: &Request, failure: Option<Failure>, state: &ReplayState) -> (&'static str, String) {
    let route53 = request.is_route53();
    if request.is_lattice() {
        let (status, json, error) = match failure {
            Some(failure) => lattice::failure(failure),
            None => match state.responses.lock() {
                Ok(responses) => lattice::respond(&request.target, &responses.lattice),
                Err(_) => ("500 Internal Server Error", "{}".to_owned(), Some("InternalServerException")),
            },
        };
        // The error type travels in the body's `__type` as well; `serve` copies it to the header.
        let json = match error {
            Some(error) => json.replacen('{', &format!("{{\"__type\":\"{error}\","), 1),
            None => json,
        };
        return (status, json);
    }
    if let Some(failure) = failure {
        return match route53 {
            true => route53::failure(failure),
            false => ec2::failure(failure),
        };
    }
    let Ok(responses) = state.responses.lock() else {
        return ("500 Internal Server Error", "stand-in state poisoned".to_owned());
    };
    let (status, xml) = match (route53, request.action()) {
        (true, _) => route53::respond(&request.target, &responses.route53),
        (false, "AssumeRole") => sts_assume_role(&request.body),
        (false, action) => ec2::respond(action, &request.body, &responses, &request.signer.0),
    };
    // Recordings may vary by who asks: `{{account}}` and `{{region}}` become the signer's.
    let (account, region) = &request.signer;
    (status, xml.replace("{{account}}", account).replace("{{region}}", region))
}

/// The error type of a VPC Lattice error answer (from its `__type`), for the
/// `x-amzn-ErrorType` header.
fn lattice_error_type(status: &str, json: &str) -> Option<String> {
    if status.starts_with('2') {
        return None;
    }
    let start = json.find("\"__type\":\"")? + "\"__type\":\"".len();
    json[start..].split('"').next().map(str::to_owned)
}

/// The account a request is from when its credentials are not the stand-in's assumed ones.
const DEFAULT_ACCOUNT: &str = "111122223333";

/// Access keys the stand-in's AssumeRole hands out: this prefix, then the role's account.
const ASSUMED_KEY_PREFIX: &str = "ASIAHUBDNSDEMO";

/// STS AssumeRole (Query protocol), shaped like the STS API reference's example: temporary
/// credentials for an hour whose access key names the role's account, so later requests
/// signed with them are answered for that account.
fn sts_assume_role(body: &str) -> (&'static str, String) {
    let role = body.split('&').find_map(|p| p.strip_prefix("RoleArn=")).map(|r| r.replace("%3A", ":").replace("%2F", "/")).unwrap_or_default();
    let Some(account) = role.split(':').nth(4).filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())) else {
        return ("400 Bad Request", format!("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>{role} is not a role ARN</Message></Error><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"));
    };
    let expires = aws_sdk_ec2::primitives::DateTime::from(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .fmt(aws_sdk_ec2::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default();
    let xml = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <AssumedRoleUser><Arn>arn:aws:sts::{account}:assumed-role/hubdns-read/hubdns</Arn><AssumedRoleId>AROA3XFRBF535PLBIFPI4:hubdns</AssumedRoleId></AssumedRoleUser>\
         <Credentials><AccessKeyId>{ASSUMED_KEY_PREFIX}{account}</AccessKeyId><SecretAccessKey>demo-secret</SecretAccessKey>\
         <SessionToken>demo-session-token</SessionToken><Expiration>{expires}</Expiration></Credentials>\
         <PackedPolicySize>6</PackedPolicySize></AssumeRoleResult>\
         <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata></AssumeRoleResponse>"
    );
    ("200 OK", xml)
}
