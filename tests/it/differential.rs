//! The differential run: hubdns and BIND 9 (Debian's `named`) serve the same zones, get the
//! same generated queries, and must give the same answers.
//!
//! - (a) the demo's `corp.example` (the recorded Route 53 data in config/demo-aws/route53/,
//!   served to hubdns by `hubdns::demo::AwsReplay`), written by hand below as a BIND zone file
//!   with Route 53's aliases flattened to the records they answer with;
//! - (b) `gen.example`, a zone with every type and shape hubdns serves, created in moto through
//!   the AWS SDK for hubdns and written as a zone file for BIND from the same table;
//! - (c) the same zone as one zone file that both servers load (hubdns through `[[zones]]`),
//!   with `$ORIGIN`, `$TTL`, parentheses, blank owners and `$INCLUDE` with and without an
//!   origin, and a delegation with glue: `glued`, whose name server is a third BIND on
//!   127.0.0.1:53 (glue has no port). Both follow it to the glue address: BIND with
//!   `forwarders { };` on the zone, hubdns by the forward route the delegation becomes.
//!
//! BIND runs as the VPC resolver of the hub would: recursion on, the zones primary, every
//! other name forwarded (`forward only`) to the upstream hubdns forwards to, no DNSSEC
//! validation, `minimal-responses yes` (Route 53 adds no NS to positive answers). That
//! upstream is a third server, BIND authoritative for the root zone, so forwarded names get
//! real answers (an NXDOMAIN's SOA encloses the name) from a real server. Each
//! query goes to both with the same flags; rcode, flags, question, answer RRsets (as sets,
//! TTLs aside), authority types and owners, and the OPT record's presence and DO bit are
//! compared. Only these differences are allowed, each for a stated reason:
//! - RA=1 on hubdns (it always offers recursion);
//! - REFUSED from hubdns for RD=0 on a name it does not own (it is no cache to snoop on);
//! - hubdns's own SOA (MNAME `hubdns.invalid.`) for owned names outside a loaded zone: the
//!   authority SOA's owner may differ;
//! - RFC 8482 minimal ANY: at an owned name hubdns answers one of BIND's RRsets; for a
//!   forwarded name each resolver gives what it holds (one answer is part of the other);
//! - no additional-section data (the additional section is not compared);
//! - RD=0 and a CNAME that leaves the zone: hubdns follows it on through its owned names
//!   (RFC 1034 §4.3.2 step 3a), where BIND stops at its zone's edge; and it gives no root
//!   referral after a CNAME out of its names.
//!
//! Route 53's weighted records are one draw per query: their names are compared as "hubdns
//! answers one of the weighted sets, BIND all of them" (BIND has no weights). Any other
//! difference fails the run, listed by kind with an example query each. The queries come
//! from a fixed seed, so every run asks the same ones.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet, RrType, Vpc, VpcRegion,
};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, RecordType},
};
use hubdns::demo::{AwsReplay, Responses};

use crate::{
    aws::{Moto, local_config, start},
    conformance::{canonical, exchange},
    harness::{Running, tempdir},
};

/// The seed of the generated queries.
const SEED: u64 = 14;

/// The SOA MNAME hubdns puts in negative answers for names it owns outside a loaded zone.
const OWN_SOA_MNAME: &str = "hubdns.invalid.";

// ---------------------------------------------------------------------------------------------
// The zones
// ---------------------------------------------------------------------------------------------

/// (a) corp.example as Route 53 answers it, from config/demo-aws/route53/ListResourceRecordSets.xml:
/// - `api` is weighted blue 90 / green 10: BIND holds both (compared as a draw, see [`draws`]);
/// - `db` is failover: the primary answers (its health check is not evaluated);
/// - `internal-api` is an A alias to the partner endpoint's regional name: that endpoint's ENI
///   addresses (config/demo-aws/DescribeNetworkInterfaces.xml, 10.10.1.77 and 10.10.2.78);
/// - `www` is an A alias to `api`: the same weighted draw, under `www`'s name.
const CORP_ZONE: &str = r#"$TTL 300
@ 172800 IN NS ns-1536.awsdns-00.co.uk.
@ 172800 IN NS ns-0.awsdns-00.com.
@ 172800 IN NS ns-1024.awsdns-00.org.
@ 172800 IN NS ns-512.awsdns-00.net.
@ 900 IN SOA ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400
@ 300 IN TXT "hub VPC private zone, served to spokes and on-prem by hubdns"
*.apps 300 IN A 10.20.9.9
api 60 IN A 10.20.1.10
api 60 IN A 10.20.1.11
db 60 IN A 10.20.2.10
dc1 300 IN A 10.20.3.5
internal-api 60 IN A 10.10.1.77
internal-api 60 IN A 10.10.2.78
mail 300 IN MX 10 dc1.corp.example.
secrets 300 IN CNAME secretsmanager.us-east-1.amazonaws.com.
_ldap._tcp 300 IN SRV 0 100 389 dc1.corp.example.
www 60 IN A 10.20.1.10
www 60 IN A 10.20.1.11
"#;

/// The Secrets Manager endpoint's private DNS name (DescribeVpcEndpointServices), which
/// `secrets.corp.example` points at: the endpoint's ENIs (10.10.1.25, 10.10.2.41). hubdns owns
/// it outside any loaded zone (its own SOA); for BIND it is a small zone of its own, as AWS's
/// managed private zone for the endpoint is.
const SM_ZONE: &str = "$TTL 60\n@ IN SOA ns.secretsmanager.invalid. hostmaster.invalid. 1 7200 900 1209600 60\n@ IN NS ns.invalid.\n\
                       @ IN A 10.10.1.25\n@ IN A 10.10.2.41\n";

/// What the upstream of both servers serves: the whole namespace as one authoritative root
/// zone, so a forwarded name gets a real answer (NXDOMAIN with the root's SOA, which encloses
/// every name) from a real server.
const UPSTREAM_ROOT_ZONE: &str = "$TTL 300\n. IN SOA a.root.test. hostmaster.root.test. 1 7200 900 1209600 300\n\
                                  . IN NS a.root.test.\na.root.test. IN A 127.0.0.1\n\
                                  www.fwd.test. IN A 192.0.2.1\ntarget.fwd.test. IN A 192.0.2.1\n\
                                  target.fwd.test. IN TXT \"upstream text\"\nalias.fwd.test. IN CNAME target.fwd.test.\n";

