//! Starting, reloading and stopping hubdns: config → snapshot + forwarder + listeners, one
//! shutdown token.
//!
//! [`start`] returns once every socket is bound, with the addresses actually bound, so tests
//! can start a server on `127.0.0.1:0` and query it at once (mini-redis style).
//!
//! [`Server::reload`] applies a new config without dropping a query: it builds a new
//! [`Handler`] (keeping the forwarder, and so its cache, when the `[forward]` section did not
//! change, and the rate limiter's buckets when `[rate_limit]` did not) and swaps it in whole; queries in flight finish with the handler they started
//! with. The refresh loop is handed the new sources and rebuilds the table at once. What needs
//! new sockets (listen addresses, the admin listener, socket counts, TCP limits) is reported
//! as needing a restart and left as it is.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    admin,
    config::Config,
    dns::{
        forwarder::{ForwardError, Forwarder},
        handler::{Handler, SharedHandler},
        doh, dot,
        listener::{Bound, ClientSlots, StreamBounds, tcp_listener, wake_udp},
        tls::Certificates,
    },
    live::Live,
    metrics::Metrics,
    querylog::{QueryLog, Target},
    refresh::{Refresher, Update},
    snapshot::{SharedSnapshot, Snapshot},
    status::{ConfigStatus, StatusBoard, ZoneStatus},
    zonefile::ZoneFile,
};

/// How long a stop waits for forwarded queries in flight before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why hubdns could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The forwarder could not be built.
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// An upstream is one of our own listen addresses: every forward would come back to us.
    #[error(
        "forwarding loop: upstream {upstream} (route {route}) is hubdns's own listen address {listen}; \
         with upstreams = [\"system\"], check that /etc/resolv.conf does not name this server"
    )]
    ForwardLoop {
        /// The route whose upstream it is.
        route: String,
        /// The upstream.
        upstream: SocketAddr,
        /// Our listen address it matches.
        listen: SocketAddr,
    },
    /// The DoT/DoH certificate and key did not load.
    #[error("server.tls_cert / tls_key: {0}")]
    Certificate(crate::dns::tls::CertError),
    /// The query log could not be opened.
    #[error("log.queries: cannot open {}: {error}", target.display())]
    QueryLog {
        /// Where it was to go.
        target: std::path::PathBuf,
        /// The error (in the message, not a source: anyhow would print it twice).
        error: std::io::Error,
    },
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address from the config.
        addr: SocketAddr,
        /// The socket error.
        error: std::io::Error,
    },
}

/// A running hubdns.
pub struct Server {
    addrs: Vec<SocketAddr>,
    /// The DoT and DoH addresses bound.
    tls_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    live: Arc<Live>,
    /// The config running now, to tell what a reload changes.
    config: Mutex<Config>,
    /// New configs for the refresh loop.
    updates: mpsc::Sender<Update>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Sockets whose threads block in recvfrom: woken at shutdown.
    udp: Vec<Arc<UdpSocket>>,
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// The forwarder (and its cache) was kept: `[forward]` did not change.
    pub forwarder_kept: bool,
    /// The rate limiter (and each client network's budget) was kept: `[rate_limit]` did not change.
    pub limits_kept: bool,
    /// Changed settings that take effect only after a restart.
    pub needs_restart: Vec<&'static str>,
}

/// The instance's placement for `az.default = "instance"`, asked of instance metadata once per
/// process (at start, or the first reload that asks for it); `None` when it could not say.
static INSTANCE_PLACEMENT: tokio::sync::OnceCell<Option<(String, String)>> = tokio::sync::OnceCell::const_new();

/// Whether `config` places clients in the instance's own AZ (`az.default = "instance"`).
fn wants_instance_placement(config: &Config) -> bool {
    config.az.default.get_ref() == "instance" && config.az.enabled()
}

