//! The `hubdns` binary end to end: `check`, `serve` with SIGTERM, and `dig` against it.

use std::{
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use crate::harness::{HUBDNS, StubUpstream, dig, serve, standard_config, tempdir};

fn config_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[test]
fn check_summarises_the_shipped_configs() {
    for file in ["hubdns.toml", "demo.toml"] {
        let out = Command::new(HUBDNS).args(["check", "--config"]).arg(config_dir().join(file)).output().expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        for section in ["listen", "allow", "aliases", "records", "forward", "sources"] {
            assert!(stdout.contains(section), "{file}: summary lacks {section}:\n{stdout}");
        }
    }
    let demo = Command::new(HUBDNS).args(["check", "--config"]).arg(config_dir().join("demo.toml")).output().expect("runs");
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(stdout.contains("internal-api.service.com. -> vpce-0123456789abcdef0"), "{stdout}");
    assert!(stdout.contains("vpc_endpoints region us-east-1"), "{stdout}");
    assert!(stdout.contains("custom domain names: verified ones, and unverified under svc.example."), "{stdout}");
    assert!(stdout.contains("route53 region us-east-1, zones of vpcs vpc-0a1b2c3d4e5f60718"), "{stdout}");
    assert!(stdout.contains("pending       alias internal-api.service.com."), "alias to an endpoint id waits for AWS:\n{stdout}");
    assert!(!stdout.contains("warning"), "{stdout}");
}

/// `hubdns check` says which accounts each entry reads and where change events come from.
#[test]
fn check_summarises_accounts_and_events() {
    let path = tempdir().join("accounts.toml");
    let text = "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\naccounts = \"organization\"\nrole_name = \"hubdns-read\"\n\n\
                [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-0a1b2c3d4e5f60718\"]\naccounts = [\"222233334444\"]\nrole_name = \"hubdns-read\"\n\n\
                [events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/hubdns-events-a\"\nregion = \"us-east-1\"\n\n\
                [az]\naffinity = \"prefer\"\ndefault = \"use1-az1\"\n[[az.clients]]\ncidr = \"10.50.0.0/16\"\naz_id = \"use1-az2\"\n\
                [[az.forwarders]]\ncidr = \"10.60.0.10/32\"\n[[az.names]]\nname = \"*.s3.us-east-1.amazonaws.com\"\naffinity = \"only\"\n";
    std::fs::write(&path, text).expect("write");
    let out = Command::new(HUBDNS).args(["check", "--config"]).arg(&path).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("every ACTIVE account of the organization (listed every refresh), each through its role hubdns-read"), "{stdout}");
    assert!(stdout.contains("accounts 222233334444, each through its role hubdns-read"), "{stdout}");
    assert!(stdout.contains("events        https://sqs.us-east-1.amazonaws.com/111122223333/hubdns-events-a (us-east-1)"), "{stdout}");
    assert!(stdout.contains("every 300s while events flow, 30s while the queue fails"), "{stdout}");
    assert!(
        stdout.contains("az            affinity prefer; clients placed by the vpc_endpoints sources' subnets (DescribeSubnets), then 1 [[az.clients]] ranges; 1 [[az.forwarders]] ranges (AZ unknown); everyone else: use1-az1"),
        "{stdout}"
    );
    assert!(stdout.contains("  *.s3.us-east-1.amazonaws.com. -> only"), "{stdout}");
}

#[test]
fn check_refuses_a_bad_config_with_file_line_and_key() {
    let dir = tempdir();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = [\"127.0.0.1:53\"]\n\n[[records]]\nname = \"x.example\"\ntype = \"A\"\nvalues = [\"not-an-ip\"]\n")
        .expect("write");
    let out = Command::new(HUBDNS).args(["check", "--config"]).arg(&path).output().expect("runs");
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:4: records[0].values[0]"), "{stderr}");
    assert!(stderr.contains("not valid A data"), "{stderr}");

    // A chain that can only be SERVFAIL (a wildcard CNAME leading back under itself): the
    // summary prints, and the exit status says the config is not fit to serve.
    std::fs::write(&path, "[[records]]\nname = \"*.w.example\"\ntype = \"CNAME\"\nvalues = [\"x.w.example\"]\n").expect("write");
    let out = Command::new(HUBDNS).args(["check", "--config"]).arg(&path).output().expect("runs");
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("error         *.w.example.: its CNAME chain loops back"), "{stdout}");

    std::fs::write(&path, "[server]\nlisten_on = []\n").expect("write");
    let out = Command::new(HUBDNS).args(["serve", "--config"]).arg(&path).output().expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2") && stderr.contains("unknown field `listen_on`"), "{stderr}");
}

