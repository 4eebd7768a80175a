//! The JSON views: `/records` (every owned record with its provenance) and `/status.json`
//! (what the status page shows: sources, endpoints, forwarding, the table, the config).

use std::sync::Arc;

use serde::Serialize;

use crate::{
    explain::{RecordView, UpstreamView},
    live::Live,
    metrics::QueryPath,
    signed_parents::SignedOverlap,
    snapshot::Snapshot,
    status::{ConfigStatus, SourceStatus, unix_secs},
};

/// `/records`.
#[derive(Serialize)]
pub struct Records {
    /// The serial of the table.
    pub serial: u32,
    /// Owned names.
    pub names: usize,
    /// Every record, sorted by name and type; weighted alternatives and wildcards as stored.
    pub records: Vec<RecordView>,
}

/// `source` as the status page shows it: a custom domain name its endpoint would serve, but
/// an earlier source keeps (the table lists this endpoint among the outvoted), is shown as
/// not served.
fn with_domains_kept_elsewhere(source: &crate::status::SourceStatus, snapshot: &Snapshot) -> crate::status::SourceStatus {
    let mut source = source.clone();
    Arc::make_mut(&mut source.endpoints).edit_domains(|id, domains| {
        let mine = format!("vpc_endpoints {id} ");
        for domain in domains.iter_mut().filter(|d| d.served) {
            let Ok(name) = hickory_proto::rr::Name::from_ascii(format!("{}.", domain.name.trim_end_matches('.'))) else { continue };
            let key = crate::name_key::name_key(&name.to_lowercase());
            if snapshot.outvoted(&key).iter().any(|p| p.origin.text().starts_with(&mine)) {
                (domain.served, domain.why) = (false, "another source keeps it (explain shows which)".to_owned());
            }
        }
    });
    source
}

/// Every record of `snapshot`, sorted.
pub fn records(snapshot: &Snapshot) -> Records {
    let mut records: Vec<RecordView> = snapshot
        .nodes()
        .flat_map(|node| node.rrsets().iter().flat_map(|set| RecordView::of_set(set, &node.name())))
        .collect();
    records.sort_by(|a, b| (a.name.to_ascii_lowercase(), &a.rtype, &a.data).cmp(&(b.name.to_ascii_lowercase(), &b.rtype, &b.data)));
    Records { serial: snapshot.serial(), names: snapshot.name_count(), records }
}

/// `/status.json`.
#[derive(Serialize)]
pub struct Status {
    /// hubdns's version.
    pub version: &'static str,
    /// When it started serving (seconds since 1970).
    pub started_at: f64,
    /// Whether every source has answered.
    pub ready: bool,
    /// The running config.
    pub config: ConfigStatus,
    /// The table.
    pub snapshot: SnapshotStatus,
    /// Every AWS source, endpoints included.
    pub sources: Vec<SourceStatus>,
    /// Sources that have not answered yet (fresh or from the state file).
    pub unanswered: Vec<String>,
    /// The events queue's consumer, when `[events]` is set.
    pub events: Option<crate::status::EventsStatus>,
    /// The organizations listed for `accounts = "organization"`.
    pub organizations: Vec<crate::status::OrganizationStatus>,
    /// Forwarding rules and upstreams.
    pub forward: ForwardStatus,
    /// Queries answered per path since start.
    pub queries: Vec<(&'static str, u64)>,
    /// Owned apexes inside DNSSEC-signed public zones: validating resolvers behind hubdns
    /// need a negative trust anchor for each ([`crate::signed_parents`]).
    pub dnssec_overlaps: Vec<SignedOverlap>,
    /// `[az]`: where clients are, and what affinity did.
    pub az: AzStatus,
}

/// `[az]` in brief.
#[derive(Serialize)]
pub struct AzStatus {
    /// `az.affinity`.
    pub affinity: &'static str,
    /// Every client range with its AZ ID (`None`: a forwarder), most specific first.
    pub placements: Vec<PlacementView>,
    /// Owned answers with addresses in several AZs since start, by placement: `same_az`,
    /// `other_az`, `unknown_az` (as `/metrics` counts them).
    pub answers: Vec<(&'static str, u64)>,
}

/// One client range.
#[derive(Serialize)]
pub struct PlacementView {
    /// The range.
    pub cidr: String,
    /// Its AZ ID; `None` for a forwarder.
    pub az_id: Option<String>,
    /// `subnet`, `client`, `forwarder`, `default`.
    pub kind: &'static str,
    /// Where it comes from.
    pub origin: String,
}

/// The table in numbers.
#[derive(Serialize)]
pub struct SnapshotStatus {
    /// Serial.
    pub serial: u32,
    /// Owned names.
    pub names: usize,
    /// Records.
    pub records: usize,
    /// Left out to higher-precedence sources.
    pub conflicts: usize,
    /// Refused: names no one may own, CNAMEs beside other data.
    pub refused: usize,
    /// Records per kind of source.
    pub by_source: Vec<(String, usize)>,
}

/// Forwarding in brief.
#[derive(Serialize)]
pub struct ForwardStatus {
    /// Each route: its domain (`.` for the default) and upstreams.
    pub rules: Vec<RuleStatus>,
    /// Answers cached.
    pub cache_entries: usize,
    /// Forwards waiting on upstreams.
    pub in_flight: usize,
}

/// One forwarding route.
#[derive(Serialize)]
pub struct RuleStatus {
    /// Its domain.
    pub domain: String,
    /// Its upstreams.
    pub upstreams: Vec<UpstreamView>,
}

/// Reads everything the status page shows.
pub fn status(live: &Live) -> Status {
    let snapshot = live.snapshot.load();
    let handler = live.handler.load();
    let forwarder = handler.forwarder();
    let board = live.board.lock();
    let totals = live.metrics.totals();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        started_at: unix_secs(live.started),
        ready: *live.ready.borrow(),
        config: board.config.clone(),
        snapshot: SnapshotStatus {
            serial: snapshot.serial(),
            names: snapshot.name_count(),
            records: snapshot.record_count(),
            conflicts: snapshot.conflicts(),
            refused: snapshot.refused(),
            by_source: snapshot.records_by_kind().iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        },
        sources: board.sources.iter().map(|source| with_domains_kept_elsewhere(source, &snapshot)).collect(),
        unanswered: board.unanswered.clone(),
        events: board.events.clone(),
        organizations: board.organizations.clone(),
        forward: ForwardStatus {
            rules: forwarder
                .routes()
                .map(|route| RuleStatus {
                    domain: route.domain.to_string(),
                    upstreams: route.stats().map(|s| UpstreamView::of(s)).collect(),
                })
                .collect(),
            cache_entries: forwarder.cache_len(),
            in_flight: forwarder.in_flight(),
        },
        queries: QueryPath::ALL.iter().map(|p| (p.as_str(), totals.count(*p))).collect(),
        dnssec_overlaps: forwarder.signed_overlaps().to_vec(),
        az: AzStatus {
            affinity: snapshot.affinity_rules().default.as_str(),
            placements: {
                let mut placements: Vec<&crate::az::Placement> = snapshot.locator().placements().iter().collect();
                placements.sort_by_key(|p| std::cmp::Reverse(p.net.prefix_len()));
                placements
                    .into_iter()
                    .map(|p| PlacementView {
                        cidr: p.net.to_string(),
                        az_id: p.az.as_deref().map(str::to_owned),
                        kind: p.kind.as_str(),
                        origin: p.origin.to_string(),
                    })
                    .collect()
            },
            answers: crate::az::Choice::ALL.iter().zip(totals.az).map(|(c, n)| (c.as_str(), n)).collect(),
        },
    }
}