/// The zone delegated out of gen.example (`sub`), served by the upstream: a name below the
/// cut is answered by its own zone, whoever asks.
const UPSTREAM_SUB_ZONE: &str = "$TTL 300\n@ IN SOA ns1.sub-dns.example. hostmaster.sub.gen.example. 1 7200 900 1209600 300\n\
                                 @ IN NS ns1.sub-dns.example.\n@ IN NS ns2.sub-dns.example.\nhost IN A 192.0.2.7\n";

/// One record set of the generated zone: owner (relative to the zone, `@` the apex), type,
/// values in presentation format. TXT values are raw bytes, written per target.
struct Gen {
    owner: &'static str,
    rtype: &'static str,
    values: Vec<GenValue>,
}

enum GenValue {
    Text(String),
    /// TXT character-strings as bytes: Route 53 writes `\ooo` octal, BIND `\DDD` decimal.
    Txt(Vec<Vec<u8>>),
}

fn txt(strings: &[&[u8]]) -> GenValue {
    GenValue::Txt(strings.iter().map(|s| s.to_vec()).collect())
}

fn v(text: &str) -> GenValue {
    GenValue::Text(text.to_owned())
}

/// (b) every type and shape hubdns serves.
fn gen_zone() -> Vec<Gen> {
    let mut sets = vec![
        Gen { owner: "@", rtype: "A", values: vec![v("10.50.0.1")] },
        Gen { owner: "@", rtype: "AAAA", values: vec![v("fd00:50::1")] },
        Gen { owner: "@", rtype: "TXT", values: vec![txt(&[b"v=spf1 -all"]), txt(&[b"apex second"])] },
        Gen { owner: "@", rtype: "MX", values: vec![v("10 mx1.gen.example."), v("20 mx2.gen.example.")] },
        Gen { owner: "@", rtype: "CAA", values: vec![v("0 issue \"amazon.com\""), v("0 iodef \"mailto:sec@gen.example\"")] },
        Gen { owner: "mx1", rtype: "A", values: vec![v("10.50.0.25")] },
        Gen { owner: "mx2", rtype: "A", values: vec![v("10.50.0.26")] },
        Gen { owner: "dual", rtype: "A", values: vec![v("10.50.1.1"), v("10.50.1.2")] },
        Gen { owner: "dual", rtype: "AAAA", values: vec![v("fd00:50::11"), v("fd00:50::12")] },
        Gen { owner: "dual", rtype: "TXT", values: vec![txt(&[b"dual"])] },
        Gen { owner: "v6only", rtype: "AAAA", values: vec![v("fd00:50::66")] },
        Gen { owner: "esc", rtype: "TXT", values: vec![txt(&[b"A"]), txt(&["caf\u{e9}".as_bytes()]), txt(&[b"quote\"back\\slash", b"two"])] },
        Gen { owner: "long", rtype: "TXT", values: vec![txt(&[&[b'x'; 255][..], &[b'y'; 100][..]])] },
        Gen { owner: "c1", rtype: "CNAME", values: vec![v("dual.gen.example.")] },
        Gen { owner: "c2", rtype: "CNAME", values: vec![v("c1.gen.example.")] },
        Gen { owner: "c3", rtype: "CNAME", values: vec![v("c2.gen.example.")] },
        Gen { owner: "cext", rtype: "CNAME", values: vec![v("target.fwd.test.")] },
        Gen { owner: "cnx", rtype: "CNAME", values: vec![v("nothing-here.gen.example.")] },
        Gen { owner: "cwild", rtype: "CNAME", values: vec![v("host.w.gen.example.")] },
        Gen { owner: "_sip._tcp", rtype: "SRV", values: vec![v("10 60 5060 dual.gen.example."), v("20 40 5061 mx1.gen.example.")] },
        Gen { owner: "ptr", rtype: "PTR", values: vec![v("dual.gen.example.")] },
        Gen { owner: "*.w", rtype: "A", values: vec![v("10.50.9.1")] },
        Gen { owner: "*.w", rtype: "TXT", values: vec![txt(&[b"wild"])] },
        Gen { owner: "*.w", rtype: "MX", values: vec![v("5 mx1.gen.example.")] },
        Gen { owner: "exact.w", rtype: "A", values: vec![v("10.50.9.2")] },
        Gen { owner: "*.d2.d1", rtype: "A", values: vec![v("10.50.9.3")] },
        Gen { owner: "*.d2.d1", rtype: "AAAA", values: vec![v("fd00:50::93")] },
        Gen { owner: "a.b.c.ent", rtype: "A", values: vec![v("10.50.7.1")] },
        Gen { owner: "x.ent", rtype: "TXT", values: vec![txt(&[b"beside the ENT"])] },
        Gen { owner: "sub", rtype: "NS", values: vec![v("ns1.sub-dns.example."), v("ns2.sub-dns.example.")] },
        Gen { owner: "mixed", rtype: "A", values: vec![v("10.50.3.1")] },
        Gen { owner: "mixed", rtype: "TXT", values: vec![txt(&[b"mixed"])] },
        Gen { owner: "mixed", rtype: "MX", values: vec![v("10 mx1.gen.example.")] },
        Gen { owner: "mixed", rtype: "CAA", values: vec![v("0 issuewild \";\"")] },
        Gen { owner: "mixed", rtype: "SRV", values: vec![v("0 0 443 mixed.gen.example.")] },
    ];
    // Hosts, to make the zone less tiny.
    const HOSTS: [&str; 8] = ["h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7"];
    for (i, host) in HOSTS.iter().enumerate() {
        sets.push(Gen { owner: host, rtype: "A", values: vec![v(&format!("10.50.4.{i}"))] });
    }
    sets
}

fn absolute(owner: &str, zone: &str) -> String {
    if owner == "@" { zone.to_owned() } else { format!("{owner}.{zone}") }
}

