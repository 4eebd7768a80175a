//! Operating hubdns: `/metrics`, `/records`, `/explain`, `/status.json`, `hubdns explain`,
//! CH TXT identity, config reload (SIGHUP, file watch, refused configs, cache kept), and the
//! query log.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{DNSClass, RecordType},
};
use hubdns::config::Config;

use crate::harness::{HUBDNS, StubUpstream, TestServer, dig, query, serve_file, standard_config, tempdir, udp_query, wait_for};

/// GETs `path` from the admin listener: status and body.
fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    hubdns::admin::probe(admin, path, Duration::from_secs(5)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The value of the sample `series` (name and labels exactly as written) in exposition `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A port nobody is listening on right now, for configs that must name their admin port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// A UDP socket that takes queries and never answers: an upstream that times out.
fn silent_upstream(ip: &str) -> (std::net::UdpSocket, SocketAddr) {
    let socket = std::net::UdpSocket::bind((ip, 0)).expect("bind");
    let addr = socket.local_addr().expect("addr");
    (socket, addr)
}

/// The demo's config and data (recorded AWS answers on loopback), on free ports, with `extra`
/// TOML appended.
pub async fn demo_server(extra: &str) -> (TestServer, hubdns::demo::Attached, SocketAddr) {
    let text = format!("{}\n{extra}\n", hubdns::DEMO_CONFIG);
    let mut config = Config::parse(&text, "demo.toml").expect("demo config");
    config.server.listen = vec!["127.0.0.1:0".parse().expect("addr")];
    config.admin.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.forward.upstreams = vec![hubdns::config::Upstream::Addr("127.0.0.1:9".parse().expect("addr"))];
    // Nothing answers at 127.0.0.1:9: asking it about DNSSEC would only count failures.
    config.forward.check_signed_parents = false;
    let replay = hubdns::demo::attach(&mut config).await.expect("stand-in");
    let server = hubdns::server::start(&config).await.expect("starts");
    let addr = server.addr();
    let admin = server.admin_addr().expect("admin");
    let mut ready = server.readiness();
    // Seconds on a quiet machine; the whole suite on two cores (DoT load, floods) can stretch it.
    tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r)).await.expect("ready in time").expect("ready");
    (TestServer { server, addr }, replay, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_queries_upstreams_sources_and_the_cache() {
    let upstream = StubUpstream::start("127.0.0.61", Ipv4Addr::new(192, 0, 2, 61)).await;
    let (_silent, silent) = silent_upstream("127.0.0.62");
    let dead_ec2 = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    let extra = format!(
        "[[forward.rules]]\ndomain = \"dead.test\"\nupstreams = [\"{silent}\"]\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[sources.vpc_endpoints]]\nregion = \"eu-west-1\"\nendpoint_url = \"http://{dead_ec2}\"\nmax_attempts = 1\napi_timeout_secs = 1\n"
    );
    let mut config = Config::parse(&standard_config(upstream.addr, "", &extra), "metrics.toml").expect("config");
    config.sources.vpc_endpoints[0].get_mut().static_credentials = true;
    let server = hubdns::server::start(&config).await.expect("starts");
    let t = TestServer { addr: server.addr(), server };
    let admin = t.server.admin_addr().expect("admin");

    assert_eq!(t.udp("txt.corp.example", RecordType::TXT).await.answers.len(), 1, "local");
    assert_eq!(t.udp("nope.txt.corp.example", RecordType::A).await.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(t.udp("www.fwd.test", RecordType::A).await.answers.len(), 1, "forwarded");
    assert_eq!(t.udp("www.fwd.test", RecordType::A).await.answers.len(), 1, "from the cache");
    let mut norecurse = query("www.elsewhere.test", RecordType::A);
    norecurse.metadata.recursion_desired = false;
    assert_eq!(udp_query(t.addr, &norecurse).await.metadata.response_code, ResponseCode::Refused);
    assert_eq!(t.udp("x.dead.test", RecordType::AAAA).await.metadata.response_code, ResponseCode::ServFail, "silent upstream");
    // A response sent to us is dropped, and counted.
    let mut response = query("x.example", RecordType::A);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(&response.to_vec().expect("encode"), t.addr).await.expect("send");
    // The EC2 source fails its first fetch.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (status, text) = tokio::task::spawn_blocking(move || get(admin, "/metrics")).await.expect("join");
        assert_eq!(status, 200);
        if sample(&text, "hubdns_source_refresh_failures_total{source=\"vpc_endpoints/eu-west-1\",kind=\"vpc_endpoints\"}") == Some(1.0)
            && sample(&text, "hubdns_packets_dropped_total") == Some(1.0)
        {
            break text;
        }
        assert!(Instant::now() < deadline, "source failure or dropped packet not counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let has = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series}\n{text}");
    };
    has("hubdns_queries_total{qtype=\"TXT\",rcode=\"NOERROR\",path=\"local\"}", 1.0);
    has("hubdns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\",path=\"local\"}", 1.0);
    has("hubdns_queries_total{qtype=\"A\",rcode=\"NOERROR\",path=\"forwarded\"}", 1.0);
    has("hubdns_queries_total{qtype=\"A\",rcode=\"NOERROR\",path=\"cache\"}", 1.0);
    has("hubdns_queries_total{qtype=\"A\",rcode=\"REFUSED\",path=\"refused\"}", 1.0);
    has("hubdns_queries_total{qtype=\"AAAA\",rcode=\"SERVFAIL\",path=\"forwarded\"}", 1.0);
    has("hubdns_query_duration_seconds_count{path=\"local\"}", 2.0);
    has("hubdns_query_duration_seconds_bucket{path=\"forwarded\",le=\"+Inf\"}", 2.0);
    has("hubdns_cache_hits_total", 1.0);
    has("hubdns_cache_misses_total", 2.0);
    assert!(sample(&text, "hubdns_cache_entries").is_some_and(|n| n >= 1.0), "{text}");
    has(&format!("hubdns_upstream_queries_total{{rule=\".\",upstream=\"{}\"}}", upstream.addr), 1.0);
    has(&format!("hubdns_upstream_up{{rule=\".\",upstream=\"{}\"}}", upstream.addr), 1.0);
    has(&format!("hubdns_upstream_timeouts_total{{rule=\"dead.test.\",upstream=\"{silent}\"}}"), 1.0);
    // One timeout is not yet three in a row: still up (harden.rs marks one down).
    has(&format!("hubdns_upstream_up{{rule=\"dead.test.\",upstream=\"{silent}\"}}"), 1.0);
    has("hubdns_source_refresh_runs_total{source=\"vpc_endpoints/eu-west-1\",kind=\"vpc_endpoints\"}", 1.0);
    has("hubdns_source_consecutive_failures{source=\"vpc_endpoints/eu-west-1\",kind=\"vpc_endpoints\"}", 1.0);
    assert!(sample(&text, "hubdns_source_seconds_since_success{source=\"vpc_endpoints/eu-west-1\",kind=\"vpc_endpoints\"}").is_none(), "never succeeded");
    has("hubdns_ready", 0.0);
    let config_records = t.server.snapshot().records_by_kind()[0].1;
    assert!(config_records > 0);
    has("hubdns_records{source_kind=\"config\"}", config_records as f64);
    has("hubdns_conflicts", 0.0);
    has("hubdns_refused", 0.0);
    // Every family is named, typed and helped, once.
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let name = line.split_whitespace().nth(2).expect("name");
        assert!(name.starts_with("hubdns_"), "{line}");
        assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name} typed twice");
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has no HELP");
    }
    // The status page's data says the same.
    let (_, status) = tokio::task::spawn_blocking(move || get(admin, "/status.json")).await.expect("join");
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let source = &status["sources"][0];
    assert_eq!(source["id"], "vpc_endpoints/eu-west-1");
    assert!(source["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{source}");
    assert_eq!(status["forward"]["rules"].as_array().map(Vec::len), Some(2));
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_explain_show_provenance_weights_conflicts_and_forwarding() {
    // A config record for an endpoint's private name wins over the endpoint (precedence).
    let (t, _replay, admin) = demo_server(
        "[[records]]\nname = \"secretsmanager.us-east-1.amazonaws.com\"\ntype = \"A\"\nvalues = [\"10.9.9.9\"]\n",
    )
    .await;
    let fetch = move |path: &'static str| tokio::task::spawn_blocking(move || get(admin, path));

    let (status, body) = fetch("/records").await.expect("join");
    assert_eq!(status, 200);
    let records: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let list = records["records"].as_array().expect("records");
    let zonal = list
        .iter()
        .find(|r| r["name"] == "vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com.")
        .expect("zonal name listed");
    assert_eq!((zonal["type"].as_str(), zonal["data"].as_str(), zonal["source"].as_str()), (Some("A"), Some("10.10.1.25"), Some("endpoint-dns")));
    assert!(zonal["origin"].as_str().is_some_and(|o| o.contains("eni=") && o.contains("az=us-east-1a")), "{zonal}");
    assert!(list.iter().any(|r| r["name"] == "_ldap._tcp.corp.example." && r["type"] == "SRV" && r["source"] == "route53"));
    assert_eq!(records["names"].as_u64(), Some(t.server.snapshot().name_count() as u64));

    let (_, body) = fetch("/explain?name=api.corp.example&type=A").await.expect("join");
    let e: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(e["answered_by"], "hubdns");
    let weights: Vec<u64> = e["records"].as_array().expect("records").iter().map(|r| r["weight"][1].as_u64().expect("weight")).collect();
    assert_eq!(weights, [90, 10], "both weighted alternatives: {e}");
    assert!(e["reason"].as_str().is_some_and(|r| r.contains("weighted")), "{e}");

    let (_, body) = fetch("/explain?name=SecretsManager.us-east-1.amazonaws.com").await.expect("join");
    let e: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(e["records"][0]["data"], "10.9.9.9");
    assert_eq!(e["records"][0]["source"], "config");
    let outvoted = e["outvoted"].as_array().expect("outvoted");
    assert!(!outvoted.is_empty() && outvoted.iter().all(|o| o["source"] == "endpoint-dns"), "{e}");

    let (_, body) = fetch("/explain?name=www.example.org&type=MX").await.expect("join");
    let e: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((e["answered_by"].as_str(), e["forward"]["rule"].as_str()), (Some("upstream"), Some(".")));
    assert_eq!(e["forward"]["upstreams"][0]["addr"], "127.0.0.1:9");

    assert_eq!(fetch("/explain?name=a..b").await.expect("join").0, 400);
    assert_eq!(fetch("/explain?name=a.example&type=BOGUS").await.expect("join").0, 400);

    let (_, metrics) = fetch("/metrics").await.expect("join");
    assert!(sample(&metrics, "hubdns_conflicts").is_some_and(|n| n >= 2.0), "both ENIs' records outvoted:\n{metrics}");
    assert!(sample(&metrics, "hubdns_source_records{source=\"route53/us-east-1\",kind=\"route53\"}").is_some_and(|n| n > 0.0));

    let (_, status) = fetch("/status.json").await.expect("join");
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let endpoints = status["sources"][0]["endpoints"].as_array().expect("endpoints");
    let sm = endpoints.iter().find(|e| e["id"] == "vpce-0f1e2d3c4b5a69788").expect("secrets manager endpoint");
    assert_eq!(sm["interfaces"][0]["az"], "us-east-1a");
    assert_eq!(sm["interfaces"][0]["addresses"][0], "10.10.1.25");
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_txt_answers_version_and_identity() {
    let upstream = StubUpstream::start("127.0.0.63", Ipv4Addr::new(192, 0, 2, 63)).await;
    let t = TestServer::standard(upstream.addr, "identity = \"hub-a.example\"", "").await;
    let port = t.addr.port().to_string();
    let ask = |name: &'static str| {
        let port = port.clone();
        tokio::task::spawn_blocking(move || dig(&["@127.0.0.1", "-p", &port, "CH", "TXT", name]))
    };
    let version = ask("version.bind").await.expect("join");
    assert!(version.contains("status: NOERROR") && version.contains("flags: qr aa rd"), "{version}");
    assert!(version.contains(&format!("version.bind.\t\t0\tCH\tTXT\t\"hubdns {}\"", env!("CARGO_PKG_VERSION"))), "{version}");
    let id = ask("id.server").await.expect("join");
    assert!(id.contains("CH\tTXT\t\"hub-a.example\""), "{id}");
    assert!(ask("hostname.bind").await.expect("join").contains("\"hub-a.example\""));
    assert!(ask("authors.bind").await.expect("join").contains("status: REFUSED"));
    assert_eq!(upstream.queries_for("version.bind."), 0, "never forwarded");

    // An empty string hides it.
    let hidden = TestServer::standard(upstream.addr, "version = \"\"", "").await;
    let mut ch = query("version.bind", RecordType::TXT);
    ch.queries[0].query_class = DNSClass::CH;
    assert_eq!(udp_query(hidden.addr, &ch).await.metadata.response_code, ResponseCode::Refused);
    t.server.stop().await;
    hidden.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_command_asks_the_running_server_or_works_offline_from_the_state_file() {
    let dir = tempdir();
    let state = dir.join("state.json");
    let port = free_port();
    let text = format!("{}\n[refresh]\nstate_file = \"{}\"\n", hubdns::DEMO_CONFIG, state.display())
        .replace("upstreams = [\"system\"]", "upstreams = [\"127.0.0.1:9\"]")
        .replacen("[server]", &format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n\n[server]"), 1);
    let path = dir.join("hubdns.toml");
    std::fs::write(&path, &text).expect("write");
    let mut config = Config::parse(&text, "demo.toml").expect("config");
    config.server.listen = vec!["127.0.0.1:0".parse().expect("addr")];
    let replay = hubdns::demo::attach(&mut config).await.expect("stand-in");
    let server = hubdns::server::start(&config).await.expect("starts");
    tokio::time::timeout(Duration::from_secs(10), server.readiness().wait_for(|r| *r)).await.expect("ready").expect("ready");
    let explain = move |args: &'static [&'static str]| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(HUBDNS).arg("explain").args(args).arg("--config").arg(&path).output().expect("runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let live = explain(&["kms.corp.example"]).await.expect("join");
    assert!(live.starts_with(&format!("(from the running hubdns at 127.0.0.1:{port})")), "{live}");
    assert!(live.contains("kms.corp.example. A: hubdns (NOERROR)"), "{live}");
    assert!(live.contains("from endpoint-tag: vpc_endpoints vpce-"), "{live}");
    let json = explain(&["--json", "--type", "srv", "_ldap._tcp.corp.example"]).await.expect("join");
    let e: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!((e["type"].as_str(), e["records"][0]["source"].as_str()), (Some("SRV"), Some("route53")));

    server.stop().await;
    drop(replay);
    let offline = explain(&["kms.corp.example"]).await.expect("join");
    assert!(offline.starts_with("(offline: nothing answers at"), "{offline}");
    assert!(offline.contains("2 sources from the state file"), "{offline}");
    assert!(offline.contains("kms.corp.example. A: hubdns (NOERROR)"), "the state file's names: {offline}");
    let forwarded = explain(&["www.example.org"]).await.expect("join");
    assert!(forwarded.contains("upstream (not cached)") && forwarded.contains("default upstreams"), "{forwarded}");
}

/// A config file for `hubdns serve` with one owned record and the given extra settings.
fn reload_config(admin_port: u16, upstream: SocketAddr, address: &str, server_extra: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n{server_extra}\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
         [forward]\nupstreams = [\"{upstream}\"]\n\n[[records]]\nname = \"svc.reload.test\"\ntype = \"A\"\nvalues = [\"{address}\"]\n{extra}"
    )
}

// A child process: the signals and the file watch are the binary's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_file_changes_reload_without_dropping_a_query_and_bad_configs_are_refused() {
    let upstream = StubUpstream::start("127.0.0.64", Ipv4Addr::new(192, 0, 2, 64)).await;
    let admin_port = free_port();
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let path = tempdir().join("hubdns.toml");
    std::fs::write(&path, reload_config(admin_port, upstream.addr, "10.1.1.1", "watch_config = false", "")).expect("write");
    let (mut child, port, logs) = serve_file(&path, &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let pid = child.0.id().to_string();
    let hup = || assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    let answer = |m: &Message| crate::harness::addresses(m);

    // Queries all through the reloads: every one must be answered.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(async move {
        let (mut sent, mut lost) = (0, 0);
        while !*stopped.borrow() {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            socket.send_to(&query("svc.reload.test", RecordType::A).to_vec().expect("encode"), addr).await.expect("send");
            let mut buf = [0u8; 512];
            sent += 1;
            if tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await.is_err() {
                lost += 1;
            }
        }
        (sent, lost)
    });

    // SIGHUP applies a changed file.
    std::fs::write(&path, reload_config(admin_port, upstream.addr, "10.2.2.2", "watch_config = false", "")).expect("write");
    hup();
    wait_for(addr, "svc.reload.test", RecordType::A, Duration::from_secs(5), |m| answer(m) == ["10.2.2.2"]).await;

    // A bad file is refused, the running config stays, and the reason is logged and counted.
    std::fs::write(&path, "[server]\nlisten = [\"127.0.0.1:0\"]\n[[records]]\nname = \"x\"\ntype = \"A\"\nvalues = [\"nope\"]\n").expect("write");
    hup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !logs.lock().expect("logs").iter().any(|l| l.contains("new config refused")) {
        assert!(Instant::now() < deadline, "refusal not logged:\n{}", logs.lock().expect("logs").join("\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refusal = logs.lock().expect("logs").iter().find(|l| l.contains("new config refused")).cloned().unwrap_or_default();
    assert!(refusal.contains("records[0].values[0]"), "the reason names the key: {refusal}");
    assert_eq!(answer(&udp_query(addr, &query("svc.reload.test", RecordType::A)).await), ["10.2.2.2"], "old config kept");
    let (_, metrics) = tokio::task::spawn_blocking(move || get(admin, "/metrics")).await.expect("join");
    assert_eq!(sample(&metrics, "hubdns_config_reloads_total{result=\"refused\"}"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "hubdns_config_reloads_total{result=\"applied\"}"), Some(1.0), "{metrics}");

    // With watch_config on, a file change alone is picked up (after the debounce).
    std::fs::write(&path, reload_config(admin_port, upstream.addr, "10.3.3.3", "watch_config = true", "")).expect("write");
    hup();
    wait_for(addr, "svc.reload.test", RecordType::A, Duration::from_secs(5), |m| answer(m) == ["10.3.3.3"]).await;
    std::fs::write(&path, reload_config(admin_port, upstream.addr, "10.4.4.4", "watch_config = true", "")).expect("write");
    wait_for(addr, "svc.reload.test", RecordType::A, Duration::from_secs(5), |m| answer(m) == ["10.4.4.4"]).await;
    // A change to the listen address is kept for the next restart, and said so.
    std::fs::write(&path, reload_config(admin_port, upstream.addr, "10.5.5.5", "watch_config = true\nudp_sockets_per_address = 3", "")).expect("write");
    wait_for(addr, "svc.reload.test", RecordType::A, Duration::from_secs(5), |m| answer(m) == ["10.5.5.5"]).await;
    assert!(logs.lock().expect("logs").iter().any(|l| l.contains("only after a restart") && l.contains("server.udp_sockets_per_address")));

    stop.send(true).expect("stop load");
    let (sent, lost) = load.await.expect("load");
    assert!(sent > 20, "the load ran ({sent} queries)");
    assert_eq!(lost, 0, "{lost} of {sent} queries unanswered during reloads");
    assert!(child.0.try_wait().expect("wait").is_none(), "still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_forwarder_cache_unless_forwarding_changed() {
    let upstream = StubUpstream::start("127.0.0.65", Ipv4Addr::new(192, 0, 2, 65)).await;
    let text = |extra: &str| standard_config(upstream.addr, "", extra);
    let t = TestServer::start(&text("")).await;
    let first = t.udp("cache.fwd.test", RecordType::A).await;
    assert_eq!(first.answers.len(), 1, "{first}");
    assert_eq!(upstream.queries_for("cache.fwd.test."), 1, "{:?}", upstream.names_seen());

    let records_only = Config::parse(&text("[[records]]\nname = \"new.corp.example\"\ntype = \"A\"\nvalues = [\"10.7.7.7\"]\n"), "t.toml").expect("config");
    let done = t.server.reload(records_only).await.expect("reloads");
    assert!(done.forwarder_kept && done.needs_restart.is_empty(), "{done:?}");
    assert_eq!(crate::harness::addresses(&t.udp("new.corp.example", RecordType::A).await), ["10.7.7.7"], "new record live on return");
    assert_eq!(t.udp("cache.fwd.test", RecordType::A).await.answers.len(), 1);
    assert_eq!(upstream.queries_for("cache.fwd.test."), 1, "answered from the kept cache");

    let forwarding_changed = Config::parse(&text("").replace("timeout_ms = 300", "timeout_ms = 400"), "t.toml").expect("config");
    let done = t.server.reload(forwarding_changed).await.expect("reloads");
    assert!(!done.forwarder_kept);
    assert_eq!(t.udp("cache.fwd.test", RecordType::A).await.answers.len(), 1);
    assert_eq!(upstream.queries_for("cache.fwd.test."), 2, "a new forwarder starts with an empty cache");
    assert_eq!(t.udp("new.corp.example", RecordType::A).await.metadata.response_code, ResponseCode::NXDomain, "record removed again");

    // A forwarder that loops back to us is refused, and nothing changes.
    let looping = Config::parse(&text("").replace(&upstream.addr.to_string(), &t.addr.to_string()), "t.toml").expect("config");
    assert!(t.server.reload(looping).await.is_err());
    assert_eq!(t.udp("cache.fwd.test", RecordType::A).await.answers.len(), 1, "still forwarding to the stub");
    t.server.stop().await;
}

/// A zone file that does not load when hubdns starts is one zone down, not the server: BIND
/// 9 on the same two files serves the other zone and answers SERVFAIL for the broken one's
/// names ("not loaded due to errors"), recursion asked or not, never asking its forwarder;
/// hubdns answers each question with BIND's rcode, stays ready, and shows the fault on
/// `/status.json`, `/readyz` and `/metrics` until the file is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_file_that_does_not_load_at_start_is_servfail_for_its_names_as_in_bind() {
    // The upstream answers the broken zone's names: forwarding them would be seen.
    let upstream = StubUpstream::start_with("127.0.0.134", Ipv4Addr::new(192, 0, 2, 134), &["www.bad.test.", "bad.test.", "x.y.bad.test."]).await;
    let good = "$ORIGIN good.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 7200 900 1209600 60\n@ IN NS ns\nns IN A 10.9.1.53\nwww IN A 10.9.1.1\n";
    let fixed = "$ORIGIN bad.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 7200 900 1209600 60\n@ IN NS ns\nns IN A 10.9.2.53\nwww IN A 10.9.2.1\n";
    // Two addresses where A has one field: both servers refuse the file (BIND: extra input text).
    let broken = fixed.replace("www IN A 10.9.2.1", "www IN A 10.9.2.1 10.9.2.2");
    // A loaded parent with a wildcard and data of its own under a child zone that does not load:
    // neither answers for the child's names.
    let parent = "$ORIGIN par.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 7200 900 1209600 60\n@ IN NS ns\nns IN A 10.9.3.53\n* IN A 10.9.3.9\nx.kid IN A 10.9.3.7\n";
    let kid = "$ORIGIN kid.par.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 7200 900 1209600 60\n@ IN NS ns\nns IN A 10.9.4.53\nns IN CNAME www\n";
    let zones = [("good.test", good.to_owned()), ("bad.test", broken.clone()), ("par.test", parent.to_owned()), ("kid.par.test", kid.to_owned())];
    let (_bind, bind, log) = crate::differential::start_bind_with_faults(&zones, Some(upstream.addr));
    assert!(log.contains("zone bad.test/IN: not loaded due to errors"), "BIND refuses the broken file:\n{log}");
    assert!(log.contains("zone kid.par.test/IN: not loaded due to errors"), "BIND refuses the broken child:\n{log}");

    let admin_port = free_port();
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let dir = tempdir();
    std::fs::write(dir.join("good.zone"), good).expect("zone");
    std::fs::write(dir.join("bad.zone"), &broken).expect("zone");
    std::fs::write(dir.join("par.zone"), parent).expect("zone");
    std::fs::write(dir.join("kid.zone"), kid).expect("zone");
    let path = dir.join("hubdns.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nwatch_config = true\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
             [forward]\nupstreams = [\"{}\"]\n\n[[zones]]\nfile = \"bad.zone\"\n\n[[zones]]\nfile = \"good.zone\"\n\n\
             [[zones]]\nfile = \"par.zone\"\n\n[[zones]]\nfile = \"kid.zone\"\n",
            upstream.addr
        ),
    )
    .expect("config");
    let check = std::process::Command::new(HUBDNS).args(["check", "--config"]).arg(&path).output().expect("runs");
    assert_eq!(check.status.code(), Some(78), "check still refuses it");
    assert!(String::from_utf8_lossy(&check.stderr).contains("zones[0].file: ") && String::from_utf8_lossy(&check.stderr).contains("bad.zone:6: "), "{check:?}");
    // `explain` answers as a server started now would, and says why.
    let explained = std::process::Command::new(HUBDNS).args(["explain", "--json", "--config"]).arg(&path).arg("www.bad.test").output().expect("runs");
    let json: serde_json::Value = serde_json::from_slice(&explained.stdout).unwrap_or_else(|e| panic!("{e}: {explained:?}"));
    assert_eq!(json["rcode"].as_str(), Some("SERVFAIL"), "{json}");
    let (child, port, _logs) = serve_file(&path, &[]);
    let hub: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for(hub, "www.good.test", RecordType::A, Duration::from_secs(10), |m| crate::harness::addresses(m) == ["10.9.1.1"]).await;

    for (name, qtype, rd) in [
        ("www.bad.test.", RecordType::A, true),
        ("www.bad.test.", RecordType::A, false),
        ("bad.test.", RecordType::SOA, true),
        ("x.y.bad.test.", RecordType::TXT, true),
        ("www.good.test.", RecordType::A, true),
        ("nothere.good.test.", RecordType::A, true),
        ("www.kid.par.test.", RecordType::A, true),
        ("x.kid.par.test.", RecordType::A, true),
        ("kid.par.test.", RecordType::SOA, true),
        ("other.par.test.", RecordType::A, true),
    ] {
        let mut question = query(name, qtype);
        question.metadata.recursion_desired = rd;
        let (from_bind, from_hub) = (udp_query(bind, &question).await, udp_query(hub, &question).await);
        assert_eq!(
            from_hub.metadata.response_code, from_bind.metadata.response_code,
            "{name} {qtype} rd={rd}: hubdns (left) against BIND (right)\nhubdns: {from_hub}\nBIND: {from_bind}"
        );
        assert_eq!(crate::harness::addresses(&from_hub), crate::harness::addresses(&from_bind), "{name} {qtype} rd={rd}");
    }
    assert_eq!(upstream.queries_for("www.bad.test."), 0, "neither server sent the broken zone's names upstream");

    let (status, ready) = tokio::task::spawn_blocking(move || get(admin, "/readyz")).await.expect("join");
    assert_eq!(status, 200, "one zone down does not take the server out of service: {ready}");
    assert!(ready.contains("bad.zone (failed)"), "{ready}");
    let (_, json) = tokio::task::spawn_blocking(move || get(admin, "/status.json")).await.expect("join");
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    let zones = &json["config"]["zones"];
    assert_eq!((zones[0]["zone"].as_str(), zones[0]["state"].as_str()), (Some("bad.test."), Some("failed")), "{zones}");
    assert!(zones[0]["error"].as_str().is_some_and(|e| e.contains("zones[0].file") && e.contains("bad.zone:6:")), "{zones}");
    assert_eq!((zones[1]["state"].as_str(), zones[1]["records"].as_u64()), (Some("loaded"), Some(4)), "{zones}");
    assert_eq!((zones[3]["zone"].as_str(), zones[3]["state"].as_str()), (Some("kid.par.test."), Some("failed")), "{zones}");
    let (_, explained) = tokio::task::spawn_blocking(move || get(admin, "/explain?name=www.bad.test")).await.expect("join");
    let explained: serde_json::Value = serde_json::from_str(&explained).expect("json");
    assert_eq!(explained["rcode"].as_str(), Some("SERVFAIL"), "{explained}");
    let (_, metrics) = tokio::task::spawn_blocking(move || get(admin, "/metrics")).await.expect("join");
    assert_eq!(sample(&metrics, "hubdns_zone_files{state=\"failed\"}"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "hubdns_zone_files{state=\"loaded\"}"), Some(2.0), "{metrics}");

    // Fixed, it is read and served; nothing is left on the board.
    std::fs::write(dir.join("bad.zone"), fixed).expect("zone");
    wait_for(hub, "www.bad.test", RecordType::A, Duration::from_secs(10), |m| crate::harness::addresses(m) == ["10.9.2.1"]).await;
    let (_, metrics) = tokio::task::spawn_blocking(move || get(admin, "/metrics")).await.expect("join");
    assert_eq!(sample(&metrics, "hubdns_zone_files{state=\"failed\"}"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "hubdns_zone_files{state=\"loaded\"}"), Some(3.0), "{metrics}");
    drop(child);
}

// A child process: the file watch is the binary's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_zone_file_reloads_and_a_broken_one_keeps_its_last_good_copy() {
    let upstream = StubUpstream::start("127.0.0.133", Ipv4Addr::new(192, 0, 2, 133)).await;
    let admin_port = free_port();
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let dir = tempdir();
    let zone = |host: &str| {
        format!(
            "$ORIGIN zone.test.\n$TTL 300\n@ IN SOA ns hostmaster ( 1 7200 900 1209600 60 )\n  IN NS ns\nns IN A 10.9.0.53\n\
             $INCLUDE hosts.inc\nwww IN CNAME {host}\n"
        )
    };
    std::fs::write(dir.join("zone.db"), zone("web")).expect("zone");
    std::fs::write(dir.join("hosts.inc"), "web IN A 10.9.0.1\n").expect("include");
    let path = dir.join("hubdns.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nwatch_config = true\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
             [forward]\nupstreams = [\"{}\"]\n\n[[zones]]\nfile = \"zone.db\"\n",
            upstream.addr
        ),
    )
    .expect("config");
    let (child, port, _logs) = serve_file(&path, &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let answer = |m: &Message| crate::harness::addresses(m);
    wait_for(addr, "www.zone.test", RecordType::A, Duration::from_secs(10), |m| answer(m) == ["10.9.0.1"]).await;

    // The zone's own SOA in a negative answer: it is served as a whole zone.
    let missing = udp_query(addr, &query("missing.zone.test", RecordType::A)).await;
    assert_eq!(missing.metadata.response_code, hickory_proto::op::ResponseCode::NXDomain);
    let soa = missing.authorities.first().expect("SOA");
    assert_eq!((soa.name.to_string().as_str(), soa.ttl), ("zone.test.", 60), "{missing:?}");

    // A changed included file alone reloads the zone.
    std::fs::write(dir.join("hosts.inc"), "web IN A 10.9.0.2\n").expect("include");
    wait_for(addr, "www.zone.test", RecordType::A, Duration::from_secs(10), |m| answer(m) == ["10.9.0.2"]).await;

    // A broken zone file — here a file it newly includes — is named with its file and line,
    // and the copy loaded before stays served; the rest of the same change (a new record)
    // is applied, as BIND's reload keeps a zone that fails and loads the others.
    std::fs::write(dir.join("extra.inc"), "extra IN A 10.9.0.300\n").expect("include");
    std::fs::write(dir.join("zone.db"), zone("web") + "$INCLUDE extra.inc\n").expect("zone");
    std::fs::write(&path, std::fs::read_to_string(&path).expect("config") + "\n[[records]]\nname = \"added.test\"\ntype = \"A\"\nvalues = [\"10.9.9.9\"]\n").expect("config");
    wait_for(addr, "added.test", RecordType::A, Duration::from_secs(10), |m| answer(m) == ["10.9.9.9"]).await;
    assert_eq!(answer(&udp_query(addr, &query("www.zone.test", RecordType::A)).await), ["10.9.0.2"], "the running zone stays");
    let (_, json) = tokio::task::spawn_blocking(move || get(admin, "/status.json")).await.expect("join");
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    let kept = &json["config"]["zones"][0];
    assert_eq!(kept["state"].as_str(), Some("kept"), "{kept}");
    assert!(kept["error"].as_str().is_some_and(|e| e.contains("zones[0].file") && e.contains("extra.inc:1:")), "the reason names the file and line: {kept}");
    let (_, metrics) = tokio::task::spawn_blocking(move || get(admin, "/metrics")).await.expect("join");
    assert_eq!(sample(&metrics, "hubdns_zone_files{state=\"kept\"}"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "hubdns_config_reloads_total{result=\"refused\"}"), Some(0.0), "{metrics}");

    // Fixing the file that was refused is seen, though the running config never read it.
    std::fs::write(dir.join("extra.inc"), "extra IN A 10.9.0.3\n").expect("include");
    wait_for(addr, "extra.zone.test", RecordType::A, Duration::from_secs(10), |m| answer(m) == ["10.9.0.3"]).await;

    // And the zone file's own edits still are.
    std::fs::write(dir.join("zone.db"), zone("ns")).expect("zone");
    wait_for(addr, "www.zone.test", RecordType::A, Duration::from_secs(10), |m| answer(m) == ["10.9.0.53"]).await;
    drop(child);
}