/// The instance's (AZ ID, region) from instance metadata, asked once per process. A failure
/// is logged, and those clients' AZ is unknown: serving never waits on it past two seconds.
async fn instance_placement() -> Option<(String, String)> {
    INSTANCE_PLACEMENT
        .get_or_init(|| async {
            match crate::sources::instance::placement(Duration::from_secs(1)).await {
                Ok(placement) => {
                    tracing::info!(az_id = %placement.0, region = %placement.1, "az.default: the instance's AZ, from instance metadata");
                    Some(placement)
                }
                Err(error) => {
                    tracing::warn!(%error, "az.default = \"instance\": no placement from instance metadata; unplaced clients' AZ is unknown");
                    None
                }
            }
        })
        .await
        .clone()
}

/// Builds everything `config` describes and starts serving. Must run inside a tokio runtime.
pub async fn start(config: &Config) -> Result<Server, StartError> {
    // Copied only to fill in the instance's placement: a config of 100,000 records is not
    // copied for nothing.
    let filled;
    let config = match wants_instance_placement(config) {
        true => {
            let mut copy = config.clone();
            copy.az.instance = instance_placement().await;
            filled = copy;
            &filled
        }
        false => config,
    };
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::empty()));
    let forwarder = Arc::new(Forwarder::new(&config.forward)?);
    let board = Arc::new(StatusBoard::default());
    report_zone_faults(config);
    board.lock().config =
        ConfigStatus { origin: config.origin.clone(), loaded_at: Some(SystemTime::now()), zones: ZoneStatus::of(config), ..ConfigStatus::default() };
    let (refresher, ready) = Refresher::new(config, snapshot.clone(), forwarder.clone(), board.clone()).await;

    // A loop to a fixed port is refused before binding (the port may be taken meanwhile);
    // after binding, again with the ports the system chose for port 0.
    check_loops(&forwarder, &config.server.listen)?;
    let sockets = config.udp_sockets_per_address();
    let mut bound = Vec::new();
    for &addr in &config.server.listen {
        bound.push(Bound::bind(addr, sockets).map_err(|error| StartError::Bind { addr, error })?);
    }
    let addrs: Vec<SocketAddr> = bound.iter().map(Bound::local_addr).collect();
    check_loops(&forwarder, &addrs)?;
    for route in forwarder.routes() {
        tracing::info!(domain = %route.domain, upstreams = ?route.upstreams, "forwarding route");
    }

    let metrics = Arc::new(Metrics::default());
    let query_log = open_query_log(&config.log.queries, &snapshot)?;
    let handler = Handler::new(snapshot.clone(), forwarder, metrics.clone(), config).with_query_log(query_log, config);
    let handler: SharedHandler = Arc::new(ArcSwap::from_pointee(handler));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let tcp_slots = Arc::new(Semaphore::new(config.server.tcp_max_connections));
    let bounds = StreamBounds {
        slots: tcp_slots.clone(),
        per_client: ClientSlots::new(config.server.tcp_max_connections_per_client),
        idle: Duration::from_secs(config.server.tcp_idle_timeout_secs),
        queries: match config.server.queries_per_connection {
            0 => usize::MAX,
            limit => limit,
        },
    };
    let encrypted = Encrypted::bind(config)?;
    let mut udp = Vec::new();
    for b in bound {
        tracing::info!(addr = %b.local_addr(), udp_sockets = sockets, "serving DNS over UDP and TCP");
        udp.extend(b.serve(handler.clone(), &bounds, &shutdown, &tracker));
    }
    let (tls_addrs, https_addrs) = (encrypted.tls_addrs(), encrypted.https_addrs());
    let certificates = encrypted.serve(config, &handler, &bounds, &shutdown, &tracker);
    let live = Arc::new(Live {
        snapshot,
        handler,
        board,
        metrics,
        ready,
        started: SystemTime::now(),
        tcp_slots,
        tcp_max: config.server.tcp_max_connections,
        certificates,
    });
    let admin = match config.admin.listen {
        None => None,
        Some(addr) => {
            let bind = |error| StartError::Bind { addr, error };
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
            let local = listener.local_addr().map_err(bind)?;
            tracing::info!(addr = %local, "serving the admin API over HTTP: / /metrics /healthz /readyz /records /explain");
            admin::serve(listener, live.clone(), &shutdown, &tracker);
            Some(local)
        }
    };
    let (updates, updates_rx) = mpsc::channel(1);
    run_refresher(refresher, shutdown.clone(), updates_rx, &tracker);
    Ok(Server { addrs, tls_addrs, https_addrs, admin, live, config: Mutex::new(config.clone()), updates, shutdown, tracker, udp })
}