fn txt_wire(strings: &[Vec<u8>], octal: bool) -> String {
    strings
        .iter()
        .map(|s| {
            let mut out = String::from("\"");
            for &b in s {
                match b {
                    b'"' | b'\\' => {
                        out.push('\\');
                        out.push(b as char);
                    }
                    0x20..=0x7e => out.push(b as char),
                    _ if octal => out.push_str(&format!("\\{b:03o}")),
                    _ => out.push_str(&format!("\\{b:03}")),
                }
            }
            out.push('"');
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn value_text(value: &GenValue, octal: bool) -> String {
    match value {
        GenValue::Text(t) => t.clone(),
        GenValue::Txt(strings) => txt_wire(strings, octal),
    }
}

/// The generated zone as a BIND zone file.
fn gen_zone_file(zone: &str) -> String {
    let mut out = format!(
        "$TTL 300\n@ 900 IN SOA ns-gen.awsdns.example. hostmaster.{zone} 1 7200 900 1209600 60\n@ 172800 IN NS ns-1.awsdns-00.example.\n"
    );
    for set in gen_zone() {
        for value in &set.values {
            out.push_str(&format!("{} 300 IN {} {}\n", set.owner, set.rtype, value_text(value, false)));
        }
    }
    out
}

/// The generated zone file cut in three for (c): the `h*` hosts (for an `$INCLUDE`), the SOA
/// and NS head, and the rest, with a blank owner and parentheses written in.
fn split_for_includes(text: &str) -> (String, String, String) {
    let (mut hosts, mut head, mut rest) = (String::new(), String::new(), String::new());
    for line in text.lines() {
        if line.starts_with('h') && line.as_bytes().get(1).is_some_and(u8::is_ascii_digit) {
            hosts.push_str(line);
            hosts.push('\n');
        } else if line.contains(" SOA ") {
            head.push_str(&line.replace(" 1 7200 900 1209600 60", " (\n        1 7200 900 ; serial refresh retry\n        1209600 60 )"));
            head.push('\n');
        } else if line.starts_with('$') || line.contains(" NS ns-1") {
            head.push_str(line);
            head.push('\n');
        } else if let Some(same_owner) = line.strip_prefix("dual ").filter(|l| l.contains(" AAAA ")) {
            rest.push_str(&format!("\t{same_owner}\n"));
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    (hosts, head, rest)
}

async fn create_gen_zone(moto: &Moto, zone: &str) -> String {
    let ec2 = moto.ec2();
    let vpc = ec2.create_vpc().cidr_block("10.50.0.0/16").send().await.expect("create vpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_owned();
    let route53 = moto.route53();
    let created = route53
        .create_hosted_zone()
        .name(zone)
        .caller_reference("differential-gen")
        .vpc(Vpc::builder().vpc_id(&vpc).vpc_region(VpcRegion::UsEast1).build())
        .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).build())
        .send()
        .await
        .expect("create zone");
    let id = created.hosted_zone().expect("zone").id().trim_start_matches("/hostedzone/").to_owned();
    let set = |name: &str, rtype: &str, ttl: i64, values: &[String]| {
        let mut b = ResourceRecordSet::builder().name(name).r#type(RrType::from(rtype)).ttl(ttl);
        for value in values {
            b = b.resource_records(ResourceRecord::builder().value(value).build().expect("value"));
        }
        Change::builder().action(ChangeAction::Upsert).resource_record_set(b.build().expect("set")).build().expect("change")
    };
    let mut changes = vec![
        set(zone, "SOA", 900, &[format!("ns-gen.awsdns.example. hostmaster.{zone} 1 7200 900 1209600 60")]),
        set(zone, "NS", 172800, &["ns-1.awsdns-00.example.".to_owned()]),
    ];
    for g in gen_zone() {
        // Route 53 writes `*` as \052 in names.
        let owner = absolute(g.owner, zone).replace('*', "\\052");
        let values: Vec<String> = g.values.iter().map(|v| value_text(v, true)).collect();
        changes.push(set(&owner, g.rtype, 300, &values));
    }
    route53
        .change_resource_record_sets()
        .hosted_zone_id(&id)
        .change_batch(ChangeBatch::builder().set_changes(Some(changes)).build().expect("batch"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("records: {}", aws_sdk_route53::error::DisplayErrorContext(e)));
    vpc
}

// ---------------------------------------------------------------------------------------------
// BIND
// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// `named` on 127.0.0.1 (BIND listens only on addresses an interface carries), serving
/// `zones` (name, zone file text) and forwarding everything else to `upstream`; with no
/// upstream, an authoritative-only server (the upstream of both servers under test).
pub(crate) fn start_bind(zones: &[(&str, String)], upstream: Option<SocketAddr>) -> (Running, SocketAddr) {
    start_bind_with(zones, upstream, free_port(), "")
}

/// [`start_bind`] on `port`, with `zone_options` in every zone statement.
fn start_bind_with(zones: &[(&str, String)], upstream: Option<SocketAddr>, port: u16, zone_options: &str) -> (Running, SocketAddr) {
    let (child, addr, log) = launch_bind(zones, upstream, port, zone_options);
    assert!(!log.contains("not loaded due to errors"), "a zone did not load in BIND:\n{log}");
    (child, addr)
}

/// [`start_bind`] where some zones are meant not to load: with BIND's log once it serves.
pub(crate) fn start_bind_with_faults(zones: &[(&str, String)], upstream: Option<SocketAddr>) -> (Running, SocketAddr, String) {
    launch_bind(zones, upstream, free_port(), "")
}

/// `named` started as [`start_bind_with`] says, and its log once it answers.
fn launch_bind(zones: &[(&str, String)], upstream: Option<SocketAddr>, port: u16, zone_options: &str) -> (Running, SocketAddr, String) {
    let named = ["/usr/sbin/named", "/usr/bin/named", "/sbin/named"]
        .iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("named is not installed: apt-get install bind9 (scripts/test does)"));
    let dir = tempdir();
    let d = dir.display();
    let resolving = match upstream {
        Some(up) => format!(
            "  recursion yes;\n  allow-recursion {{ any; }};\n  forward only;\n  forwarders {{ {} port {}; }};\n",
            up.ip(),
            up.port()
        ),
        None => "  recursion no;\n".to_owned(),
    };
    let mut conf = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n\
         \x20 allow-query {{ any; }};\n  dnssec-validation no;\n  notify no;\n\
         \x20 minimal-responses yes;\n  empty-zones-enable no;\n{resolving}}};\ncontrols {{ }};\n"
    );
    for (name, text) in zones {
        let file = dir.join(format!("{}zone", if *name == "." { "root." } else { name }));
        std::fs::write(&file, text).expect("zone file");
        conf.push_str(&format!("zone \"{name}\" {{ type primary; file \"{}\";{zone_options} }};\n", file.display()));
    }
    std::fs::write(dir.join("named.conf"), conf).expect("named.conf");
    let log = std::fs::File::create(dir.join("named.log")).expect("log");
    let child = Command::new(named)
        .args(["-g", "-n", "1", "-u", "root", "-c"])
        .arg(dir.join("named.conf"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("named starts");
    let child = Running(child);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    // Ready once it answers over TCP for a zone it loaded.
    while std::net::TcpStream::connect(addr).is_err() {
        let log = std::fs::read_to_string(dir.join("named.log")).unwrap_or_default();
        assert!(started.elapsed() < Duration::from_secs(20), "named did not start:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("named.log")).unwrap_or_default();
    (child, addr, log)
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Ask {
    name: String,
    qtype: RecordType,
    rd: bool,
    cd: bool,
    dnssec_ok: bool,
    edns: Option<u16>,
    tcp: bool,
}

impl std::fmt::Display for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dig {} {}", self.name, self.qtype)?;
        if !self.rd {
            f.write_str(" +norec")?;
        }
        if self.cd {
            f.write_str(" +cd")?;
        }
        if self.dnssec_ok {
            f.write_str(" +dnssec")?;
        }
        match self.edns {
            None => f.write_str(" +noedns")?,
            Some(size) => write!(f, " +bufsize={size}")?,
        }
        if self.tcp {
            f.write_str(" +tcp")?;
        }
        Ok(())
    }
}

impl Ask {
    fn bytes(&self, id: u16) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = id;
        message.metadata.recursion_desired = self.rd;
        message.metadata.checking_disabled = self.cd;
        message.add_query(Query::query(Name::from_ascii(&self.name).expect("name"), self.qtype));
        if let Some(size) = self.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(size);
            edns.set_dnssec_ok(self.dnssec_ok);
            message.edns = Some(edns);
        }
        message.to_vec().expect("encodes")
    }
}

/// Flips the case of some letters (0x20 style).
fn mixed_case(rng: &mut fastrand::Rng, name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphabetic() && rng.bool() { c.to_ascii_uppercase() } else { c }).collect()
}

const TYPES: [RecordType; 16] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::MX,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CAA,
    RecordType::NS,
    RecordType::SOA,
    RecordType::DS,
    RecordType::DNSKEY,
    RecordType::ANY,
    RecordType::HINFO,
    RecordType::NAPTR,
    RecordType::SSHFP,
];

