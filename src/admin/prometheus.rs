//! `/metrics`: everything in the Prometheus text exposition format (version 0.0.4).
//!
//! Query counters come from [`crate::metrics`]; the rest is read at scrape time from where it
//! lives — the status board (sources, reloads), the forwarder (upstreams, cache), the snapshot
//! (records, conflicts) — so nothing is counted twice and nothing can drift. Every name starts
//! with `hubdns_`; `deploy/grafana/hubdns.json` charts them.

use std::{
    fmt::Write,
    sync::atomic::Ordering::Relaxed,
    time::SystemTime,
};

use crate::{
    live::Live,
    dns::health::UpstreamStats,
    metrics::{LATENCY_BOUNDS, Limited, QueryPath},
    status::{SourceStatus, ZoneState, unix_secs},
};

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric.
pub fn render(live: &Live) -> String {
    let mut out = Text::default();
    let now = SystemTime::now();

    out.family("hubdns_build_info", "gauge", "Always 1; the version label says which hubdns this is.");
    out.sample("hubdns_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    out.family("hubdns_start_time_seconds", "gauge", "When the process started serving, in seconds since 1970.");
    out.sample("hubdns_start_time_seconds", &[], unix_secs(live.started));
    out.family("hubdns_ready", "gauge", "1 once every source has answered (fresh or from the state file).");
    out.sample("hubdns_ready", &[], f64::from(u8::from(*live.ready.borrow())));

    // Queries.
    let totals = live.metrics.totals();
    out.family("hubdns_queries_total", "counter", "Queries answered, by question type, response code and path (local, cache, forwarded, refused).");
    for (qtype, rcode, path, n) in &totals.queries {
        out.sample("hubdns_queries_total", &[("qtype", qtype), ("rcode", rcode), ("path", path.as_str())], *n as f64);
    }
    out.family("hubdns_query_duration_seconds", "histogram", "Time from a query's arrival to its answer, by path.");
    for (path, buckets, sum) in &totals.latency {
        let path = path.as_str();
        for (bound, count) in LATENCY_BOUNDS.iter().zip(buckets) {
            out.sample("hubdns_query_duration_seconds_bucket", &[("path", path), ("le", &bound.to_string())], *count as f64);
        }
        let count = buckets[buckets.len() - 1] as f64;
        out.sample("hubdns_query_duration_seconds_bucket", &[("path", path), ("le", "+Inf")], count);
        out.sample("hubdns_query_duration_seconds_sum", &[("path", path)], *sum);
        out.sample("hubdns_query_duration_seconds_count", &[("path", path)], count);
    }
    out.family("hubdns_packets_dropped_total", "counter", "Packets dropped unanswered: responses and runts, which are never answered.");
    out.sample("hubdns_packets_dropped_total", &[], totals.dropped as f64);
    out.family("hubdns_udp_send_failures_total", "counter", "UDP answers the kernel refused to send (a full send buffer, an unreachable client): answered, never delivered.");
    out.sample("hubdns_udp_send_failures_total", &[], totals.send_failed as f64);
    if let Some(log) = live.handler.load().query_log() {
        let counters = log.counters();
        out.family("hubdns_query_log_lines_total", "counter", "Query log lines: written, dropped because the writer was behind, or lost to a failed write.");
        out.sample("hubdns_query_log_lines_total", &[("result", "written")], counters.written.load(Relaxed) as f64);
        out.sample("hubdns_query_log_lines_total", &[("result", "dropped")], counters.dropped.load(Relaxed) as f64);
        out.family("hubdns_query_log_errors_total", "counter", "Query log writes or reopens that failed.");
        out.sample("hubdns_query_log_errors_total", &[], counters.errors.load(Relaxed) as f64);
    }
    if let Some(certificates) = &live.certificates {
        out.family("hubdns_tls_certificate_reloads_total", "counter", "Changes to the DoT/DoH certificate files: loaded and served, or failed (the last good pair stays).");
        out.sample("hubdns_tls_certificate_reloads_total", &[("result", "loaded")], certificates.reloads.load(Relaxed) as f64);
        out.sample("hubdns_tls_certificate_reloads_total", &[("result", "failed")], certificates.failures.load(Relaxed) as f64);
    }
    out.family("hubdns_rate_limited_total", "counter", "UDP queries the per-client rate limit dropped, answered TC=1 (slipped), or whose REFUSED it did not send.");
    for (action, n) in Limited::ALL.iter().zip(totals.limited) {
        out.sample("hubdns_rate_limited_total", &[("action", action.as_str())], n as f64);
    }
    out.family(
        "hubdns_az_answers_total",
        "counter",
        "Owned answers with addresses in several Availability Zones, under [az] affinity: the client's AZ's first or alone (same_az), its AZ had none (other_az), or its AZ is not known or it is a forwarder (unknown_az).",
    );
    for (choice, n) in crate::az::Choice::ALL.iter().zip(totals.az) {
        out.sample("hubdns_az_answers_total", &[("placement", choice.as_str())], n as f64);
    }
    out.family("hubdns_tcp_connections", "gauge", "TCP connections open.");
    out.sample("hubdns_tcp_connections", &[], live.tcp_connections() as f64);

    // The forwarder: cache and upstreams.
    let handler = live.handler.load();
    let forwarder = handler.forwarder();
    let (hits, misses) = (totals.count(QueryPath::Cache), totals.count(QueryPath::Forwarded));
    out.family("hubdns_cache_entries", "gauge", "Forwarded answers in the answer cache.");
    out.sample("hubdns_cache_entries", &[], forwarder.cache_len() as f64);
    let (bytes, max_bytes) = forwarder.cache_bytes();
    out.family("hubdns_cache_bytes", "gauge", "Bytes the answer cache holds.");
    out.sample("hubdns_cache_bytes", &[], bytes as f64);
    out.family("hubdns_cache_capacity_bytes", "gauge", "Most bytes the answer cache holds (forward.cache_max_bytes).");
    out.sample("hubdns_cache_capacity_bytes", &[], max_bytes as f64);
    let counters = &forwarder.counters;
    out.family("hubdns_stale_answers_total", "counter", "Expired answers served because the upstreams failed or were slow (RFC 8767).");
    out.sample("hubdns_stale_answers_total", &[], counters.stale_answers.load(Relaxed) as f64);
    out.family("hubdns_prefetches_total", "counter", "Cached answers refreshed before they expired.");
    out.sample("hubdns_prefetches_total", &[], counters.prefetches.load(Relaxed) as f64);
    out.family("hubdns_forward_all_upstreams_down_total", "counter", "Forwards sent to every upstream of a route although all were marked down.");
    out.sample("hubdns_forward_all_upstreams_down_total", &[], counters.all_down.load(Relaxed) as f64);
    out.family("hubdns_forward_coalesced_total", "counter", "Queries answered by an identical upstream query already under way.");
    out.sample("hubdns_forward_coalesced_total", &[], counters.coalesced.load(Relaxed) as f64);
    out.family("hubdns_forward_saturated_total", "counter", "Forwards answered SERVFAIL (or stale) at once: forward.max_in_flight questions were under way.");
    out.sample("hubdns_forward_saturated_total", &[], counters.saturated.load(Relaxed) as f64);
    out.family("hubdns_forward_failures_cached_total", "counter", "Queries answered from the per-name failure cache (RFC 9520) without asking upstream.");
    out.sample("hubdns_forward_failures_cached_total", &[], counters.failures_cached.load(Relaxed) as f64);
    let marked = forwarder.routes().flat_map(|r| r.stats()).map(|s| s.marked_down.load(Relaxed)).sum::<u64>();
    out.family("hubdns_upstream_marked_down_total", "counter", "Times an upstream was marked down.");
    out.sample("hubdns_upstream_marked_down_total", &[], marked as f64);
    out.family("hubdns_cache_hits_total", "counter", "Forwarded names answered from the answer cache.");
    out.sample("hubdns_cache_hits_total", &[], hits as f64);
    out.family("hubdns_cache_misses_total", "counter", "Forwarded names sent upstream.");
    out.sample("hubdns_cache_misses_total", &[], misses as f64);
    out.family("hubdns_cache_hit_ratio", "gauge", "Cache hits over all forwarded names since start (0 before the first).");
    out.sample("hubdns_cache_hit_ratio", &[], if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 });
    out.family("hubdns_forward_in_flight", "gauge", "Questions under way upstream (bounded by forward.max_in_flight); clients waiting on them not counted.");
    out.sample("hubdns_forward_in_flight", &[], forwarder.in_flight() as f64);
    let upstream_families: [Family<UpstreamStats>; 4] = [
        ("hubdns_upstream_queries_total", "counter", "Queries sent to each upstream server.", &|s| Some(s.queries.load(Relaxed) as f64)),
        (
            "hubdns_upstream_errors_total",
            "counter",
            "Queries an upstream failed with an error (SERVFAIL, REFUSED, connection errors).",
            &|s| Some(s.errors.load(Relaxed) as f64),
        ),
        ("hubdns_upstream_timeouts_total", "counter", "Queries an upstream did not answer in time.", &|s| Some(s.timeouts.load(Relaxed) as f64)),
        (
            "hubdns_upstream_up",
            "gauge",
            "0 while the upstream is marked down (failures for many different names and no answer; asked again after a backoff), else 1.",
            &|s| Some(f64::from(u8::from(!s.is_marked()))),
        ),
    ];
    for (name, kind, help, value) in upstream_families {
        out.family(name, kind, help);
        for route in forwarder.routes() {
            let rule = route.domain.to_string();
            for stats in route.stats() {
                if let Some(value) = value(stats) {
                    out.sample(name, &[("rule", &rule), ("upstream", &stats.addr.to_string())], value);
                }
            }
        }
    }

    // Sources.
    let board = live.board.lock();
    let source_families: [Family<SourceStatus>; 8] = [
        ("hubdns_source_refresh_runs_total", "counter", "Fetches attempted per AWS source.", &|s| Some(s.runs as f64)),
        (
            "hubdns_source_refresh_failures_total",
            "counter",
            "Fetches failed per AWS source (its last good records kept).",
            &|s| Some(s.failures as f64),
        ),
        ("hubdns_source_consecutive_failures", "gauge", "Failures since the source's last success.", &|s| Some(f64::from(s.consecutive_failures))),
        (
            "hubdns_source_last_success_timestamp_seconds",
            "gauge",
            "When the source last answered, in seconds since 1970.",
            &|s| s.last_success.map(unix_secs),
        ),
        (
            "hubdns_source_seconds_since_success",
            "gauge",
            "Seconds since the source last answered.",
            &|s| s.last_success.map(|t| now.duration_since(t).unwrap_or_default().as_secs_f64()),
        ),
        (
            "hubdns_source_last_refresh_duration_seconds",
            "gauge",
            "How long the source's last fetch took.",
            &|s| Some(s.last_duration_ms as f64 / 1000.0),
        ),
        (
            "hubdns_source_records",
            "gauge",
            "Records in the source's last good answer (fresh or from the state file).",
            &|s| Some(s.records as f64),
        ),
        (
            "hubdns_source_skipped",
            "gauge",
            "Items the source's last fetch left out (an endpoint not available, a deleted zone; reasons on the status page).",
            &|s| Some(s.skipped.len() as f64),
        ),
    ];
    for (name, kind, help, value) in source_families {
        out.family(name, kind, help);
        for source in &board.sources {
            if let Some(value) = value(source) {
                out.sample(name, &[("source", &source.id), ("kind", source.kind)], value);
            }
        }
    }
    if let Some(events) = &board.events {
        out.family("hubdns_events_total", "counter", "Messages read from the events queue: changes applied, other events ignored, non-events.");
        for (result, n) in [("applied", events.applied), ("ignored", events.ignored), ("malformed", events.malformed)] {
            out.sample("hubdns_events_total", &[("result", result)], n as f64);
        }
        out.family("hubdns_events_receive_failures_total", "counter", "Failed reads of the events queue (sources keep polling meanwhile).");
        out.sample("hubdns_events_receive_failures_total", &[], events.failures as f64);
        out.family("hubdns_events_last_receive_timestamp_seconds", "gauge", "When the events queue last answered, in seconds since 1970.");
        out.sample("hubdns_events_last_receive_timestamp_seconds", &[], events.last_receive.map_or(0.0, unix_secs));
    }
    if !board.organizations.is_empty() {
        out.family("hubdns_organization_accounts", "gauge", "ACTIVE accounts in the organization's last listing (each read as a source of its own).");
        for org in &board.organizations {
            out.sample("hubdns_organization_accounts", &[("organization", &org.key)], org.accounts as f64);
        }
        out.family("hubdns_organization_listing_failures_total", "counter", "Failed listings of the organization's accounts (the accounts known are still read).");
        for org in &board.organizations {
            out.sample("hubdns_organization_listing_failures_total", &[("organization", &org.key)], org.failures as f64);
        }
    }
    out.family("hubdns_config_reloads_total", "counter", "Config reloads (SIGHUP or file change), applied or refused.");
    out.sample("hubdns_config_reloads_total", &[("result", "applied")], board.config.reloads as f64);
    out.sample("hubdns_config_reloads_total", &[("result", "refused")], board.config.reloads_refused as f64);
    out.family("hubdns_config_loaded_timestamp_seconds", "gauge", "When the running config was loaded, in seconds since 1970.");
    out.sample("hubdns_config_loaded_timestamp_seconds", &[], board.config.loaded_at.map_or(0.0, unix_secs));
    out.family(
        "hubdns_zone_files",
        "gauge",
        "[[zones]] files: loaded; kept (did not load, the copy loaded before is served); failed (not loaded: its names answer SERVFAIL, or go upstream when its name is unknown).",
    );
    for state in ZoneState::ALL {
        out.sample("hubdns_zone_files", &[("state", state.as_str())], board.config.zones.iter().filter(|z| z.state == state).count() as f64);
    }
    drop(board);

    // The snapshot.
    let snapshot = live.snapshot.load();
    out.family("hubdns_records", "gauge", "Records served, by the kind of source that won them.");
    for (kind, n) in snapshot.records_by_kind() {
        out.sample("hubdns_records", &[("source_kind", &kind.to_string())], n as f64);
    }
    out.family("hubdns_names", "gauge", "Owned names served (wildcards included).");
    out.sample("hubdns_names", &[], snapshot.name_count() as f64);
    out.family("hubdns_conflicts", "gauge", "Records and aliases left out because a source of higher precedence owns their name.");
    out.sample("hubdns_conflicts", &[], snapshot.conflicts() as f64);
    out.family("hubdns_refused", "gauge", "Records and aliases refused: a name no one may own (the root, a public suffix), or a CNAME beside other data.");
    out.sample("hubdns_refused", &[], snapshot.refused() as f64);
    out.family("hubdns_snapshot_serial", "gauge", "Serial of the table being served (seconds since 1970 when it was built).");
    out.sample("hubdns_snapshot_serial", &[], f64::from(snapshot.serial()));
    out.0
}

/// A metric family with one sample per item: name, type, help, and the item's value (`None`:
/// no sample, as for a source that has never answered).
type Family<'a, T> = (&'static str, &'static str, &'static str, &'a dyn Fn(&T) -> Option<f64>);

/// The exposition text under construction.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_written_in_the_text_format() {
        let mut text = Text::default();
        text.family("hubdns_x_total", "counter", "An example.");
        text.sample("hubdns_x_total", &[("a", "b\"c\\d\ne")], 3.0);
        text.sample("hubdns_x_total", &[], 0.5);
        assert_eq!(
            text.0,
            "# HELP hubdns_x_total An example.\n# TYPE hubdns_x_total counter\nhubdns_x_total{a=\"b\\\"c\\\\d\\ne\"} 3\nhubdns_x_total 0.5\n"
        );
    }
}
