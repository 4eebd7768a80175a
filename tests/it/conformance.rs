//! The conformance table (`tests/conformance/rows.toml`): every row a question asked of one
//! of a handful of fixtures, and the answer Route 53, the EC2 documentation or an RFC says it
//! must get — never what hubdns happens to answer. Each row names its reference in `cite`.
//!
//! Fixtures are set up once per run, each with its own stub upstream on 127.0.0.x:
//! - `r53`: moto (the real AWS SDK against moto's server) with private hosted zones
//!   (`corp.example`, a nested `sub.corp.example`, zones named after two endpoints' private
//!   DNS names, two zones named `dup.example` in two VPCs, `cfg.example` whose apex name the
//!   config's `[[records]]` also has, `neg.example` with an SOA MINIMUM below its TTL) and
//!   interface endpoints; its phase 1 changes a weight and a TTL in moto, its phase 2 takes
//!   the upstream away;
//! - `static`: `[[records]]` and `[[aliases]]`, and a zone file that does not load
//!   (`down.wild.st.example`, under a wildcard); its phase 1 reloads a changed `[answers]`;
//! - `tags`: endpoints with `hubdns:alias` tags under `alias_tag_domains`, and a Route 53 zone
//!   (`tz.corp.example`) some tags name;
//! - `tags-default`: tags with the key left out (it publishes nothing), `.` and suffixes among them;
//! - `check`: a config file given to `hubdns check`, refused or accepted.
//!
//! The runner runs every row and fails once at the end, listing every failing row with its
//! cite, what was expected and what came back. For every row with a question it also asks
//! the admin listener's `/explain` and checks that its rcode is the one the DNS answer has:
//! there is one answer engine.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification, VpcEndpointType};
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetFailover, RrType, Vpc, VpcRegion,
};
use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType},
};
use hubdns::config::Config;
use serde::Deserialize;

use crate::{
    aws::Moto,
    harness::{HUBDNS, StubUpstream, TestServer, tempdir, udp_exchange},
};

/// The answer every stub upstream gives for an A question it owns.
const STUB_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// An alias target outside every zone (an ELB): the stub answers it.
const ELB: &str = "dualstack.internal-app-1234567890.us-east-1.elb.amazonaws.com.";

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    row: Vec<Row>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: String,
    cite: String,
    /// The issue-14 item the row covers, if any.
    #[serde(default)]
    item: Option<u32>,
    fixture: String,
    /// 0: as set up; 1, 2: after the fixture's first, second change.
    #[serde(default)]
    phase: u8,
    /// Why the row cannot run (reported, never counted as passing).
    #[serde(default)]
    skip: Option<String>,
    #[serde(default)]
    q: Option<Q>,
    #[serde(default)]
    expect: Option<Expect>,
    /// `check` rows: config text appended to a minimal valid file.
    #[serde(default)]
    config: Option<String>,
    /// `check` rows: `refused` or `accepted`.
    #[serde(default)]
    check: Option<String>,
    /// `check` rows: the exit status `hubdns check` must end with (78: EX_CONFIG).
    #[serde(default)]
    exit: Option<i32>,
    /// `check` rows: a zone file written beside the config as `check.zone`.
    #[serde(default)]
    zone: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_edns() -> u16 {
    1232
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Q {
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default = "default_type")]
    qtype: String,
    #[serde(default = "yes")]
    rd: bool,
    #[serde(default)]
    cd: bool,
    #[serde(rename = "do", default)]
    dnssec_ok: bool,
    /// EDNS payload size; 0 sends no OPT record.
    #[serde(default = "default_edns")]
    edns: u16,
    #[serde(default)]
    tcp: bool,
    #[serde(default)]
    opcode: u8,
    /// false: a header with no question section.
    #[serde(default = "yes")]
    question: bool,
    /// Ask this many times (the last answer is checked; `draws` rows check each).
    #[serde(default = "one")]
    repeat: u32,
    /// Ask from this loopback address (the `az` fixture places clients by address).
    #[serde(default)]
    from: Option<std::net::IpAddr>,
}

