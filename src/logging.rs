//! Logging: text or JSON lines on stderr, the level from `RUST_LOG` or `log.level` (the query
//! log is not among them: [`crate::querylog`] writes its own lines). The level follows config reloads
//! (unless `RUST_LOG` fixes it); the format is chosen once, at start.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt, reload, util::SubscriberInitExt};

use crate::config::{LogConfig, LogFormat};

/// hickory logs every request at info: its crates stay at warn unless the filter names them.
const QUIET_HICKORY: &str = "hickory_server=warn,hickory_proto=warn,hickory_net=warn,hickory_resolver=warn";

/// Changes the running filter.
pub struct Logging {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

/// Installs the global subscriber for `config`. Call once.
pub fn init(config: &LogConfig) -> Logging {
    let from_env = std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty());
    let (filter, handle) = reload::Layer::new(filter_for(config, from_env));
    let registry = tracing_subscriber::registry().with(filter);
    let stderr = std::io::stderr;
    match config.format {
        // Colour only on a terminal: journald, Docker and CloudWatch get plain text.
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(stderr).with_ansi(std::io::stderr().is_terminal()))
            .init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(false).with_writer(stderr))
            .init(),
    }
    Logging { handle, from_env }
}

impl Logging {
    /// Applies a reloaded config's level and query log.
    pub fn apply(&self, config: &LogConfig) {
        if let Err(error) = self.handle.reload(filter_for(config, self.from_env)) {
            tracing::warn!(%error, "cannot change the log level");
        }
    }
}

/// The filter: `RUST_LOG` or `log.level`, hickory quietened unless named.
fn filter_for(config: &LogConfig, from_env: bool) -> EnvFilter {
    let mut text = match from_env {
        true => std::env::var("RUST_LOG").unwrap_or_default(),
        false => config.level.clone(),
    };
    if !text.contains("hickory") {
        text = format!("{text},{QUIET_HICKORY}");
    }
    // The config's level was validated at load; a bad RUST_LOG falls back to info.
    EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_HICKORY}")))
}
