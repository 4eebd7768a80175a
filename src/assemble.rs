//! Building the table: the config's records and aliases plus every source's last good answer
//! → one [`Snapshot`]. Pure (no I/O, no AWS): the refresh loop runs it on a blocking thread,
//! `hubdns check` and `hubdns explain` run it offline, and the fuzzer runs it without the
//! `aws` feature. Config aliases that name an endpoint by id or service are pointed at its
//! regional name; of private zones with one name in two sources, the earlier source's wins
//! whole.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use hickory_proto::rr::Name;

use crate::{
    az::{AffinityRules, Locator, Placement, PlacementKind},
    config::Config,
    name_key::name_key,
    snapshot::{Alias, Dropped, Provenance, Record, Snapshot, SoaSettings, SourceKind, Unloaded},
    sources::{self, SourceOutput},
};

/// Builds a table from the config and the given source answers. Config aliases that name an
/// endpoint by id or service are pointed at that endpoint's regional DNS name. What had to be
/// left out is returned for the caller to report.
pub fn build_snapshot(config: &Config, outputs: &[Arc<SourceOutput>]) -> (Snapshot, Vec<Dropped>) {
    let started = std::time::Instant::now();
    let (mut records, aliases) = sources::aliases::from_config(config);
    records.reserve(outputs.iter().map(|o| o.records.len()).sum());
    let handles = match aliases.is_empty() {
        true => Default::default(),
        false => sources::output::handles_of(outputs),
    };
    let aliases: Vec<Alias> = aliases
        .into_iter()
        .map(|mut alias| {
            let handle = alias.target.to_ascii().trim_end_matches('.').to_ascii_lowercase();
            if let Some(target) = handles.get(&handle).and_then(|text| Name::from_ascii(text).ok()) {
                alias.target = target;
            }
            alias
        })
        .collect();
    drop(handles);
    let mut aliases = aliases;
    let mut zone_conflicts = Vec::new();
    let domains_lost = custom_domains_lost(outputs, &mut zone_conflicts);
    for (i, output) in outputs.iter().enumerate() {
        let lost = zones_lost(config, outputs, i, &mut zone_conflicts);
        if lost.is_empty() && domains_lost[i].is_empty() {
            records.extend(output.records.iter());
            aliases.extend(output.aliases.iter().cloned());
            continue;
        }
        // A custom domain name an earlier source publishes is that source's alone.
        let domain_lost = |r: &Record| r.provenance.source == SourceKind::EndpointDns && domains_lost[i].contains(&r.name);
        // A record belongs to the most specific of its source's zones that holds it.
        let in_lost_zone = |name: &Name| {
            output.zones.iter().filter(|z| z.name.zone_of(name)).max_by_key(|z| z.name.num_labels()).is_some_and(|z| lost.contains(&z.id))
        };
        records.extend(output.records.iter().filter(|r| !in_lost_zone(&r.name) && !domain_lost(r)));
        aliases.extend(output.aliases.iter().filter(|a| !in_lost_zone(&a.name)).cloned());
    }
    let (mut snapshot, mut dropped) = Snapshot::build(records, aliases, &soa_settings(config), serial_now());
    snapshot.note_conflicts(zone_conflicts.len());
    for conflict in &zone_conflicts {
        if let Dropped::Conflict { name, dropped, .. } = conflict {
            snapshot.note_outvoted(name, dropped.clone());
        }
    }
    dropped.splice(0..0, zone_conflicts);
    snapshot.apply_affinity(&affinity_rules(config), Locator::new(placements(config, outputs)));
    snapshot.mark_unloaded(unloaded(config, &dropped));
    tracing::debug!(
        names = snapshot.name_count(),
        records = snapshot.record_count(),
        conflicts = snapshot.conflicts(),
        serial = snapshot.serial(),
        took_ms = started.elapsed().as_millis(),
        "snapshot built"
    );
    (snapshot, dropped)
}

