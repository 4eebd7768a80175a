//! The refresh loop, the state file, and readiness.
//!
//! Each AWS source (one region, maybe one account) is asked for its whole set on an interval
//! with jitter. A failure — throttling, 5xx, timeout, expired credentials — keeps that
//! source's last good answer, logs the error, and retries with doubling backoff; other sources
//! are unaffected. After any success the whole table is rebuilt off to the side from the
//! config plus every source's last good answer, and swapped in only if it changed, with the
//! records added and removed in the log.
//!
//! The last good answers are written to the state file (temp file + fsync + rename) after each
//! change and read back at start, so a restart serves endpoint names at once even when AWS is
//! unreachable. A corrupt or foreign state file is reported and ignored, never fatal.
//!
//! Ready means: every source has an answer, fresh or from the state file. Once ready, hubdns
//! stays ready: a source added by a reload does not take a serving instance out of service.
//!
//! A reload ([`Update`]) hands the loop a new config: sources whose settings are unchanged keep
//! their last good answer and schedule; changed or new ones are asked at once (a changed one
//! keeps serving its old answer until then); removed ones are dropped. The table is rebuilt
//! from the new config straight away.
//!
//! Each fetch is also written to the [`StatusBoard`] for `/metrics` and the status page.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, Route53Config, VpcEndpointsConfig},
    dns::forwarder::Forwarder,
    snapshot::{Alias, Dropped, Provenance, Record, SharedSnapshot, Snapshot, SoaSettings, SourceKind},
    sources::{
        self,
        route53::{Route53Source, ZoneContext, ZoneSummary, records_from_zones},
        aws::source_id,
        vpc_endpoints::{EndpointSummary, FetchContext, VpcEndpointSource, records_from},
    },
    status::{SourceStatus, StatusBoard},
};

/// Identifies the state file's layout; a file with another value is ignored.
const STATE_FORMAT: &str = "hubdns-state/1";

/// How many added / removed records a refresh names at info level (the rest at debug).
const DIFF_LOG_LINES: usize = 20;

/// One source's last good answer: what the table is built from, and what the state file keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceOutput {
    /// The records.
    pub records: Vec<Record>,
    /// Aliases (Route 53 alias records), flattened when the table is built.
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Endpoint ids and service names → regional DNS name, for config aliases.
    #[serde(default)]
    pub handles: BTreeMap<String, Name>,
    /// The endpoints behind the records, in brief (vpc_endpoints sources).
    #[serde(default)]
    pub endpoints: Vec<EndpointSummary>,
    /// The private zones whose records these are (route53 sources).
    #[serde(default)]
    pub zones: Vec<ZoneSummary>,
    /// Zones this source left out for another of the same name: (the winner's id, the zone).
    #[serde(default)]
    pub lost_zones: Vec<(String, ZoneSummary)>,
    /// When the source answered (RFC 3339).
    pub fetched_at: String,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: String,
    written_at: String,
    sources: BTreeMap<String, SourceOutput>,
}

/// The kinds of AWS source.
enum Source {
    VpcEndpoints(VpcEndpointSource),
    Route53(Route53Source),
}

/// What a source was set up from: compared on reload to tell whether it changed.
#[derive(Clone, PartialEq)]
enum Settings {
    VpcEndpoints(VpcEndpointsConfig),
    Route53(Route53Config),
}

/// A source in the loop, with what it last said and when to ask it again.
struct Slot {
    id: String,
    settings: Settings,
    source: Source,
    last_good: Option<SourceOutput>,
    failures: u32,
    due: Instant,
    status: SourceStatus,
}

/// A new config for the loop, from a reload.
pub struct Update {
    /// The new config (already validated).
    pub config: Config,
    /// The forwarder now serving, for Route 53 aliases to outside names.
    pub forwarder: Arc<Forwarder>,
    /// Told once the table built from the new config is live.
    pub applied: oneshot::Sender<()>,
}

