//! The `hubdns` command: arguments, logging, runtime, signals; errors become exit codes.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

/// mimalloc rather than glibc's allocator: see `hubdns::memory`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hubdns::{
    config::{Config, LogConfig},
    inspect::Origin,
    logging::Logging,
    reload::ConfigFile,
};

/// Private DNS for AWS hub-and-spoke networks: answers PrivateLink endpoint names and
/// aliases, forwards everything else.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS with the given config file.
    Serve {
        /// The TOML config file (see config/hubdns.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and print what it will do.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serve the built-in demo data (config/demo.toml).
    Demo {
        /// Address to serve on (UDP and TCP).
        #[arg(long, default_value = "127.0.0.1:5353")]
        listen: SocketAddr,
        /// Address of the admin HTTP listener (status page, /metrics, /healthz, /readyz, …).
        #[arg(long, default_value = "127.0.0.1:9153")]
        admin: SocketAddr,
        /// Address to serve DNS over TLS on, with a self-signed certificate made at start.
        #[arg(long, default_value = "127.0.0.1:8853")]
        tls: SocketAddr,
        /// Address to serve DNS over HTTPS on (path /dns-query), with the same certificate.
        #[arg(long, default_value = "127.0.0.1:8443")]
        https: SocketAddr,
    },
    /// Say why a name gets the answer it gets: which source owns it, or where it is forwarded.
    /// Asks the running hubdns (admin.listen); if none answers, works it out from the config
    /// and the state file.
    Explain {
        /// The name to explain.
        name: String,
        /// The query type.
        #[arg(long = "type", short = 't', default_value = "A")]
        qtype: String,
        /// The TOML config file of the hubdns to ask.
        #[arg(long, short, default_value = "/etc/hubdns/hubdns.toml")]
        config: PathBuf,
        /// Print the JSON that /explain returns.
        #[arg(long)]
        json: bool,
        /// Answer as this client address would be answered ([az] affinity).
        #[arg(long)]
        client: Option<std::net::IpAddr>,
    },
    /// Ask a running hubdns whether it is ready (exit 0) or not (exit 1): for container
    /// health checks, where there is no curl.
    Health {
        /// The admin listener's address (`admin.listen`).
        #[arg(long, default_value = "127.0.0.1:9153")]
        admin: SocketAddr,
        /// The path to ask: /readyz (ready for traffic) or /healthz (alive).
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
}

/// Exit code for a config that does not load (EX_CONFIG from sysexits.h).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    hubdns::memory::tune();
    // Until the runtime installs its handler, a SIGHUP (a reload asked for too early) is
    // ignored rather than fatal.
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread is started.
    // The same for SIGUSR1 (logrotate asking to reopen the query log), whose default kills.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGUSR1, libc::SIG_IGN);
    }
    let args = Args::parse();
    let config = match &args.command {
        // A server starts without a zone file that does not load (and reports it), as BIND
        // does; so does `explain`, which answers as such a server would (and says so). `check`
        // lists every such file and fails.
        Command::Serve { config } | Command::Check { config } | Command::Explain { config, .. } => Config::load_serving(config),
        Command::Demo { listen, admin, tls, https } => Config::parse(hubdns::DEMO_CONFIG, "config/demo.toml").map(|mut c| {
            c.server.listen = vec![*listen];
            c.admin.listen = Some(*admin);
            (c.server.tls_listen, c.server.https_listen) = (vec![*tls], vec![*https]);
            c
        }),
        Command::Health { admin, path } => return health(*admin, path),
    };
    let mut config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("hubdns: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // (A server logs them as it starts.)
    if !config.zone_faults.is_empty() && matches!(args.command, Command::Check { .. } | Command::Explain { .. }) {
        for fault in &config.zone_faults {
            eprintln!("hubdns: {}", fault.error);
        }
        if let Command::Check { .. } = args.command {
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    if let Command::Check { .. } = args.command {
        let (text, ok) = hubdns::summary::summary(&config);
        print!("{text}{}", hubdns::inspect::dnssec_lines(&config));
        let files = check_files(&config);
        for problem in &files {
            println!("error: {problem}");
        }
        return if ok && files.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_CONFIG) };
    }
    if let Command::Explain { name, qtype, json, client, .. } = &args.command {
        hubdns::logging::init(&LogConfig { level: "warn".into(), ..LogConfig::default() });
        return explain(&config, name, qtype, *json, *client);
    }
    if let Command::Demo { .. } = args.command {
        match demo_certificate() {
            Ok((cert, key)) => (config.server.tls_cert, config.server.tls_key) = (Some(cert), Some(key)),
            Err(error) => {
                eprintln!("hubdns: cannot make the demo's self-signed certificate: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let logging = hubdns::logging::init(&config.log);
    let file = match &args.command {
        Command::Serve { config: path } => Some(ConfigFile::new(path, &config)),
        _ => None,
    };
    let demo_files = matches!(args.command, Command::Demo { .. }).then(|| config.server.tls_cert.clone()).flatten();
    let ran = run(&mut config, file, &logging);
    if let Some(dir) = demo_files.as_deref().and_then(std::path::Path::parent) {
        let _ = std::fs::remove_dir_all(dir);
    }
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hubdns: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `serve` would refuse to start with that the config's text cannot show: a certificate
/// and key that do not load together, a query log that cannot be opened (tried without
/// writing: an existing file is opened for appending, a missing one's directory looked at).
fn check_files(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let server = &config.server;
    if (!server.tls_listen.is_empty() || !server.https_listen.is_empty())
        && let (Some(cert), Some(key)) = (&server.tls_cert, &server.tls_key)
        && let Err(error) = hubdns::dns::tls::load_pair(cert, key)
    {
        problems.push(format!("server.tls_cert / tls_key: {error}"));
    }
    if let hubdns::querylog::Target::File(path) = &config.log.queries {
        let usable = match path.exists() {
            true => std::fs::OpenOptions::new().append(true).open(path).map(drop),
            false => match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(dir) if !dir.is_dir() => Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no directory {}", dir.display()))),
                _ => Ok(()),
            },
        };
        if let Err(error) = usable {
            problems.push(format!("log.queries: cannot write {}: {error}", path.display()));
        }
    }
    problems
}

/// A new self-signed certificate for `localhost` and 127.0.0.1, in a directory of this
/// process's own under the temporary directory.
fn demo_certificate() -> std::io::Result<(PathBuf, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("hubdns-demo-{}", std::process::id()));
    hubdns::dns::tls::write_self_signed(&dir, &["localhost", "127.0.0.1"])
}

/// `hubdns health`: 0 when the admin listener answers 200, 1 otherwise.
fn health(admin: SocketAddr, path: &str) -> ExitCode {
    match hubdns::admin::probe(admin, path, std::time::Duration::from_secs(3)) {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprint!("hubdns: {admin}{path}: HTTP {status}: {body}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("hubdns: {admin}{path}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `hubdns explain`: prints the explanation, and where it came from.
fn explain(config: &Config, name: &str, qtype: &str, json: bool, client: Option<std::net::IpAddr>) -> ExitCode {
    let Some(qtype) = hubdns::explain::parse_type(qtype) else {
        eprintln!("hubdns: `{qtype}` is not a record type");
        return ExitCode::FAILURE;
    };
    // Building a forwarder (offline) wants a runtime, though it sends nothing.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let explained = runtime
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(async { hubdns::inspect::explain_for(config, name, qtype, client) }));
    match explained {
        Ok((explanation, origin)) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&explanation).unwrap_or_default());
            } else {
                match origin {
                    Origin::Running(addr) => println!("(from the running hubdns at {addr})"),
                    Origin::Offline(why) => println!("(offline: {why})"),
                }
                print!("{explanation}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hubdns: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGTERM or SIGINT, reloading `file` on SIGHUP and (if `server.watch_config`)
/// when it changes. The demo has no file.
fn run(config: &mut Config, file: Option<ConfigFile>, logging: &Logging) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Signal handlers first: a SIGHUP that arrived before them would kill the process.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        let mut usr1 = signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?;
        // The demo's endpoints come from recorded EC2 responses served on loopback.
        let _replay = match file {
            None => Some(hubdns::demo::attach(config).await.context("cannot start the demo's AWS stand-in")?),
            Some(_) => None,
        };
        let server = hubdns::server::start(config).await.context("cannot start")?;
        if file.is_none() {
            print_demo_help(&server, config);
        }
        let mut watch = config.server.watch_config;
        loop {
            let changed = async {
                match (&file, watch) {
                    (Some(file), true) => file.changed().await,
                    _ => std::future::pending().await,
                }
            };
            let why = tokio::select! {
                result = tokio::signal::ctrl_c() => { result.context("cannot listen for SIGINT")?; break }
                _ = term.recv() => break,
                _ = hup.recv() => "SIGHUP",
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1: reopening the query log");
                    server.reopen_logs();
                    continue;
                }
                () = changed => "file changed",
            };
            let Some(file) = &file else {
                tracing::info!("SIGHUP: the demo has no config file to reload");
                continue;
            };
            // A stop asked for during a reload is not kept waiting for it.
            let applied = tokio::select! {
                applied = file.reload(&server, why) => applied,
                _ = term.recv() => break,
            };
            if let Some(applied) = applied {
                logging.apply(&applied.log);
                watch = applied.server.watch_config;
            }
        }
        tracing::info!("shutting down");
        server.stop().await;
        Ok(())
    })
}

fn print_demo_help(server: &hubdns::server::Server, config: &Config) {
    let (addr, admin) = (server.addr(), server.admin_addr());
    let at = format!("@{} -p {}", addr.ip(), addr.port());
    let ca = config.server.tls_cert.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let mut encrypted = String::new();
    for a in server.tls_addrs() {
        encrypted.push_str(&format!(
            "\n  kdig @{} -p {} +tls +tls-ca={ca} +tls-hostname=localhost secretsmanager.us-east-1.amazonaws.com   # DoT",
            a.ip(),
            a.port()
        ));
    }
    for a in server.https_addrs() {
        encrypted.push_str(&format!(
            "\n  kdig @{} -p {} +https +tls-ca={ca} +tls-hostname=localhost secretsmanager.us-east-1.amazonaws.com   # DoH POST\
             \n  kdig @{} -p {} +https-get +tls-ca={ca} +tls-hostname=localhost kms.corp.example   # DoH GET",
            a.ip(),
            a.port(),
            a.ip(),
            a.port()
        ));
    }
    if !encrypted.is_empty() {
        encrypted = format!("\n\nEncrypted (self-signed certificate {ca}):{encrypted}");
    }
    let admin = admin
        .map(|a| {
            format!(
                "\n\nStatus page: http://{a}/   Also: /metrics /records /explain?name=api.corp.example /readyz\
                 \n  curl 'http://{a}/explain?name=kms.corp.example'       # why a name answers as it does"
            )
        })
        .unwrap_or_default();
    println!(
        "hubdns demo is serving on {addr} (UDP and TCP). Try:\n\
         \n  dig {at} secretsmanager.us-east-1.amazonaws.com           # endpoint private name: 2 ENI IPs\
         \n  dig {at} vpce-0f1e2d3c4b5a69788-8m2kq4xz.secretsmanager.us-east-1.vpce.amazonaws.com\
         \n  dig {at} vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com   # zonal: 1 IP\
         \n  dig {at} internal-api.service.com                          # alias of an endpoint id, flattened to A\
         \n  dig {at} kms.corp.example                                  # hubdns:alias tag on the KMS endpoint\
         \n  dig {at} proxy.egress.example                              # resource endpoint, verified custom domain: 2 ENI IPs\
         \n  dig {at} orders.svc.example                                # service-network endpoint's service\
         \n  dig {at} my-bucket.s3.us-east-1.amazonaws.com              # wildcard\
         \n  dig {at} internal-api.corp.example                         # Route 53 alias to an endpoint\
         \n  dig {at} api.corp.example                                  # Route 53 weighted 90/10, drawn per query\
         \n  dig {at} _ldap._tcp.corp.example SRV                       # Route 53 private zone record\
         \n  dig {at} secretsmanager.us-east-1.amazonaws.com AAAA       # NODATA + SOA\
         \n  dig {at} nope.secretsmanager.us-east-1.amazonaws.com       # NXDOMAIN + SOA\
         \n  dig {at} example.com                                       # forwarded to /etc/resolv.conf\
         {encrypted}{admin}\n\nCtrl-C stops it."
    );
}
