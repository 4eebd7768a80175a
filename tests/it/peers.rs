//! The shipped forwarder snippets (deploy/forwarders/), proved with the real resolvers an
//! on-prem network runs: BIND, Unbound, dnsmasq and PowerDNS Recursor, each started on its own
//! 127.0.0.x address with the snippet included as shipped — only the hub addresses 10.0.1.53
//! and 10.0.2.53 replaced by the running hubdns's loopback address and port.
//!
//! hubdns serves the demo's recorded AWS data (endpoints and the private zone corp.example).
//! Each peer must return hubdns's answers for an endpoint private name, a Route 53 alias and
//! an endpoint-tag alias, and its own answer for a name outside the forwarded domains — which
//! must never reach hubdns. Every peer's root hints point at loopback, so nothing it does can
//! send a packet off the machine.
//!
//! The DoT variants (unbound-tls.conf, pdns-recursor-tls.conf) are proved the same way against
//! a hubdns whose plain listener is on an address no peer is told of, so DoT is the only way
//! in; its query log must show every query from each peer arriving as `DoT`. bind-tls.conf is
//! not run: forwarding over TLS needs BIND 9.20, and Debian ships 9.18.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;
use hubdns::demo::{AwsReplay, Responses};

use crate::{
    aws::{WAIT, local_config, start},
    harness::{Running, StubUpstream, tempdir, wait_for},
};

/// The hub addresses the snippets are written with.
const HUB_IPS: [&str; 2] = ["10.0.1.53", "10.0.2.53"];

/// What the peer itself serves, outside the forwarded domains.
const OWN_NAME: &str = "www.peer.test";
const OWN_ADDRESS: &str = "192.0.2.80";

/// A resolver under test, killed when dropped.
struct Peer {
    name: &'static str,
    addr: SocketAddr,
    _process: Running,
    dir: PathBuf,
}

fn snippet(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/forwarders").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with each hub address replaced by `to(address)`.
fn substitute(text: &str, to: impl Fn(&str) -> String) -> String {
    HUB_IPS.iter().fold(text.to_owned(), |text, ip| text.replace(ip, &to(ip)))
}

/// A free UDP+TCP port on `ip`.
pub(crate) fn free_port(ip: Ipv4Addr) -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind((ip, 0)).expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// Root hints naming a root server on loopback where nothing listens: a peer that tries to
/// recurse gets no answer, and no packet leaves the machine.
fn write_common(dir: &Path) {
    std::fs::write(dir.join("root.hints"), ".  3600000 NS a.root.invalid.\na.root.invalid. 3600000 A 127.0.0.99\n").expect("hints");
    let zone = "$TTL 300\n@ IN SOA ns.peer.test. hostmaster.peer.test. 1 3600 600 86400 300\n@ IN NS ns\nns IN A 192.0.2.80\nwww IN A 192.0.2.80\n";
    std::fs::write(dir.join("peer.test.zone"), zone).expect("zone");
}

/// `text` with `from` replaced by `to`; fails if the snippet no longer has `from`, so a test
/// never runs a snippet it did not adapt.
fn replace_in(text: &str, file: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "deploy/forwarders/{file} no longer contains `{from}`: update the test with it");
    text.replace(from, to)
}