/// Logs each `[[zones]]` file of `config` that did not load, and what is served instead.
pub fn report_zone_faults(config: &Config) {
    for fault in &config.zone_faults {
        match (&fault.zone, fault.kept) {
            (Some(zone), true) => tracing::error!(error = %fault.error, %zone, "zone file not loaded; the copy loaded before is still served"),
            (Some(zone), false) => tracing::error!(error = %fault.error, %zone, "zone file not loaded; the zone answers SERVFAIL until it loads"),
            (None, _) => tracing::error!(error = %fault.error, "zone file not loaded; its names are forwarded until it loads, as its zone's name is unknown (set `origin`)"),
        }
    }
}

/// Runs the refresh loop — every source's API calls and the parsing of their responses, the
/// conversions, the table builds, the state file — on a thread of its own, in a
/// single-threaded runtime, apart from the workers that answer TCP, DoT, DoH and forwarded
/// queries. The SDK parses a response inside the task that awaits it: 5,000 endpoints are
/// five pages of XML, parsed and converted in one poll, which on a worker would hold up the
/// answers queued behind it. Kept apart, the SDK's short-lived allocations also stay in that
/// thread's heap instead of being spread over the workers' (5,000 endpoints: 22.6–23.7 MiB
/// anonymous memory over six runs, against 22.7–27.6 with the loop on the workers).
fn run_refresher(refresher: Refresher, shutdown: CancellationToken, updates: mpsc::Receiver<Update>, tracker: &TaskTracker) {
    tracker.spawn_blocking(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(refresher.run(shutdown, updates)),
        // Only when the system refuses an epoll instance or a timer: hubdns serves what
        // it has (config records, the state file's answers) and says it cannot refresh.
        Err(error) => tracing::error!(%error, "cannot start the refresh loop's runtime: sources will not be refreshed"),
    });
}

/// The query log `target` asks for, opened, writing from a thread of its own.
fn open_query_log(target: &Target, snapshot: &SharedSnapshot) -> Result<Option<Arc<QueryLog>>, StartError> {
    let log = QueryLog::open(target, snapshot.clone()).map_err(|error| {
        let path = match target {
            Target::File(path) => path.clone(),
            _ => "stderr".into(),
        };
        StartError::QueryLog { target: path, error }
    })?;
    if let Some(log) = &log {
        tracing::info!(to = ?log.target(), "query log on, in Route 53 Resolver's query-log format");
    }
    Ok(log.map(Arc::new))
}

/// The DoT and DoH listeners, bound, and the certificate they present.
struct Encrypted {
    tls: Vec<tokio::net::TcpListener>,
    https: Vec<tokio::net::TcpListener>,
    certificates: Option<Arc<Certificates>>,
}

impl Encrypted {
    /// Loads the certificate and binds `server.tls_listen` and `server.https_listen` (none of
    /// it when neither is set).
    fn bind(config: &Config) -> Result<Self, StartError> {
        let server = &config.server;
        let (Some(cert), Some(key)) = (&server.tls_cert, &server.tls_key) else {
            return Ok(Self { tls: Vec::new(), https: Vec::new(), certificates: None });
        };
        if server.tls_listen.is_empty() && server.https_listen.is_empty() {
            return Ok(Self { tls: Vec::new(), https: Vec::new(), certificates: None });
        }
        let certificates = Certificates::load(cert, key).map_err(StartError::Certificate)?;
        let bind = |addr: &SocketAddr| tcp_listener(*addr).map_err(|error| StartError::Bind { addr: *addr, error });
        let tls = server.tls_listen.iter().map(bind).collect::<Result<_, _>>()?;
        let https = server.https_listen.iter().map(bind).collect::<Result<_, _>>()?;
        Ok(Self { tls, https, certificates: Some(certificates) })
    }

    fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    fn https_addrs(&self) -> Vec<SocketAddr> {
        self.https.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// Starts every listener and the certificate watch; returns the watch's counters.
    fn serve(
        self,
        config: &Config,
        handler: &SharedHandler,
        bounds: &StreamBounds,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Option<Arc<crate::live::CertificateCounters>> {
        let certificates = self.certificates?;
        for listener in self.tls {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "DoT: serving DNS over TLS");
            }
            tracker.spawn(dot::serve(listener, certificates.clone(), handler.clone(), bounds.clone(), shutdown.clone(), tracker.clone()));
        }
        for listener in self.https {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, path = %config.server.https_path, "DoH: serving DNS over HTTPS");
            }
            let limits = (bounds.clone(), config.server.http2_max_streams);
            let path = config.server.https_path.clone();
            tracker.spawn(doh::serve(listener, certificates.clone(), handler.clone(), path, limits, shutdown.clone(), tracker.clone()));
        }
        tracker.spawn(certificates.clone().watch(shutdown.clone()));
        Some(certificates.counters())
    }
}

/// Puts back into `new` the settings only a restart applies (sockets, listeners, certificate
/// paths, the admin address, the log format) wherever they differ from `old`'s, and names them.
fn keep_restart_only(new: &mut Config, old: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($key:literal => $($field:ident).+;)*) => {$(
            if new.$($field).+ != old.$($field).+ {
                changed.push($key);
                new.$($field).+ = old.$($field).+.clone();
            }
        )*};
    }
    keep! {
        "server.listen" => server.listen;
        "server.udp_sockets_per_address" => server.udp_sockets_per_address;
        "server.tcp_max_connections" => server.tcp_max_connections;
        "server.tcp_max_connections_per_client" => server.tcp_max_connections_per_client;
        "server.tcp_idle_timeout_secs" => server.tcp_idle_timeout_secs;
        "server.tls_listen" => server.tls_listen;
        "server.https_listen" => server.https_listen;
        "server.tls_cert (its contents reload by themselves)" => server.tls_cert;
        "server.tls_key (its contents reload by themselves)" => server.tls_key;
        "server.https_path" => server.https_path;
        "server.queries_per_connection" => server.queries_per_connection;
        "server.http2_max_streams" => server.http2_max_streams;
        "admin.listen" => admin.listen;
        "log.format" => log.format;
    }
    changed
}

/// Refuses upstreams that are our own listen addresses: every forward would come back to us.
fn check_loops(forwarder: &Forwarder, listening: &[SocketAddr]) -> Result<(), StartError> {
    for route in forwarder.routes() {
        for &upstream in &route.upstreams {
            if let Some(&listen) = listening.iter().find(|l| is_same_server(**l, upstream)) {
                return Err(StartError::ForwardLoop { route: route.domain.to_string(), upstream, listen });
            }
        }
    }
    Ok(())
}

impl Drop for Server {
    /// A server dropped without [`Server::stop`] still ends its UDP threads, which would
    /// otherwise block a runtime's shutdown forever.
    fn drop(&mut self) {
        self.shutdown.cancel();
        wake_udp(&self.udp);
    }
}

/// Whether queries sent to `upstream` would arrive at the socket bound to `listen`.
fn is_same_server(listen: SocketAddr, upstream: SocketAddr) -> bool {
    listen.port() == upstream.port()
        && (listen.ip() == upstream.ip()
            || (listen.ip().is_unspecified() && upstream.ip().is_loopback() && listen.is_ipv4() == upstream.is_ipv4()))
}