/// Rebuilds and swaps the snapshot as sources answer.
pub struct Refresher {
    config: Config,
    /// For Route 53 aliases to names outside every zone, resolved at refresh time.
    forwarder: Arc<Forwarder>,
    snapshot: SharedSnapshot,
    slots: Vec<Slot>,
    ready: watch::Sender<bool>,
    board: Arc<StatusBoard>,
    /// Checks of signed parent zones started; a check stops retrying once a newer one began.
    signed_checks: Arc<std::sync::atomic::AtomicU64>,
}

/// How often, and how long apart, a check of signed parent zones asks again about apexes the
/// upstreams gave no answer about.
const SIGNED_CHECK_TRIES: usize = 10;
const SIGNED_CHECK_RETRY: Duration = Duration::from_secs(60);

impl Refresher {
    /// Sets up every source of `config`, restores their last good answers from the state file,
    /// and puts the first table in `snapshot`. Makes no AWS call: the first fetches happen in
    /// [`Refresher::run`], so hubdns serves at once.
    pub async fn new(
        config: &Config,
        snapshot: SharedSnapshot,
        forwarder: Arc<Forwarder>,
        board: Arc<StatusBoard>,
    ) -> (Self, watch::Receiver<bool>) {
        let restored = config.refresh.state_file.as_deref().map(read_state).unwrap_or_default();
        let mut slots = Vec::new();
        for (id, settings) in sources_of(config) {
            let mut slot = Slot::new(id, settings).await;
            slot.last_good = restored.get(&slot.id).cloned();
            if let Some(output) = &slot.last_good {
                tracing::info!(source = %slot.id, records = output.records.len(), fetched_at = %output.fetched_at, "restored from the state file");
                slot.status.restored = true;
                slot.status.records = output.records.len();
                slot.status.endpoints = output.endpoints.clone();
            }
            slots.push(slot);
        }
        let (ready, ready_rx) = watch::channel(false);
        let mut refresher = Self { config: config.clone(), forwarder, snapshot, slots, ready, board, signed_checks: Arc::default() };
        refresher.post_status();
        refresher.rebuild();
        (refresher, ready_rx)
    }