/// The command for `name`'s daemon, listening on `addr`, forwarding as its snippet says to
/// hubdns at `hub` (for the DoT variants, hubdns's DoT address, whose certificate `ca`
/// signed). Each writes its files into `dir`.
fn command(name: &str, addr: SocketAddr, hub: SocketAddr, ca: Option<&Path>, dir: &Path) -> Command {
    let (ip, port, d) = (addr.ip(), addr.port(), dir.display());
    let tool = |program: &str| {
        let found = ["/usr/sbin", "/usr/bin", "/sbin"].iter().map(|p| Path::new(p).join(program)).find(|p| p.exists());
        found.unwrap_or_else(|| {
            panic!("{program} is not installed: scripts/test installs it (apt-get install bind9 unbound dnsmasq pdns-recursor)")
        })
    };
    let write = |file: &str, text: String| std::fs::write(dir.join(file), text).expect("write peer config");
    match name {
        "bind" => {
            write("hubdns-forward.conf", substitute(&snippet("bind.conf"), |_| format!("{} port {}", hub.ip(), hub.port())));
            write(
                "named.conf",
                format!(
                    "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  listen-on port {port} {{ {ip}; }};\n  listen-on-v6 {{ none; }};\n\
                     \x20 query-source address {ip};\n  recursion yes;\n  allow-query {{ any; }};\n  allow-recursion {{ any; }};\n\
                     \x20 dnssec-validation no;\n  notify no;\n}};\ncontrols {{ }};\n\
                     zone \".\" {{ type hint; file \"{d}/root.hints\"; }};\n\
                     zone \"peer.test\" {{ type primary; file \"{d}/peer.test.zone\"; }};\n\
                     include \"{d}/hubdns-forward.conf\";\n"
                ),
            );
            let mut c = Command::new(tool("named"));
            c.args(["-g", "-n", "1", "-u", "root", "-c"]).arg(dir.join("named.conf"));
            c
        }
        "unbound" | "unbound-tls" => {
            let forward = if name == "unbound" {
                substitute(&snippet("unbound.conf"), |_| format!("{}@{}", hub.ip(), hub.port()))
            } else {
                // Both hub addresses become hubdns's one DoT address; the name after '#' and
                // the CA bundle stay as the operator would set them.
                let file = "unbound-tls.conf";
                let ca = ca.expect("unbound-tls needs the CA of hubdns's certificate");
                let text = replace_in(&snippet(file), file, "/etc/unbound/hubdns-ca.pem", &ca.display().to_string());
                HUB_IPS.iter().fold(text, |text, ip| replace_in(&text, file, &format!("{ip}@853"), &format!("{}@{}", hub.ip(), hub.port())))
            };
            write("hubdns.conf", forward);
            write(
                "unbound.conf",
                format!(
                    "server:\n  interface: {ip}@{port}\n  port: {port}\n  outgoing-interface: {ip}\n  num-threads: 1\n  so-reuseport: no\n\
                     \x20 username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n\
                     \x20 logfile: \"\"\n  do-daemonize: no\n  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n\
                     \x20 module-config: \"iterator\"\n  root-hints: \"{d}/root.hints\"\n\
                     \x20 local-zone: \"peer.test.\" static\n  local-data: \"{OWN_NAME}. 300 IN A {OWN_ADDRESS}\"\n\
                     include: \"{d}/hubdns.conf\"\n"
                ),
            );
            let mut c = Command::new(tool("unbound"));
            c.args(["-d", "-c"]).arg(dir.join("unbound.conf"));
            c
        }
        "dnsmasq" => {
            write("hubdns.conf", substitute(&snippet("dnsmasq.conf"), |_| format!("{}#{}", hub.ip(), hub.port())));
            let mut c = Command::new(tool("dnsmasq"));
            c.args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--user=root", "--log-facility=-"])
                .arg(format!("--listen-address={ip}"))
                .arg(format!("--port={port}"))
                .arg(format!("--pid-file={d}/dnsmasq.pid"))
                .arg(format!("--host-record={OWN_NAME},{OWN_ADDRESS}"))
                .arg(format!("--conf-file={d}/hubdns.conf"));
            c
        }
        "pdns-recursor" | "pdns-recursor-tls" => {
            let forward = if name == "pdns-recursor" {
                substitute(&snippet("pdns-recursor.conf"), |_| format!("{}:{}", hub.ip(), hub.port()))
            } else {
                // The Recursor speaks DoT only to port 853, which the snippet names: only the
                // addresses change.
                assert_eq!(hub.port(), 853, "pdns-recursor-tls.conf forwards to port 853");
                let file = "pdns-recursor-tls.conf";
                HUB_IPS.iter().fold(snippet(file), |text, ip| replace_in(&text, file, &format!("{ip}:853"), &format!("{}:853", hub.ip())))
            };
            write(
                "recursor.conf",
                format!(
                    "daemon=no\nlocal-address={ip}\nlocal-port={port}\nquery-local-address={ip}\nallow-from=127.0.0.0/8\n\
                     socket-dir={d}\nthreads=1\ndisable-syslog=yes\nsetuid=root\nsetgid=root\ndnssec=off\n\
                     hint-file={d}/root.hints\nauth-zones=peer.test={d}/peer.test.zone\ninclude-dir={d}/recursor.d\n"
                ),
            );
            std::fs::create_dir_all(dir.join("recursor.d")).expect("include dir");
            std::fs::write(dir.join("recursor.d/hubdns.conf"), forward).expect("write snippet");
            let mut c = Command::new(tool("pdns_recursor"));
            c.arg(format!("--config-dir={d}"));
            c
        }
        other => panic!("unknown peer {other}"),
    }
}

