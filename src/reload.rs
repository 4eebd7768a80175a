//! Reloading the config file: on SIGHUP, and when the file changes.
//!
//! The file is polled once a second rather than watched with inotify: polling sees every way
//! a file is replaced — an editor's rename, a Kubernetes ConfigMap's symlink swap, a config
//! management tool's copy — without watch limits or lost events, and reading a small file
//! once a second costs nothing. A change is applied once the content has stayed the same for
//! half a second (debounce), so a file caught half-written is not loaded.
//!
//! A new config that does not load, or whose forwarder cannot be built, is refused: the reason
//! is logged and counted, and the running config stays. The content last tried is remembered
//! either way, so a refused file is not retried until it changes again.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, SystemTime},
};

use crate::{config::Config, server::Server};

/// How often the file is read to look for changes.
const POLL: Duration = Duration::from_secs(1);

/// How long a change must stay the same before it is applied.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// The config file of a running server.
pub struct ConfigFile {
    path: PathBuf,
    /// The content last loaded or refused.
    tried: Mutex<Option<Vec<u8>>>,
}

impl ConfigFile {
    /// The file at `path`, whose current content is what the server was started with.
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_owned(), tried: Mutex::new(std::fs::read(path).ok()) }
    }

    /// Resolves when the file's content differs from what was last tried and has stayed so
    /// for the debounce period. Cancel-safe: it only reads.
    pub async fn changed(&self) {
        loop {
            tokio::time::sleep(POLL).await;
            let Some(now) = self.read_if_new() else { continue };
            tokio::time::sleep(DEBOUNCE).await;
            if std::fs::read(&self.path).ok().as_ref() == Some(&now) {
                return;
            }
        }
    }

    fn read_if_new(&self) -> Option<Vec<u8>> {
        let content = std::fs::read(&self.path).ok()?;
        let tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        (tried.as_ref() != Some(&content)).then_some(content)
    }

    /// Loads the file and applies it to `server`; `why` says what asked (for the log). Returns
    /// the config now running if it was applied, `None` if it was refused.
    pub async fn reload(&self, server: &Server, why: &str) -> Option<Config> {
        let content = std::fs::read(&self.path);
        *self.tried.lock().unwrap_or_else(|p| p.into_inner()) = content.as_ref().ok().cloned();
        let origin = self.path.display().to_string();
        let loaded = match content {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| format!("{origin}: not UTF-8 text"))
                .and_then(|text| Config::parse(&text, &origin).map_err(|e| e.to_string())),
            Err(error) => Err(format!("cannot read {origin}: {error}")),
        };
        let applied = match loaded {
            Ok(config) => server.reload(config.clone()).await.map(|done| (config, done)).map_err(|e| e.to_string()),
            Err(error) => Err(error),
        };
        let mut board = server.live().board.lock();
        match applied {
            Ok((config, done)) => {
                board.config.reloads += 1;
                board.config.loaded_at = Some(SystemTime::now());
                board.config.origin = origin;
                board.config.last_error = None;
                board.config.needs_restart = done.needs_restart.iter().map(|s| (*s).to_owned()).collect();
                tracing::info!(why, forwarder_kept = done.forwarder_kept, limits_kept = done.limits_kept, "config reloaded");
                for key in &done.needs_restart {
                    tracing::warn!(key, "this change takes effect only after a restart; the running value is kept");
                }
                Some(config)
            }
            Err(error) => {
                board.config.reloads_refused += 1;
                board.config.last_error = Some(error.clone());
                tracing::error!(why, %error, "new config refused; the running config stays");
                None
            }
        }
    }
}
