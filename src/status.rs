//! The status board: what each source did last, and how the config was last loaded.
//!
//! The sources' tasks, the refresh loop and the reload path write it; the admin views (`/metrics`, `/status.json`,
//! the status page) read it. Writes happen a few times a minute and reads once per scrape,
//! so a mutex is plenty; nothing on the query path touches it.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use serde::Serialize;

use crate::{config::Config, endpoint_list::EndpointList};

/// One AWS source as the refresh loop last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// `vpc_endpoints/us-east-1`, `route53/us-east-1/arn:…`.
    pub id: String,
    /// `vpc_endpoints` or `route53`.
    pub kind: &'static str,
    /// The region asked.
    pub region: String,
    /// Fetches attempted since start.
    pub runs: u64,
    /// Fetches that failed since start.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// When the last fetch started.
    #[serde(serialize_with = "unix_seconds")]
    pub last_attempt: Option<SystemTime>,
    /// When a fetch last succeeded.
    #[serde(serialize_with = "unix_seconds")]
    pub last_success: Option<SystemTime>,
    /// The last failure's message, until a fetch succeeds.
    pub last_error: Option<String>,
    /// How long the last fetch took.
    pub last_duration_ms: u64,
    /// Records in its last good answer (fresh or restored).
    pub records: usize,
    /// Whether its last good answer came from the state file (no fetch has succeeded yet).
    pub restored: bool,
    /// What its last conversion left out, and why.
    pub skipped: Vec<String>,
    /// Endpoints in its last good answer (vpc_endpoints sources): the answer's own list, not a
    /// copy.
    pub endpoints: Arc<EndpointList>,
}

/// What the consumer has done, for the status page and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EventsStatus {
    /// The queue.
    pub queue_url: String,
    /// Messages that were changes, handed to the sources.
    pub applied: u64,
    /// Messages about something else (another call, a failed call).
    pub ignored: u64,
    /// Messages that were not events at all (deleted all the same).
    pub malformed: u64,
    /// Failed receives since start.
    pub failures: u64,
    /// The last failure's message, until a receive succeeds.
    pub last_error: Option<String>,
    /// When the queue last answered.
    #[serde(serialize_with = "unix_seconds")]
    pub last_receive: Option<std::time::SystemTime>,
}

/// How the running config was loaded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    /// The file it came from.
    pub origin: String,
    /// When the running config was loaded.
    #[serde(serialize_with = "unix_seconds")]
    pub loaded_at: Option<SystemTime>,
    /// Reloads applied since start.
    pub reloads: u64,
    /// Reloads refused (invalid config, unbuildable forwarder) since start.
    pub reloads_refused: u64,
    /// Why the last refused reload was refused, until a reload succeeds.
    pub last_error: Option<String>,
    /// Changes the last reload could not apply without a restart.
    pub needs_restart: Vec<String>,
    /// The `[[zones]]` files, in entry order.
    pub zones: Vec<ZoneStatus>,
}

/// One `[[zones]]` entry as the running config serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneStatus {
    /// The file, resolved from the config file's directory.
    pub file: String,
    /// The zone's name; `None` when its file did not load before its name was known.
    pub zone: Option<String>,
    /// Whether it is served, and from which reading.
    pub state: ZoneState,
    /// Records served from it.
    pub records: usize,
    /// Why the file did not load, with its lines.
    pub error: Option<String>,
}

/// Whether a `[[zones]]` file is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneState {
    /// As the file reads now.
    Loaded,
    /// The file did not load; the copy the server had loaded before is served.
    Kept,
    /// Not loaded, and no copy is: its names answer SERVFAIL (forwarded, when its name is
    /// unknown).
    Failed,
}

impl ZoneState {
    /// Every state, in order, for a metric per state.
    pub const ALL: [Self; 3] = [Self::Loaded, Self::Kept, Self::Failed];

    /// The name in `/status.json` and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::Kept => "kept",
            Self::Failed => "failed",
        }
    }
}

impl ZoneStatus {
    /// Every `[[zones]]` entry of `config`.
    pub fn of(config: &Config) -> Vec<Self> {
        let mut served = config.zone_files.iter();
        (0..config.zones.len())
            .map(|entry| {
                let fault = config.zone_faults.iter().find(|f| f.entry == entry);
                let file = fault.filter(|f| !f.kept).map_or_else(|| served.next().map(Arc::as_ref), |_| None);
                Self {
                    file: file.and_then(|z| z.files.first()).or(fault.map(|f| &f.file)).map(|f| f.display().to_string()).unwrap_or_default(),
                    zone: file.map(|z| &z.origin).or(fault.and_then(|f| f.zone.as_ref())).map(ToString::to_string),
                    state: match fault {
                        None => ZoneState::Loaded,
                        Some(f) if f.kept => ZoneState::Kept,
                        Some(_) => ZoneState::Failed,
                    },
                    records: file.map_or(0, |z| z.len()),
                    error: fault.map(|f| f.error.clone()),
                }
            })
            .collect()
    }
}

/// Everything on the board.
#[derive(Debug, Default)]
pub struct Board {
    /// Every AWS source, in config order.
    pub sources: Vec<SourceStatus>,
    /// Sources that have not answered yet (neither fresh nor from the state file), for
    /// `/readyz`.
    pub unanswered: Vec<String>,
    /// The running config.
    pub config: ConfigStatus,
    /// The events queue's consumer, when `[events]` is set.
    pub events: Option<EventsStatus>,
    /// The organizations listed for `accounts = "organization"`.
    pub organizations: Vec<OrganizationStatus>,
}

/// One organization's listing (ListAccounts), as its lister last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrganizationStatus {
    /// How it is listed: `organization_role_arn`, or `own credentials`.
    pub key: String,
    /// ACTIVE accounts in its last listing (or known from the state file).
    pub accounts: usize,
    /// Listings that failed since start (the accounts known are still read).
    pub failures: u64,
    /// The last failure's message, until a listing succeeds.
    pub last_error: Option<String>,
    /// When it was last listed.
    #[serde(serialize_with = "unix_seconds")]
    pub last_listed: Option<SystemTime>,
}

/// The shared board.
#[derive(Debug, Default)]
pub struct StatusBoard {
    board: Mutex<Board>,
}

impl StatusBoard {
    /// The board, for reading or writing. A writer that panicked left it consistent enough to
    /// show (every write is a plain field assignment), so a poisoned lock is taken anyway.
    pub fn lock(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the status of the organization listed under `key`; nothing when it is gone.
    pub fn update_organization(&self, key: &str, change: impl FnOnce(&mut OrganizationStatus)) {
        if let Some(org) = self.lock().organizations.iter_mut().find(|o| o.key == key) {
            change(org);
        }
    }

    /// Changes the status of source `id`; nothing when the source is gone (a reload removed
    /// it while its task was finishing).
    pub fn update_source(&self, id: &str, change: impl FnOnce(&mut SourceStatus)) {
        if let Some(source) = self.lock().sources.iter_mut().find(|s| s.id == id) {
            change(source);
        }
    }
}

/// Seconds since 1970, the form Prometheus and JavaScript both take.
pub fn unix_secs(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

pub(crate) fn unix_seconds<S: serde::Serializer>(time: &Option<SystemTime>, serializer: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.serialize_f64(unix_secs(*time)),
        None => serializer.serialize_none(),
    }
}