    /// Refreshes until `shutdown` is cancelled, applying reloads as they come.
    pub async fn run(mut self, shutdown: CancellationToken, mut updates: mpsc::Receiver<Update>) {
        loop {
            // No source: nothing to wake for but a reload.
            let next = self.slots.iter().map(|s| s.due).min().unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                () = shutdown.cancelled() => return,
                update = updates.recv() => match update {
                    Some(update) => {
                        self.apply(update.config, update.forwarder).await;
                        let _ = update.applied.send(());
                        continue;
                    }
                    None => return,
                },
                () = tokio::time::sleep_until(next) => {}
            }
            let mut answered = false;
            for i in 0..self.slots.len() {
                if self.slots[i].due <= Instant::now() {
                    answered |= self.refresh_slot(i).await;
                }
            }
            self.post_status();
            if answered {
                self.rebuild();
            }
        }
    }

    /// Takes a reloaded config: keeps unchanged sources as they are, sets up changed and new
    /// ones (due at once), drops removed ones, and rebuilds the table.
    async fn apply(&mut self, config: Config, forwarder: Arc<Forwarder>) {
        let mut old = std::mem::take(&mut self.slots);
        for (id, settings) in sources_of(&config) {
            if let Some(i) = old.iter().position(|s| s.settings == settings) {
                let mut slot = old.swap_remove(i);
                slot.id = id;
                self.slots.push(slot);
                continue;
            }
            let mut slot = Slot::new(id, settings).await;
            // Same source asked differently (new filters, say): serve what it said until it answers.
            if let Some(previous) = old.iter().position(|s| s.id == slot.id) {
                slot.last_good = old.swap_remove(previous).last_good;
            }
            tracing::info!(source = %slot.id, "source set up by reload; asking it now");
            self.slots.push(slot);
        }
        for removed in old {
            tracing::info!(source = %removed.id, "source removed by reload");
        }
        self.config = config;
        let new_forwarder = !Arc::ptr_eq(&self.forwarder, &forwarder);
        self.forwarder = forwarder;
        self.post_status();
        self.rebuild();
        if new_forwarder {
            self.look_for_signed_parents();
        }
    }

    /// Asks upstream, on a task of its own (a slow upstream holds up nothing else), whether
    /// owned apexes lie in publicly signed zones; warns of each one newly found. Apexes the
    /// upstreams gave no answer about are asked again a minute later (up to ten times), until
    /// the next change of the table starts a check of its own.
    fn look_for_signed_parents(&self) {
        if !self.config.forward.check_signed_parents {
            return;
        }
        let apexes = crate::signed_parents::apexes(&self.snapshot.load());
        let forwarder = self.forwarder.clone();
        let generation = self.signed_checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let checks = self.signed_checks.clone();
        tokio::spawn(async move {
            for _ in 0..SIGNED_CHECK_TRIES {
                let (found, unknown) = crate::signed_parents::find(&forwarder, apexes.clone()).await;
                if checks.load(std::sync::atomic::Ordering::Relaxed) != generation {
                    return;
                }
                for overlap in forwarder.set_signed_overlaps(found, &unknown) {
                    tracing::warn!(name = %overlap.name, signed_zone = %overlap.signed_zone, "{}", overlap.advice());
                }
                if unknown.is_empty() {
                    return;
                }
                tracing::debug!(apexes = unknown.len(), "no answer about some owned apexes' public zones; asking again in a minute");
                tokio::time::sleep(SIGNED_CHECK_RETRY).await;
            }
        });
    }

    /// Copies every slot's status to the board.
    fn post_status(&self) {
        self.board.lock().sources = self.slots.iter().map(|s| s.status.clone()).collect();
    }

    /// Asks one source; true when it answered.
    async fn refresh_slot(&mut self, i: usize) -> bool {
        let interval = Duration::from_secs(self.config.refresh.interval_secs);
        let max_backoff = Duration::from_secs(self.config.refresh.max_backoff_secs);
        let ttl = self.config.answers.ttl;
        let slot = &mut self.slots[i];
        let started = Instant::now();
        slot.status.last_attempt = Some(SystemTime::now());
        slot.status.runs += 1;
        let mut skipped = Vec::new();
        let fetched = match &slot.source {
            Source::VpcEndpoints(source) => source.fetch().await.map(|inventory| {
                let ctx = FetchContext {
                    region: source.region().to_owned(),
                    fetched_at: now_rfc3339(),
                    ttl,
                    alias_tag_domains: source.alias_tag_domains(),
                };
                let converted = records_from(&inventory, &ctx);
                for reason in &converted.skipped {
                    tracing::debug!(source = %slot.id, %reason, "endpoint skipped");
                }
                skipped.clone_from(&converted.skipped);
                tracing::info!(
                    source = %slot.id,
                    endpoints = inventory.endpoints.len(),
                    records = converted.records.len(),
                    skipped = converted.skipped.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "source refreshed"
                );
                SourceOutput {
                    records: converted.records,
                    handles: converted.handles,
                    endpoints: converted.endpoints,
                    fetched_at: ctx.fetched_at,
                    ..SourceOutput::default()
                }
            }),
            Source::Route53(source) => match source.fetch().await {
                Ok(zones) => {
                    let ctx = ZoneContext { region: source.region().to_owned(), fetched_at: now_rfc3339(), alias_ttl: ttl };
                    let mut converted = records_from_zones(&zones, &ctx);
                    for reason in &converted.skipped {
                        tracing::warn!(source = %slot.id, %reason, "Route 53 record left out");
                    }
                    skipped.clone_from(&converted.skipped);
                    let max_ttl = u32::try_from(interval.as_secs()).unwrap_or(u32::MAX);
                    converted.records.extend(source.resolve_external(&self.forwarder, &converted.external, max_ttl).await);
                    tracing::info!(
                        source = %slot.id,
                        zones = zones.len(),
                        records = converted.records.len(),
                        aliases = converted.aliases.len() + converted.external.len(),
                        skipped = converted.skipped.len(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "source refreshed"
                    );
                    Ok(SourceOutput {
                        records: converted.records,
                        aliases: converted.aliases,
                        zones: converted.zones,
                        lost_zones: converted.lost_zones,
                        fetched_at: ctx.fetched_at,
                        ..SourceOutput::default()
                    })
                }
                Err(error) => Err(error),
            },
        };
        slot.status.last_duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match fetched {
            Ok(output) => {
                let status = &mut slot.status;
                status.last_success = status.last_attempt;
                status.last_error = None;
                status.consecutive_failures = 0;
                status.restored = false;
                status.records = output.records.len();
                status.skipped = skipped;
                status.endpoints.clone_from(&output.endpoints);
                slot.last_good = Some(output);
                slot.failures = 0;
                slot.due = Instant::now() + jitter(interval);
                true
            }
            Err(error) => {
                slot.failures += 1;
                slot.status.failures += 1;
                slot.status.consecutive_failures = slot.failures;
                slot.status.last_error = Some(error.to_string());
                let exponent = slot.failures.saturating_sub(1).min(16);
                let backoff = interval.saturating_mul(1 << exponent).min(max_backoff);
                let wait = jitter(backoff);
                tracing::warn!(
                    source = %slot.id,
                    %error,
                    failures = slot.failures,
                    retry_in_secs = wait.as_secs_f32(),
                    keeping = slot.last_good.as_ref().map_or(0, |o| o.records.len()),
                    "source refresh failed; keeping its last good records"
                );
                slot.due = Instant::now() + wait;
                false
            }
        }
    }

    /// Builds the table from the config and every last good answer; swaps it in and saves the
    /// state file if anything changed. Then returns what the build freed to the OS.
    fn rebuild(&mut self) {
        self.swap_if_changed();
        crate::memory::release_freed();
    }

    fn swap_if_changed(&mut self) {
        let outputs: Vec<&SourceOutput> = self.slots.iter().filter_map(|s| s.last_good.as_ref()).collect();
        let (snapshot, dropped) = build_snapshot(&self.config, &outputs);
        let live = self.snapshot.load();
        let ready = *self.ready.borrow() || self.slots.iter().all(|s| s.last_good.is_some());
        // Compared as answers, not as text: a weight, a set identifier or an SOA setting that
        // changes alone is a change.
        if !snapshot.answers_like(&live) {
            // Until every source has answered, an alias may point at a name still to come.
            for item in &dropped {
                if ready {
                    tracing::warn!(%item, "left out of the snapshot");
                } else {
                    tracing::debug!(%item, "left out of the snapshot until every source has answered");
                }
            }
            log_diff(&record_lines(&live), &record_lines(&snapshot), snapshot.conflicts());
            self.snapshot.store(Arc::new(snapshot));
            self.look_for_signed_parents();
            if let Some(path) = &self.config.refresh.state_file {
                let sources = self.slots.iter().filter_map(|s| Some((s.id.clone(), s.last_good.clone()?))).collect();
                if let Err(error) = write_state(path, sources) {
                    tracing::error!(path = %path.display(), %error, "cannot write the state file; serving goes on");
                }
            }
        }
        self.ready.send_if_modified(|was| std::mem::replace(was, ready) != ready);
    }
}

