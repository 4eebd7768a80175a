//! Starting and stopping hubdns: config → snapshot + forwarder + listeners, one shutdown token.
//!
//! [`start`] returns once every socket is bound, with the addresses actually bound, so tests
//! can start a server on `127.0.0.1:0` and query it at once (mini-redis style).

use std::{
    net::{SocketAddr, UdpSocket},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    admin,
    config::Config,
    dns::{
        acl::Acl,
        forwarder::{ForwardError, Forwarder},
        handler::Handler,
        listener::{Bound, wake_udp},
    },
    refresh::Refresher,
    snapshot::{SharedSnapshot, Snapshot},
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
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the config.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

/// A running hubdns.
pub struct Server {
    addrs: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    snapshot: SharedSnapshot,
    ready: watch::Receiver<bool>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Sockets whose threads block in recvfrom: woken at shutdown.
    udp: Vec<Arc<UdpSocket>>,
}

/// Builds everything `config` describes and starts serving. Must run inside a tokio runtime.
pub async fn start(config: &Config) -> Result<Server, StartError> {
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::empty()));
    let (refresher, ready) = Refresher::new(config, snapshot.clone()).await;
    let forwarder = Forwarder::new(&config.forward)?;

    let sockets = config.udp_sockets_per_address();
    let mut bound = Vec::new();
    for &addr in &config.server.listen {
        bound.push(Bound::bind(addr, sockets).map_err(|source| StartError::Bind { addr, source })?);
    }
    for route in forwarder.routes() {
        tracing::info!(domain = %route.domain, upstreams = ?route.upstreams, "forwarding route");
        for &upstream in &route.upstreams {
            if let Some(listen) = bound.iter().map(Bound::local_addr).find(|l| is_same_server(*l, upstream)) {
                return Err(StartError::ForwardLoop { route: route.domain.to_string(), upstream, listen });
            }
        }
    }

    let handler = Arc::new(Handler::new(
        snapshot.clone(),
        Arc::new(forwarder),
        Acl::new(config.server.allow.clone()),
        config.server.max_udp_payload,
        config.answers.ttl,
    ));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let tcp_slots = Arc::new(Semaphore::new(config.server.tcp_max_connections));
    let idle = Duration::from_secs(config.server.tcp_idle_timeout_secs);
    let mut addrs = Vec::new();
    let mut udp = Vec::new();
    for b in bound {
        addrs.push(b.local_addr());
        tracing::info!(addr = %b.local_addr(), udp_sockets = sockets, "serving DNS over UDP and TCP");
        udp.extend(b.serve(handler.clone(), tcp_slots.clone(), idle, &shutdown, &tracker));
    }
    let admin = match config.admin.listen {
        None => None,
        Some(addr) => {
            let bind = |source| StartError::Bind { addr, source };
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
            let local = listener.local_addr().map_err(bind)?;
            tracing::info!(addr = %local, "serving /healthz and /readyz over HTTP");
            admin::serve(listener, ready.clone(), &shutdown, &tracker);
            Some(local)
        }
    };
    tracker.spawn(refresher.run(shutdown.clone()));
    Ok(Server { addrs, admin, snapshot, ready, shutdown, tracker, udp })
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
        self.snapshot.load_full()
    }

    /// Whether every source has answered (fresh, or from the state file).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Changes of readiness, for waiting on it.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.clone()
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