impl Server {
    /// The bound addresses, one per `server.listen` entry (UDP and TCP share the port).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The DoT addresses bound (`server.tls_listen`).
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The DoH addresses bound (`server.https_listen`).
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.https_addrs
    }

    /// Reopens the query log's file (SIGUSR1, after logrotate moved it).
    pub fn reopen_logs(&self) {
        if let Some(log) = self.live.handler.load().query_log() {
            log.reopen();
        }
    }

    /// The first bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0] // start() binds at least one: config validation requires a listen address
    }

    /// The admin listener's bound address, when `admin.listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The table being served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.snapshot.load_full()
    }

    /// Whether every source has answered (fresh, or from the state file).
    pub fn is_ready(&self) -> bool {
        *self.live.ready.borrow()
    }

    /// Changes of readiness, for waiting on it.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.live.ready.clone()
    }

    /// What the admin views read.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// The zone files the running config serves, to keep in place of any that a new config's
    /// reading fails on.
    pub fn zone_files(&self) -> Vec<Arc<ZoneFile>> {
        self.config.lock().unwrap_or_else(|p| p.into_inner()).zone_files.clone()
    }

    /// Applies `config` (already loaded and validated) without dropping a query; returns once
    /// the table built from it is live. On error nothing has changed.
    pub async fn reload(&self, mut config: Config) -> Result<Reloaded, StartError> {
        if wants_instance_placement(&config) {
            config.az.instance = instance_placement().await;
        }
        let old = self.config.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let current = self.live.handler.load_full();
        let mut reloaded = Reloaded {
            forwarder_kept: config.forward == old.forward,
            limits_kept: config.rate_limit == old.rate_limit,
            needs_restart: Vec::new(),
        };
        let forwarder = match reloaded.forwarder_kept {
            true => current.forwarder().clone(),
            false => {
                let forwarder = Arc::new(Forwarder::new(&config.forward)?);
                check_loops(&forwarder, &self.addrs)?;
                forwarder
            }
        };
        // Settings that need new sockets take effect at the next start: the config kept as
        // running holds their old values, so the next reload compares with what runs.
        reloaded.needs_restart = keep_restart_only(&mut config, &old);

        // The query log's writer is kept while its target stays; a new target opens anew.
        let query_log = match current.query_log() {
            Some(log) if *log.target() == config.log.queries => Some(log.clone()),
            _ => open_query_log(&config.log.queries, &self.live.snapshot)?,
        };
        let mut handler =
            Handler::new(self.live.snapshot.clone(), forwarder.clone(), self.live.metrics.clone(), &config).with_query_log(query_log, &config);
        if reloaded.limits_kept {
            handler = handler.keeping_limits_of(&current);
        }
        self.live.handler.store(Arc::new(handler));
        let (applied, done) = oneshot::channel();
        let update = Update { config: config.clone(), forwarder, applied };
        if self.updates.send(update).await.is_ok() {
            // The loop answers once the new table is live; a loop that has stopped never will.
            let _ = done.await;
        }
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(reloaded)
    }

    /// Stops accepting queries and waits (up to a grace period) for forwards in flight.
    pub async fn stop(self) {
        self.shutdown.cancel();
        wake_udp(&self.udp);
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait()).await.is_err() {
            tracing::warn!("shutdown grace period over; dropping queries still in flight");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_named_and_kept_as_running() {
        let old = Config::parse("[server]\nlisten = [\"127.0.0.1:0\"]\n", "t.toml").expect("config");
        let mut new = old.clone();
        new.server.http2_max_streams = 20;
        new.server.tls_listen = vec!["127.0.0.1:853".parse().expect("addr")];
        new.server.tcp_forwards_per_connection += 1; // applies at once: neither named nor put back
        let named = keep_restart_only(&mut new, &old);
        assert_eq!(named, ["server.tls_listen", "server.http2_max_streams"]);
        assert_eq!((new.server.http2_max_streams, new.server.tls_listen.len()), (old.server.http2_max_streams, 0));
        assert_eq!(new.server.tcp_forwards_per_connection, old.server.tcp_forwards_per_connection + 1);
        // Reloading the file that is running again names nothing.
        let mut again = new.clone();
        assert!(keep_restart_only(&mut again, &new).is_empty());
    }
}