/// The AWS sources `config` names, in order, each with its id: kind, region and role, and
/// `#2`, `#3`… for a later source with the same three, so no two share a place in the state
/// file.
fn sources_of(config: &Config) -> Vec<(String, Settings)> {
    let endpoints = config.sources.vpc_endpoints.iter().map(|s| Settings::VpcEndpoints(s.get_ref().clone()));
    let zones = config.sources.route53.iter().map(|s| Settings::Route53(s.get_ref().clone()));
    let mut seen: HashMap<String, usize> = HashMap::new();
    endpoints
        .chain(zones)
        .map(|settings| {
            let base = match &settings {
                Settings::VpcEndpoints(c) => source_id("vpc_endpoints", &c.region, c.role_arn.as_deref()),
                Settings::Route53(c) => source_id("route53", &c.region, c.role_arn.as_deref()),
            };
            let count = seen.entry(base.clone()).or_default();
            *count += 1;
            let id = if *count == 1 { base } else { format!("{base}#{count}") };
            (id, settings)
        })
        .collect()
}

impl Slot {
    /// Sets up the source `settings` describe under `id`; due at once, nothing known yet.
    async fn new(id: String, settings: Settings) -> Self {
        let (source, kind, region) = match &settings {
            Settings::VpcEndpoints(config) => {
                (Source::VpcEndpoints(VpcEndpointSource::new(config.clone()).await), "vpc_endpoints", config.region.clone())
            }
            Settings::Route53(config) => (Source::Route53(Route53Source::new(config.clone()).await), "route53", config.region.clone()),
        };
        let status = SourceStatus { id: id.clone(), kind, region, ..SourceStatus::default() };
        Self { id, settings, source, last_good: None, failures: 0, due: Instant::now(), status }
    }
}