/// `count` queries over `names` (every type, flags and transports drawn from `rng`).
fn generate(rng: &mut fastrand::Rng, names: &[String], count: usize) -> Vec<Ask> {
    (0..count)
        .map(|i| {
            let name = names[i % names.len()].clone();
            let name = if rng.u8(..4) == 0 { mixed_case(rng, &name) } else { name };
            // Common types more often: A, AAAA and the type the name has.
            let qtype = if rng.bool() { [RecordType::A, RecordType::AAAA, RecordType::TXT][rng.usize(..3)] } else { TYPES[rng.usize(..TYPES.len())] };
            Ask {
                name,
                qtype,
                rd: rng.u8(..10) != 0,
                cd: rng.u8(..5) == 0,
                dnssec_ok: rng.u8(..3) == 0,
                edns: [None, Some(512), Some(1232), Some(1232), Some(4096)][rng.usize(..5)],
                tcp: rng.u8(..4) == 0,
            }
        })
        .collect()
}

fn names_for(zone: &str, owners: &[&str], extra: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = owners.iter().map(|o| absolute(o, zone)).collect();
    names.extend(extra.iter().map(|e| e.replace("{z}", zone)));
    names.sort();
    names.dedup();
    names
}

// ---------------------------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------------------------

/// Route 53's weighted names: owner → the sets a draw may give (A data only).
type Draws = HashMap<String, Vec<BTreeSet<String>>>;

/// What is different, by kind; each kind keeps a count and the first example.
#[derive(Default)]
struct Differences {
    kinds: BTreeMap<String, (usize, Vec<String>)>,
    allowed: BTreeMap<String, usize>,
}

impl Differences {
    fn add(&mut self, kind: String, example: String) {
        let entry = self.kinds.entry(kind).or_insert((0, Vec::new()));
        entry.0 += 1;
        // Up to three examples, for different names.
        let name = example.split_whitespace().nth(1).unwrap_or_default().to_ascii_lowercase();
        if entry.1.len() < 3 && !entry.1.iter().any(|e| e.split_whitespace().nth(1).unwrap_or_default().eq_ignore_ascii_case(&name)) {
            entry.1.push(example);
        }
    }

    fn allow(&mut self, reason: &str) {
        *self.allowed.entry(reason.to_owned()).or_insert(0) += 1;
    }
}

fn rcode(m: &Message) -> String {
    format!("{:?}", m.metadata.response_code).to_ascii_uppercase()
}

fn under(name: &str, domains: &[&str]) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    domains.iter().any(|o| {
        let o = o.trim_end_matches('.');
        name == o || name.ends_with(&format!(".{o}"))
    })
}

/// Which names hubdns owns: the zones, less what is delegated out of them (strictly below a
/// cut); `own_apexes` are owned names outside any loaded zone, where hubdns's own SOA answers.
struct Ownership<'a> {
    zones: &'a [&'a str],
    delegated: &'a [&'a str],
    own_apexes: &'a [&'a str],
}

impl Ownership<'_> {
    fn owns(&self, name: &str) -> bool {
        let below_cut = self.delegated.iter().any(|d| {
            let n = name.trim_end_matches('.').to_ascii_lowercase();
            // The cut itself is the child's too (RFC 1034 §4.2.1): hubdns forwards it.
            n == d.trim_end_matches('.') || n.ends_with(&format!(".{}", d.trim_end_matches('.')))
        });
        under(name, self.zones) && !below_cut
    }
}

fn flags(m: &Message) -> String {
    let md = &m.metadata;
    let mut out = Vec::new();
    for (set, name) in [
        (md.authoritative, "aa"),
        (md.truncation, "tc"),
        (md.recursion_desired, "rd"),
        (md.authentic_data, "ad"),
        (md.checking_disabled, "cd"),
    ] {
        if set {
            out.push(name);
        }
    }
    out.join(" ")
}

