//! Forwarding through real resolvers (issue 15): BIND serves a zone signed with
//! `dnssec-signzone`, a validating Unbound resolves it (trusted for AD in these tests), and
//! hubdns forwards to that Unbound. Through hubdns:
//!
//! - a DO query gets the RRSIGs and AD, a DO=0 query gets neither (RFC 4035 §3.2.1,
//!   RFC 6840 §5.8), a +cd query for a bogus name gets the data (RFC 4035 §3.2.2);
//! - a second, validating Unbound that forwards everything to hubdns validates the secure name
//!   itself and fails the bogus one — hubdns passed every DNSSEC record it needed;
//! - a CNAME chain ending in NXDOMAIN or NODATA keeps its CNAME;
//! - a lame delegation (Unbound answers SERVFAIL for a whole zone) does not take the route
//!   down: good names keep answering, and repeats of a broken name come from the per-name
//!   failure cache (RFC 9520) without reaching Unbound.
//!
//! Everything listens on loopback; the root hints point at an address where nothing listens.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};

use crate::{
    differential::start_bind,
    harden::{metrics, sample},
    harness::{Running, TestServer, addresses, query, tempdir, udp_query},
    peers::free_port,
};

/// The signed zone. `bogus` is altered after signing, so its RRSIG no longer matches.
const ZONE: &str = "$TTL 300
@ IN SOA ns.sec.test. hostmaster.sec.test. 1 3600 600 86400 60
@ IN NS ns
ns IN A 127.0.0.1
www IN A 192.0.2.10
alias IN CNAME gone.sec.test.
chain IN CNAME www.sec.test.
bogus IN A 192.0.2.66
*.good IN A 192.0.2.20
";