/// Builds a table from the config and the given source answers. Config aliases that name an
/// endpoint by id or service are pointed at that endpoint's regional DNS name. What had to be
/// left out is returned for the caller to report.
pub fn build_snapshot(config: &Config, outputs: &[&SourceOutput]) -> (Snapshot, Vec<Dropped>) {
    let (mut records, aliases) = sources::aliases::from_config(config);
    let aliases: Vec<Alias> = aliases
        .into_iter()
        .map(|mut alias| {
            let handle = alias.target.to_ascii().trim_end_matches('.').to_ascii_lowercase();
            if let Some(target) = outputs.iter().find_map(|o| o.handles.get(&handle)) {
                alias.target = target.clone();
            }
            alias
        })
        .collect();
    let mut aliases = aliases;
    let mut zone_conflicts = Vec::new();
    for (i, output) in outputs.iter().enumerate() {
        let lost = zones_lost(outputs, i, &mut zone_conflicts);
        if lost.is_empty() {
            records.extend(output.records.iter().cloned());
            aliases.extend(output.aliases.iter().cloned());
            continue;
        }
        // A record belongs to the most specific of its source's zones that holds it.
        let in_lost_zone = |name: &Name| {
            output.zones.iter().filter(|z| z.name.zone_of(name)).max_by_key(|z| z.name.num_labels()).is_some_and(|z| lost.contains(&z.id))
        };
        records.extend(output.records.iter().filter(|r| !in_lost_zone(&r.name)).cloned());
        aliases.extend(output.aliases.iter().filter(|a| !in_lost_zone(&a.name)).cloned());
    }
    let (mut snapshot, mut dropped) = Snapshot::build(records, aliases, &soa_settings(config), serial_now());
    snapshot.note_conflicts(zone_conflicts.len());
    dropped.splice(0..0, zone_conflicts);
    tracing::debug!(
        names = snapshot.name_count(),
        records = snapshot.record_count(),
        conflicts = snapshot.conflicts(),
        serial = snapshot.serial(),
        "snapshot built"
    );
    (snapshot, dropped)
}

/// The ids of the zones of `outputs[i]` that an earlier source also serves under the same
/// name: of private zones with one name in several sources, the earlier source's wins whole
/// (issue 14: one view, never a mix). Each loss is added to `conflicts`, and so is each zone
/// the source itself left out for one of the same name.
fn zones_lost(outputs: &[&SourceOutput], i: usize, conflicts: &mut Vec<Dropped>) -> Vec<String> {
    let provenance = |id: &str| Provenance { source: SourceKind::Route53, origin: Arc::from(format!("route53 zone={id}")) };
    // Zones the source itself left out for one of the same name, counted as conflicts too.
    for (winner, zone) in &outputs[i].lost_zones {
        conflicts.push(Dropped::Conflict { name: zone.name.clone(), kept: provenance(winner), dropped: provenance(&zone.id) });
    }
    let mut lost = Vec::new();
    for zone in &outputs[i].zones {
        let winner = outputs[..i].iter().flat_map(|o| &o.zones).find(|earlier| earlier.name == zone.name);
        if let Some(winner) = winner {
            conflicts.push(Dropped::Conflict { name: zone.name.clone(), kept: provenance(&winner.id), dropped: provenance(&zone.id) });
            lost.push(zone.id.clone());
        }
    }
    lost
}

/// The SOA settings from the `[answers]` section.
pub fn soa_settings(config: &Config) -> SoaSettings {
    SoaSettings {
        mname: config.answers.soa_mname.name().clone(),
        rname: config.answers.soa_rname.name().clone(),
        negative_ttl: config.answers.negative_ttl,
    }
}