/// The zones whose file did not load, and the names of aliases whose target is in one: those
/// answer SERVFAIL too, not the upstream's answer for a name no one owns.
fn unloaded(config: &Config, dropped: &[Dropped]) -> Vec<Unloaded> {
    let mut zones: Vec<Unloaded> = config.unloaded_zones().map(|(zone, fault)| Unloaded::new(zone, &fault.error)).collect();
    if zones.is_empty() {
        return zones;
    }
    // An alias to such an alias too, whatever their order: rounds until none is added (each
    // round adds one alias at least, so there are at most as many rounds as aliases).
    let mut left: Vec<&Alias> = dropped.iter().filter_map(|d| if let Dropped::UnresolvedAlias { alias, .. } = d { Some(alias) } else { None }).collect();
    loop {
        let before = left.len();
        left.retain(|alias| {
            let Some(zone) = zones.iter().find(|z| z.holds(&name_key(&alias.target))) else { return true };
            let why = format!("the alias's target {} is at or below {}, not loaded: {}", alias.target, zone.zone, zone.why);
            zones.push(Unloaded::name(&alias.name, &why));
            false
        });
        if left.len() == before {
            return zones;
        }
    }
}

/// `[az]` affinity per name: `az.affinity`, and `[[az.names]]` over it.
pub fn affinity_rules(config: &Config) -> AffinityRules {
    let patterns = config
        .az
        .names
        .iter()
        .map(|entry| {
            let name = entry.get_ref().name.name();
            let below = name.is_wildcard();
            (if below { name.base_name() } else { name.clone() }, below, entry.get_ref().affinity)
        })
        .collect();
    AffinityRules { default: config.az.affinity, patterns }
}

/// Where clients are: the subnets the endpoint sources learned, `[[az.clients]]`,
/// `[[az.forwarders]]`, and `az.default` for everyone else. While affinity is off, only the
/// subnets (the query log names their VPCs).
pub fn placements(config: &Config, outputs: &[Arc<SourceOutput>]) -> Vec<Placement> {
    let az = &config.az;
    let mut out = Vec::new();
    // Learned subnets place clients for the query log (their VPC) even with affinity off;
    // the rest only matter to affinity.
    if !az.enabled() {
        subnet_placements(outputs, &mut out);
        return out;
    }
    let default = match (az.default.get_ref().as_str(), &az.instance) {
        ("off", _) | ("instance", None) => None,
        ("instance", Some((az_id, region))) => Some((az_id.as_str(), Some(region.as_str()), "the instance's, from instance metadata")),
        (az_id, _) => Some((az_id, None, "az.default")),
    };
    if let Some((az_id, region, from)) = default {
        let (az_id, region): (Arc<str>, Option<Arc<str>>) = (Arc::from(az_id), region.map(Arc::from));
        for net in ["0.0.0.0/0", "::/0"] {
            // Two literal networks: they parse.
            let Ok(net) = net.parse() else { continue };
            let origin = Arc::from(format!("{from} ({})", config.origin));
            out.push(Placement { net, az: Some(az_id.clone()), region: region.clone(), kind: PlacementKind::Default, vpc: None, origin });
        }
    }
    subnet_placements(outputs, &mut out);
    for entry in &az.clients {
        let client = entry.get_ref();
        let origin = Arc::from(format!("az.clients ({}:{})", config.origin, config.line_of(entry)));
        let region = client.region.as_deref().map(Arc::from);
        out.push(Placement { net: client.cidr, az: Some(Arc::from(client.az_id.as_str())), region, kind: PlacementKind::Client, vpc: None, origin });
    }
    for entry in &az.forwarders {
        let origin = Arc::from(format!("az.forwarders ({}:{})", config.origin, config.line_of(entry)));
        out.push(Placement { net: entry.get_ref().cidr, az: None, region: None, kind: PlacementKind::Forwarder, vpc: None, origin });
    }
    out
}

/// A placement for each range of each subnet the sources learned.
fn subnet_placements(outputs: &[Arc<SourceOutput>], out: &mut Vec<Placement>) {
    for subnet in outputs.iter().flat_map(|o| &o.subnets) {
        let az_id: Arc<str> = Arc::from(subnet.az_id.as_str());
        let vpc = Some((Arc::from(subnet.vpc.as_str()), Arc::from(subnet.account.as_str())));
        let region: Arc<str> = Arc::from(subnet.region.as_str());
        let origin: Arc<str> = Arc::from(format!("{} {} account={} region={}", subnet.id, subnet.vpc, subnet.account, subnet.region));
        for net in &subnet.cidrs {
            out.push(Placement { net: *net, az: Some(az_id.clone()), region: Some(region.clone()), kind: PlacementKind::Subnet, vpc: vpc.clone(), origin: origin.clone() });
        }
    }
}

