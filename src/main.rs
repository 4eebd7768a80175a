//! The `hubdns` command: arguments, logging, runtime; errors become exit codes.

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hubdns::config::Config;
use tracing_subscriber::EnvFilter;

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
        /// Address of the admin HTTP listener (/healthz, /readyz).
        #[arg(long, default_value = "127.0.0.1:9153")]
        admin: SocketAddr,
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
    let args = Args::parse();
    // hickory logs every request at info; keep its crates at warn unless RUST_LOG says otherwise.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,hickory_server=warn,hickory_proto=warn,hickory_net=warn,hickory_resolver=warn")
    });
    // Colour only on a terminal: journald, Docker and CloudWatch get plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let config = match &args.command {
        Command::Serve { config } | Command::Check { config } => Config::load(config),
        Command::Demo { listen, admin } => Config::parse(hubdns::DEMO_CONFIG, "config/demo.toml").map(|mut c| {
            c.server.listen = vec![*listen];
            c.admin.listen = Some(*admin);
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
    if let Command::Check { .. } = args.command {
        print!("{}", hubdns::summary::summary(&config));
        return ExitCode::SUCCESS;
    }
    let demo = matches!(args.command, Command::Demo { .. });
    match run(&mut config, demo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hubdns: {error:#}");
            ExitCode::FAILURE
        }
    }
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

fn run(config: &mut Config, demo: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // The demo's endpoints come from recorded EC2 responses served on loopback.
        let _replay = match demo {
            true => Some(hubdns::demo::attach(config).await.context("cannot start the demo's EC2 stand-in")?),
            false => None,
        };
        let server = hubdns::server::start(config).await.context("cannot start")?;
        if demo {
            print_demo_help(server.addr(), server.admin_addr());
        }
        shutdown_signal().await.context("cannot listen for signals")?;
        tracing::info!("shutting down");
        server.stop().await;
        Ok(())
    })
}

/// Resolves on SIGTERM (systemd, Docker, Kubernetes) or SIGINT (Ctrl-C). SIGHUP, whose
/// default action would kill the process, is caught and logged: reload is not built yet.
async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            result = tokio::signal::ctrl_c() => return result,
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => tracing::warn!("SIGHUP received: reloading the config is not supported yet; restart hubdns to apply changes"),
        }
    }
}

fn print_demo_help(addr: SocketAddr, admin: Option<SocketAddr>) {
    let at = format!("@{} -p {}", addr.ip(), addr.port());
    let admin = admin.map(|a| format!("\n  curl http://{a}/readyz                                  # ready: sources answered")).unwrap_or_default();
    println!(
        "hubdns demo is serving on {addr} (UDP and TCP). Try:\n\
         \n  dig {at} secretsmanager.us-east-1.amazonaws.com           # endpoint private name: 2 ENI IPs\
         \n  dig {at} vpce-0f1e2d3c4b5a69788-8m2kq4xz.secretsmanager.us-east-1.vpce.amazonaws.com\
         \n  dig {at} vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com   # zonal: 1 IP\
         \n  dig {at} internal-api.service.com                          # alias of an endpoint id, flattened to A\
         \n  dig {at} kms.corp.example                                  # hubdns:alias tag on the KMS endpoint\
         \n  dig {at} my-bucket.s3.us-east-1.amazonaws.com              # wildcard\
         \n  dig {at} internal-api.corp.example                         # Route 53 alias to an endpoint\
         \n  dig {at} api.corp.example                                  # Route 53 weighted 90/10, drawn per query\
         \n  dig {at} _ldap._tcp.corp.example SRV                       # Route 53 private zone record\
         \n  dig {at} secretsmanager.us-east-1.amazonaws.com AAAA       # NODATA + SOA\
         \n  dig {at} nope.secretsmanager.us-east-1.amazonaws.com       # NXDOMAIN + SOA\
         \n  dig {at} example.com                                       # forwarded to /etc/resolv.conf\
         {admin}\n\nCtrl-C stops it."
    );
}
