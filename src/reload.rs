//! Reloading the config file: on SIGHUP, and when the file changes.
//!
//! The `[[zones]]` files the running config read (and the files they include) are watched
//! with it: a changed zone file reloads the config, which reads every zone file again.
//!
//! The file is polled once a second rather than watched with inotify: polling sees every way
//! a file is replaced — an editor's rename, a Kubernetes ConfigMap's symlink swap, a config
//! management tool's copy — without watch limits or lost events, and reading a small file
//! once a second costs nothing. A change is applied once the content has stayed the same for
//! half a second (debounce), so a file caught half-written is not loaded.
//!
//! A `[[zones]]` file that does not load is not a reason to refuse the rest of a new config:
//! it is applied with that zone kept as the running server had it (or, new, answering
//! SERVFAIL), the fault logged and shown on the status page ([`crate::config::ZoneFault`]),
//! and the file watched for a fix.
//!
//! A new config that does not load, or whose forwarder cannot be built, is refused: the reason
//! is logged and counted, and the running config stays. The content last tried is remembered
//! either way, so a refused file is not retried until it changes again. Only a fingerprint of
//! that content is kept (a hash of the config's bytes, the zone files' sizes, times and inodes),
//! not the text: a config of 100,000 records would otherwise be held twice.

use std::{
    hash::{Hash, Hasher},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, SystemTime},
};

use crate::{
    config::Config,
    server::Server,
    status::ZoneStatus,
};

/// How often the file is read to look for changes.
const POLL: Duration = Duration::from_secs(1);

/// How long a change must stay the same before it is applied.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// The config file of a running server.
pub struct ConfigFile {
    path: PathBuf,
    /// The zone files the running config read.
    zone_files: Mutex<Vec<PathBuf>>,
    /// The fingerprint of the content last loaded or refused.
    tried: Mutex<Option<u64>>,
}

/// The zone files `config` read, its includes among them, and those it failed on: a fix to
/// either is a change to load.
fn zone_files(config: &Config) -> Vec<PathBuf> {
    let read = config.zone_files.iter().flat_map(|zone| zone.files.iter());
    let mut files: Vec<PathBuf> = read.chain(config.zone_faults.iter().flat_map(|f| f.read.iter())).cloned().collect();
    files.sort();
    files.dedup();
    files
}

impl ConfigFile {
    /// The file at `path`, whose current content is what the server was started with
    /// (`running`, loaded from it).
    pub fn new(path: &Path, running: &Config) -> Self {
        let file = Self { path: path.to_owned(), zone_files: Mutex::new(zone_files(running)), tried: Mutex::new(None) };
        *file.tried.lock().unwrap_or_else(|p| p.into_inner()) = file.fingerprint();
        file
    }

    /// What the config file and the zone files look like now: its bytes, their metadata.
    /// `None` when the config file cannot be read.
    fn fingerprint(&self) -> Option<u64> {
        let content = std::fs::read(&self.path).ok()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        content.hash(&mut hasher);
        for zone in self.zone_files.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let seen = std::fs::metadata(zone).ok().map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
            (zone, seen).hash(&mut hasher);
        }
        Some(hasher.finish())
    }

    /// Resolves when the file's content differs from what was last tried and has stayed so
    /// for the debounce period. Cancel-safe: it only reads.
    pub async fn changed(&self) {
        loop {
            tokio::time::sleep(POLL).await;
            let Some(now) = self.fingerprint_if_new() else { continue };
            tokio::time::sleep(DEBOUNCE).await;
            if self.fingerprint() == Some(now) {
                return;
            }
        }
    }

    fn fingerprint_if_new(&self) -> Option<u64> {
        let now = self.fingerprint()?;
        let tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        (*tried != Some(now)).then_some(now)
    }

    /// Loads the file and applies it to `server`; `why` says what asked (for the log). Returns
    /// the config now running if it was applied, `None` if it was refused.
    pub async fn reload(&self, server: &Server, why: &str) -> Option<Config> {
        *self.tried.lock().unwrap_or_else(|p| p.into_inner()) = self.fingerprint();
        let content = std::fs::read(&self.path);
        let origin = self.path.display().to_string();
        let loaded = match content {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| format!("{origin}: not UTF-8 text"))
                .and_then(|text| {
                    // A zone file that does not load is left out (the running copy of it
                    // kept) and listed, not a reason to refuse the rest.
                    Config::parse_serving(&text, &origin, &server.zone_files()).map_err(|e| e.to_string())
                }),
            Err(error) => Err(format!("cannot read {origin}: {error}")),
        };
        let applied = match loaded {
            Ok(config) => server.reload(config.clone()).await.map(|done| (config, done)).map_err(|e| e.to_string()),
            Err(error) => Err(error),
        };
        let mut board = server.live().board.lock();
        match applied {
            Ok((config, done)) => {
                *self.zone_files.lock().unwrap_or_else(|p| p.into_inner()) = zone_files(&config);
                *self.tried.lock().unwrap_or_else(|p| p.into_inner()) = self.fingerprint();
                crate::server::report_zone_faults(&config);
                board.config.reloads += 1;
                board.config.loaded_at = Some(SystemTime::now());
                board.config.origin = origin;
                board.config.last_error = None;
                board.config.needs_restart = done.needs_restart.iter().map(|s| (*s).to_owned()).collect();
                board.config.zones = ZoneStatus::of(&config);
                tracing::info!(why, forwarder_kept = done.forwarder_kept, limits_kept = done.limits_kept, "config reloaded");
                for key in &done.needs_restart {
                    tracing::warn!(key, "this change takes effect only after a restart; the running value is kept");
                }
                Some(config)
            }
            Err(error) => {
                // What the files look like now is what was tried.
                *self.tried.lock().unwrap_or_else(|p| p.into_inner()) = self.fingerprint();
                board.config.reloads_refused += 1;
                board.config.last_error = Some(error.clone());
                tracing::error!(why, %error, "new config refused; the running config stays");
                None
            }
        }
    }
}