/// The ids of the zones of `outputs[i]` that an earlier source also serves under the same
/// name: of private zones with one name in several sources, the earlier source's wins whole
/// (issue 14: one view, never a mix). Each loss is added to `conflicts`, and so is each zone
/// the source itself left out for one of the same name.
fn zones_lost(config: &Config, outputs: &[Arc<SourceOutput>], i: usize, conflicts: &mut Vec<Dropped>) -> Vec<String> {
    let provenance = |id: &str| Provenance::new(SourceKind::Route53, format!("route53 zone={id}"));
    // Zones the source itself left out for one of the same name, counted as conflicts too.
    for (winner, zone) in &outputs[i].lost_zones {
        conflicts.push(Dropped::Conflict { name: zone.name.clone(), kept: provenance(winner), dropped: provenance(&zone.id) });
    }
    let mut lost = Vec::new();
    for zone in &outputs[i].zones {
        // A `[[zones]]` file comes first: the config's data outranks every source's.
        let file = config.zone_files.iter().find(|z| z.origin == zone.name);
        let winner = match file {
            Some(file) => Some(Provenance::new(SourceKind::Config, format!("zone {}", file.files[0].display()))),
            None => outputs[..i].iter().flat_map(|o| &o.zones).find(|earlier| earlier.name == zone.name).map(|w| provenance(&w.id)),
        };
        if let Some(kept) = winner {
            conflicts.push(Dropped::Conflict { name: zone.name.clone(), kept, dropped: provenance(&zone.id) });
            lost.push(zone.id.clone());
        }
    }
    lost
}

