//! Building the snapshot from the sources and swapping it in.
//!
//! Today the config file is the only source, so the snapshot is built once at start. The
//! refresh loop (interval, backoff, keep-last-good per source), the state file and readiness
//! come with the AWS sources and live here too.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{
    config::Config,
    snapshot::{Dropped, Snapshot, SoaSettings},
    sources,
};

/// Builds a snapshot from every source the config names; what had to be left out is logged
/// and returned.
pub fn build_snapshot(config: &Config) -> (Snapshot, Vec<Dropped>) {
    let (records, aliases) = sources::aliases::from_config(config);
    let (snapshot, dropped) = Snapshot::build(records, aliases, &soa_settings(config), serial_now());
    for item in &dropped {
        tracing::warn!(%item, "left out of the snapshot");
    }
    tracing::info!(
        names = snapshot.name_count(),
        records = snapshot.record_count(),
        serial = snapshot.serial(),
        "snapshot built"
    );
    (snapshot, dropped)
}

/// The SOA settings from the `[answers]` section.
pub fn soa_settings(config: &Config) -> SoaSettings {
    SoaSettings {
        mname: config.answers.soa_mname.name().clone(),
        rname: config.answers.soa_rname.name().clone(),
        negative_ttl: config.answers.negative_ttl,
    }
}

/// A serial that grows with every build: seconds since 1970, as many zones use.
fn serial_now() -> u32 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Wraps in 2106; SOA serials compare modulo 2^32 anyway (RFC 1982).
    secs as u32
}