/// Runs a DNSSEC tool from bind9-utils in `dir`.
fn dnssec_tool(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): apt-get install bind9-utils (scripts/test does)"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Signs [`ZONE`] in `dir` (a KSK and a ZSK, ECDSA P-256), breaks `bogus`, and returns the
/// signed zone's text; `dir/dsset-sec.test.` holds the DS to anchor trust on.
fn signed_zone(dir: &Path) -> String {
    std::fs::write(dir.join("sec.test.zone"), ZONE).expect("zone");
    dnssec_tool(dir, "dnssec-keygen", &["-q", "-a", "ECDSAP256SHA256", "-K", ".", "-n", "ZONE", "sec.test"]);
    dnssec_tool(dir, "dnssec-keygen", &["-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "-K", ".", "-n", "ZONE", "sec.test"]);
    dnssec_tool(dir, "dnssec-signzone", &["-q", "-K", ".", "-S", "-o", "sec.test", "-f", "sec.test.signed", "sec.test.zone"]);
    let signed = std::fs::read_to_string(dir.join("sec.test.signed")).expect("signed zone");
    assert!(signed.contains("192.0.2.66"), "bogus is in the signed zone");
    signed.replace("192.0.2.66", "192.0.2.67")
}

/// An Unbound on `ip`, validating with the DS of `sec.test`, with `zones` appended to its
/// config (stub or forward zones). Waits until it accepts TCP.
fn start_unbound(ip: Ipv4Addr, anchors: &Path, zones: &str) -> (Running, SocketAddr, PathBuf) {
    let dir = tempdir();
    let addr = SocketAddr::from((ip, free_port(ip)));
    let d = dir.display();
    std::fs::write(dir.join("root.hints"), ".  3600000 NS a.root.invalid.\na.root.invalid. 3600000 A 127.0.0.99\n").expect("hints");
    let conf = format!(
        "server:\n  interface: {ip}@{port}\n  port: {port}\n  outgoing-interface: {ip}\n  num-threads: 1\n  so-reuseport: no\n\
         \x20 username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n\
         \x20 logfile: \"\"\n  do-daemonize: no\n  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n\
         \x20 module-config: \"validator iterator\"\n  trust-anchor-file: \"{anchors}\"\n  root-hints: \"{d}/root.hints\"\n\
         \x20 local-zone: \"test.\" nodefault\n  val-log-level: 2\n  verbosity: 1\n{zones}",
        port = addr.port(),
        anchors = anchors.display(),
    );
    std::fs::write(dir.join("unbound.conf"), conf).expect("unbound.conf");
    let unbound = ["/usr/sbin/unbound", "/usr/bin/unbound"]
        .iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("unbound is not installed: apt-get install unbound (scripts/test does)"));
    let log = std::fs::File::create(dir.join("unbound.log")).expect("log");
    let child = Command::new(unbound)
        .args(["-d", "-c"])
        .arg(dir.join("unbound.conf"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("unbound starts");
    let child = Running(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        let log = std::fs::read_to_string(dir.join("unbound.log")).unwrap_or_default();
        assert!(started.elapsed() < Duration::from_secs(20), "unbound did not start:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, addr, dir)
}

/// BIND serving the signed zone, a validating Unbound resolving through it, and hubdns
/// forwarding to that Unbound with `trust_ad`.
struct World {
    _bind: Running,
    _unbound: Running,
    unbound_dir: PathBuf,
    dir: PathBuf,
    hub: TestServer,
}

impl World {
    /// The world; `owned` is extra hubdns config (records it owns).
    async fn start(unbound_ip: Ipv4Addr, owned: &str) -> Self {
        let dir = tempdir();
        let signed = signed_zone(&dir);
        let (bind, bind_addr) = start_bind(&[("sec.test", signed)], None);
        // broken.test. is delegated to BIND, which does not serve it (REFUSED): a lame
        // delegation, which Unbound answers SERVFAIL for.
        let stubs = format!(
            "stub-zone:\n  name: \"sec.test.\"\n  stub-addr: {ip}@{port}\nstub-zone:\n  name: \"broken.test.\"\n  stub-addr: {ip}@{port}\n",
            ip = bind_addr.ip(),
            port = bind_addr.port()
        );
        let (unbound, unbound_addr, unbound_dir) = start_unbound(unbound_ip, &dir.join("dsset-sec.test."), &stubs);
        let hub = TestServer::start(&format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nidentity = \"hub-a\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [forward]\nupstreams = [\"{unbound_addr}\"]\ntrust_ad = true\ntimeout_ms = 1500\nattempts = 1\ndeadline_ms = 3000\nserve_stale_secs = 0\nservfail_cache_secs = 60\n{owned}"
        ))
        .await;
        Self { _bind: bind, _unbound: unbound, unbound_dir, dir, hub }
    }

    /// Asks hubdns `name`/`qtype` with DO, CD and AD as given.
    async fn ask(&self, name: &str, qtype: RecordType, dnssec_ok: bool, cd: bool, ad: bool) -> Message {
        let mut message = query(name, qtype);
        message.metadata.checking_disabled = cd;
        message.metadata.authentic_data = ad;
        if let Some(edns) = message.edns.as_mut() {
            edns.set_dnssec_ok(dnssec_ok);
        }
        let answer = udp_query(self.hub.addr, &message).await;
        assert_eq!(answer.metadata.checking_disabled, cd, "CD is copied (RFC 4035 §3.2.2)");
        answer
    }

    fn unbound_log(&self) -> String {
        std::fs::read_to_string(self.unbound_dir.join("unbound.log")).unwrap_or_default()
    }
}

fn types(records: &[hickory_proto::rr::Record]) -> Vec<RecordType> {
    records.iter().map(|r| r.record_type()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnssec_passes_through_to_do_clients_and_validating_resolvers() {
    let world = World::start(Ipv4Addr::new(127, 0, 0, 61), "").await;

    // DO: the RRSIG comes along, and AD (the upstream validated; its route is trusted).
    let signed = world.ask("www.sec.test.", RecordType::A, true, false, false).await;
    assert_eq!(signed.metadata.response_code, ResponseCode::NoError, "{signed}\n{}", world.unbound_log());
    assert_eq!(types(&signed.answers), [RecordType::A, RecordType::RRSIG], "{signed}");
    assert!(signed.metadata.authentic_data, "AD from a trusted upstream to a DO client: {signed}");
    assert_eq!(signed.edns.as_ref().map(|e| e.flags().dnssec_ok), Some(true));
    // DO=0, from the cache now: no DNSSEC records, no AD.
    let plain = world.ask("www.sec.test.", RecordType::A, false, false, false).await;
    assert_eq!(types(&plain.answers), [RecordType::A], "{plain}");
    assert!(!plain.metadata.authentic_data, "{plain}");
    // DO=0 but AD=1: AD may be set (RFC 6840 §5.8), still no RRSIG.
    let ad = world.ask("www.sec.test.", RecordType::A, false, false, true).await;
    assert!(ad.metadata.authentic_data && types(&ad.answers) == [RecordType::A], "{ad}");
    // A negative answer to a DO client carries its NSEC proof and their RRSIGs.
    let nx = world.ask("nope.sec.test.", RecordType::A, true, false, false).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let proofs = types(&nx.authorities);
    assert!(proofs.contains(&RecordType::SOA) && proofs.contains(&RecordType::NSEC) && proofs.contains(&RecordType::RRSIG), "{nx}");
    let nx_plain = world.ask("nope2.sec.test.", RecordType::A, false, false, false).await;
    assert_eq!(types(&nx_plain.authorities), [RecordType::SOA], "{nx_plain}");

    // The bogus name: SERVFAIL, unless checking is disabled — then the data.
    let bogus = world.ask("bogus.sec.test.", RecordType::A, true, false, false).await;
    assert_eq!(bogus.metadata.response_code, ResponseCode::ServFail, "{bogus}");
    let unchecked = world.ask("bogus.sec.test.", RecordType::A, true, true, false).await;
    assert_eq!(unchecked.metadata.response_code, ResponseCode::NoError, "{unchecked}");
    assert_eq!(addresses(&unchecked), ["192.0.2.67"]);
    assert!(!unchecked.metadata.authentic_data);
    // The CD=1 answer is cached apart: a CD=0 client still gets SERVFAIL.
    let again = world.ask("bogus.sec.test.", RecordType::A, false, false, false).await;
    assert_eq!(again.metadata.response_code, ResponseCode::ServFail, "{again}");

    // A validating resolver behind hubdns validates for itself.
    let downstream_zones = format!("forward-zone:\n  name: \".\"\n  forward-addr: {}@{}\n", world.hub.addr.ip(), world.hub.addr.port());
    let (_downstream, downstream, downstream_dir) =
        start_unbound(Ipv4Addr::new(127, 0, 0, 62), &world.dir.join("dsset-sec.test."), &downstream_zones);
    let log = || std::fs::read_to_string(downstream_dir.join("unbound.log")).unwrap_or_default();
    let mut secure = query("www.sec.test.", RecordType::A);
    secure.edns.as_mut().expect("edns").set_dnssec_ok(true);
    let secure = udp_query(downstream, &secure).await;
    assert_eq!(addresses(&secure), ["192.0.2.10"], "{secure}\n{}", log());
    assert!(secure.metadata.authentic_data, "validated by the downstream Unbound: {secure}\n{}", log());
    let bogus = udp_query(downstream, &query("bogus.sec.test.", RecordType::A)).await;
    assert_eq!(bogus.metadata.response_code, ResponseCode::ServFail, "the downstream Unbound finds it bogus: {bogus}\n{}", log());
    let mut nx = query("nope3.sec.test.", RecordType::A);
    nx.edns.as_mut().expect("edns").set_dnssec_ok(true);
    let nx = udp_query(downstream, &nx).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain, "a proven NXDOMAIN: {nx}\n{}", log());
    assert!(nx.metadata.authentic_data, "{nx}");
    world.hub.server.stop().await;
}

/// Items 1 and 3: a broken zone does not take the route down, and CNAME chains ending in a
/// negative answer keep their CNAME.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_zone_upstream_fails_alone_and_chains_keep_their_cnames() {
    let world = World::start(Ipv4Addr::new(127, 0, 0, 63), "").await;
    let admin = world.hub.server.admin_addr().expect("admin");
    let broken = ["a.broken.test.", "b.broken.test.", "c.broken.test.", "d.broken.test.", "e.broken.test."];
    for _ in 0..3 {
        for name in broken {
            let answer = world.ask(name, RecordType::A, false, false, false).await;
            assert_eq!(answer.metadata.response_code, ResponseCode::ServFail, "{name}: {answer}");
        }
    }
    let text = metrics(admin).await;
    let upstream = format!("hubdns_upstream_queries_total{{rule=\".\",upstream=\"{}\"}}", world.hub_upstream());
    assert_eq!(sample(&text, &upstream), 5.0, "each broken name asked once");
    assert_eq!(sample(&text, "hubdns_forward_failures_cached_total"), 10.0, "the repeats, from the failure cache");
    // Never-seen good names answer.
    for i in 0..4 {
        let good = world.ask(&format!("n{i}.good.sec.test."), RecordType::A, false, false, false).await;
        assert_eq!(addresses(&good), ["192.0.2.20"], "{good}");
    }
    let text = metrics(admin).await;
    assert_eq!(sample(&text, "hubdns_upstream_marked_down_total"), 0.0, "SERVFAIL for five names says nothing of the server");

    // CNAME to a name that does not exist: NXDOMAIN with the CNAME; to a name without the type:
    // NODATA with the CNAME. Both cached, and both again from the cache.
    for _ in 0..2 {
        let nx = world.ask("alias.sec.test.", RecordType::A, false, false, false).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain, "{nx}");
        assert_eq!(types(&nx.answers), [RecordType::CNAME], "{nx}");
        assert_eq!(types(&nx.authorities), [RecordType::SOA], "{nx}");
        let nodata = world.ask("chain.sec.test.", RecordType::TXT, false, false, false).await;
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError, "{nodata}");
        assert_eq!(types(&nodata.answers), [RecordType::CNAME], "{nodata}");
        assert_eq!(types(&nodata.authorities), [RecordType::SOA], "{nodata}");
    }
    let text = metrics(admin).await;
    assert_eq!(sample(&text, &upstream), 11.0, "5 broken, 4 good, 2 chains: the repeats were cached");
    world.hub.server.stop().await;
}

/// Item 8: an owned name inside a publicly signed zone is found upstream and reported (status,
/// explain); a validating resolver behind hubdns finds it bogus, and resolves it once it has
/// the negative trust anchor the Unbound snippet shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_names_inside_a_signed_zone_are_found_and_need_a_negative_trust_anchor() {
    let owned = "[[records]]\nname = \"internal-api.sec.test\"\ntype = \"A\"\nvalues = [\"10.1.2.3\"]\n\
                 [[records]]\nname = \"private.corp.test\"\ntype = \"A\"\nvalues = [\"10.1.2.4\"]\n";
    let world = World::start(Ipv4Addr::new(127, 0, 0, 64), owned).await;
    let admin = world.hub.server.admin_addr().expect("admin");
    let get = |path: &'static str| async move {
        tokio::task::spawn_blocking(move || hubdns::admin::probe(admin, path, Duration::from_secs(5)).expect("admin answers").1)
            .await
            .expect("join")
    };
    // Found after the first build, on a task of its own: wait for it.
    let started = Instant::now();
    let overlaps = loop {
        let status: serde_json::Value = serde_json::from_str(&get("/status.json").await).expect("json");
        let overlaps = status["dnssec_overlaps"].as_array().cloned().unwrap_or_default();
        if !overlaps.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break overlaps;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        overlaps,
        [serde_json::json!({"name": "internal-api.sec.test.", "signed_zone": "sec.test."})],
        "only the name inside the signed zone (corp.test is unsigned upstream)"
    );
    let explained: serde_json::Value = serde_json::from_str(&get("/explain?name=internal-api.sec.test&type=A").await).expect("json");
    let warning = explained["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("negative trust anchor for internal-api.sec.test."), "{explained}");
    let plain: serde_json::Value = serde_json::from_str(&get("/explain?name=private.corp.test&type=A").await).expect("json");
    assert_eq!(plain["warnings"], serde_json::json!([]), "{plain}");

    // A validating resolver behind hubdns: bogus without the anchor, answered with it.
    let forward = format!("forward-zone:\n  name: \".\"\n  forward-addr: {}@{}\n", world.hub.addr.ip(), world.hub.addr.port());
    let anchors = world.dir.join("dsset-sec.test.");
    let (_strict, strict, _) = start_unbound(Ipv4Addr::new(127, 0, 0, 65), &anchors, &forward);
    let bogus = udp_query(strict, &query("internal-api.sec.test.", RecordType::A)).await;
    assert_eq!(bogus.metadata.response_code, ResponseCode::ServFail, "{bogus}");
    let nta = format!("server:\n  domain-insecure: \"internal-api.sec.test\"\n{forward}");
    let (_eased, eased, _) = start_unbound(Ipv4Addr::new(127, 0, 0, 66), &anchors, &nta);
    let answered = udp_query(eased, &query("internal-api.sec.test.", RecordType::A)).await;
    assert_eq!(addresses(&answered), ["10.1.2.3"], "{answered}");
    world.hub.server.stop().await;
}

impl World {
    /// The Unbound hubdns forwards to, as `/metrics` names it.
    fn hub_upstream(&self) -> String {
        let conf = std::fs::read_to_string(self.unbound_dir.join("unbound.conf")).expect("conf");
        let line = conf.lines().find_map(|l| l.trim().strip_prefix("interface: ")).expect("interface");
        line.replace('@', ":")
    }
}