// Multi-threaded: dig blocks this thread while the stub upstream must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_against_the_binary_then_sigterm_stops_it_cleanly() {
    let upstream = StubUpstream::start("127.0.0.53", Ipv4Addr::new(192, 0, 2, 1)).await;
    let config = standard_config(upstream.addr, "", "") + "\n[[records]]\nname = \"many.corp.example\"\ntype = \"A\"\nvalues = ["
        + &(1..=100).map(|i| format!("\"10.99.0.{i}\"")).collect::<Vec<_>>().join(",")
        + "]\n";
    let (mut hubdns, port, _logs) = serve(&config, &[]);
    let port = port.to_string();
    let at = ["@127.0.0.1", "-p", &port];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = at.to_vec();
        args.extend_from_slice(extra);
        dig(&args)
    };

    let short = run(&["+short", "secretsmanager.us-east-1.amazonaws.com"]);
    assert_eq!(short.lines().collect::<Vec<_>>(), ["10.10.1.25", "10.10.2.41"]);
    let full = run(&["internal-api.service.com"]);
    assert!(full.contains("status: NOERROR") && full.contains("flags: qr aa rd ra"), "{full}");
    assert!(full.contains("; EDNS: version: 0, flags:; udp: 1232"), "{full}");
    let nx = run(&["nope.secretsmanager.us-east-1.amazonaws.com"]);
    assert!(nx.contains("status: NXDOMAIN") && nx.contains("IN SOA hubdns.invalid."), "{nx}");
    let tcp = run(&["+tcp", "+short", "internal-api.service.com"]);
    assert_eq!(tcp.lines().count(), 2);
    // dig retries a truncated answer over TCP by itself: all 100 records arrive.
    let big = run(&["+short", "many.corp.example"]);
    assert_eq!(big.lines().count(), 100, "{big}");
    let notc = run(&["+ignore", "many.corp.example"]);
    assert!(notc.contains("flags: qr aa tc rd ra"), "{notc}");
    let forwarded = run(&["+short", "www.fwd.test"]);
    assert_eq!(forwarded.trim(), "192.0.2.1");

    let pid = hubdns.0.id().to_string();
    // SIGHUP (what `systemctl reload` sends) must not kill it.
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill runs").success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hubdns.0.try_wait().expect("wait").is_none(), "hubdns died on SIGHUP");
    let after_hup = run(&["+short", "secretsmanager.us-east-1.amazonaws.com"]);
    assert_eq!(after_hup.lines().count(), 2, "still answering after SIGHUP");
    let started = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    let status = loop {
        if let Some(status) = hubdns.0.try_wait().expect("wait") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "hubdns did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_health_and_readiness_answer_over_http_and_through_hubdns_health() {
    // Readiness waits for a source that never answers: an EC2 API address nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[forward]\nupstreams = [\"127.0.0.1:9\"]\n\
         [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nendpoint_url = \"http://{dead}\"\nmax_attempts = 1\napi_timeout_secs = 1\n"
    );
    let mut config = hubdns::config::Config::parse(&text, "admin.toml").expect("config");
    config.sources.vpc_endpoints[0].get_mut().static_credentials = true;
    let server = hubdns::server::start(&config).await.expect("starts");
    let admin = server.admin_addr().expect("admin listener bound");
    let health = move |path: &'static str| {
        let out = Command::new(HUBDNS).args(["health", "--admin", &admin.to_string(), "--path", path]).output().expect("runs");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let probe = |path: &'static str| hubdns::admin::probe(admin, path, std::time::Duration::from_secs(2)).expect("HTTP answer");
    assert_eq!(probe("/healthz"), (200, "ok\n".to_owned()));
    let (status, body) = probe("/readyz");
    assert_eq!(status, 503, "{body}");
    let (code, said) = tokio::task::spawn_blocking(move || health("/readyz")).await.expect("join");
    assert_eq!(code, Some(1), "not ready → exit 1: {said}");
    assert!(said.contains("503"), "{said}");
    assert_eq!(tokio::task::spawn_blocking(move || health("/healthz")).await.expect("join").0, Some(0));
    assert_eq!(probe("/nope").0, 404);
    server.stop().await;
    assert!(hubdns::admin::probe(admin, "/healthz", std::time::Duration::from_secs(1)).is_err(), "closed at stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_ready_when_every_source_has_answered() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[forward]\nupstreams = [\"127.0.0.1:9\"]\n";
    let config = hubdns::config::Config::parse(text, "admin.toml").expect("config");
    let server = hubdns::server::start(&config).await.expect("starts");
    let admin = server.admin_addr().expect("admin listener bound");
    let ready = hubdns::admin::probe(admin, "/readyz", std::time::Duration::from_secs(2)).expect("HTTP answer");
    assert_eq!(ready, (200, "ready\n".to_owned()), "no AWS sources: ready at once");
    let out = Command::new(HUBDNS).args(["health", "--admin", &admin.to_string()]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.stop().await;
}