impl Peer {
    /// Starts `name` on `ip` forwarding to `hub`, and waits until it answers its own name.
    fn start(name: &'static str, ip: Ipv4Addr, hub: SocketAddr) -> Self {
        Self::start_with(name, ip, hub, None)
    }

    /// [`Peer::start`] for a DoT variant: `ca` is the CA file it is to trust for hubdns.
    fn start_with(name: &'static str, ip: Ipv4Addr, hub: SocketAddr, ca: Option<&Path>) -> Self {
        let dir = tempdir();
        write_common(&dir);
        let addr = SocketAddr::from((ip, free_port(ip)));
        let log = std::fs::File::create(dir.join("peer.log")).expect("log file");
        let process = command(name, addr, hub, ca, &dir)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let peer = Self { name, addr, _process: Running(process), dir };
        let started = Instant::now();
        while peer.ask(OWN_NAME, "A") != [OWN_ADDRESS] {
            assert!(started.elapsed() < Duration::from_secs(20), "{name} did not start answering; its log:\n{}", peer.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        peer
    }

    /// `dig +short` of `name` / `rtype` at this peer: the answer lines, sorted.
    fn ask(&self, name: &str, rtype: &str) -> Vec<String> {
        let (ip, port) = (self.addr.ip().to_string(), self.addr.port().to_string());
        let out = Command::new("dig")
            .args([&format!("@{ip}"), "-p", &port, "+short", "+tries=1", "+time=2", name, rtype])
            .output()
            .unwrap_or_else(|e| panic!("cannot run dig ({e}): install it with `apt-get install bind9-dnsutils` (scripts/test does)"));
        // dig fails while the peer is still starting (connection refused): no answer yet.
        let out = String::from_utf8_lossy(&out.stdout);
        let mut lines: Vec<String> = out.lines().filter(|l| !l.starts_with(';')).map(str::to_owned).collect();
        lines.sort();
        lines
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("peer.log")).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_prem_resolvers_forward_to_hubdns_with_the_shipped_snippets() {
    // hubdns with the demo's endpoints and private zone; its own upstream is a stub, so a
    // name it does not own never leaves loopback either.
    let upstream = StubUpstream::start_with("127.0.0.57", UPSTREAM_ANSWER.parse().expect("constant"), &[&format!("{NOT_OWNED}.")]).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in starts");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets_per_address = 1\n\n[forward]\nupstreams = [\"{}\"]\n\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_attempts = 1\nalias_tag_domains = [\"corp.example\"]\n\n\
         [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\nendpoint_url = \"{url}\"\nmax_attempts = 1\n",
        upstream.addr,
        url = replay.url()
    );
    let hub = start(&local_config(&text)).await;
    wait_for(hub.addr, "internal-api.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;

    // BIND listens only on addresses an interface carries, so it takes 127.0.0.1 itself.
    let peers = [("bind", 1), ("unbound", 72), ("dnsmasq", 73), ("pdns-recursor", 74)];
    let hub_addr = hub.addr;
    let checked = tokio::task::spawn_blocking(move || {
        for (name, last) in peers {
            let peer = Peer::start(name, Ipv4Addr::new(127, 0, 0, last), hub_addr);
            for (qname, want, what) in FORWARDED {
                let got = peer.ask(qname, "A");
                assert_eq!(got, want, "{}: {qname} A ({what}); peer log:\n{}", peer.name, peer.log());
            }
            assert_eq!(peer.ask(OWN_NAME, "A"), [OWN_ADDRESS], "{}: the peer's own name; log:\n{}", peer.name, peer.log());
            eprintln!("{name}: forwards to hubdns as its snippet says");
        }
    })
    .await;
    settle(checked, &upstream, hub).await;
}

/// Re-raises a peer check's panic; then checks that no name outside the forwarded domains
/// reached hubdns (its upstream saw every name hubdns forwarded), and stops hubdns.
async fn settle(checked: Result<(), tokio::task::JoinError>, upstream: &StubUpstream, hub: crate::harness::TestServer) {
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic.into_panic());
    }
    assert!(
        upstream.names_seen().iter().all(|n| !n.contains("peer.test")),
        "a name outside the forwarded domains reached hubdns: {:?}",
        upstream.names_seen()
    );
    hub.server.stop().await;
}

/// A name in a forwarded domain that hubdns does not own: it resolves it through its own
/// upstream (the VPC resolver in a hub; here the stub, which answers it with `UPSTREAM_ANSWER`).
const NOT_OWNED: &str = "sts.us-east-1.amazonaws.com";
const UPSTREAM_ANSWER: &str = "192.0.2.1";

/// The names every DoT peer must get hubdns's answers for, with those answers.
const FORWARDED: [(&str, &[&str], &str); 5] = [
    ("secretsmanager.us-east-1.amazonaws.com", &["10.10.1.25", "10.10.2.41"], "endpoint private name"),
    ("vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com", &["10.10.1.25"], "zonal endpoint name"),
    ("internal-api.corp.example", &["10.10.1.77", "10.10.2.78"], "Route 53 alias to an endpoint"),
    ("kms.corp.example", &["10.10.1.33"], "endpoint tag alias"),
    (NOT_OWNED, &[UPSTREAM_ANSWER], "a name hubdns does not own, resolved through its upstream"),
];

/// The query log's lines from `client`, as (query name without the final dot, transport).
fn logged_from(log: &Path, client: Ipv4Addr) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("query log line is not JSON ({e}): {line}")))
        .filter(|line| line["srcaddr"] == client.to_string())
        .map(|line| {
            let name = line["query_name"].as_str().unwrap_or_default().trim_end_matches('.').to_lowercase();
            (name, line["transport"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_prem_resolvers_forward_to_hubdns_over_tls_with_the_shipped_snippets() {
    // hubdns as in the plain test, plus DoT with a self-signed certificate. Its plain listener
    // is on 127.0.0.125, which no peer is told of: a peer reaches hubdns over DoT or not at
    // all. DoT listens on a free port of 127.0.0.1 (Unbound takes any port) and on
    // 127.0.0.123:853 (the Recursor speaks DoT to port 853 only).
    let upstream = StubUpstream::start_with("127.0.0.124", UPSTREAM_ANSWER.parse().expect("constant"), &[&format!("{NOT_OWNED}.")]).await;
    let replay = AwsReplay::start(Responses::demo()).await.expect("stand-in starts");
    let dir = tempdir();
    let (cert, key) = hubdns::dns::tls::write_self_signed(&dir.join("hubdns"), &["hubdns.corp.example", "127.0.0.1"]).expect("certificate");
    let query_log = dir.join("queries.log");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.125:0\"]\nudp_sockets_per_address = 1\n\
         tls_listen = [\"127.0.0.1:0\", \"127.0.0.123:853\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n\
         [forward]\nupstreams = [\"{}\"]\n\n[log]\nqueries = \"{}\"\n\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_attempts = 1\nalias_tag_domains = [\"corp.example\"]\n\n\
         [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\nendpoint_url = \"{url}\"\nmax_attempts = 1\n",
        cert.display(),
        key.display(),
        upstream.addr,
        query_log.display(),
        url = replay.url()
    );
    let hub = start(&local_config(&text)).await;
    wait_for(hub.addr, "internal-api.corp.example.", RecordType::A, WAIT, |m| !m.answers.is_empty()).await;
    let tls = hub.server.tls_addrs().to_vec();
    assert_eq!(tls.len(), 2, "both DoT addresses bound: {tls:?}");
    assert_eq!(tls[1], "127.0.0.123:853".parse::<SocketAddr>().expect("constant"));

    // Unbound on 127.0.0.126 to DoT on 127.0.0.1:<port>, checking the certificate against
    // hubdns.corp.example with the CA bundle; the Recursor on 127.0.0.127 to 127.0.0.123:853.
    let peers = [("unbound-tls", 126, tls[0]), ("pdns-recursor-tls", 127, tls[1])];
    let (log, ca) = (query_log.clone(), cert.clone());
    let other_ca = hubdns::dns::tls::write_self_signed(&dir.join("other"), &["hubdns.corp.example", "127.0.0.1"]).expect("certificate").0;
    let checked = tokio::task::spawn_blocking(move || {
        for (name, last, hub_tls) in peers {
            let ip = Ipv4Addr::new(127, 0, 0, last);
            let peer = Peer::start_with(name, ip, hub_tls, Some(&ca));
            for (qname, want, what) in FORWARDED {
                let got = peer.ask(qname, "A");
                assert_eq!(got, want, "{}: {qname} A ({what}); peer log:\n{}", peer.name, peer.log());
            }
            assert_eq!(peer.ask(OWN_NAME, "A"), [OWN_ADDRESS], "{}: the peer's own name", peer.name);

            // Every query from this peer reached hubdns over DoT, and each forwarded name did.
            let started = Instant::now();
            let seen = loop {
                let seen = logged_from(&log, ip);
                let all = FORWARDED.iter().all(|(qname, _, _)| seen.iter().any(|(n, _)| n == qname));
                if all || started.elapsed() > WAIT {
                    break seen;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            for (qname, _, _) in FORWARDED {
                assert!(seen.iter().any(|(n, _)| n == qname), "{name}: hubdns's query log has no {qname} from {ip}: {seen:?}");
            }
            assert!(seen.iter().all(|(_, transport)| transport == "DoT"), "{name}: a query reached hubdns other than over DoT: {seen:?}");
            eprintln!("{name}: forwards to hubdns over DoT as its snippet says ({} queries, all DoT)", seen.len());
        }

        // Unbound checks the certificate: trusting another CA, it gets no answer from hubdns,
        // and no query of it reaches hubdns (the handshake fails first).
        let ip = Ipv4Addr::new(127, 0, 0, 126);
        let before = logged_from(&log, ip).len();
        let peer = Peer::start_with("unbound-tls", ip, peers[0].2, Some(&other_ca));
        assert_eq!(peer.ask("kms.corp.example", "A"), Vec::<String>::new(), "unbound-tls trusting another CA got an answer; log:\n{}", peer.log());
        let started = Instant::now();
        while !peer.log().contains("certificate verify failed") {
            assert!(started.elapsed() < WAIT, "unbound-tls trusting another CA did not fail the certificate check; log:\n{}", peer.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        let after = logged_from(&log, ip);
        assert_eq!(after.len(), before, "a query reached hubdns over a connection Unbound should have refused: {:?}", &after[before..]);
        eprintln!("unbound-tls: refuses hubdns's certificate when its CA bundle does not hold hubdns's CA");
    })
    .await;
    settle(checked, &upstream, hub).await;
}