fn default_type() -> String {
    "A".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    rcode: String,
    #[serde(default)]
    aa: Option<bool>,
    /// The whole answer section, `owner TYPE data` each, as a set.
    #[serde(default)]
    answer: Option<Vec<String>>,
    /// The whole answer section in this order (AZ affinity orders addresses).
    #[serde(default)]
    answer_in_order: Option<Vec<String>>,
    /// The answer section is one of these sets (a routing policy's draw); asked `draws` times.
    #[serde(default)]
    answer_one_of: Option<Vec<Vec<String>>>,
    /// With `answer_one_of`: every alternative must come up over the draws.
    #[serde(default)]
    all_drawn: bool,
    #[serde(default = "one")]
    draws: u32,
    /// RFC 8482 ANY: a non-empty answer, each record either one of these or a HINFO.
    #[serde(default)]
    answer_any_of: Option<Vec<String>>,
    /// The TTL every record of the answer section carries.
    #[serde(default)]
    ttl: Option<u32>,
    /// The answer's RRsets as `owner TYPE` (data not compared: moto's NS, SOA serials).
    #[serde(default)]
    answer_sets: Option<Vec<String>>,
    /// The authority section's RRsets as `owner TYPE`.
    #[serde(default)]
    authority: Option<Vec<String>>,
    /// The authority section's types only (owners that are hubdns's own choice).
    #[serde(default)]
    authority_types: Option<Vec<String>>,
    /// The SOA's MNAME (answer or authority).
    #[serde(default)]
    soa_mname: Option<String>,
    /// The TTL of the SOA record in a negative answer (RFC 2308 §3).
    #[serde(default)]
    soa_ttl: Option<u32>,
    /// The SOA's MINIMUM field.
    #[serde(default)]
    soa_minimum: Option<u32>,
    /// The DO bit of the response's OPT record.
    #[serde(default)]
    do_bit: Option<bool>,
    /// Whether the response has an OPT record at all.
    #[serde(default)]
    opt: Option<bool>,
    #[serde(default)]
    ra: Option<bool>,
    #[serde(default)]
    rd: Option<bool>,
    #[serde(default)]
    cd: Option<bool>,
    /// The number of questions in the response.
    #[serde(default)]
    qdcount: Option<usize>,
    /// The question comes back byte for byte, case included (RFC 4343 §4.1).
    #[serde(default)]
    question_echoed: bool,
    /// `queried`: the stub upstream saw `upstream_name`; `once`: exactly once; `never`.
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    upstream_name: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Comparing answers
// ---------------------------------------------------------------------------------------------

/// TXT character-strings as RFC 1035 §5.1 presentation: printable ASCII as is (`"` and `\`
/// escaped), every other octet as `\DDD` in decimal.
fn txt_presentation(strings: &[Box<[u8]>]) -> String {
    strings
        .iter()
        .map(|s| {
            let mut out = String::from("\"");
            for &b in s.iter() {
                match b {
                    b'"' | b'\\' => {
                        out.push('\\');
                        out.push(b as char);
                    }
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\{b:03}")),
                }
            }
            out.push('"');
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Type 99, SPF (RFC 7208 §3.1: TXT's format), which hickory does not name.
const SPF: u16 = 99;

/// The character-strings of an RDATA (RFC 1035 §3.3: length octet, then the octets).
fn character_strings(mut bytes: &[u8]) -> Vec<Box<[u8]>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        let len = usize::from(len).min(rest.len());
        out.push(rest[..len].into());
        bytes = &rest[len..];
    }
    out
}

/// One record as `owner TYPE data`, owner lowercased; names in the data lowercased too.
pub(crate) fn canonical(record: &Record) -> String {
    let owner = record.name.to_ascii().to_ascii_lowercase();
    if let RData::Unknown { code, rdata } = &record.data
        && u16::from(*code) == SPF
    {
        return format!("{owner} SPF {}", txt_presentation(&character_strings(&rdata.anything)));
    }
    let data = match &record.data {
        RData::TXT(txt) => txt_presentation(&txt.txt_data),
        RData::CAA(caa) => caa.to_string(),
        RData::HINFO(h) => format!("{:?} {:?}", String::from_utf8_lossy(&h.cpu), String::from_utf8_lossy(&h.os)),
        other => other.to_string().to_ascii_lowercase(),
    };
    format!("{owner} {} {data}", record.record_type())
}

/// An expected line normalised as [`canonical`] writes records: owner and type as written
/// (owner lowercased), data lowercased except TXT and CAA.
fn normalise(line: &str) -> String {
    let mut parts = line.trim().splitn(3, char::is_whitespace);
    let owner = parts.next().unwrap_or_default().to_ascii_lowercase();
    let rtype = parts.next().unwrap_or_default().to_ascii_uppercase();
    let data = parts.next().unwrap_or_default().trim();
    let data = match rtype.as_str() {
        "TXT" | "CAA" | "HINFO" | "SPF" => data.to_owned(),
        // Presentation formats with more than one spelling (RFC 3403, 4255, 6698, 9460): the
        // expected text is read as RDATA and written as `canonical` writes what came back.
        "NAPTR" | "SSHFP" | "TLSA" | "SVCB" | "HTTPS" => match RData::try_from_str(RecordType::from_str_ok(&rtype), data) {
            Ok(rdata) => rdata.to_string().to_ascii_lowercase(),
            Err(e) => format!("(expected {rtype} data {data:?} does not parse: {e})"),
        },
        _ => data.to_ascii_lowercase(),
    };
    format!("{owner} {rtype} {data}")
}

fn rrsets(records: &[Record]) -> BTreeSet<String> {
    records.iter().map(|r| format!("{} {}", r.name.to_ascii().to_ascii_lowercase(), r.record_type())).collect()
}

fn answer_set(message: &Message) -> BTreeSet<String> {
    message.answers.iter().map(canonical).collect()
}

/// Lines with `{var}` replaced; a variable holding several values makes one line per value.
fn expand(lines: &[String], vars: &HashMap<String, Vec<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        let mut done = false;
        for (key, values) in vars {
            let pattern = format!("{{{key}}}");
            if line.contains(&pattern) {
                out.extend(values.iter().map(|v| line.replace(&pattern, v)));
                done = true;
                break;
            }
        }
        if !done {
            out.push(line.clone());
        }
    }
    // A line may hold two variables (an owner and an address): expand until none is left.
    if out.iter().any(|l| vars.keys().any(|k| l.contains(&format!("{{{k}}}")))) && out.len() < 1000 {
        return expand(&out, vars);
    }
    out
}

fn expand_one(text: &str, vars: &HashMap<String, Vec<String>>) -> String {
    expand(&[text.to_owned()], vars).into_iter().next().unwrap_or_default()
}

fn show(set: &BTreeSet<String>) -> String {
    if set.is_empty() { "(none)".into() } else { set.iter().cloned().collect::<Vec<_>>().join(" | ") }
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("{other:?}").to_ascii_uppercase(),
    }
}

fn soa_of(message: &Message) -> Option<(&Record, &hickory_proto::rr::rdata::SOA)> {
    message.answers.iter().chain(message.authorities.iter()).find_map(|r| match &r.data {
        RData::SOA(soa) => Some((r, soa)),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Asking
// ---------------------------------------------------------------------------------------------

/// The wire bytes of `q`, and the id they carry.
fn build(q: &Q, vars: &HashMap<String, Vec<String>>) -> Result<(Vec<u8>, Option<Message>), String> {
    let id: u16 = fastrand::u16(..);
    if !q.question || q.opcode != 0 {
        // By hand: hickory will not encode an unknown opcode.
        let mut bytes = id.to_be_bytes().to_vec();
        bytes.push((q.opcode & 0x0f) << 3 | u8::from(q.rd));
        bytes.push(if q.cd { 0x10 } else { 0 });
        let question = q.question.then(|| {
            let mut wire = Vec::new();
            let name = Name::from_ascii(expand_one(&q.name, vars)).expect("row name");
            for label in name.iter() {
                wire.push(label.len() as u8);
                wire.extend_from_slice(label);
            }
            wire.push(0);
            wire.extend_from_slice(&u16::from(RecordType::from_str_ok(&q.qtype)).to_be_bytes());
            wire.extend_from_slice(&1u16.to_be_bytes());
            wire
        });
        bytes.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(&u16::from(q.edns > 0).to_be_bytes());
        bytes.extend(question.unwrap_or_default());
        if q.edns > 0 {
            bytes.extend_from_slice(&[0, 0, 41]);
            bytes.extend_from_slice(&q.edns.to_be_bytes());
            bytes.extend_from_slice(&[0, 0, if q.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        return Ok((bytes, None));
    }
    let name = expand_one(&q.name, vars);
    let name = Name::from_ascii(&name).map_err(|e| format!("row name {name:?}: {e}"))?;
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = q.rd;
    message.metadata.checking_disabled = q.cd;
    message.add_query(Query::query(name, RecordType::from_str_ok(&q.qtype)));
    if q.edns > 0 {
        let mut edns = Edns::new();
        edns.set_max_payload(q.edns);
        edns.set_dnssec_ok(q.dnssec_ok);
        message.edns = Some(edns);
    }
    let bytes = message.to_vec().map_err(|e| format!("encode: {e}"))?;
    Ok((bytes, Some(message)))
}

trait FromStrOk {
    fn from_str_ok(text: &str) -> RecordType;
}

impl FromStrOk for RecordType {
    fn from_str_ok(text: &str) -> RecordType {
        use std::str::FromStr;
        if text.eq_ignore_ascii_case("SPF") {
            return RecordType::from(SPF);
        }
        RecordType::from_str(&text.to_ascii_uppercase()).unwrap_or_else(|_| panic!("row type {text}"))
    }
}

/// Sends the bytes over UDP or TCP; the parsed answer and its raw bytes.
pub(crate) async fn exchange(server: SocketAddr, bytes: &[u8], tcp: bool) -> Result<(Message, Vec<u8>), String> {
    exchange_from(server, bytes, tcp, None).await
}

/// [`exchange`] from the source address `from`.
async fn exchange_from(server: SocketAddr, bytes: &[u8], tcp: bool, from: Option<std::net::IpAddr>) -> Result<(Message, Vec<u8>), String> {
    let raw = if tcp {
        let socket = if server.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
        let socket = socket.map_err(|e| format!("TCP socket: {e}"))?;
        if let Some(ip) = from {
            socket.bind(SocketAddr::new(ip, 0)).map_err(|e| format!("TCP bind {ip}: {e}"))?;
        }
        let mut stream = socket.connect(server).await.map_err(|e| format!("TCP connect: {e}"))?;
        crate::harness::tcp_exchange(&mut stream, bytes).await.map_err(|e| format!("TCP: {e}"))?
    } else {
        match udp_exchange(server, bytes, from).await {
            Some(raw) => raw,
            // One retry: a lost datagram on a loaded machine is not a DNS answer.
            None => udp_exchange(server, bytes, from).await.ok_or("no answer over UDP")?,
        }
    };
    let message = Message::from_vec(&raw).map_err(|e| format!("answer does not parse: {e}"))?;
    Ok((message, raw))
}

/// `/explain`'s rcode and `answered_by` for `name`/`qtype`.
fn explain_rcode(admin: SocketAddr, name: &str, qtype: &str) -> Result<(Option<String>, String), String> {
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = hubdns::admin::probe(admin, &format!("/explain?name={encoded}&type={qtype}"), Duration::from_secs(5))
        .map_err(|e| format!("/explain: {e}"))?;
    if status != 200 {
        return Err(format!("/explain answered {status}: {body}"));
    }
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("/explain JSON: {e}: {body}"))?;
    let by = json.get("answered_by").and_then(|r| r.as_str()).unwrap_or_default().to_owned();
    Ok((json.get("rcode").and_then(|r| r.as_str()).map(str::to_owned), by))
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A running fixture: hubdns, its admin listener, its stub upstream, and the values (endpoint
/// addresses, DNS names) rows refer to as `{var}`.
struct Fixture {
    hub: TestServer,
    admin: SocketAddr,
    stub: StubUpstream,
    vars: HashMap<String, Vec<String>>,
    /// What phase 1 and 2 change (`r53`: moto's zone id for the weight change).
    zone_id: Option<String>,
    config_text: String,
    /// The AWS stand-in the fixture reads (`lattice`), kept running while its rows are asked.
    _aws: Option<hubdns::demo::AwsReplay>,
}

fn config_head(stub: SocketAddr) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [forward]\nupstreams = [\"{stub}\"]\ntimeout_ms = 300\nattempts = 1\ndeadline_ms = 1000\nserve_stale_secs = 0\n\n\
         [refresh]\ninterval_secs = 1\nmax_backoff_secs = 1\n\n"
    )
}

/// Parses `text` (errors returned, not panicked: a key not implemented yet fails the fixture's
/// rows, not the run) and gives its AWS sources the fixed local credentials.
fn parse_local(text: &str) -> Result<Config, String> {
    // As `hubdns serve` reads it: a zone file that does not load is that zone down.
    let mut config = Config::parse_serving(text, "conformance.toml", &[]).map_err(|e| format!("config refused: {e}"))?;
    for source in &mut config.sources.vpc_endpoints {
        source.get_mut().static_credentials = true;
    }
    for source in &mut config.sources.route53 {
        source.get_mut().static_credentials = true;
    }
    Ok(config)
}

async fn start_hub(text: &str) -> Result<(TestServer, SocketAddr), String> {
    let config = parse_local(text)?;
    let server = hubdns::server::start(&config).await.map_err(|e| format!("hubdns does not start: {e}"))?;
    let addr = server.addr();
    let admin = server.admin_addr().ok_or("no admin listener")?;
    Ok((TestServer { server, addr }, admin))
}

/// Every AWS source's fetch count, from `/status.json`.
fn source_runs(admin: SocketAddr) -> Vec<u64> {
    let Ok((200, body)) = hubdns::admin::probe(admin, "/status.json", Duration::from_secs(5)) else { return Vec::new() };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    json.get("sources")
        .and_then(|s| s.as_array())
        .map(|sources| sources.iter().map(|s| s.get("runs").and_then(|r| r.as_u64()).unwrap_or(0)).collect())
        .unwrap_or_default()
}

/// Waits until every source has fetched `more` more times than now (state, not time: the
/// refresh interval is 1 s, the wait gives up after 30 s and the rows then say what is wrong).
async fn wait_runs(admin: SocketAddr, more: u64) {
    let before = source_runs(admin);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let now = source_runs(admin);
        if !now.is_empty() && now.len() == before.len() && now.iter().zip(&before).all(|(n, b)| *n >= b + more) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(hub: &TestServer) {
    let started = Instant::now();
    while !hub.server.is_ready() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rrset(name: &str, rtype: &str, ttl: i64, values: &[&str]) -> aws_sdk_route53::types::builders::ResourceRecordSetBuilder {
    let mut set = ResourceRecordSet::builder().name(name).r#type(RrType::from(rtype)).ttl(ttl);
    for v in values {
        set = set.resource_records(ResourceRecord::builder().value(*v).build().expect("value"));
    }
    set
}

fn alias(name: &str, rtype: &str, zone: &str, target: &str, evaluate: bool) -> aws_sdk_route53::types::builders::ResourceRecordSetBuilder {
    ResourceRecordSet::builder().name(name).r#type(RrType::from(rtype)).alias_target(
        AliasTarget::builder().hosted_zone_id(zone).dns_name(target).evaluate_target_health(evaluate).build().expect("alias"),
    )
}

fn upsert(set: aws_sdk_route53::types::builders::ResourceRecordSetBuilder) -> Change {
    Change::builder().action(ChangeAction::Upsert).resource_record_set(set.build().expect("record set")).build().expect("change")
}

async fn change(route53: &aws_sdk_route53::Client, zone: &str, changes: Vec<Change>) -> Result<(), String> {
    route53
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(ChangeBatch::builder().set_changes(Some(changes)).build().expect("batch"))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("ChangeResourceRecordSets in {zone}: {}", aws_sdk_route53::error::DisplayErrorContext(e)))
}

/// A private zone associated with `vpc`; its id without `/hostedzone/`, and its SOA set
/// (TTL 900, MINIMUM 86400).
async fn zone(route53: &aws_sdk_route53::Client, name: &str, vpc: &str, mname: &str) -> Result<String, String> {
    zone_with_minimum(route53, name, vpc, mname, 86400).await
}

/// [`zone`] with the SOA's MINIMUM given (its TTL stays 900).
async fn zone_with_minimum(route53: &aws_sdk_route53::Client, name: &str, vpc: &str, mname: &str, minimum: u32) -> Result<String, String> {
    let created = route53
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("conformance-{name}-{vpc}-{}", fastrand::u64(..)))
        .vpc(Vpc::builder().vpc_id(vpc).vpc_region(VpcRegion::UsEast1).build())
        .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).build())
        .send()
        .await
        .map_err(|e| format!("CreateHostedZone {name}: {}", aws_sdk_route53::error::DisplayErrorContext(e)))?;
    let id = created.hosted_zone().map(|z| z.id().trim_start_matches("/hostedzone/").to_owned()).ok_or("no zone id")?;
    // moto writes the SOA value as a Python dict's text; put a real one, as AWS has.
    let soa = format!("{mname} hostmaster.{name} 1 7200 900 1209600 {minimum}");
    change(route53, &id, vec![upsert(rrset(name, "SOA", 900, &[&soa]))]).await?;
    Ok(id)
}

async fn vpc(ec2: &aws_sdk_ec2::Client, second: u8) -> Result<(String, Vec<String>), String> {
    let err = |e: aws_sdk_ec2::error::SdkError<_, _>| format!("EC2: {}", aws_sdk_ec2::error::DisplayErrorContext(e));
    let created = ec2.create_vpc().cidr_block(format!("10.{second}.0.0/16")).send().await.map_err(err)?;
    let vpc = created.vpc().and_then(|v| v.vpc_id()).ok_or("no vpc id")?.to_owned();
    let mut subnets = Vec::new();
    for (third, az) in [(1, "us-east-1a"), (2, "us-east-1b")] {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.{second}.{third}.0/24"))
            .availability_zone(az)
            .send()
            .await
            .map_err(|e| format!("EC2 subnet: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
        subnets.push(subnet.subnet().and_then(|s| s.subnet_id()).ok_or("no subnet id")?.to_owned());
    }
    Ok((vpc, subnets))
}

/// An interface endpoint: its ENI addresses (sorted) and its regional DNS name (with final dot).
async fn endpoint(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
    subnets: &[String],
    service: &str,
    private_dns: bool,
    tag: Option<&str>,
) -> Result<(Vec<String>, String), String> {
    let mut request = ec2
        .create_vpc_endpoint()
        .vpc_id(vpc)
        .vpc_endpoint_type(VpcEndpointType::Interface)
        .service_name(service)
        .set_subnet_ids(Some(subnets.to_vec()))
        .private_dns_enabled(private_dns);
    if let Some(tag) = tag {
        request = request.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::VpcEndpoint)
                .tags(Tag::builder().key("hubdns:alias").value(tag).build())
                .build(),
        );
    }
    let created = request.send().await.map_err(|e| format!("CreateVpcEndpoint: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
    let endpoint = created.vpc_endpoint().ok_or("no endpoint")?;
    let enis = ec2
        .describe_network_interfaces()
        .set_network_interface_ids(Some(endpoint.network_interface_ids().to_vec()))
        .send()
        .await
        .map_err(|e| format!("DescribeNetworkInterfaces: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
    let mut ips: Vec<String> = enis.network_interfaces().iter().filter_map(|e| e.private_ip_address().map(str::to_owned)).collect();
    ips.sort();
    let dns = endpoint.dns_entries().first().and_then(|d| d.dns_name()).ok_or("no DNS entry")?;
    Ok((ips, format!("{}.", dns.trim_end_matches('.'))))
}

/// `r53`: the Route 53 and endpoint fixture.
async fn setup_r53(moto: &Moto) -> Result<Fixture, String> {
    let stub = StubUpstream::start_with(
        "127.0.0.71",
        STUB_IP,
        &[ELB, "host.lab.corp.example.", "lab.corp.example.", "occluded.lab.corp.example.", "github.com."],
    )
    .await;
    let ec2 = moto.ec2();
    let route53 = moto.route53();
    let (vpc_a, subnets_a) = vpc(&ec2, 10).await?;
    let (vpc_b, _) = vpc(&ec2, 11).await?;
    let (sm_ips, sm_dns) =
        endpoint(&ec2, &vpc_a, &subnets_a, "com.amazonaws.us-east-1.secretsmanager", true, Some("tagged.corp.example")).await?;
    let (_kms_ips, _kms_dns) = endpoint(&ec2, &vpc_a, &subnets_a, "com.amazonaws.us-east-1.kms", false, None).await?;
    // Private DNS on: the endpoint source owns ssm.us-east-1.amazonaws.com (a zone below has a
    // broken alias there, made further down).
    let (ssm_ips, _ssm_dns) = endpoint(&ec2, &vpc_a, &subnets_a, "com.amazonaws.us-east-1.ssm", true, None).await?;

    // Two zones named dup.example: the one of the second VPC created first.
    let dup_b = zone(&route53, "dup.example.", &vpc_b, "ns-b.dup.example.").await?;
    change(
        &route53,
        &dup_b,
        vec![upsert(rrset("both.dup.example.", "A", 60, &["10.30.2.2"])), upsert(rrset("only-b.dup.example.", "A", 60, &["10.30.2.1"]))],
    )
    .await?;
    let dup_a = zone(&route53, "dup.example.", &vpc_a, "ns-a.dup.example.").await?;
    change(
        &route53,
        &dup_a,
        vec![upsert(rrset("both.dup.example.", "A", 60, &["10.30.1.2"])), upsert(rrset("only-a.dup.example.", "A", 60, &["10.30.1.1"]))],
    )
    .await?;

    let corp = zone(&route53, "corp.example.", &vpc_a, "ns-a.awsdns.example.").await?;
    let c = |name: &str| format!("{name}corp.example.");
    let weighted = |name: &str, id: &str, weight: i64, ip: &str| upsert(rrset(name, "A", 60, &[ip]).set_identifier(id).weight(weight));
    let failover = |name: &str, id: &str, role: ResourceRecordSetFailover, ip: &str| {
        upsert(rrset(name, "A", 60, &[ip]).set_identifier(id).failover(role))
    };
    let multi = |id: &str, ip: &str| upsert(rrset(&c("mv."), "A", 60, &[ip]).set_identifier(id).multi_value_answer(true));
    let changes = vec![
        upsert(rrset(&c(""), "TXT", 300, &["\"v=spf1 -all\""])),
        upsert(rrset(&c(""), "MX", 300, &["10 mail.corp.example."])),
        upsert(rrset(&c(""), "CAA", 300, &["0 issue \"amazon.com\""])),
        upsert(alias(&c(""), "A", &corp, &c("api."), false)),
        upsert(rrset(&c("api."), "A", 60, &["10.20.0.10", "10.20.0.11"])),
        upsert(rrset(&c("api."), "AAAA", 60, &["fd00::10"])),
        upsert(rrset(&c("www."), "CNAME", 300, &["api.corp.example."])),
        upsert(alias(&c("both."), "A", &corp, &c("api."), false)),
        upsert(alias(&c("both."), "AAAA", &corp, &c("api."), false)),
        upsert(alias(&c("mixed."), "A", &corp, &c("api."), false)),
        upsert(rrset(&c("mixed."), "TXT", 300, &["\"mixed-txt\""])),
        upsert(rrset(&c("mixed."), "MX", 300, &["10 mail.corp.example."])),
        upsert(alias(&c("alias2."), "A", &corp, &c("both."), false)),
        upsert(alias(&c("internal-api."), "A", "Z7HUB22UULQXV", &sm_dns, false)),
        weighted(&c("w."), "blue", 3, "10.20.1.1"),
        weighted(&c("w."), "green", 1, "10.20.1.2"),
        upsert(alias(&c("wa."), "A", &corp, &c("w."), false)),
        weighted(&c("zero."), "a", 0, "10.20.3.1"),
        weighted(&c("zero."), "b", 0, "10.20.3.2"),
        failover(&c("db."), "db-primary", ResourceRecordSetFailover::Primary, "10.20.2.1"),
        failover(&c("db."), "db-secondary", ResourceRecordSetFailover::Secondary, "10.20.2.2"),
        upsert(
            alias(&c("fo."), "A", &corp, &c("nothing."), true).set_identifier("fo-primary").failover(ResourceRecordSetFailover::Primary),
        ),
        failover(&c("fo."), "fo-secondary", ResourceRecordSetFailover::Secondary, "10.20.4.2"),
        upsert(rrset(&c("nothing."), "TXT", 300, &["\"no addresses here\""])),
        multi("m1", "10.20.5.1"),
        multi("m2", "10.20.5.2"),
        multi("m3", "10.20.5.3"),
        upsert(rrset(&c("*.apps."), "A", 300, &["10.20.9.9"])),
        upsert(rrset(&c("*.x.y.apps."), "A", 300, &["10.20.9.10"])),
        upsert(rrset(&c("b.ent."), "A", 300, &["10.20.6.1"])),
        upsert(rrset(&c("lab."), "NS", 300, &["ns1.lab-dns.example.", "ns2.lab-dns.example."])),
        upsert(rrset(&c("ext."), "CNAME", 300, &["cached.fwd.test."])),
        upsert(rrset(&c("loop1."), "CNAME", 300, &["loop2.corp.example."])),
        upsert(rrset(&c("loop2."), "CNAME", 300, &["loop1.corp.example."])),
        upsert(rrset(&c("self."), "CNAME", 300, &["self.corp.example."])),
        upsert(rrset(&c("esc."), "TXT", 300, &["\"\\101\""])),
        upsert(rrset(&c("cafe."), "TXT", 300, &["\"caf\\303\\251\""])),
        upsert(rrset(&c("multi."), "TXT", 300, &["\"part one\" \"part two\""])),
        upsert(alias(&c("app."), "A", "Z35SXDOTRQ7X7K", ELB, true)),
        upsert(rrset(&c("app."), "TXT", 300, &["\"app-txt\""])),
        upsert(rrset(&c("secrets."), "CNAME", 300, &["secretsmanager.us-east-1.amazonaws.com."])),
        upsert(rrset(&c("_ldap._tcp."), "SRV", 300, &["0 100 389 dc1.corp.example."])),
        upsert(rrset(&c("dc1."), "A", 300, &["10.20.3.5"])),
        upsert(rrset(&c("y.sub."), "A", 300, &["10.20.7.7"])),
        upsert(rrset(&c("ch9."), "A", 300, &["10.20.14.9"])),
        // Phase 1 changes only its TTL (300 → 120).
        upsert(rrset(&c("ttl."), "A", 300, &["10.20.16.1"])),
        // Data in the parent below the lab. cut: occluded (RFC 1034 §4.2.1).
        upsert(rrset(&c("occluded.lab."), "A", 300, &["10.20.15.1"])),
        // Weighted aliases, weights 1 and 0, to two different targets.
        upsert(alias(&c("wal."), "A", &corp, &c("wt1."), false).set_identifier("one").weight(1)),
        upsert(alias(&c("wal."), "A", &corp, &c("wt0."), false).set_identifier("zero").weight(0)),
        upsert(rrset(&c("wt1."), "A", 300, &["10.20.17.1"])),
        upsert(rrset(&c("wt0."), "A", 300, &["10.20.17.2"])),
        // The other types Route 53 supports.
        upsert(rrset(&c("naptr."), "NAPTR", 300, &[r#"100 10 "U" "E2U+sip" "!^.*$!sip:info@corp.example!" ."#])),
        upsert(rrset(&c("sshfp."), "SSHFP", 300, &["1 1 123456789abcdef67890123456789abcdef67890"])),
        upsert(rrset(
            &c("_443._tcp.tlsa."),
            "TLSA",
            300,
            &["0 0 1 d2abde240d7cd3ee6b4b28c54df034b97983a1d16e8a410e4561cb106618e971"],
        )),
        upsert(rrset(&c("https."), "HTTPS", 300, &["1 . alpn=h2,h3"])),
        upsert(rrset(&c("svcb."), "SVCB", 300, &["1 svc-host.corp.example. port=8443"])),
        upsert(rrset(&c("spf."), "SPF", 300, &["\"v=spf1 ip4:10.20.0.0/16 -all\""])),
        // An alias of type TXT to a TXT record set in the zone.
        upsert(alias(&c("txt-alias."), "TXT", &corp, &c("txt-target."), false)),
        upsert(rrset(&c("txt-target."), "TXT", 300, &["\"target text\""])),
    ];
    // A chain of nine CNAMEs, ch0 → ch1 → … → ch9 (BIND 9.18 answers chains of up to 11).
    let mut changes = changes;
    for i in 0..9 {
        changes.push(upsert(rrset(&c(&format!("ch{i}.")), "CNAME", 300, &[&format!("ch{}.corp.example.", i + 1)])));
    }
    change(&route53, &corp, changes).await?;

    let sub = zone(&route53, "sub.corp.example.", &vpc_a, "ns-sub.awsdns.example.").await?;
    change(&route53, &sub, vec![upsert(rrset("x.sub.corp.example.", "A", 300, &["10.20.8.1"]))]).await?;

    // The peered-VPC fix: a zone named after the service, an alias at its apex to the endpoint.
    let peered = zone(&route53, "secretsmanager.us-east-1.amazonaws.com.", &vpc_a, "ns-sm.awsdns.example.").await?;
    change(
        &route53,
        &peered,
        vec![
            upsert(alias("secretsmanager.us-east-1.amazonaws.com.", "A", "Z7HUB22UULQXV", &sm_dns, false)),
            upsert(rrset("secretsmanager.us-east-1.amazonaws.com.", "TXT", 300, &["\"peered\""])),
        ],
    )
    .await?;

    // A zone at the ssm endpoint's private DNS name: an A alias at its apex to a name that does
    // not exist, beside a TXT record.
    let ssm_zone = zone(&route53, "ssm.us-east-1.amazonaws.com.", &vpc_a, "ns-ssm.awsdns.example.").await?;
    change(
        &route53,
        &ssm_zone,
        vec![
            upsert(alias("ssm.us-east-1.amazonaws.com.", "A", &ssm_zone, "gone.ssm.us-east-1.amazonaws.com.", false)),
            upsert(rrset("ssm.us-east-1.amazonaws.com.", "TXT", 300, &["\"ssm-txt\""])),
        ],
    )
    .await?;

    // A small zone whose apex name the config's [[records]] also has (a TXT).
    let cfg = zone(&route53, "cfg.example.", &vpc_a, "ns-cfg.awsdns.example.").await?;
    change(
        &route53,
        &cfg,
        vec![upsert(rrset("cfg.example.", "TXT", 300, &["\"zone-txt\""])), upsert(rrset("host.cfg.example.", "A", 300, &["10.60.0.1"]))],
    )
    .await?;

    // A zone whose SOA MINIMUM (60) is below the SOA's TTL (900).
    let neg = zone_with_minimum(&route53, "neg.example.", &vpc_a, "ns-neg.awsdns.example.", 60).await?;
    change(&route53, &neg, vec![upsert(rrset("host.neg.example.", "A", 300, &["10.70.0.1"]))]).await?;

    let text = config_head(stub.addr)
        + "[[records]]\nname = \"cfg.example\"\ntype = \"TXT\"\nvalues = [\"from-config\"]\n\n"
        + &format!(
            "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nvpc_ids = [\"{vpc_a}\"]\nmax_attempts = 1\napi_timeout_secs = 5\n\n\
             [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"{vpc_a}\", \"{vpc_b}\"]\nendpoint_url = \"{url}\"\nmax_attempts = 1\napi_timeout_secs = 5\nreread_secs = 0\n",
            url = moto.url
        );
    let (hub, admin) = start_hub(&text).await?;
    wait_ready(&hub).await;
    wait_runs(admin, 2).await;
    let vars = HashMap::from([("sm".to_owned(), sm_ips), ("sm_dns".to_owned(), vec![sm_dns]), ("ssm".to_owned(), ssm_ips)]);
    Ok(Fixture { hub, admin, stub, vars, zone_id: Some(corp), config_text: text, _aws: None })
}

const STATIC_RECORDS: &str = r#"
[[records]]
name = "host.st.example"
type = "A"
values = ["10.40.0.1"]

[[records]]
name = "txt.st.example"
type = "TXT"
values = ["hello"]

[[aliases]]
name = "legacy.st.example"
addresses = ["10.40.0.4", "fd00::4"]

[[aliases]]
name = "a2.st.example"
target = "host.st.example"

[[records]]
name = "*.wild.st.example"
type = "A"
values = ["10.40.0.9"]

[[records]]
name = "*.w14.st.example"
type = "A"
values = ["10.40.1.4"]

[[records]]
name = "*.w14.st.example"
type = "AAAA"
values = ["fd00::14"]

[[records]]
name = "*.w14.st.example"
type = "TXT"
values = ["wild text"]

[[records]]
name = "*.w14.st.example"
type = "MX"
values = ["10 mx.st.example."]

[[records]]
name = "*.w14.st.example"
type = "SRV"
values = ["0 5 443 srv.st.example."]

[[records]]
name = "*.w14.st.example"
type = "CAA"
values = ["0 issue \"amazon.com\""]
"#;

async fn setup_static() -> Result<Fixture, String> {
    let stub = StubUpstream::start("127.0.0.72", STUB_IP).await;
    // A zone file that does not load, under the `*.wild.st.example` wildcard: its names are
    // the zone's, answered SERVFAIL as BIND answers a zone not loaded, not by the wildcard.
    let dir = tempdir();
    let down = dir.join("down.zone");
    std::fs::write(&down, "$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\nwww A 10.0.0.2 10.0.0.3\n").map_err(|e| e.to_string())?;
    let zones = format!("\n[[zones]]\nfile = \"{}\"\norigin = \"down.wild.st.example\"\n", down.display());
    let text = config_head(stub.addr) + STATIC_RECORDS + &zones;
    let (hub, admin) = start_hub(&text).await?;
    Ok(Fixture { hub, admin, stub, vars: HashMap::new(), zone_id: None, config_text: text, _aws: None })
}

/// `lattice`: the demo's resource and service-network endpoints (EC2 associations and VPC
/// Lattice, recorded in config/demo-aws/) from the stand-in — moto has neither — with
/// `unverified_domains = ["svc.example"]`; the stub upstream plays public DNS for the
/// service's association name.
async fn setup_lattice() -> Result<Fixture, String> {
    let snsa = "vpce-0f3e5d7c9b1a20022-snsa-07b06c66e01bdd93f.7d67968.vpc-lattice-svcs.us-east-1.on.aws.";
    let stub = StubUpstream::start_with("127.0.0.75", STUB_IP, &[snsa]).await;
    let aws = hubdns::demo::AwsReplay::start(hubdns::demo::Responses::demo()).await.map_err(|e| e.to_string())?;
    let text = config_head(stub.addr)
        + &format!(
            "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nlattice_endpoint_url = \"{url}\"\nmax_attempts = 1\napi_timeout_secs = 5\nunverified_domains = [\"svc.example\"]\n",
            url = aws.url()
        );
    let (hub, admin) = start_hub(&text).await?;
    let mut ready = hub.server.readiness();
    tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r)).await.map_err(|_| "not ready in 30 s")?.map_err(|e| e.to_string())?;
    Ok(Fixture { hub, admin, stub, vars: HashMap::new(), zone_id: None, config_text: text, _aws: Some(aws) })
}

/// `az`: the demo's endpoints and private zone from the AWS stand-in (AZ IDs on the ENIs,
/// AZ-affinity sets in the zone, which moto has neither of), with `[az]` placing loopback
/// clients: 127.0.0.1 in use1-az1, .2 in use1-az2, .4 in use1-az4 (us-east-1); .3 a forwarder;
/// `internal-api.service.com` (an alias of the provider's endpoint) with affinity `only`.
async fn setup_az() -> Result<Fixture, String> {
    let stub = StubUpstream::start("127.0.0.76", STUB_IP).await;
    let aws = hubdns::demo::AwsReplay::start(hubdns::demo::Responses::demo()).await.map_err(|e| e.to_string())?;
    let client = |cidr: &str, az: &str| format!("[[az.clients]]\ncidr = \"{cidr}\"\naz_id = \"{az}\"\nregion = \"us-east-1\"\n\n");
    let text = config_head(stub.addr)
        + &format!(
            "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_attempts = 1\napi_timeout_secs = 5\n\n\
             [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\nendpoint_url = \"{url}\"\nmax_attempts = 1\napi_timeout_secs = 5\n\n\
             [[aliases]]\nname = \"internal-api.service.com\"\ntarget = \"vpce-0123456789abcdef0\"\n\n\
             [az]\naffinity = \"prefer\"\n\n{}{}{}[[az.forwarders]]\ncidr = \"127.0.0.3/32\"\n\n\
             [[az.names]]\nname = \"internal-api.service.com\"\naffinity = \"only\"\n",
            client("127.0.0.1/32", "use1-az1"),
            client("127.0.0.2/32", "use1-az2"),
            client("127.0.0.4/32", "use1-az4"),
            url = aws.url()
        );
    let (hub, admin) = start_hub(&text).await?;
    let mut ready = hub.server.readiness();
    tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r)).await.map_err(|_| "not ready in 30 s")?.map_err(|e| e.to_string())?;
    Ok(Fixture { hub, admin, stub, vars: HashMap::new(), zone_id: None, config_text: text, _aws: Some(aws) })
}

/// `tags` (`alias_tag_domains` set) and `tags-default` (left out).
async fn setup_tags(moto: &Moto, allowed: bool) -> Result<Fixture, String> {
    let stub = StubUpstream::start_with(if allowed { "127.0.0.73" } else { "127.0.0.74" }, STUB_IP, &["github.com.", "ok.corp.example."]).await;
    let ec2 = moto.ec2();
    let (vpc_id, subnets) = vpc(&ec2, if allowed { 12 } else { 13 }).await?;
    let svc = "com.amazonaws.us-east-1.ssm";
    let (ok_ips, _) = endpoint(&ec2, &vpc_id, &subnets, svc, false, Some("ok.corp.example,.")).await?;
    endpoint(&ec2, &vpc_id, &subnets, svc, false, Some("github.com")).await?;
    endpoint(&ec2, &vpc_id, &subnets, svc, false, Some("com")).await?;
    endpoint(&ec2, &vpc_id, &subnets, svc, false, Some("co.uk")).await?;
    let (deep_ips, _) = endpoint(&ec2, &vpc_id, &subnets, svc, false, Some("deep.ok2.corp.example")).await?;
    let key = if allowed { "alias_tag_domains = [\"corp.example\"]\n" } else { "" };
    let mut text = config_head(stub.addr)
        + &format!(
            "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nvpc_ids = [\"{vpc_id}\"]\nmax_attempts = 1\napi_timeout_secs = 5\n{key}",
            moto.url
        );
    let mut vars = HashMap::from([("ok".to_owned(), ok_ips), ("deep".to_owned(), deep_ips)]);
    if allowed {
        // A Route 53 zone under an allowed domain, and a tag naming its apex, one of its names
        // and a name it does not have.
        let route53 = moto.route53();
        let tz = zone(&route53, "tz.corp.example.", &vpc_id, "ns-tz.awsdns.example.").await?;
        change(
            &route53,
            &tz,
            vec![upsert(rrset("tz.corp.example.", "TXT", 300, &["\"tz-apex\""])), upsert(rrset("www.tz.corp.example.", "A", 300, &["10.50.0.1"]))],
        )
        .await?;
        let (tz_ips, _) =
            endpoint(&ec2, &vpc_id, &subnets, svc, false, Some("tz.corp.example,www.tz.corp.example,new.tz.corp.example")).await?;
        vars.insert("tz".to_owned(), tz_ips);
        text += &format!(
            "\n[[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"{vpc_id}\"]\nendpoint_url = \"{}\"\nmax_attempts = 1\napi_timeout_secs = 5\nreread_secs = 0\n",
            moto.url
        );
    }
    let (hub, admin) = start_hub(&text).await?;
    wait_ready(&hub).await;
    wait_runs(admin, 2).await;
    Ok(Fixture { hub, admin, stub, vars, zone_id: None, config_text: text, _aws: None })
}

/// Applies `fixture`'s change before `phase`.
async fn change_phase(name: &str, fixture: &Fixture, moto: &Moto, phase: u8) -> Result<(), String> {
    match (name, phase) {
        ("r53", 1) => {
            // Only the weight changes (3 → 0): same record count, same values; and only a TTL
            // (300 → 120), same data.
            let zone = fixture.zone_id.as_deref().ok_or("no zone")?;
            let set = rrset("w.corp.example.", "A", 60, &["10.20.1.1"]).set_identifier("blue").weight(0);
            let ttl = rrset("ttl.corp.example.", "A", 120, &["10.20.16.1"]);
            change(&moto.route53(), zone, vec![upsert(set), upsert(ttl)]).await?;
            wait_runs(fixture.admin, 3).await;
            Ok(())
        }
        ("r53", 2) => {
            // The upstream goes away: the ELB alias cannot be resolved at the next refreshes.
            fixture.stub.pause(true);
            wait_runs(fixture.admin, 3).await;
            Ok(())
        }
        ("static", 1) => {
            let text = fixture.config_text.clone()
                + "\n[answers]\nnegative_ttl = 17\nsoa_mname = \"ns1.hub.example.\"\nsoa_rname = \"dns.hub.example.\"\n";
            let config = parse_local(&text)?;
            fixture.hub.server.reload(config).await.map_err(|e| format!("reload refused: {e}"))?;
            Ok(())
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Checking one row
// ---------------------------------------------------------------------------------------------

async fn run_row(row: &Row, fixture: &Fixture) -> Vec<String> {
    let mut problems = Vec::new();
    let (Some(q), Some(expect)) = (&row.q, &row.expect) else {
        return vec!["row has no q or no expect".into()];
    };
    let vars = &fixture.vars;
    let upstream_name = expect.upstream_name.clone().unwrap_or_else(|| expand_one(&q.name, vars)).to_ascii_lowercase();
    let upstream_before = fixture.stub.queries_for(&upstream_name);
    let draws = if expect.answer_one_of.is_some() { expect.draws.max(1) } else { q.repeat.max(1) };
    let mut last: Option<(Message, Vec<u8>)> = None;
    let mut drawn: BTreeSet<usize> = BTreeSet::new();
    for _ in 0..draws {
        let (bytes, sent) = match build(q, vars) {
            Ok(b) => b,
            Err(e) => return vec![e],
        };
        let (answer, raw) = match exchange_from(fixture.hub.addr, &bytes, q.tcp, q.from).await {
            Ok(a) => a,
            Err(e) => return vec![e],
        };
        if let Some(sent) = &sent
            && answer.metadata.id != sent.metadata.id
        {
            problems.push("answer id differs from the query's".into());
        }
        if let Some(sets) = &expect.answer_one_of {
            let got = answer_set(&answer);
            let expected: Vec<BTreeSet<String>> =
                sets.iter().map(|s| expand(s, vars).iter().map(|l| normalise(l)).collect()).collect();
            match expected.iter().position(|e| *e == got) {
                Some(i) => {
                    drawn.insert(i);
                }
                None => problems.push(format!(
                    "answer {} is none of {}",
                    show(&got),
                    expected.iter().map(|e| format!("[{}]", show(e))).collect::<Vec<_>>().join(" or ")
                )),
            }
        }
        last = Some((answer, raw));
    }
    let (answer, raw) = last.expect("asked at least once");
    if let Some(sets) = &expect.answer_one_of
        && expect.all_drawn
        && drawn.len() < sets.len()
    {
        problems.push(format!("over {draws} draws only alternatives {drawn:?} of {} came up", sets.len()));
    }
    problems.dedup();

    let rcode = rcode_name(answer.metadata.response_code);
    if rcode != expect.rcode {
        problems.push(format!("rcode {rcode}, expected {}", expect.rcode));
    }
    if let Some(aa) = expect.aa
        && answer.metadata.authoritative != aa
    {
        problems.push(format!("AA={}, expected AA={}", u8::from(answer.metadata.authoritative), u8::from(aa)));
    }
    for (what, want, got) in [
        ("RA", expect.ra, answer.metadata.recursion_available),
        ("RD", expect.rd, answer.metadata.recursion_desired),
        ("CD", expect.cd, answer.metadata.checking_disabled),
    ] {
        if let Some(want) = want
            && want != got
        {
            problems.push(format!("{what}={}, expected {what}={}", u8::from(got), u8::from(want)));
        }
    }
    if let Some(n) = expect.qdcount {
        let got = raw.get(4..6).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))).unwrap_or(0);
        if got != n {
            problems.push(format!("QDCOUNT {got}, expected {n}"));
        }
    }
    if expect.question_echoed {
        let asked = Name::from_ascii(expand_one(&q.name, vars)).map(|n| n.to_ascii()).unwrap_or_default();
        let got = answer.queries.first().map(|q| q.name().to_ascii()).unwrap_or_default();
        if asked != got {
            problems.push(format!("question came back as {got:?}, asked {asked:?}"));
        }
    }
    if let Some(lines) = &expect.answer_in_order {
        let want: Vec<String> = expand(lines, vars).iter().map(|l| normalise(l)).collect();
        let got: Vec<String> = answer.answers.iter().map(canonical).collect();
        if want != got {
            problems.push(format!("answer in order [{}], expected [{}]", got.join(", "), want.join(", ")));
        }
    }
    if let Some(lines) = &expect.answer {
        let want: BTreeSet<String> = expand(lines, vars).iter().map(|l| normalise(l)).collect();
        let got = answer_set(&answer);
        if want != got {
            problems.push(format!("answer [{}], expected [{}]", show(&got), show(&want)));
        }
    }
    if let Some(ttl) = expect.ttl {
        let ttls: BTreeSet<u32> = answer.answers.iter().map(|r| r.ttl).collect();
        if ttls.len() != 1 || !ttls.contains(&ttl) {
            problems.push(format!("answer TTLs {ttls:?}, expected {ttl}"));
        }
    }
    if let Some(lines) = &expect.answer_any_of {
        let allowed: BTreeSet<String> = expand(lines, vars).iter().map(|l| normalise(l)).collect();
        let got = answer_set(&answer);
        let bad: BTreeSet<String> =
            got.iter().filter(|r| !allowed.contains(*r) && !r.split_whitespace().nth(1).is_some_and(|t| t == "HINFO")).cloned().collect();
        if got.is_empty() || !bad.is_empty() {
            problems.push(format!("ANY answer [{}]: expected a non-empty part of [{}] (or an RFC 8482 HINFO)", show(&got), show(&allowed)));
        }
    }
    if let Some(sets) = &expect.answer_sets {
        let want: BTreeSet<String> = expand(sets, vars).iter().map(|l| normalise(l).trim_end().to_owned()).collect();
        let got = rrsets(&answer.answers);
        if want != got {
            problems.push(format!("answer RRsets [{}], expected [{}]", show(&got), show(&want)));
        }
    }
    if let Some(sets) = &expect.authority {
        let want: BTreeSet<String> = expand(sets, vars).iter().map(|l| normalise(l).trim_end().to_owned()).collect();
        let got = rrsets(&answer.authorities);
        if want != got {
            problems.push(format!("authority [{}], expected [{}]", show(&got), show(&want)));
        }
    }
    if let Some(types) = &expect.authority_types {
        let want: BTreeSet<String> = types.iter().map(|t| t.to_ascii_uppercase()).collect();
        let got: BTreeSet<String> = answer.authorities.iter().map(|r| r.record_type().to_string()).collect();
        if want != got {
            problems.push(format!("authority types [{}], expected [{}]", show(&got), show(&want)));
        }
    }
    let soa = soa_of(&answer);
    if let Some(mname) = &expect.soa_mname {
        let got = soa.map(|(_, s)| s.mname.to_ascii().to_ascii_lowercase()).unwrap_or_else(|| "(no SOA)".into());
        if got != mname.to_ascii_lowercase() {
            problems.push(format!("SOA MNAME {got}, expected {mname}"));
        }
    }
    if let Some(ttl) = expect.soa_ttl {
        match soa {
            Some((r, _)) if r.ttl == ttl => {}
            Some((r, _)) => problems.push(format!("SOA TTL {}, expected {ttl}", r.ttl)),
            None => problems.push(format!("no SOA, expected one with TTL {ttl}")),
        }
    }
    if let Some(minimum) = expect.soa_minimum {
        match soa {
            Some((_, s)) if s.minimum == minimum => {}
            Some((_, s)) => problems.push(format!("SOA MINIMUM {}, expected {minimum}", s.minimum)),
            None => problems.push(format!("no SOA, expected one with MINIMUM {minimum}")),
        }
    }
    if let Some(opt) = expect.opt
        && answer.edns.is_some() != opt
    {
        problems.push(format!("OPT record {}, expected {}", answer.edns.is_some(), opt));
    }
    if let Some(want) = expect.do_bit {
        let got = answer.edns.as_ref().map(|e| e.flags().dnssec_ok);
        if got != Some(want) {
            problems.push(format!("DO bit {got:?} (None: no OPT), expected {want}"));
        }
    }
    if let Some(rule) = &expect.upstream {
        let seen = fixture.stub.queries_for(&upstream_name) - upstream_before;
        let ok = match rule.as_str() {
            "queried" => seen > 0,
            "once" => seen == 1,
            "never" => seen == 0,
            other => {
                problems.push(format!("unknown upstream rule {other}"));
                true
            }
        };
        if !ok {
            problems.push(format!("the upstream saw {upstream_name} {seen} times during the row, expected {rule}"));
        }
    }
    // One answer engine: /explain tells the rcode the handler gives. /explain takes a type by
    // its name, so a type hickory cannot name (SPF) is not asked there.
    if q.question && q.opcode == 0 && !matches!(RecordType::from_str_ok(&q.qtype), RecordType::Unknown(_)) {
        let name = expand_one(&q.name, vars);
        match explain_rcode(fixture.admin, &name, &q.qtype.to_ascii_uppercase()) {
            Ok((explained, by)) => {
                match explained {
                    Some(explained) if explained != rcode => {
                        problems.push(format!("/explain says {explained}, the DNS answer was {rcode}"))
                    }
                    None if answer.metadata.authoritative => {
                        problems.push(format!("/explain gives no rcode for an owned answer ({rcode})"))
                    }
                    _ => {}
                }
                // Who answers: hubdns's own data is authoritative, a forwarded answer is not.
                let aa = answer.metadata.authoritative;
                if by == "upstream" && aa {
                    problems.push("/explain says answered_by upstream, the DNS answer has AA=1".into());
                }
                if by == "hubdns" && !aa && matches!(rcode.as_str(), "NOERROR" | "NXDOMAIN") && answer.answers.first().is_none_or(|r| r.record_type() != RecordType::CNAME) {
                    problems.push("/explain says answered_by hubdns, the DNS answer has AA=0".into());
                }
            }
            Err(e) => problems.push(e),
        }
    }
    problems
}

/// `check` rows: `hubdns check` on a file with `config` appended to a minimal valid one.
fn run_check(row: &Row) -> Vec<String> {
    let (Some(config), Some(want)) = (&row.config, &row.check) else {
        return vec!["check row needs config and check".into()];
    };
    let dir = tempdir();
    if let Some(zone) = &row.zone {
        std::fs::write(dir.join("check.zone"), zone).expect("write zone file");
    }
    let path = dir.join("check.toml");
    let text = format!("[server]\nlisten = [\"127.0.0.1:0\"]\n\n[forward]\nupstreams = [\"127.0.0.1:9\"]\n\n{config}\n");
    std::fs::write(&path, text).expect("write config");
    let output = std::process::Command::new(HUBDNS).args(["check", "--config"]).arg(&path).output().expect("hubdns check runs");
    let got = if output.status.success() { "accepted" } else { "refused" };
    let mut problems = Vec::new();
    if got != want {
        problems.push(format!(
            "hubdns check {got} the file, expected {want}: {}",
            String::from_utf8_lossy(&output.stderr).lines().next().unwrap_or("")
        ));
    }
    if let Some(exit) = row.exit
        && output.status.code() != Some(exit)
    {
        problems.push(format!(
            "hubdns check exited {:?}, expected {exit}; stdout: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).lines().filter(|l| !l.trim().is_empty()).last().unwrap_or("")
        ));
    }
    problems
}

fn load_table() -> Vec<Row> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/rows.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let table: Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut ids = BTreeSet::new();
    for row in &table.row {
        assert!(ids.insert(row.id.clone()), "row id {} is used twice", row.id);
        assert!(!row.cite.trim().is_empty(), "row {} has no cite", row.id);
    }
    table.row
}

#[test]
fn the_table_is_well_formed() {
    let rows = load_table();
    assert!(rows.len() >= 80, "{} rows", rows.len());
    let fixtures = ["r53", "static", "tags", "tags-default", "lattice", "az", "check"];
    for row in &rows {
        assert!(fixtures.contains(&row.fixture.as_str()) || row.skip.is_some(), "row {}: unknown fixture {}", row.id, row.fixture);
        if row.skip.is_none() && row.fixture != "check" {
            let (Some(q), Some(_)) = (&row.q, &row.expect) else { panic!("row {} needs q and expect", row.id) };
            let _ = RecordType::from_str_ok(&q.qtype);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let rows = load_table();
    let started = Instant::now();
    let moto = Moto::start();
    let mut failures: Vec<String> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut passed = 0usize;
    let mut by_fixture: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in &rows {
        match &row.skip {
            Some(reason) => skipped.push(format!("{} ({}): {reason}", row.id, row.cite)),
            None => by_fixture.entry(row.fixture.as_str()).or_default().push(row),
        }
    }
    let mut fail = |row: &Row, problems: Vec<String>| {
        failures.push(format!(
            "{} [{}{}] {}\n    cite: {}\n    {}",
            row.id,
            row.fixture,
            row.item.map(|i| format!(", item {i}")).unwrap_or_default(),
            row.q.as_ref().map(|q| format!("{} {}", q.name, q.qtype)).unwrap_or_default(),
            row.cite,
            problems.join("\n    ")
        ))
    };
    for (name, rows) in by_fixture {
        if name == "check" {
            for row in rows {
                let problems = run_check(row);
                if problems.is_empty() { passed += 1 } else { fail(row, problems) }
            }
            continue;
        }
        let setup_started = Instant::now();
        let fixture = match name {
            "r53" => setup_r53(&moto).await,
            "static" => setup_static().await,
            "tags" => setup_tags(&moto, true).await,
            "tags-default" => setup_tags(&moto, false).await,
            "lattice" => setup_lattice().await,
            "az" => setup_az().await,
            other => Err(format!("unknown fixture {other}")),
        };
        eprintln!("conformance: fixture {name} set up in {:?}", setup_started.elapsed());
        let fixture = match fixture {
            Ok(f) => f,
            Err(e) => {
                for row in rows {
                    fail(row, vec![format!("fixture {name} could not be set up: {e}")]);
                }
                continue;
            }
        };
        let phases: BTreeSet<u8> = rows.iter().map(|r| r.phase).collect();
        for phase in phases {
            if phase > 0
                && let Err(e) = change_phase(name, &fixture, &moto, phase).await
            {
                for row in rows.iter().filter(|r| r.phase == phase) {
                    fail(row, vec![format!("fixture {name}: change before phase {phase} failed: {e}")]);
                }
                continue;
            }
            for row in rows.iter().filter(|r| r.phase == phase) {
                let problems = run_row(row, &fixture).await;
                if problems.is_empty() { passed += 1 } else { fail(row, problems) }
            }
        }
        fixture.stub.pause(false);
        fixture.hub.server.stop().await;
    }
    eprintln!(
        "conformance: {} rows, {passed} passed, {} failed, {} skipped, in {:?}",
        rows.len(),
        failures.len(),
        skipped.len(),
        started.elapsed()
    );
    for s in &skipped {
        eprintln!("conformance: skipped {s}");
    }
    assert!(failures.is_empty(), "{} of {} conformance rows fail:\n\n{}\n", failures.len(), rows.len(), failures.join("\n\n"));
}