/// The answer section as RRset → data set; weighted names keep their data apart.
fn answer_sets(m: &Message) -> BTreeMap<String, BTreeSet<String>> {
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in &m.answers {
        let line = canonical(record);
        let mut parts = line.splitn(3, ' ');
        let key = format!("{} {}", parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        sets.entry(key).or_default().insert(parts.next().unwrap_or_default().to_owned());
    }
    sets
}

fn show_sets(sets: &BTreeMap<String, BTreeSet<String>>) -> String {
    if sets.is_empty() {
        return "(empty)".into();
    }
    sets.iter().map(|(k, v)| format!("{k} {}", v.iter().cloned().collect::<Vec<_>>().join(","))).collect::<Vec<_>>().join("; ")
}

fn compare(ask: &Ask, h: &Message, b: &Message, owned: &Ownership<'_>, draws: &Draws, diffs: &mut Differences) {
    let say = |what: &str, hv: String, bv: String| format!("{ask}  → hubdns {what} {hv}; BIND {bv}");
    let not_owned = !owned.owns(&ask.name);
    if h.metadata.response_code == hickory_proto::op::ResponseCode::Refused && !ask.rd && not_owned {
        diffs.allow("REFUSED for RD=0 on a name not owned");
        return;
    }
    if rcode(h) != rcode(b) {
        diffs.add(format!("rcode {} vs {}", rcode(h), rcode(b)), say("rcode", rcode(h), rcode(b)));
        return;
    }
    if flags(h) != flags(b) {
        diffs.add(format!("flags [{}] vs [{}]", flags(h), flags(b)), say("flags", flags(h), flags(b)));
    }
    if h.metadata.recursion_available != b.metadata.recursion_available {
        if h.metadata.recursion_available {
            diffs.allow("RA=1 on hubdns");
        } else {
            diffs.add("RA=0 on hubdns".into(), say("RA", "0".into(), "1".into()));
        }
    }
    let hq: Vec<String> = h.queries.iter().map(|q| format!("{} {}", q.name().to_ascii(), q.query_type())).collect();
    let bq: Vec<String> = b.queries.iter().map(|q| format!("{} {}", q.name().to_ascii(), q.query_type())).collect();
    if hq != bq {
        diffs.add("question section".into(), say("question", hq.join(","), bq.join(",")));
    }
    match (&h.edns, &b.edns) {
        (Some(he), Some(be)) if he.flags().dnssec_ok != be.flags().dnssec_ok => {
            diffs.add(format!("DO bit {} vs {}", u8::from(he.flags().dnssec_ok), u8::from(be.flags().dnssec_ok)), say("DO", "".into(), "".into()))
        }
        (Some(_), None) | (None, Some(_)) => {
            diffs.add(format!("OPT record {} vs {}", h.edns.is_some(), b.edns.is_some()), say("OPT", "".into(), "".into()))
        }
        _ => {}
    }
    // Answer RRsets.
    let hs = answer_sets(h);
    let bs = answer_sets(b);
    if hs != bs {
        let mut explained = false;
        if ask.qtype == RecordType::ANY {
            let part_of = |x: &BTreeMap<String, BTreeSet<String>>, y: &BTreeMap<String, BTreeSet<String>>| {
                !x.is_empty() && x.iter().all(|(k, v)| y.get(k).is_some_and(|yv| v.is_subset(yv)))
            };
            // ANY at a delegation point asks for the child's data, which is forwarded.
            let forwarded = !owned.owns(&ask.name) || owned.delegated.iter().any(|d| d.eq_ignore_ascii_case(&ask.name));
            if !forwarded && part_of(&hs, &bs) {
                diffs.allow("RFC 8482 minimal ANY");
                explained = true;
            } else if forwarded && (part_of(&hs, &bs) || part_of(&bs, &hs)) {
                // A resolver answers ANY with what it holds (RFC 8482 §4.3): hubdns passes the
                // upstream's answer on, BIND answers from what its own lookup cached.
                diffs.allow("ANY for a forwarded name: each resolver gives what it holds");
                explained = true;
            }
        } else if hs.keys().eq(bs.keys()) {
            // A weighted name: hubdns gives one draw, BIND the union.
            explained = hs.iter().all(|(k, hv)| {
                let bv = &bs[k];
                if hv == bv {
                    return true;
                }
                let owner = k.split(' ').next().unwrap_or_default();
                draws.get(owner).is_some_and(|alts| alts.contains(hv) && alts.iter().flatten().cloned().collect::<BTreeSet<_>>() == *bv)
            });
            if explained {
                diffs.allow("weighted draw (Route 53 routing policy; BIND holds every set)");
            }
        }
        // hubdns's own zone for an owned name outside a loaded zone: its SOA and NS there are
        // its own (BIND needs some; AWS's managed zone has AWS's).
        let own_zone_only = |sets: &BTreeMap<String, BTreeSet<String>>| -> BTreeMap<String, BTreeSet<String>> {
            sets.iter()
                .filter(|(k, _)| {
                    let (owner, rtype) = k.split_once(' ').unwrap_or_default();
                    !(matches!(rtype, "SOA" | "NS") && owned.own_apexes.iter().any(|a| a.eq_ignore_ascii_case(owner)))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if !explained && own_zone_only(&hs) == own_zone_only(&bs) {
            diffs.allow("hubdns's own SOA (and no NS) at an owned name outside a loaded zone");
            explained = true;
        }
        if !explained {
            let kind = if hs.is_empty() {
                "answer empty on hubdns, records on BIND"
            } else if bs.is_empty() {
                "answer records on hubdns, empty on BIND"
            } else {
                "answer RRsets differ"
            };
            diffs.add(format!("{kind} ({})", ask.qtype), say("answer", show_sets(&hs), show_sets(&bs)));
        }
    }
    // The SOA of a negative answer for an owned name: its TTL is how long caches keep the
    // answer (RFC 2308 §3). Not for SOA questions, where BIND sends TTL 0 (its zero-soa-ttl),
    // nor for forwarded names, whose TTLs count down in each server's cache.
    let soa_ttl = |m: &Message| {
        let soa = m.authorities.iter().find(|r| r.record_type() == RecordType::SOA)?;
        let owner = soa.name.to_ascii();
        // A delegated zone's SOA (its apex is the cut) came from upstream.
        let delegated = owned.delegated.iter().any(|d| d.eq_ignore_ascii_case(&owner));
        (owned.owns(&owner) && !delegated).then_some(soa.ttl)
    };
    let own = h.authorities.iter().any(|r| matches!(&r.data, RData::SOA(s) if s.mname.to_ascii().eq_ignore_ascii_case(OWN_SOA_MNAME)));
    if let (Some(ht), Some(bt), false) = (soa_ttl(h), soa_ttl(b), own)
        && ht != bt
        && ask.qtype != RecordType::SOA
    {
        diffs.add("authority SOA TTL".into(), say("SOA TTL", ht.to_string(), bt.to_string()));
    }
    // Authority: types and owners.
    let ha: BTreeSet<String> = h.authorities.iter().map(|r| format!("{} {}", r.name.to_ascii().to_ascii_lowercase(), r.record_type())).collect();
    let ba: BTreeSet<String> = b.authorities.iter().map(|r| format!("{} {}", r.name.to_ascii().to_ascii_lowercase(), r.record_type())).collect();
    if ha != ba {
        let own_soa = h.authorities.iter().any(|r| matches!(&r.data, RData::SOA(s) if s.mname.to_ascii().eq_ignore_ascii_case(OWN_SOA_MNAME)));
        let types = |s: &BTreeSet<String>| s.iter().map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned()).collect::<BTreeSet<_>>();
        let chain = h.answers.iter().any(|r| r.record_type() == RecordType::CNAME);
        if own_soa && (types(&ha) == types(&ba) || (ba.is_empty() && matches!(ask.qtype, RecordType::NS | RecordType::SOA))) {
            // Its SOA is hubdns's own; and where BIND's zone has NS, hubdns's has none (NODATA).
            diffs.allow("hubdns's own SOA for an owned name outside a loaded zone");
        } else if !ask.rd && chain && own_soa && ba.is_empty() {
            // RFC 1034 §4.3.2 step 3a: a CNAME is followed into every zone the server holds;
            // BIND stops at its zone's edge when RD=0, hubdns follows on to its owned name.
            diffs.allow("RD=0: hubdns follows a CNAME on into an owned name outside the zone");
        } else if !ask.rd && chain && ha.is_empty() && types(&ba) == BTreeSet::from(["NS".to_owned()]) {
            // A CNAME out of the owned names with RD=0: BIND refers the client to the root,
            // hubdns (no authority for the root, and no cache to refer from) answers the chain.
            diffs.allow("RD=0: no referral after a CNAME out of the owned names");
        } else {
            let show = |s: &BTreeSet<String>| if s.is_empty() { "(empty)".to_owned() } else { s.iter().cloned().collect::<Vec<_>>().join(", ") };
            diffs.add(format!("authority [{}] vs [{}]", types(&ha).into_iter().collect::<Vec<_>>().join(" "), types(&ba).into_iter().collect::<Vec<_>>().join(" ")), say("authority", show(&ha), show(&ba)));
        }
    }
}

async fn run(asks: &[Ask], hub: SocketAddr, bind: SocketAddr, owned: &Ownership<'_>, draws: &Draws, diffs: &mut Differences) {
    for (i, ask) in asks.iter().enumerate() {
        let id = (i as u16).wrapping_mul(7919).wrapping_add(1);
        let bytes = ask.bytes(id);
        let h = exchange(hub, &bytes, ask.tcp).await;
        let b = exchange(bind, &bytes, ask.tcp).await;
        match (h, b) {
            (Ok((h, _)), Ok((b, _))) => compare(ask, &h, &b, owned, draws, diffs),
            (Err(e), Ok(_)) => diffs.add("no answer from hubdns".into(), format!("{ask}: {e}")),
            (Ok(_), Err(e)) => diffs.add("no answer from BIND".into(), format!("{ask}: {e}")),
            (Err(_), Err(_)) => diffs.allow("neither answered"),
        }
    }
}

fn report(diffs: &Differences, total: usize, started: Instant) -> String {
    let allowed: Vec<String> = diffs.allowed.iter().map(|(k, n)| format!("  {n:5} × {k}")).collect();
    eprintln!("differential: {total} queries in {:?}; allowed differences:\n{}", started.elapsed(), allowed.join("\n"));
    diffs
        .kinds
        .iter()
        .map(|(kind, (n, examples))| format!("- {kind}: {n} queries, e.g.\n    {}", examples.join("\n    ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubdns_answers_as_bind_does_on_the_same_zones() {
    let started = Instant::now();
    // The upstream of both: BIND, authoritative for the root (see UPSTREAM_ROOT_ZONE).
    let (_upstream_bind, upstream) =
        start_bind(&[(".", UPSTREAM_ROOT_ZONE.to_owned()), ("sub.gen.example.", UPSTREAM_SUB_ZONE.to_owned())], None);
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut report_parts = Vec::new();
    let mut total = 0;

    // (a) The demo's corp.example.
    {
        let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in starts");
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n\
             [forward]\nupstreams = [\"{}\"]\ntimeout_ms = 500\nattempts = 1\ndeadline_ms = 1500\n\n\
             [refresh]\ninterval_secs = 30\n\n\
             [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_attempts = 1\n\n\
             [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\nendpoint_url = \"{url}\"\nmax_attempts = 1\n",
            upstream,
            url = replay.url()
        );
        let hub = start(&local_config(&text)).await;
        let ready = Instant::now();
        while !hub.server.is_ready() && ready.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_bind, bind_addr) = start_bind(
            &[("corp.example.", CORP_ZONE.to_owned()), ("secretsmanager.us-east-1.amazonaws.com.", SM_ZONE.to_owned())],
            Some(upstream),
        );
        let owners = ["@", "*.apps", "api", "db", "dc1", "internal-api", "mail", "secrets", "_ldap._tcp", "www", "kms"];
        let extra = [
            "x.apps.{z}",
            "a.b.apps.{z}",
            "x.*.apps.{z}",
            "apps.{z}",
            "_tcp.{z}",
            "missing.{z}",
            "below.api.{z}",
            "example.",
            "secretsmanager.us-east-1.amazonaws.com.",
            "x.secretsmanager.us-east-1.amazonaws.com.",
            "www.fwd.test.",
            // An upstream's CNAME chain that ends in NODATA or NXDOMAIN, passed on whole.
            "alias.fwd.test.",
            "nothere.zz.",
        ];
        let names = names_for("corp.example.", &owners, &extra);
        let asks = generate(&mut rng, &names, 400);
        let draws: Draws = ["api.corp.example.", "www.corp.example."]
            .iter()
            .map(|o| ((*o).to_owned(), vec![BTreeSet::from(["10.20.1.10".to_owned()]), BTreeSet::from(["10.20.1.11".to_owned()])]))
            .collect();
        let mut diffs = Differences::default();
        let owned = Ownership {
            zones: &["corp.example.", "secretsmanager.us-east-1.amazonaws.com."],
            delegated: &[],
            own_apexes: &["secretsmanager.us-east-1.amazonaws.com."],
        };
        run(&asks, hub.addr, bind_addr, &owned, &draws, &mut diffs).await;
        total += asks.len();
        let part = report(&diffs, asks.len(), started);
        if !part.is_empty() {
            report_parts.push(format!("(a) demo corp.example, {} queries:\n{part}", asks.len()));
        }
        hub.server.stop().await;
    }

    // (b) The generated zone, in moto and as a zone file.
    {
        let zone = "gen.example.";
        let moto = Moto::start();
        let vpc = create_gen_zone(&moto, zone).await;
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n\
             [forward]\nupstreams = [\"{}\"]\ntimeout_ms = 500\nattempts = 1\ndeadline_ms = 1500\n\n\
             [refresh]\ninterval_secs = 30\n\n\
             [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"{vpc}\"]\nendpoint_url = \"{}\"\nmax_attempts = 1\n",
            upstream, moto.url
        );
        let hub = start(&local_config(&text)).await;
        let ready = Instant::now();
        while !hub.server.is_ready() && ready.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_bind, bind_addr) = start_bind(&[(zone, gen_zone_file(zone))], Some(upstream));
        let owners: Vec<&str> = gen_zone().iter().map(|g| g.owner).collect::<BTreeSet<_>>().into_iter().collect();
        let extra = [
            "nx1.{z}",
            "nx2.{z}",
            "below.dual.{z}",
            "a.b.dual.{z}",
            "host.w.{z}",
            "a.b.w.{z}",
            "x.*.w.{z}",
            "w.{z}",
            "x.exact.w.{z}",
            "q.d2.d1.{z}",
            "r.s.d2.d1.{z}",
            "d2.d1.{z}",
            "d1.{z}",
            "x.d1.{z}",
            "ent.{z}",
            "c.ent.{z}",
            "b.c.ent.{z}",
            "z.c.ent.{z}",
            "y.ent.{z}",
            "host.sub.{z}",
            "a.b.sub.{z}",
            "_tcp.{z}",
            "_udp.{z}",
            "example.",
            "target.fwd.test.",
            "nothere.zz.",
        ];
        let names = names_for(zone, &owners, &extra);
        let asks = generate(&mut rng, &names, 800);
        let mut diffs = Differences::default();
        let owned = Ownership { zones: &[zone], delegated: &["sub.gen.example."], own_apexes: &[] };
        run(&asks, hub.addr, bind_addr, &owned, &Draws::new(), &mut diffs).await;
        total += asks.len();
        let part = report(&diffs, asks.len(), started);
        if !part.is_empty() {
            report_parts.push(format!("(b) generated gen.example, {} queries:\n{part}", asks.len()));
        }
        hub.server.stop().await;
    }

    // (c) The same zone as a zone file both servers load, with a delegation to glue.
    {
        let zone = "gen.example.";
        let dir = tempdir();
        // `sub` (no glue; its servers lie outside every zone here) is (b)'s: BIND would have to
        // resolve ns1.sub-dns.example., which nothing serves.
        let file: String = gen_zone_file(zone).lines().filter(|l| !l.starts_with("sub ")).map(|l| format!("{l}\n")).collect();
        let (hosts, first, rest) = split_for_includes(&file);
        std::fs::write(dir.join("hosts.inc"), hosts).expect("include");
        std::fs::write(dir.join("inc.inc"), "; relative to the $INCLUDE's origin\nh0 A 10.50.5.1\n\tAAAA fd00:50::51\n").expect("include");
        let text = format!(
            "$ORIGIN {zone}\n{first}\n$INCLUDE {hosts} ; the hosts\n$INCLUDE {inc} inc\n$ORIGIN glued.{zone}\n\
             @ 3600 IN NS ns\nns IN A 127.0.0.1\n$ORIGIN {zone}\n{rest}\
             ; a wildcard with a name below it (an owner BIND's check-names refuses unless told not to),\n\
             ; and one that is only an empty non-terminal\n\
             *.wc 300 IN A 10.50.7.7\nx.*.wc 300 IN A 10.50.7.8\n*.*.wc2 300 IN A 10.50.7.9\n",
            hosts = dir.join("hosts.inc").display(),
            inc = dir.join("inc.inc").display(),
        );
        std::fs::write(dir.join("gen.zone"), &text).expect("zone file");
        // The glued delegation's server: glue has no port, so it is 53.
        let glued = "$TTL 300\n@ IN SOA ns.glued.gen.example. hostmaster.glued.gen.example. 1 7200 900 1209600 300\n\
                     @ IN NS ns\nns IN A 127.0.0.1\nhost IN A 192.0.2.8\n";
        let (_glued_bind, _) = start_bind_with(&[("glued.gen.example.", glued.to_owned())], None, 53, "");
        let config = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n\
             [forward]\nupstreams = [\"{upstream}\"]\ntimeout_ms = 500\nattempts = 1\ndeadline_ms = 1500\n\n\
             [[zones]]\nfile = \"gen.zone\"\n"
        );
        std::fs::write(dir.join("hubdns.toml"), &config).expect("config");
        let loaded = hubdns::config::Config::load(&dir.join("hubdns.toml")).expect("the zone file loads");
        let hub = hubdns::server::start(&loaded).await.expect("hubdns starts");
        let (_bind, bind_addr) = start_bind_with(&[(zone, text.clone())], Some(upstream), free_port(), " forwarders { }; check-names ignore;");
        let owners: Vec<&str> = gen_zone().iter().map(|g| g.owner).collect::<BTreeSet<_>>().into_iter().collect();
        let extra = [
            "nx1.{z}",
            "below.dual.{z}",
            "host.w.{z}",
            "x.*.w.{z}",
            "q.d2.d1.{z}",
            "d1.{z}",
            "c.ent.{z}",
            "h0.inc.{z}",
            "inc.{z}",
            "x.h0.inc.{z}",
            "glued.{z}",
            "ns.glued.{z}",
            "host.glued.{z}",
            "nx.glued.{z}",
            "target.fwd.test.",
            "*.wc.{z}",
            "q.wc.{z}",
            "x.*.wc.{z}",
            "y.*.wc.{z}",
            "wc.{z}",
            "a.wc2.{z}",
            "b.a.wc2.{z}",
            "*.wc2.{z}",
            "q.*.wc2.{z}",
        ];
        let names = names_for(zone, &owners, &extra);
        let asks = generate(&mut rng, &names, 600);
        let mut diffs = Differences::default();
        let owned = Ownership { zones: &[zone], delegated: &["glued.gen.example."], own_apexes: &[] };
        run(&asks, hub.addr(), bind_addr, &owned, &Draws::new(), &mut diffs).await;
        total += asks.len();
        let part = report(&diffs, asks.len(), started);
        if !part.is_empty() {
            report_parts.push(format!("(c) gen.example as a zone file, {} queries:\n{part}", asks.len()));
        }
        hub.stop().await;
    }

    eprintln!("differential: {total} queries to each server in {:?}", started.elapsed());
    assert!(total >= 1000, "{total} queries");
    assert!(report_parts.is_empty(), "hubdns and BIND differ beyond the allowed differences:\n\n{}\n", report_parts.join("\n\n"));
}

/// Zone files read as BIND's own loader reads them: `named-checkzone -D` writes each zone out
/// canonically (every owner absolute, every TTL given), and hubdns's reader must give the same
/// records. The cases are where a reader could go its own way: an SOA without a TTL before
/// any (BIND: its MINIMUM is then the default, "using SOA MINTTL instead"), a blank owner at
/// the top of an `$INCLUDE`d file and after it, a quoted `$INCLUDE` file name with a space, `@` as the origin
/// of a `$ORIGIN` or `$INCLUDE`, and TTLs without `$TTL` (RFC 1035 §5.1: the last one given)
/// and with it (RFC 2308 §4).
#[test]
fn zone_files_read_as_bind_reads_them() {
    let checkzone = ["/usr/bin/named-checkzone", "/usr/sbin/named-checkzone"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("named-checkzone is not installed: apt-get install bind9-utils (scripts/test does)"));
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "r.example",
            &[
                ("p.zone", "$ORIGIN r.example.\n@ SOA ns1 h 1 2 3 4 5\n  NS ns1\nns1 A 127.0.0.2\nwww 300 A 192.0.2.1\n$INCLUDE inc.zone\n  TXT \"after the include\"\n"),
                ("inc.zone", "  TXT \"blank at top\"\nmail 600 A 192.0.2.3\n  AAAA 2001:db8::4\n"),
            ],
        ),
        ("z.example", &[("z.zone", "$ORIGIN z.example.\n@ IN SOA @ hostmaster 1 2 3 4 300\n@ 60 NS ns\n@ MX 10 @\nns A 10.0.0.1\nt1 CNAME ns\nbig 4294967295 A 10.0.0.4\n")]),
        (
            "q.example",
            &[
                ("m.zone", "$ORIGIN q.example.\n$TTL 300\n@ SOA ns h 1 2 3 4 5\n  NS ns\nns A 10.0.0.1\n$INCLUDE \"inc zone\" ; quoted\n$ORIGIN sub.q.example.\n$ORIGIN @\nw A 10.0.0.2\n$INCLUDE i.inc @\n"),
                ("inc zone", "x A 10.0.0.3\n"),
                ("i.inc", "@ TXT \"at\"\nv A 10.0.0.4\n"),
            ],
        ),
        (
            "s.example",
            &[("s.zone", "$ORIGIN s.example.\n@ 3600 SOA ns h 1 2 3 4 5\n  NS ns\nns A 10.0.0.1\na 600 A 10.0.0.2\nb A 10.0.0.3\n$TTL 120\nc A 10.0.0.4\nd 30 A 10.0.0.5\ne A 10.0.0.6\n")],
        ),
        // The form named-compilezone writes: every name absolute, no $ORIGIN; the SOA's owner
        // names the zone.
        (
            "f.example",
            &[("f.zone", "f.example.\t300\tIN SOA\tns.f.example. h.f.example. 1 2 3 4 5\nf.example.\t300\tIN NS\tns.f.example.\nns.f.example.\t300\tIN A\t10.0.0.1\n")],
        ),
    ];
    let line = |name: &Name, ttl: u32, data: &RData| format!("{} {ttl} {} {data}", name.to_lowercase(), data.record_type());
    for (zone, files) in cases {
        let dir = tempdir();
        for (file, text) in *files {
            std::fs::write(dir.join(file), text).expect("zone file");
        }
        let main = dir.join(files[0].0);
        let dump = dir.join("dump.zone");
        // BIND takes an `$INCLUDE` path from its working directory, hubdns from the including
        // file's: the same file here.
        let checked = Command::new(checkzone)
            .current_dir(&dir)
            .args(["-i", "none", "-D", "-o"])
            .arg(&dump)
            .arg(zone)
            .arg(&main)
            .output()
            .expect("named-checkzone runs");
        assert!(checked.status.success(), "BIND refuses {zone}: {}", String::from_utf8_lossy(&checked.stdout));
        let dumped = std::fs::read_to_string(&dump).expect("BIND's dump");
        let (_, sets) = hickory_proto::serialize::txt::Parser::new(dumped.as_str(), None, Some(Name::root())).parse().expect("BIND's dump parses");
        let bind: BTreeSet<String> = sets.values().flat_map(|set| set.records_without_rrsigs()).map(|r| line(&r.name, r.ttl, &r.data)).collect();
        let read = hubdns::zonefile::ZoneFile::load(&main, None).unwrap_or_else(|e| panic!("hubdns refuses {zone}: {e}"));
        let hubdns: BTreeSet<String> = read.records().map(|r| line(&r.name, r.ttl, &r.data)).collect();
        assert_eq!(hubdns, bind, "{zone}: hubdns's records (left) against BIND's (right)");
    }

    // Bytes that are not UTF-8, in a comment and a TXT string: BIND reads a master file as
    // bytes, loads it and holds the byte (its dump writes it `\252`); so does hubdns. (hickory's
    // parser, which reads the dumps above, takes `\DDD` for a character, so this is compared
    // by the dump's text.)
    let dir = tempdir();
    let main = dir.join("l.zone");
    std::fs::write(&main, b"$ORIGIN l.example.\n$TTL 300\n; J\xfcrgen\n@ SOA ns h 1 2 3 4 5\n  NS ns\nns A 10.0.0.1\nt TXT \"J\xfcrgen\"\n").expect("zone file");
    let dump = dir.join("dump.zone");
    let checked = Command::new(checkzone).args(["-i", "none", "-D", "-o"]).arg(&dump).arg("l.example").arg(&main).output().expect("named-checkzone runs");
    assert!(checked.status.success(), "BIND refuses l.example: {}", String::from_utf8_lossy(&checked.stdout));
    let dumped = std::fs::read_to_string(&dump).expect("BIND's dump");
    assert!(dumped.lines().any(|l| l.starts_with("t.l.example.") && l.ends_with("TXT\t\"J\\252rgen\"")), "BIND holds the byte 252:\n{dumped}");
    let read = hubdns::zonefile::ZoneFile::load(&main, None).unwrap_or_else(|e| panic!("hubdns refuses l.example: {e}"));
    let txt: Vec<Vec<u8>> = read.records().filter_map(|r| if let RData::TXT(t) = r.data { Some(t.txt_data[0].to_vec()) } else { None }).collect();
    assert_eq!(txt, [b"J\xfcrgen".to_vec()], "hubdns holds the byte 252");
}
