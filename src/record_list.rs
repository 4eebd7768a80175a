//! A source's records between builds, held compactly.
//!
//! The refresh loop keeps every source's last good answer, to rebuild the table whenever any
//! source changes and to write the state file. As plain [`Record`]s that answer was the
//! largest thing in the process: 5,000 endpoints give 20,000 records of 386 bytes each, every
//! one with its own heap copy of its owner name (bench/scale, heaptrack). A [`RecordList`]
//! keeps each owner name once, in wire form, in one buffer; each provenance, AZ ID and weight
//! once; and an address inline. About 60 bytes a record instead of 500, and the same
//! records, in the same order, come back out.
//!
//! The state file keeps the same layout: each table once, then the records as rows of
//! indexes (see [`Stored`]). Names are written by `name_key::text_of` and read back
//! by `name_key::wire_from_text`, exact and without IDNA processing: reading 20,000 records' names
//! through hickory's `FromStr` was most of a restart's 80 ms of parsing (perf). A list written
//! as a plain sequence of records (`hubdns-state/1`) is read too.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use hickory_proto::rr::{
    RData,
    rdata::{A, AAAA},
};
use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{MapAccess, SeqAccess},
};

use crate::{
    name_key::{name_from_text, name_from_wire, text_of, wire_from_text, write_spelled},
    snapshot::{Provenance, Record, Weight},
};

/// No provenance, AZ ID or weight index: the record has none.
const NONE: u32 = u32::MAX;

/// Records in order, each owner name, provenance, AZ ID and weight stored once.
#[derive(Clone, Default, PartialEq)]
pub struct RecordList {
    /// Owner names in wire form as spelled, back to back; name `i` ends at `name_ends[i]`.
    names: Vec<u8>,
    name_ends: Vec<u32>,
    provenances: Vec<Provenance>,
    azs: Vec<Arc<str>>,
    weights: Vec<Weight>,
    entries: Vec<Entry>,
}

/// One record: indexes into the list's tables, its TTL and its data.
#[derive(Clone, PartialEq)]
struct Entry {
    name: u32,
    ttl: u32,
    provenance: u32,
    az: u32,
    weight: u32,
    data: Data,
}

/// Record data: an address inline (what endpoints publish), anything else boxed.
#[derive(Clone, PartialEq)]
enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Other(Box<RData>),
}

// Kept small on purpose: one of these per record between builds.
const _: () = assert!(std::mem::size_of::<Entry>() <= 48);

impl RecordList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `record` at the end. A record with the owner (as spelled) of the one before shares
    /// that one's copy, and one with the provenance, AZ ID or weight of a recent one shares
    /// that: sources emit records owner by owner and endpoint by endpoint, so nearby is where
    /// the repeats are, and no lookup table is needed.
    pub fn push(&mut self, record: Record) {
        let Record { name, ttl, data, provenance, weight, az } = record;
        let last = self.name_ends.len().checked_sub(1).map(|at| self.name_range(at));
        let start = self.names.len();
        write_spelled(&name, &mut self.names);
        match last {
            Some(last) if self.names[last.clone()] == self.names[start..] => self.names.truncate(start),
            _ => self.name_ends.push(index(self.names.len())),
        }
        let name = self.name_ends.len() - 1;
        let provenance = recent_or_push(&mut self.provenances, Some(provenance));
        let az = recent_or_push(&mut self.azs, az);
        let weight = recent_or_push(&mut self.weights, weight);
        self.entries.push(Entry { name: index(name), ttl, provenance, az, weight, data: Data::from(data) });
    }

    /// The records, in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record> + '_ {
        self.entries.iter().map(|entry| self.record(entry))
    }

    /// Readies the list to be kept until the next fetch: gives back room grown for records no
    /// longer coming, and moves the provenances' origins into one buffer ([`crate::origin`]).
    pub fn compact(&mut self) {
        crate::origin::pack(self.provenances.iter_mut().map(|p| &mut p.origin));
        self.names.shrink_to_fit();
        self.name_ends.shrink_to_fit();
        self.provenances.shrink_to_fit();
        self.azs.shrink_to_fit();
        self.weights.shrink_to_fit();
        self.entries.shrink_to_fit();
    }

    /// Where name `at` lies in `names`.
    fn name_range(&self, at: usize) -> std::ops::Range<usize> {
        let start = if at == 0 { 0 } else { self.name_ends[at - 1] as usize };
        start..self.name_ends[at] as usize
    }

    fn record(&self, entry: &Entry) -> Record {
        Record {
            name: name_from_wire(&self.names[self.name_range(entry.name as usize)]),
            ttl: entry.ttl,
            data: entry.data.rdata(),
            // Every entry has a provenance (push stores one for each).
            provenance: self.provenances[entry.provenance as usize].clone(),
            weight: (entry.weight != NONE).then(|| self.weights[entry.weight as usize].clone()),
            az: (entry.az != NONE).then(|| self.azs[entry.az as usize].clone()),
        }
    }
}