/// Per source, the names it loses to an earlier source: a custom domain name of a resource or
/// service-network endpoint is the first source's with an endpoint record there, and every
/// other source's endpoint records at it are left out (as custom domains or as their own
/// names) — never a mix of two endpoints' addresses (within one source its conversion already
/// keeps the first). Each loss is added to `conflicts`.
fn custom_domains_lost(outputs: &[Arc<SourceOutput>], conflicts: &mut Vec<Dropped>) -> Vec<HashSet<Name>> {
    let served = |output: &SourceOutput| -> HashSet<Name> {
        output
            .endpoints
            .domains()
            .filter(|d| d.served)
            .filter_map(|d| Name::from_ascii(d.name.trim_end_matches('.')).ok())
            .map(|mut n| {
                n.set_fqdn(true);
                n.to_lowercase()
            })
            .collect()
    };
    let custom: Vec<HashSet<Name>> = outputs.iter().map(|o| served(o)).collect();
    let mut lost = vec![HashSet::new(); outputs.len()];
    if custom.iter().all(HashSet::is_empty) {
        return lost;
    }
    let all: HashSet<&Name> = custom.iter().flatten().collect();
    // The first source with an endpoint record at each such name owns it.
    let mut owner: HashMap<Name, (usize, Provenance)> = HashMap::new();
    for (i, output) in outputs.iter().enumerate() {
        for record in output.records.iter().filter(|r| r.provenance.source == SourceKind::EndpointDns && all.contains(&r.name)) {
            owner.entry(record.name).or_insert((i, record.provenance));
        }
    }
    // Every other source with an endpoint record there loses it, custom domain or not.
    for (i, output) in outputs.iter().enumerate() {
        for record in output.records.iter().filter(|r| r.provenance.source == SourceKind::EndpointDns) {
            let Some((first, kept)) = owner.get(&record.name).filter(|(first, _)| *first != i) else { continue };
            if lost[i].insert(record.name.clone()) {
                tracing::debug!(name = %record.name, kept_by = first, "custom domain name kept by an earlier source");
                conflicts.push(Dropped::Conflict { name: record.name.clone(), kept: kept.clone(), dropped: record.provenance.clone() });
            }
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

/// A serial that grows with every build: seconds since 1970, as many zones use.
fn serial_now() -> u32 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Wraps in 2106; SOA serials compare modulo 2^32 anyway (RFC 1982).
    secs as u32
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::{RData, rdata::A};

    use super::*;
    use crate::{snapshot::Record, sources::output::ZoneSummary};

    /// An alias whose target is in a zone whose file did not load answers SERVFAIL, as the
    /// target does, not the upstream's answer for a name no one owns; an alias to a name that
    /// is simply not owned is still left out and forwarded.
    #[test]
    fn an_alias_into_a_zone_not_loaded_is_servfail_like_its_target() {
        use crate::answer::{Draw, Outcome, Question, plan};
        let dir = std::env::temp_dir().join(format!("hubdns-alias-unloaded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("down.zone"), "$ORIGIN down.test.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1 10.0.0.2\n").unwrap();
        let text = "[[zones]]\nfile = \"down.zone\"\n\n[[aliases]]\nname = \"c.ok.test\"\ntarget = \"a.ok.test\"\n\n\
                    [[aliases]]\nname = \"a.ok.test\"\ntarget = \"www.down.test\"\n\n\
                    [[aliases]]\nname = \"b.ok.test\"\ntarget = \"www.elsewhere.test\"\n";
        let config = Config::parse_serving(text, &dir.join("t.toml").display().to_string(), &[]).expect("serves");
        let (snapshot, _) = build_snapshot(&config, &[]);
        let outcome = |name: &str| {
            let key = name_key(&Name::from_ascii(name).unwrap());
            match plan(&snapshot, Question { key: &key, qtype: hickory_proto::rr::RecordType::A, recursion_desired: true, client: None }, Draw::First).outcome {
                Outcome::Unloaded(zone) => format!("SERVFAIL {}", zone.zone),
                Outcome::Forward { .. } => "forwarded".into(),
                other => format!("{other:?}"),
            }
        };
        assert_eq!(outcome("www.down.test."), "SERVFAIL down.test.");
        assert_eq!(outcome("a.ok.test."), "SERVFAIL a.ok.test.");
        assert_eq!(outcome("c.ok.test."), "SERVFAIL c.ok.test.", "an alias to that alias, listed before it");
        assert_eq!(outcome("below.a.ok.test."), "forwarded", "the alias's name alone");
        assert_eq!(outcome("b.ok.test."), "forwarded");
    }

    /// Issue 18: static records with AZ IDs, and the client placements of `[az]`, through the
    /// one engine: prefer, only by name, default, a forwarder.
    #[test]
    fn static_records_with_az_ids_are_ordered_for_the_clients_az() {
        use crate::answer::{Draw, Question, plan};
        let text = "[az]\naffinity = \"prefer\"\ndefault = \"use1-az4\"\n\
                    [[az.clients]]\ncidr = \"10.1.2.0/24\"\naz_id = \"use1-az2\"\n\
                    [[az.forwarders]]\ncidr = \"10.9.9.9/32\"\n\
                    [[az.names]]\nname = \"only.corp.example\"\naffinity = \"only\"\n\n\
                    [[records]]\nname = \"ldap.corp.example\"\ntype = \"A\"\nvalues = [\"10.0.1.5\", \"10.0.2.5\", \"10.0.4.5\"]\naz_ids = [\"use1-az1\", \"use1-az2\", \"use1-az4\"]\n\n\
                    [[records]]\nname = \"only.corp.example\"\ntype = \"A\"\nvalues = [\"10.0.1.6\", \"10.0.2.6\"]\naz_ids = [\"use1-az1\", \"use1-az2\"]\n";
        let config = Config::parse(text, "t.toml").expect("valid");
        let (snapshot, _) = build_snapshot(&config, &[]);
        let answer = |name: &str, client: &str| {
            let key = crate::name_key::name_key(&Name::from_ascii(name).unwrap());
            let plan = plan(&snapshot, Question { key: &key, qtype: hickory_proto::rr::RecordType::A, recursion_desired: true, client: Some(client.parse().unwrap()) }, Draw::First);
            let ips: Vec<String> = plan.answers(&Name::from_ascii(name).unwrap()).iter().map(|r| r.data.to_string()).collect();
            (ips, plan.az_choice().map(|c| c.as_str()))
        };
        assert_eq!(answer("ldap.corp.example.", "10.1.2.7"), (vec!["10.0.2.5".into(), "10.0.1.5".into(), "10.0.4.5".into()], Some("same_az")));
        assert_eq!(answer("ldap.corp.example.", "192.0.2.1"), (vec!["10.0.4.5".into(), "10.0.1.5".into(), "10.0.2.5".into()], Some("same_az")), "az.default");
        assert_eq!(answer("ldap.corp.example.", "10.9.9.9"), (vec!["10.0.1.5".into(), "10.0.2.5".into(), "10.0.4.5".into()], Some("unknown_az")), "a forwarder");
        assert_eq!(answer("only.corp.example.", "10.1.2.7"), (vec!["10.0.2.6".into()], Some("same_az")));
        assert_eq!(answer("only.corp.example.", "192.0.2.1"), (vec!["10.0.1.6".into(), "10.0.2.6".into()], Some("other_az")), "use1-az4 has none");
        let bad = Config::parse("[[records]]\nname = \"x.corp.example\"\ntype = \"A\"\nvalues = [\"10.0.0.1\"]\naz_ids = [\"use1-az1\", \"use1-az2\"]\n", "t.toml");
        assert!(bad.expect_err("two AZs, one value").to_string().contains("one AZ ID per value"));
    }

    /// A Route 53 source's answer: zone `id` named `apex`, with one A record at `host`.
    fn zone_output(id: &str, apex: &str, host: &str, ip: [u8; 4]) -> SourceOutput {
        let name = |s: &str| Name::from_ascii(s).unwrap();
        SourceOutput {
            records: [Record {
                name: name(host),
                ttl: 60,
                data: RData::A(A(Ipv4Addr::from(ip))),
                provenance: Provenance::new(SourceKind::Route53, format!("route53 zone={id}")),
                weight: None,
                az: None,
            }]
            .into_iter()
            .collect(),
            zones: vec![ZoneSummary { id: id.into(), name: name(apex) }],
            fetched_at: "2026-11-21T15:00:00Z".into(),
            ..SourceOutput::default()
        }
    }

    /// Issue 17: a custom domain name two sources' endpoints publish (two accounts' resource
    /// endpoints to one service) is the earlier source's alone, a reported conflict, never a
    /// mix of both endpoints' addresses.
    #[test]
    fn a_custom_domain_in_two_sources_is_the_earlier_ones() {
        let output = |ip: [u8; 4], endpoint: &str| {
            let name = Name::from_ascii("proxy.egress.example.").unwrap();
            SourceOutput {
                records: vec![Record {
                    name: name.clone(),
                    ttl: 60,
                    data: RData::A(A(Ipv4Addr::from(ip))),
                    provenance: Provenance::new(SourceKind::EndpointDns, format!("vpc_endpoints {endpoint}")),
                    az: None,
                    weight: None,
                }]
                .into(),
                endpoints: Arc::new(crate::endpoint_list::EndpointList::from(vec![crate::sources::output::EndpointSummary {
                    id: endpoint.into(),
                    domains: vec![crate::sources::output::DomainSummary { name: "proxy.egress.example".into(), served: true, ..Default::default() }],
                    ..Default::default()
                }])),
                fetched_at: "2026-12-05T10:00:00Z".into(),
                ..SourceOutput::default()
            }
        };
        let config = Config::parse("", "t.toml").unwrap();
        let (snapshot, dropped) = build_snapshot(&config, &[Arc::new(output([10, 0, 0, 1], "vpce-1")), Arc::new(output([10, 0, 0, 2], "vpce-2"))]);
        assert_eq!(snapshot.record_count(), 1, "one endpoint's address, not both");
        assert!(dropped.iter().any(|d| matches!(d, Dropped::Conflict { dropped, .. } if dropped.origin.text().contains("vpce-2"))), "{dropped:?}");
        let key = crate::name_key::name_key(&Name::from_ascii("proxy.egress.example.").unwrap());
        assert!(snapshot.outvoted(&key).iter().any(|p| p.origin.text().contains("vpce-2")), "explain shows the loser");

        // The later source's endpoint name (not a custom domain there) loses too.
        let mut plain = output([10, 0, 0, 3], "vpce-3");
        plain.endpoints = Arc::default();
        let (snapshot, _) = build_snapshot(&config, &[Arc::new(output([10, 0, 0, 1], "vpce-1")), Arc::new(plain)]);
        assert_eq!(snapshot.record_count(), 1);
    }

    /// Issue 14 item 7: a zone name served by two sources (two accounts, say) is the earlier
    /// source's, whole; the other zone is a reported conflict, never merged in.
    #[test]
    fn of_two_sources_zones_with_one_name_the_earlier_wins_whole() {
        let first = zone_output("Z1", "corp.example.", "a.corp.example.", [10, 0, 0, 1]);
        let second = zone_output("Z2", "corp.example.", "b.corp.example.", [10, 0, 0, 2]);
        let other = zone_output("Z3", "other.example.", "c.other.example.", [10, 0, 0, 3]);
        let second = SourceOutput { records: second.records.iter().chain(other.records.iter()).collect(), zones: [second.zones, other.zones].concat(), ..second };
        let config = Config::parse("", "t.toml").unwrap();
        let (snapshot, dropped) = build_snapshot(&config, &[Arc::new(first), Arc::new(second)]);
        let answers = |n: &str| {
            let key = crate::name_key::name_key(&Name::from_ascii(n).unwrap());
            let question = crate::answer::Question { key: &key, qtype: hickory_proto::rr::RecordType::A, recursion_desired: true, client: None };
            crate::answer::plan(&snapshot, question, crate::answer::Draw::First).hops().count()
        };
        assert_eq!((answers("a.corp.example."), answers("b.corp.example."), answers("c.other.example.")), (1, 0, 1));
        assert_eq!(snapshot.conflicts(), 1);
        assert!(matches!(&dropped[0], Dropped::Conflict { kept, dropped, .. } if kept.origin.text().contains("Z1") && dropped.origin.text().contains("Z2")), "{dropped:?}");
    }

    /// A restart from a state file of an earlier release: an alias by endpoint id finds the
    /// regional name whatever order the summaries list their names in; the file's old `handles`
    /// map stands in where there are no summaries (the oldest layout), and nowhere else.
    #[test]
    fn aliases_by_id_find_the_regional_name_in_any_state_file() {
        let config = Config::parse("[[aliases]]\nname = \"api.example.\"\ntarget = \"vpce-1\"\n", "t.toml").unwrap();
        let regional = "vpce-1.svc.us-east-1.vpce.amazonaws.com.";
        let zonal = "vpce-1-us-east-1a.svc.us-east-1.vpce.amazonaws.com.";
        let answers = |out: &SourceOutput| {
            let (snapshot, _) = build_snapshot(&config, &[Arc::new(out.clone())]);
            let key = crate::name_key::name_key(&Name::from_ascii("api.example.").unwrap());
            let question = crate::answer::Question { key: &key, qtype: hickory_proto::rr::RecordType::A, recursion_desired: true, client: None };
            matches!(crate::answer::plan(&snapshot, question, crate::answer::Draw::First).outcome, crate::answer::Outcome::Answer)
        };
        // The oldest layout: handles, no summaries.
        let mut out = crate::sources::output::sample_output();
        out.legacy_handles = [("vpce-1".to_owned(), regional.to_owned())].into();
        assert!(answers(&out), "by the old handles alone");
        // Summaries in EC2's order (a zonal name first, which has no record here), and an old
        // handle gone stale: the summaries' regional name.
        out.legacy_handles = [("vpce-1".to_owned(), zonal.to_owned())].into();
        out.endpoints = Arc::new(crate::endpoint_list::EndpointList::from(vec![crate::sources::output::EndpointSummary {
            id: "vpce-1".into(),
            names: [zonal.into(), regional.into()].into(),
            ..Default::default()
        }]));
        assert!(answers(&out), "the summaries before the old handles");
        out.legacy_handles.clear();
        assert!(answers(&out), "the regional name, not the first listed");
    }

    #[test]
    fn config_aliases_may_name_an_endpoint_by_id_or_service() {
        let config = Config::parse(
            "[[aliases]]\nname = \"api.example.\"\ntarget = \"VPCE-1\"\n\n[[aliases]]\nname = \"svc.example.\"\ntarget = \"com.amazonaws.vpce.us-east-1.vpce-svc-1\"\n",
            "t.toml",
        )
        .unwrap();
        let mut out = crate::sources::output::sample_output();
        // Handles come from the endpoint summaries: the first name is the regional one.
        out.endpoints = Arc::new(crate::endpoint_list::EndpointList::from(vec![crate::sources::output::EndpointSummary {
            id: "vpce-1".into(),
            service: "com.amazonaws.vpce.us-east-1.vpce-svc-1".into(),
            names: ["vpce-1.svc.us-east-1.vpce.amazonaws.com.".into()].into(),
            ..Default::default()
        }]));
        let (snapshot, dropped) = build_snapshot(&config, &[Arc::new(out)]);
        assert!(dropped.is_empty(), "{dropped:?}");
        for alias in ["api.example.", "svc.example."] {
            let key = crate::name_key::name_key(&Name::from_ascii(alias).unwrap());
            let question = crate::answer::Question { key: &key, qtype: hickory_proto::rr::RecordType::A, recursion_desired: true, client: None };
            let plan = crate::answer::plan(&snapshot, question, crate::answer::Draw::First);
            assert!(matches!(plan.outcome, crate::answer::Outcome::Answer), "{alias}: {plan:?}");
        }
    }
}
