//! The `hubdns check` report: what a config file will do, in a form an operator can read
//! before deploying it.

use std::fmt::Write;

use crate::{
    answer,
    config::Config,
    snapshot::{Dropped, TARGET_NOT_OWNED},
};

/// A readable summary of `config`: listeners, allow list, owned names, forwarding, sources.
/// Also builds the snapshot, so aliases that cannot resolve show up here, and CNAME chains
/// that can only answer SERVFAIL as errors. Returns the text and whether it has no error.
pub fn summary(config: &Config) -> (String, bool) {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored below for that reason.
    let _ = writeln!(out, "config {}: OK", config.origin);
    let s = &config.server;
    let listen: Vec<String> = s.listen.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "listen        {} (UDP x{} + TCP each; max {} TCP connections, idle {}s; UDP payload {})",
        listen.join(", "),
        config.udp_sockets_per_address(),
        s.tcp_max_connections,
        s.tcp_idle_timeout_secs,
        s.max_udp_payload
    );
    if !s.tls_listen.is_empty() || !s.https_listen.is_empty() {
        let join = |a: &[std::net::SocketAddr]| a.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let cert = s.tls_cert.as_ref().map_or_else(String::new, |p| p.display().to_string());
        if !s.tls_listen.is_empty() {
            let _ = writeln!(out, "dot           {} (certificate {cert}, reloaded when it changes)", join(&s.tls_listen));
        }
        if !s.https_listen.is_empty() {
            let _ = writeln!(out, "doh           {} at {} (HTTP/2 and HTTP/1.1; certificate {cert})", join(&s.https_listen), s.https_path);
        }
    }
    let queries = match &config.log.queries {
        crate::querylog::Target::Off => "off".to_owned(),
        crate::querylog::Target::Stderr => format!("stderr, one query in {}", config.log.query_sample),
        crate::querylog::Target::File(path) => format!("{} (reopened on SIGUSR1), one query in {}", path.display(), config.log.query_sample),
    };
    let _ = writeln!(out, "query log     {queries} (Route 53 Resolver's format)");
    let admin = match config.admin.listen {
        Some(addr) => format!("http://{addr} (/healthz, /readyz)"),
        None => "off".to_owned(),
    };
    let _ = writeln!(out, "admin         {admin}");
    let allow: Vec<String> = s.allow.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "allow         {}", allow.join(", "));
    let _ = writeln!(
        out,
        "answers       ttl {}s, negative ttl {}s, SOA {} {}",
        config.answers.ttl, config.answers.negative_ttl, config.answers.soa_mname, config.answers.soa_rname
    );

    let _ = writeln!(out, "aliases       {}", config.aliases.len());
    for alias in &config.aliases {
        let a = alias.get_ref();
        let to = match &a.target {
            Some(target) => target.to_string(),
            None => a.addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        };
        let _ = writeln!(out, "  {} -> {}   (line {})", a.name, to, config.line_of(alias));
    }
    let _ = writeln!(out, "records       {}", config.records.len());
    for record in &config.records {
        let r = record.get_ref();
        let _ = writeln!(out, "  {} {} {}   (line {})", r.name, r.rtype.0, r.values.join(" | "), config.line_of(record));
    }
    let _ = writeln!(out, "zones         {}", config.zones.len());
    for (entry, zone) in config.zones.iter().zip(&config.zone_files) {
        let included = match zone.files.len() {
            1 => String::new(),
            n => format!(" and {} included", n - 1),
        };
        let _ = writeln!(
            out,
            "  {} from {}{included}: {} records, {} delegations   (line {})",
            zone.origin,
            zone.files[0].display(),
            zone.len(),
            zone.delegations.len(),
            config.line_of(entry)
        );
    }

    let f = &config.forward;
    let ups: Vec<String> = f.upstreams.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "forward       . -> {}{}   (cache {} answers, {} ms x {} attempts per upstream, deadline {} ms, max {} questions upstream at once, failures remembered {} s)",
        ups.join(", "),
        if f.trust_ad { "  [trust AD]" } else { "" },
        f.cache_size,
        f.timeout_ms,
        f.attempts,
        f.deadline_ms,
        f.max_in_flight,
        f.servfail_cache_secs
    );
    for rule in &f.rules {
        let r = rule.get_ref();
        let ups: Vec<String> = r.upstreams.iter().map(ToString::to_string).collect();
        let from = if r.from_zone { "  (a delegation in a zone file, to its glue)" } else { "" };
        let _ = writeln!(out, "  {} -> {}{}{from}", r.domain, ups.join(", "), if r.trust_ad { "  [trust AD]" } else { "" });
    }

    let (snapshot, dropped) = crate::assemble::build_snapshot(config, &[]);
    let _ = writeln!(out, "sources       config ({} names, {} records)", snapshot.name_count(), snapshot.record_count());
    for source in &config.sources.vpc_endpoints {
        let v = source.get_ref();
        let _ = writeln!(
            out,
            "              vpc_endpoints region {}{}{}{}   (every {}s)",
            v.region,
            v.role_arn.as_ref().map(|r| format!(", role {r}")).unwrap_or_default(),
            if v.vpc_ids.is_empty() { String::new() } else { format!(", vpcs {}", v.vpc_ids.join(" ")) },
            if v.tags.is_empty() { String::new() } else { format!(", tags {:?}", v.tags) },
            config.interval_secs()
        );
        accounts_line(&mut out, v.accounts.as_ref(), v.role_name.as_deref(), v.organization_role_arn.as_deref());
        let domains = |list: &[crate::config::DomainName]| match list {
            [] => "none".to_owned(),
            some => some.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        };
        let _ = writeln!(
            out,
            "                interface, resource and service-network endpoints; custom domain names: verified ones, and unverified under {}; hubdns:alias tags under {}",
            domains(&v.unverified_domains),
            domains(&v.alias_tag_domains)
        );
    }
    for source in &config.sources.route53 {
        let r = source.get_ref();
        let _ = writeln!(
            out,
            "              route53 region {}{}{}{}   (every {}s; a zone is re-read when its record count changes, or every {}s)",
            r.region,
            r.role_arn.as_ref().map(|role| format!(", role {role}")).unwrap_or_default(),
            if r.vpc_ids.is_empty() { String::new() } else { format!(", zones of vpcs {}", r.vpc_ids.join(" ")) },
            if r.zone_ids.is_empty() { String::new() } else { format!(", zones {}", r.zone_ids.join(" ")) },
            config.interval_secs(),
            r.reread_secs
        );
        accounts_line(&mut out, r.accounts.as_ref(), r.role_name.as_deref(), r.organization_role_arn.as_deref());
    }
    if let Some(events) = &config.events {
        let _ = writeln!(
            out,
            "events        {} ({}{})   (a change is fetched at once; the poll runs every {}s while events flow, {}s while the queue fails)",
            events.queue_url,
            events.region,
            events.role_arn.as_ref().map(|r| format!(", role {r}")).unwrap_or_default(),
            config.interval_secs_when(true),
            config.interval_secs_when(false)
        );
    }
    if let Some(path) = &config.refresh.state_file {
        let _ = writeln!(out, "state file    {}", path.display());
    }
    let az = &config.az;
    if az.enabled() {
        let learned = match (az.learn_subnets, config.sources.vpc_endpoints.is_empty()) {
            (true, false) => "clients placed by the vpc_endpoints sources' subnets (DescribeSubnets), then",
            _ => "clients placed by",
        };
        let default = match az.default.get_ref().as_str() {
            "off" => "unknown".to_owned(),
            "instance" => "the instance's own AZ (instance metadata, at start)".to_owned(),
            az_id => az_id.to_owned(),
        };
        let _ = writeln!(
            out,
            "az            affinity {}; {learned} {} [[az.clients]] ranges; {} [[az.forwarders]] ranges (AZ unknown); everyone else: {default}",
            az.affinity.as_str(),
            az.clients.len(),
            az.forwarders.len()
        );
        for name in &az.names {
            let _ = writeln!(out, "  {} -> {}   (line {})", name.get_ref().name, name.get_ref().affinity.as_str(), config.line_of(name));
        }
    } else if !az.clients.is_empty() || !az.forwarders.is_empty() || az.default.get_ref() != "off" {
        let _ = writeln!(out, "warning       [az] affinity is off for every name: its clients, forwarders and default change no answer");
    }
    let from_aws = !config.sources.vpc_endpoints.is_empty() || !config.sources.route53.is_empty();
    // Sorted: the build finds them in no fixed order, and a check should read the same twice.
    let mut lines: Vec<String> = dropped
        .iter()
        .map(|item| match item {
            // `check` makes no AWS calls: such a target may well be an endpoint name or id.
            Dropped::UnresolvedAlias { alias, reason } if from_aws && *reason == TARGET_NOT_OWNED => {
                format!("pending       alias {} -> {}: resolves when the AWS sources answer", alias.name, alias.target)
            }
            _ => format!("warning       {item}"),
        })
        .collect();
    lines.sort();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let broken = answer::broken_chains(&snapshot);
    for (name, why) in &broken {
        let _ = writeln!(out, "error         {name}: {why}, so it can only answer SERVFAIL");
    }
    (out, broken.is_empty())
}

/// Which accounts a source entry reads besides its own credentials', and through which role.
fn accounts_line(out: &mut String, accounts: Option<&crate::config::Accounts>, role_name: Option<&str>, organization_role: Option<&str>) {
    let Some(accounts) = accounts else { return };
    let role = role_name.unwrap_or("?");
    let which = match accounts {
        crate::config::Accounts::List(ids) => format!("accounts {}", ids.join(" ")),
        crate::config::Accounts::Organization(_) => format!(
            "every ACTIVE account of the organization (listed every refresh{})",
            organization_role.map(|r| format!(" through {r}")).unwrap_or_default()
        ),
    };
    let _ = writeln!(out, "                {which}, each through its role {role}, as a source of its own");
}
