//! The config source: `[[records]]`, `[[aliases]]` and the `[[zones]]` files of the config,
//! as records.
//!
//! An alias with fixed `addresses` is simply A/AAAA records; an alias with a `target` stays an
//! [`Alias`] that the snapshot build flattens once every other source's records are in.
//! Provenance is the file and line, so `explain` can point an operator at the entry.

use std::{net::IpAddr, sync::Arc};

use hickory_proto::rr::{
    Name, RData,
    rdata::{A, AAAA},
};
use toml::Spanned;

use crate::{
    config::Config,
    origin::Origin,
    snapshot::{Alias, Provenance, Record, SourceKind},
};

/// Everything the config file defines, converted. Record data was validated when the config
/// loaded; an entry that still fails to convert is logged and skipped, never fatal.
pub fn from_config(config: &Config) -> (Vec<Record>, Vec<Alias>) {
    // One origin shared by every entry; each has its line.
    let origin = Origin::from(format!("config {}", config.origin));
    let provenance = |entry_line: usize| Provenance {
        source: SourceKind::Config,
        origin: origin.clone(),
        line: u32::try_from(entry_line).unwrap_or(u32::MAX),
    };
    let line = |entry: &Spanned<_>| config.line_of(entry);
    let default_ttl = config.answers.ttl;

    let mut records = Vec::new();
    for entry in &config.records {
        let r = entry.get_ref();
        let provenance = provenance(config.line_of(entry));
        // An A or AAAA value's AZ ID, index for index (validated: one per value).
        let az_of = |i: usize| r.az_ids.get(i).map(|z| Arc::from(z.as_str()));
        match r.rdata() {
            Ok(data) => records.extend(data.into_iter().enumerate().map(|(i, data)| Record {
                name: r.name.name().clone(),
                ttl: r.ttl.unwrap_or(default_ttl),
                data,
                provenance: provenance.clone(),
                weight: None,
                az: az_of(i),
            })),
            Err(error) => tracing::error!(origin = %provenance.where_from(), %error, "record skipped"),
        }
    }

    for zone in &config.zone_files {
        // A zone inside this one, from another file, answers for its names (RFC 1034 §4.3.2:
        // the nearest enclosing zone is searched, as BIND does with both loaded): this zone's
        // data there is left out. (A DS at the cut would be the parent's, but hickory's zone
        // parser reads no DS.)
        // One whose file did not load is left out too: its names answer SERVFAIL, as BIND's do.
        let apexes = config.zone_files.iter().map(|z| &z.origin).chain(config.unloaded_zones().map(|(name, _)| name));
        let inner: Vec<&Name> = apexes.filter(|o| **o != zone.origin && zone.origin.zone_of(o)).collect();
        let mut decoded = zone.all_records();
        if !inner.is_empty() {
            decoded.retain(|r| !inner.iter().any(|o| o.zone_of(&r.name)));
        }
        // Moved whole when it is the first: 100,000 records are 38 MB, and copying them into
        // another vector made that much fresh memory again on the way to the first answer.
        if records.is_empty() {
            records = decoded;
        } else {
            records.append(&mut decoded);
        }
    }

    let mut aliases = Vec::new();
    for entry in &config.aliases {
        let a = entry.get_ref();
        let provenance = provenance(line(entry));
        let ttl = a.ttl.unwrap_or(default_ttl);
        match &a.target {
            Some(target) => aliases.push(Alias {
                name: a.name.name().clone(),
                target: target.name().clone(),
                ttl: Some(ttl),
                provenance,
                rtype: None,
                weight: None,
            }),
            None => records.extend(a.addresses.iter().map(|ip| Record {
                name: a.name.name().clone(),
                ttl,
                data: address_rdata(*ip),
                provenance: provenance.clone(),
                az: None,
                weight: None,
            })),
        }
    }
    (records, aliases)
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::RecordType;

    use super::*;

    #[test]
    fn records_and_aliases_carry_file_and_line() {
        let text = r#"
[answers]
ttl = 30

[[records]]
name = "db.corp.example."
type = "A"
values = ["10.1.0.5", "10.1.0.6"]
ttl = 10

[[aliases]]
name = "api.corp.example."
target = "db.corp.example."

[[aliases]]
name = "v6.corp.example."
addresses = ["fd00::5", "10.1.0.7"]
"#;
        let config = Config::parse(text, "t.toml").unwrap();
        let (records, aliases) = from_config(&config);
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].provenance.where_from().to_string(), "config t.toml:5");
        assert_eq!(records[0].ttl, 10);
        assert_eq!(records[2].data.record_type(), RecordType::AAAA);
        assert_eq!(records[3].data.record_type(), RecordType::A);
        assert_eq!(records[2].ttl, 30, "aliases without ttl take answers.ttl");
        assert_eq!(records[2].provenance.where_from().to_string(), "config t.toml:15");
        assert_eq!(aliases.len(), 1);
        assert_eq!(aliases[0].target.to_string(), "db.corp.example.");
        assert_eq!(aliases[0].provenance.where_from().to_string(), "config t.toml:11");
    }

    #[test]
    fn a_zone_file_inside_another_answers_for_its_names() {
        let dir = std::env::temp_dir().join(format!("hubdns-nested-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("parent.zone"),
            "$ORIGIN corp.example.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\nsub NS ns1.sub\nns1.sub A 127.0.0.53\ninner.sub A 10.6.6.6\n",
        )
        .unwrap();
        std::fs::write(dir.join("sub.zone"), "$ORIGIN sub.corp.example.\n$TTL 300\n@ SOA ns1 hm 1 2 3 4 5\n@ NS ns1\nns1 A 10.0.0.99\n").unwrap();
        let text = "[[zones]]\nfile = \"parent.zone\"\n[[zones]]\nfile = \"sub.zone\"\n";
        let config = Config::parse(text, &dir.join("t.toml").display().to_string()).unwrap();
        let (records, _) = from_config(&config);
        let at = |name: &str| -> Vec<String> {
            let name = Name::from_ascii(name).unwrap();
            records.iter().filter(|r| r.name == name).map(|r| format!("{} {}", r.data.record_type(), r.data)).collect()
        };
        assert_eq!(at("ns1.sub.corp.example."), ["A 10.0.0.99"], "the child's, not the parent's glue");
        assert!(at("inner.sub.corp.example.").is_empty(), "occluded in the parent, absent from the child");
        let cut = at("sub.corp.example.");
        assert!(cut.iter().any(|r| r == "NS ns1.sub.corp.example.") && cut.iter().any(|r| r.starts_with("SOA")), "{cut:?}");
        assert!(config.forward.rules.is_empty(), "a cut another zone file serves is not forwarded");

        // The child's file broken: a server leaves it out, and neither the parent's data there
        // nor its delegation is served in its place (its names answer SERVFAIL).
        std::fs::write(dir.join("sub.zone"), "$ORIGIN sub.corp.example.\n$TTL 300\n@ SOA ns1 hm 1 2 3 4 5\n@ NS ns1\nns1 A 10.0.0.99 10.0.0.98\n").unwrap();
        let config = Config::parse_serving(text, &dir.join("t.toml").display().to_string(), &[]).unwrap();
        let (records, _) = from_config(&config);
        let sub = Name::from_ascii("sub.corp.example.").unwrap();
        assert!(records.iter().all(|r| !sub.zone_of(&r.name)), "nothing at or below the cut");
        assert!(config.forward.rules.is_empty(), "the parent's delegation is not forwarded");
        assert_eq!(config.unloaded_zones().map(|(name, _)| name.to_string()).collect::<Vec<_>>(), ["sub.corp.example."]);
    }
}