/// One line per record for the log, without provenance (which changes with every fetch).
fn record_lines(snapshot: &Snapshot) -> BTreeSet<String> {
    snapshot
        .nodes()
        .flat_map(|node| node.rrsets())
        .flat_map(|set| {
            let weight = set.weight.as_ref().map(|w| format!(" [set {} weight {}]", w.set, w.weight)).unwrap_or_default();
            set.records.iter().map(move |r| format!("{} {} {} {}{weight}", r.name.to_lowercase(), r.ttl, r.record_type(), r.data))
        })
        .collect()
}

/// Logs what a swap adds and removes, and how many records the new table left out to conflicts.
fn log_diff(old: &BTreeSet<String>, new: &BTreeSet<String>, conflicts: usize) {
    let added: Vec<&String> = new.difference(old).collect();
    let removed: Vec<&String> = old.difference(new).collect();
    tracing::info!(added = added.len(), removed = removed.len(), records = new.len(), conflicts, "snapshot swapped");
    for (i, line) in added.iter().enumerate() {
        if i < DIFF_LOG_LINES {
            tracing::info!(record = %line, "added");
        } else {
            tracing::debug!(record = %line, "added");
        }
    }
    for (i, line) in removed.iter().enumerate() {
        if i < DIFF_LOG_LINES {
            tracing::info!(record = %line, "removed");
        } else {
            tracing::debug!(record = %line, "removed");
        }
    }
}

/// `base` ± 10 %.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// A serial that grows with every build: seconds since 1970, as many zones use.
fn serial_now() -> u32 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Wraps in 2106; SOA serials compare modulo 2^32 anyway (RFC 1982).
    secs as u32
}

fn now_rfc3339() -> String {
    DateTime::from(SystemTime::now()).fmt(DateTimeFormat::DateTime).unwrap_or_default()
}

/// Reads the state file; anything wrong with it is logged and yields nothing.
pub fn read_state(path: &Path) -> BTreeMap<String, SourceOutput> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "state file unreadable; ignored");
            return BTreeMap::new();
        }
    };
    match serde_json::from_str::<StateFile>(&text) {
        Ok(state) if state.format == STATE_FORMAT => state.sources,
        Ok(state) => {
            tracing::warn!(path = %path.display(), format = %state.format, expected = STATE_FORMAT, "state file of another format; ignored");
            BTreeMap::new()
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "state file corrupt; ignored");
            BTreeMap::new()
        }
    }
}