/// How far back [`recent_or_push`] looks for an equal item: an endpoint's names take turns
/// over its ENIs (regional name: ENI a, ENI b; zonal names: a, then b), so runs alone miss.
const RECENT: usize = 8;

/// The index of one of the last [`RECENT`] `items` equal to `item`, else of `item` pushed;
/// [`NONE`] for no item.
fn recent_or_push<T: PartialEq>(items: &mut Vec<T>, item: Option<T>) -> u32 {
    let Some(item) = item else { return NONE };
    let from = items.len().saturating_sub(RECENT);
    match items[from..].iter().rposition(|known| *known == item) {
        Some(at) => index(from + at),
        None => {
            items.push(item);
            index(items.len() - 1)
        }
    }
}

/// A table index as stored. A source answer of four billion records or name bytes is far
/// past anything AWS returns (and past memory); the index saturates rather than wraps.
fn index(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(NONE - 1)
}

impl FromIterator<Record> for RecordList {
    fn from_iter<I: IntoIterator<Item = Record>>(records: I) -> Self {
        let mut list = Self::new();
        list.extend(records);
        list.compact();
        list
    }
}

impl Extend<Record> for RecordList {
    fn extend<I: IntoIterator<Item = Record>>(&mut self, records: I) {
        for record in records {
            self.push(record);
        }
    }
}

impl From<Vec<Record>> for RecordList {
    fn from(records: Vec<Record>) -> Self {
        records.into_iter().collect()
    }
}

impl fmt::Debug for RecordList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A list as the state file keeps it: the tables, then one row per record — owner, TTL,
/// provenance, AZ ID and weight as indexes into them (`null`: none), and the data.
#[derive(Serialize, Deserialize)]
struct Stored<N, P, A, W, R> {
    names: N,
    provenances: P,
    azs: A,
    weights: W,
    records: R,
}

/// [`Stored`] as read back.
type Read = Stored<Vec<String>, Vec<Provenance>, Vec<Arc<str>>, Vec<Weight>, Vec<Row<RData>>>;

/// One record's row in [`Stored`].
type Row<D> = (u32, u32, u32, Option<u32>, Option<u32>, D);

impl Serialize for RecordList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names: Vec<String> = (0..self.name_ends.len()).map(|at| text_of(&name_from_wire(&self.names[self.name_range(at)]))).collect();
        let some = |at: u32| (at != NONE).then_some(at);
        let records: Vec<Row<RData>> = self
            .entries
            .iter()
            .map(|e| (e.name, e.ttl, e.provenance, some(e.az), some(e.weight), e.data.rdata()))
            .collect();
        Stored { names, provenances: &self.provenances, azs: &self.azs, weights: &self.weights, records }.serialize(serializer)
    }
}

impl RecordList {
    /// A list from its stored tables, each index checked: a damaged file is an error, never
    /// a record with the wrong name.
    fn from_stored(stored: Read) -> Result<Self, String> {
        let mut list = Self { provenances: stored.provenances, azs: stored.azs, weights: stored.weights, ..Self::default() };
        for text in &stored.names {
            match wire_from_text(text) {
                Some(wire) => list.names.extend_from_slice(&wire),
                None => write_spelled(&name_from_text(text).map_err(|e| format!("name {text:?}: {e}"))?, &mut list.names),
            }
            list.name_ends.push(index(list.names.len()));
        }
        let within = |at: u32, len: usize, what: &str| if (at as usize) < len { Ok(at) } else { Err(format!("{what} index {at} out of range")) };
        list.entries = stored
            .records
            .into_iter()
            .map(|(name, ttl, provenance, az, weight, data)| {
                Ok(Entry {
                    name: within(name, list.name_ends.len(), "name")?,
                    ttl,
                    provenance: within(provenance, list.provenances.len(), "provenance")?,
                    az: az.map_or(Ok(NONE), |at| within(at, list.azs.len(), "AZ"))?,
                    weight: weight.map_or(Ok(NONE), |at| within(at, list.weights.len(), "weight"))?,
                    data: Data::from(data),
                })
            })
            .collect::<Result<_, String>>()?;
        list.compact();
        Ok(list)
    }
}

impl Data {
    /// The record data it holds.
    fn rdata(&self) -> RData {
        match self {
            Self::A(v4) => RData::A(A(*v4)),
            Self::Aaaa(v6) => RData::AAAA(AAAA(*v6)),
            Self::Other(data) => RData::clone(data),
        }
    }
}

impl From<RData> for Data {
    fn from(data: RData) -> Self {
        match data {
            RData::A(A(v4)) => Self::A(v4),
            RData::AAAA(AAAA(v6)) => Self::Aaaa(v6),
            other => Self::Other(Box::new(other)),
        }
    }
}

