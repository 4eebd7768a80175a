//! A running hubdns as its admin views see it: the handles they read, all shared with the
//! serving side and none on the query path's critical section.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::SystemTime,
};

use tokio::sync::{Semaphore, watch};

use crate::{dns::handler::SharedHandler, metrics::Metrics, snapshot::SharedSnapshot, status::StatusBoard};

/// What `/metrics`, `/records`, `/explain`, `/status.json` and the status page read.
pub struct Live {
    /// The table being served.
    pub snapshot: SharedSnapshot,
    /// The handler being used, and through it the forwarder.
    pub handler: SharedHandler,
    /// What each source did last, and the config's reload history.
    pub board: Arc<StatusBoard>,
    /// Per-query counters.
    pub metrics: Arc<Metrics>,
    /// Whether every source has answered.
    pub ready: watch::Receiver<bool>,
    /// When the process started serving.
    pub started: SystemTime,
    /// The TCP connection slots, and how many there are.
    pub tcp_slots: Arc<Semaphore>,
    /// `server.tcp_max_connections`.
    pub tcp_max: usize,
    /// The DoT/DoH certificate's reloads, when those listeners are on.
    pub certificates: Option<Arc<CertificateCounters>>,
}

/// What the DoT/DoH certificate watch did.
#[derive(Debug, Default)]
pub struct CertificateCounters {
    /// Changed files loaded and served.
    pub reloads: AtomicU64,
    /// Changed files that did not load (the last good pair stayed).
    pub failures: AtomicU64,
}

impl Live {
    /// TCP connections open now.
    pub fn tcp_connections(&self) -> usize {
        self.tcp_max.saturating_sub(self.tcp_slots.available_permits())
    }
}