/// Writes the state file atomically: a temporary file beside it, fsync, rename, fsync the dir.
fn write_state(path: &Path, sources: BTreeMap<String, SourceOutput>) -> std::io::Result<()> {
    let state = StateFile { format: STATE_FORMAT.into(), written_at: now_rfc3339(), sources };
    let json = serde_json::to_vec(&state).map_err(std::io::Error::other)?;
    let tmp: PathBuf = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::{RData, rdata::A};

    use super::*;

    fn output() -> SourceOutput {
        let name = Name::from_ascii("vpce-1.svc.us-east-1.vpce.amazonaws.com.").unwrap();
        SourceOutput {
            records: vec![Record {
                name: name.clone(),
                ttl: 60,
                data: RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
                provenance: Provenance { source: SourceKind::EndpointDns, origin: Arc::from("vpc_endpoints vpce-1") },
                weight: None,
            }],
            handles: [("vpce-1".to_owned(), name)].into(),
            fetched_at: "2026-11-21T15:00:00Z".into(),
            ..SourceOutput::default()
        }
    }

    /// A Route 53 source's answer: zone `id` named `apex`, with one A record at `host`.
    fn zone_output(id: &str, apex: &str, host: &str, ip: [u8; 4]) -> SourceOutput {
        let name = |s: &str| Name::from_ascii(s).unwrap();
        SourceOutput {
            records: vec![Record {
                name: name(host),
                ttl: 60,
                data: RData::A(A(Ipv4Addr::from(ip))),
                provenance: Provenance { source: SourceKind::Route53, origin: Arc::from(format!("route53 zone={id}")) },
                weight: None,
            }],
            zones: vec![ZoneSummary { id: id.into(), name: name(apex) }],
            fetched_at: "2026-11-21T15:00:00Z".into(),
            ..SourceOutput::default()
        }
    }

    /// Issue 14 item 7: a zone name served by two sources (two accounts, say) is the earlier
    /// source's, whole; the other zone is a reported conflict, never merged in.
    #[test]
    fn of_two_sources_zones_with_one_name_the_earlier_wins_whole() {
        let first = zone_output("Z1", "corp.example.", "a.corp.example.", [10, 0, 0, 1]);
        let second = zone_output("Z2", "corp.example.", "b.corp.example.", [10, 0, 0, 2]);
        let other = zone_output("Z3", "other.example.", "c.other.example.", [10, 0, 0, 3]);
        let second = SourceOutput { records: [second.records, other.records].concat(), zones: [second.zones, other.zones].concat(), ..second };
        let config = Config::parse("", "t.toml").unwrap();
        let (snapshot, dropped) = build_snapshot(&config, &[&first, &second]);
        let answers = |n: &str| {
            let key = crate::name_key::name_key(&Name::from_ascii(n).unwrap());
            let question = crate::answer::Question { key: &key, qtype: hickory_proto::rr::RecordType::A, recursion_desired: true };
            crate::answer::plan(&snapshot, question, crate::answer::Draw::First).hops().count()
        };
        assert_eq!((answers("a.corp.example."), answers("b.corp.example."), answers("c.other.example.")), (1, 0, 1));
        assert_eq!(snapshot.conflicts(), 1);
        assert!(matches!(&dropped[0], Dropped::Conflict { kept, dropped, .. } if kept.origin.contains("Z1") && dropped.origin.contains("Z2")), "{dropped:?}");
    }

    /// Issue 14 item 7: two Route 53 sources of one region and role keep separate state.
    #[test]
    fn sources_alike_get_ids_of_their_own() {
        let text = "[[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-1\"]\n\
                    [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-2\"]\n\
                    [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\n";
        let ids: Vec<String> = sources_of(&Config::parse(text, "t.toml").unwrap()).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["vpc_endpoints/us-east-1", "route53/us-east-1", "route53/us-east-1#2"]);
    }

    #[test]
    fn state_file_round_trips_and_bad_files_are_ignored() {
        let dir = std::env::temp_dir().join(format!("hubdns-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        write_state(&path, [("vpc_endpoints/us-east-1".to_owned(), output())].into()).unwrap();
        let back = read_state(&path);
        assert_eq!(back["vpc_endpoints/us-east-1"].records, output().records);
        assert_eq!(back["vpc_endpoints/us-east-1"].handles, output().handles);

        std::fs::write(&path, b"{\"format\": \"hubdns-state/1\", \"sources\": {").unwrap();
        assert!(read_state(&path).is_empty(), "corrupt: ignored");
        std::fs::write(&path, br#"{"format":"hubdns-state/99","written_at":"","sources":{}}"#).unwrap();
        assert!(read_state(&path).is_empty(), "other format: ignored");
        assert!(read_state(&dir.join("missing.json")).is_empty());
        assert!(write_state(&dir.join("no/such/dir/state.json"), BTreeMap::new()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_aliases_may_name_an_endpoint_by_id_or_service() {
        let config = Config::parse(
            "[[aliases]]\nname = \"api.example.\"\ntarget = \"VPCE-1\"\n",
            "t.toml",
        )
        .unwrap();
        let out = output();
        let (snapshot, dropped) = build_snapshot(&config, &[&out]);
        assert!(dropped.is_empty(), "{dropped:?}");
        let key = crate::name_key::name_key(&Name::from_ascii("api.example.").unwrap());
        let question = crate::answer::Question { key: &key, qtype: hickory_proto::rr::RecordType::A, recursion_desired: true };
        let plan = crate::answer::plan(&snapshot, question, crate::answer::Draw::First);
        assert!(matches!(plan.outcome, crate::answer::Outcome::Answer), "{plan:?}");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_secs(30));
            assert!(j >= Duration::from_secs(27) && j <= Duration::from_secs(33), "{j:?}");
        }
    }
}