impl<'de> Deserialize<'de> for RecordList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Records;
        impl<'de> serde::de::Visitor<'de> for Records {
            type Value = RecordList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a stored record list, or a sequence of records")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RecordList, M::Error> {
                let stored = Read::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                RecordList::from_stored(stored).map_err(serde::de::Error::custom)
            }
            // `hubdns-state/1`: the records one by one, streamed into the list.
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<RecordList, S::Error> {
                let mut list = RecordList::new();
                while let Some(record) = seq.next_element::<Record>()? {
                    list.push(record);
                }
                list.compact();
                Ok(list)
            }
        }
        deserializer.deserialize_any(Records)
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::Name;

    use super::*;
    use crate::snapshot::SourceKind;

    fn record(owner: &str, data: RData, origin: &str, az: Option<&str>) -> Record {
        Record {
            name: Name::from_ascii(owner).unwrap(),
            ttl: 60,
            data,
            provenance: Provenance::new(SourceKind::EndpointDns, origin),
            weight: None,
            az: az.map(Arc::from),
        }
    }

    #[test]
    fn records_come_back_as_they_went_in_with_shared_parts_stored_once() {
        let txt = RData::TXT(hickory_proto::rr::rdata::TXT::new(vec!["v=1".into()]));
        let mut weighted = record("W.corp.example.", RData::A(A::new(10, 0, 0, 9)), "route53 zone=Z1", None);
        weighted.weight = Some(Weight { set: Arc::from("blue"), weight: 3, location: None });
        let records = vec![
            record("Api.Corp.Example.", RData::A(A::new(10, 0, 0, 1)), "vpc_endpoints vpce-1 eni=a", Some("use1-az1")),
            record("Api.Corp.Example.", RData::A(A::new(10, 0, 0, 2)), "vpc_endpoints vpce-1 eni=b", Some("use1-az2")),
            record("api.corp.example.", RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)), "vpc_endpoints vpce-1 eni=b", Some("use1-az2")),
            record("t.corp.example.", txt, "route53 zone=Z1", None),
            weighted,
            record("Api.Corp.Example.", RData::A(A::new(10, 0, 0, 3)), "vpc_endpoints vpce-1 eni=a", None),
        ];
        let list = RecordList::from(records.clone());
        assert_eq!(list.len(), 6);
        let back: Vec<Record> = list.iter().collect();
        assert_eq!(back, records);
        // Equality of names is case-blind: the spelling must come back too.
        let spelled: Vec<String> = back.iter().map(|r| r.name.to_ascii()).collect();
        assert_eq!(spelled, ["Api.Corp.Example.", "Api.Corp.Example.", "api.corp.example.", "t.corp.example.", "W.corp.example.", "Api.Corp.Example."]);
        assert!(back.iter().all(|r| r.name.is_fqdn()));
        // Owners in a row share one copy; provenances seen recently too (eni=a comes back).
        assert_eq!(list.name_ends.len(), 5);
        assert_eq!(list.provenances.len(), 3);
        assert_eq!(list.azs.len(), 2);

        // Through the state file's layout and back: the same list, spelling included.
        let json = serde_json::to_string(&list).unwrap();
        let read: RecordList = serde_json::from_str(&json).unwrap();
        assert_eq!(read, list);
        assert_eq!(read.iter().map(|r| r.name.to_ascii()).collect::<Vec<_>>(), spelled);
        // The layout before (`hubdns-state/1`): a plain sequence of records, whose names
        // hickory's `FromStr` read back lowercased.
        let old: RecordList = serde_json::from_str(&serde_json::to_string(&records).unwrap()).unwrap();
        assert_eq!(old.iter().collect::<Vec<_>>(), records);
        assert_eq!(RecordList::new().iter().count(), 0);

        // A name hickory's text parsers refuse, which Route 53 may hold (RFC 2317), comes back.
        let mut classless = record("x.in-addr.arpa.", RData::PTR(hickory_proto::rr::rdata::PTR(Name::from_ascii("h.corp.example.").unwrap())), "route53 zone=Z2", None);
        classless.name = Name::from_labels([&b"1"[..], b"0/25", b"1", b"168", b"192", b"in-addr", b"arpa"]).unwrap();
        let list = RecordList::from(vec![classless.clone()]);
        let read: RecordList = serde_json::from_str(&serde_json::to_string(&list).unwrap()).unwrap();
        assert_eq!(read.iter().next().map(|r| r.name.iter().map(<[u8]>::to_vec).collect::<Vec<_>>()), Some(classless.name.iter().map(<[u8]>::to_vec).collect()));
    }

    /// A damaged file is refused, never read as records with the wrong owner.
    #[test]
    fn a_stored_list_with_an_index_out_of_range_is_refused() {
        let list = RecordList::from(vec![record("a.corp.example.", RData::A(A::new(10, 0, 0, 1)), "x", None)]);
        let json = serde_json::to_string(&list).unwrap();
        assert!(json.contains(r#""records":[[0,60,0,null,null,{"A":"10.0.0.1"}]]"#), "{json}");
        for bad in [json.replace("[[0,60,0,", "[[1,60,0,"), json.replace("[[0,60,0,", "[[0,60,7,"), json.replace("null,null", "3,null")] {
            let error = serde_json::from_str::<RecordList>(&bad).unwrap_err().to_string();
            assert!(error.contains("out of range"), "{error}");
        }
    }
}
