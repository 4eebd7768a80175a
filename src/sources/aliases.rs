//! The config source: `[[records]]` and `[[aliases]]` from the config file, as records.
//!
//! An alias with fixed `addresses` is simply A/AAAA records; an alias with a `target` stays an
//! [`Alias`] that the snapshot build flattens once every other source's records are in.
//! Provenance is the file and line, so `explain` can point an operator at the entry.

use std::{net::IpAddr, sync::Arc};

use hickory_proto::rr::{
    RData,
    rdata::{A, AAAA},
};
use toml::Spanned;

use crate::{
    config::Config,
    snapshot::{Alias, Provenance, Record, SourceKind},
};

/// Everything the config file defines, converted. Record data was validated when the config
/// loaded; an entry that still fails to convert is logged and skipped, never fatal.
pub fn from_config(config: &Config) -> (Vec<Record>, Vec<Alias>) {
    let provenance = |entry_line: usize| Provenance {
        source: SourceKind::Config,
        origin: Arc::from(format!("config {}:{entry_line}", config.origin)),
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
            Err(error) => tracing::error!(origin = %provenance.origin, %error, "record skipped"),
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
        assert_eq!(&*records[0].provenance.origin, "config t.toml:5");
        assert_eq!(records[0].ttl, 10);
        assert_eq!(records[2].data.record_type(), RecordType::AAAA);
        assert_eq!(records[3].data.record_type(), RecordType::A);
        assert_eq!(records[2].ttl, 30, "aliases without ttl take answers.ttl");
        assert_eq!(&*records[2].provenance.origin, "config t.toml:15");
        assert_eq!(aliases.len(), 1);
        assert_eq!(aliases[0].target.to_string(), "db.corp.example.");
        assert_eq!(&*aliases[0].provenance.origin, "config t.toml:11");
    }
}
