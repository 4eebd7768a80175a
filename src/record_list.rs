//! A source's records between builds, held compactly.
//!
//! The refresh loop keeps every source's last good answer, to rebuild the table whenever any
//! source changes and to write the state file. As plain [`Record`]s that answer was the
//! largest thing in the process: 5,000 endpoints give 20,000 records of 386 bytes each, every
//! one with its own heap copy of its owner name (bench/scale, heaptrack). A [`RecordList`]
//! keeps each owner name once, in wire form, in one buffer; each provenance, AZ ID and weight
//! once; and an address inline. The same records, in the same order, come back out.
//!
//! Between builds nothing reads the list but the next build and the state file, so once a
//! fetch has filled it ([`RecordList::compact`]) its names and rows are kept LZ4-compressed,
//! as a zone file's records are ([`crate::zonefile`]): column by column, each index stored
//! as its difference from the one before, so an endpoint's names, which share their suffix,
//! and its rows, which count up by one, compress to a fraction. 5,000 endpoints' 20,000
//! records took 2.7 MB as plain rows; reading them back is a copy at memory speed.
//!
//! The state file keeps the same layout: each table once, then the records as rows of
//! indexes (see [`Stored`]). Names are written by `name_key::text_of` and read back
//! by `name_key::wire_from_text`, exact and without IDNA processing: reading 20,000 records' names
//! through hickory's `FromStr` was most of a restart's 80 ms of parsing (perf). A list written
//! as a plain sequence of records (`hubdns-state/1`) is read too.

use std::{
    borrow::Cow,
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
#[derive(Clone, Default)]
pub struct RecordList {
    /// The names and rows while the list is being filled; empty once it is sealed.
    open: Rows,
    /// The names and rows once the list is compacted, LZ4-compressed ([`Rows::seal`]);
    /// empty while it is open.
    sealed: Box<[u8]>,
    /// How many records it holds.
    len: usize,
    provenances: Vec<Provenance>,
    azs: Vec<Arc<str>>,
    weights: Vec<Weight>,
    /// Data other than an address, which rows point at by index.
    others: Vec<RData>,
}

/// The owner names and the rows of a list.
#[derive(Clone, Default, PartialEq)]
struct Rows {
    /// Owner names in wire form as spelled, back to back; name `i` ends at `name_ends[i]`.
    names: Vec<u8>,
    name_ends: Vec<u32>,
    entries: Vec<Entry>,
}

/// One record: indexes into the list's tables, its TTL and its data.
#[derive(Clone, Copy, PartialEq)]
struct Entry {
    name: u32,
    ttl: u32,
    provenance: u32,
    az: u32,
    weight: u32,
    data: Data,
}

/// Record data: an address inline (what endpoints publish), anything else an index into the
/// list's other data.
#[derive(Clone, Copy, PartialEq)]
enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Other(u32),
}

impl Data {
    /// `data` as a row holds it: an address inline, anything else pushed onto `others`.
    fn store(data: RData, others: &mut Vec<RData>) -> Self {
        match data {
            RData::A(A(v4)) => Self::A(v4),
            RData::AAAA(AAAA(v6)) => Self::Aaaa(v6),
            other => {
                others.push(other);
                Self::Other(index(others.len() - 1))
            }
        }
    }
}

// Kept small on purpose: one of these per record while a list is filled or read.
const _: () = assert!(std::mem::size_of::<Entry>() <= 40);

impl RecordList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `record` at the end. A record with the owner (as spelled) of the one before shares
    /// that one's copy, and one with the provenance, AZ ID or weight of a recent one shares
    /// that: sources emit records owner by owner and endpoint by endpoint, so nearby is where
    /// the repeats are, and no lookup table is needed. A sealed list is opened first.
    pub fn push(&mut self, record: Record) {
        if !self.sealed.is_empty() {
            self.open = Rows::unseal(&self.sealed);
            self.sealed = Box::default();
        }
        let Record { name, ttl, data, provenance, weight, az } = record;
        let rows = &mut self.open;
        let last = rows.name_ends.len().checked_sub(1).map(|at| rows.name_range(at));
        let start = rows.names.len();
        write_spelled(&name, &mut rows.names);
        match last {
            Some(last) if rows.names[last.clone()] == rows.names[start..] => rows.names.truncate(start),
            _ => rows.name_ends.push(index(rows.names.len())),
        }
        let name = index(rows.name_ends.len() - 1);
        let provenance = recent_or_push(&mut self.provenances, Some(provenance));
        let az = recent_or_push(&mut self.azs, az);
        let weight = recent_or_push(&mut self.weights, weight);
        let data = Data::store(data, &mut self.others);
        self.open.entries.push(Entry { name, ttl, provenance, az, weight, data });
        self.len += 1;
    }

    /// The records, in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record> + '_ {
        let rows = self.rows();
        (0..rows.entries.len()).map(move |at| self.record(&rows, &rows.entries[at]))
    }

    /// Readies the list to be kept until the next fetch: gives back room grown for records no
    /// longer coming, seals the provenances' origins together ([`crate::origin`]), and seals
    /// the names and rows. A sealed list is compact already (a push opens it).
    pub fn compact(&mut self) {
        if !self.sealed.is_empty() {
            return;
        }
        crate::origin::pack(self.provenances.iter_mut().map(|p| &mut p.origin));
        self.provenances.shrink_to_fit();
        self.azs.shrink_to_fit();
        self.weights.shrink_to_fit();
        self.others.shrink_to_fit();
        self.sealed = std::mem::take(&mut self.open).seal();
    }

    /// The names and rows: the open ones, or the sealed ones read back.
    fn rows(&self) -> Cow<'_, Rows> {
        match self.sealed.is_empty() {
            true => Cow::Borrowed(&self.open),
            false => Cow::Owned(Rows::unseal(&self.sealed)),
        }
    }

    fn record(&self, rows: &Rows, entry: &Entry) -> Record {
        Record {
            name: name_from_wire(&rows.names[rows.name_range(entry.name as usize)]),
            ttl: entry.ttl,
            data: self.rdata(entry.data),
            // Every entry has a provenance (push stores one for each).
            provenance: self.provenances[entry.provenance as usize].clone(),
            weight: (entry.weight != NONE).then(|| self.weights[entry.weight as usize].clone()),
            az: (entry.az != NONE).then(|| self.azs[entry.az as usize].clone()),
        }
    }

    /// The record data a row holds.
    fn rdata(&self, data: Data) -> RData {
        match data {
            Data::A(v4) => RData::A(A(v4)),
            Data::Aaaa(v6) => RData::AAAA(AAAA(v6)),
            // Rows point only at data `push` or `from_stored` stored.
            Data::Other(at) => self.others[at as usize].clone(),
        }
    }
}

impl PartialEq for RecordList {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.provenances.len() == other.provenances.len()
            && self.provenances.iter().zip(&other.provenances).all(|(a, b)| (a.source, a.line) == (b.source, b.line))
            && crate::origin::same_texts(self.provenances.iter().map(|p: &Provenance| &p.origin), other.provenances.iter().map(|p: &Provenance| &p.origin))
            && self.azs == other.azs
            && self.weights == other.weights
            && self.others == other.others
            && self.rows() == other.rows()
    }
}

/// What each row's data is, in a sealed list.
const TAG_A: u8 = 0;
const TAG_AAAA: u8 = 1;
const TAG_OTHER: u8 = 2;

impl Rows {
    /// Where name `at` lies in `names`.
    fn name_range(&self, at: usize) -> std::ops::Range<usize> {
        let start = if at == 0 { 0 } else { self.name_ends[at - 1] as usize };
        start..self.name_ends[at] as usize
    }

    /// The names and rows, column by column (each index as its difference from the one
    /// before, so runs compress), LZ4-compressed.
    fn seal(self) -> Box<[u8]> {
        let mut plain = Vec::with_capacity(12 + self.names.len() + 4 * self.name_ends.len() + 38 * self.entries.len());
        for count in [self.names.len(), self.name_ends.len(), self.entries.len()] {
            plain.extend_from_slice(&index(count).to_le_bytes());
        }
        plain.extend_from_slice(&self.names);
        put_deltas(&mut plain, self.name_ends.iter().copied());
        let columns: [fn(&Entry) -> u32; 5] = [|e| e.name, |e| e.ttl, |e| e.provenance, |e| e.az, |e| e.weight];
        for column in columns {
            put_deltas(&mut plain, self.entries.iter().map(column));
        }
        plain.extend(self.entries.iter().map(|e| match e.data {
            Data::A(_) => TAG_A,
            Data::Aaaa(_) => TAG_AAAA,
            Data::Other(_) => TAG_OTHER,
        }));
        for entry in &self.entries {
            match entry.data {
                Data::A(v4) => plain.extend_from_slice(&v4.octets()),
                Data::Aaaa(v6) => plain.extend_from_slice(&v6.octets()),
                Data::Other(at) => plain.extend_from_slice(&at.to_le_bytes()),
            }
        }
        lz4_flex::block::compress_prepend_size(&plain).into_boxed_slice()
    }

    /// The names and rows [`Rows::seal`] sealed.
    fn unseal(sealed: &[u8]) -> Self {
        // Sealed by `seal`, so it decompresses and reads back whole; a block that did not
        // would be a bug here, and reads as no records rather than as wrong ones.
        let plain = lz4_flex::block::decompress_size_prepended(sealed).unwrap_or_default();
        Self::read(&mut Cursor(&plain)).unwrap_or_default()
    }

    fn read(from: &mut Cursor<'_>) -> Option<Self> {
        let (names, ends, entries) = (from.u32()? as usize, from.u32()? as usize, from.u32()? as usize);
        let names = from.take(names)?.to_vec();
        let name_ends = from.deltas(ends)?;
        let columns: [Vec<u32>; 5] = [from.deltas(entries)?, from.deltas(entries)?, from.deltas(entries)?, from.deltas(entries)?, from.deltas(entries)?];
        let tags = from.take(entries)?;
        let mut rows = Vec::with_capacity(entries);
        for (at, &tag) in tags.iter().enumerate() {
            let data = match tag {
                TAG_A => Data::A(Ipv4Addr::from(<[u8; 4]>::try_from(from.take(4)?).ok()?)),
                TAG_AAAA => Data::Aaaa(Ipv6Addr::from(<[u8; 16]>::try_from(from.take(16)?).ok()?)),
                _ => Data::Other(from.u32()?),
            };
            let [name, ttl, provenance, az, weight] = columns.each_ref().map(|column| column[at]);
            rows.push(Entry { name, ttl, provenance, az, weight, data });
        }
        Some(Self { names, name_ends, entries: rows })
    }
}

/// Appends `values`, each as its difference from the one before (wrapping), little endian.
fn put_deltas(out: &mut Vec<u8>, values: impl Iterator<Item = u32>) {
    let mut before = 0u32;
    for value in values {
        out.extend_from_slice(&value.wrapping_sub(before).to_le_bytes());
        before = value;
    }
}

/// Reads a sealed list's plain bytes in order.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// `count` values [`put_deltas`] wrote.
    fn deltas(&mut self, count: usize) -> Option<Vec<u32>> {
        let mut before = 0u32;
        (0..count)
            .map(|_| {
                before = before.wrapping_add(self.u32()?);
                Some(before)
            })
            .collect()
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
        let rows = self.rows();
        let names: Vec<String> = (0..rows.name_ends.len()).map(|at| text_of(&name_from_wire(&rows.names[rows.name_range(at)]))).collect();
        let some = |at: u32| (at != NONE).then_some(at);
        let records: Vec<Row<RData>> = rows
            .entries
            .iter()
            .map(|e| (e.name, e.ttl, e.provenance, some(e.az), some(e.weight), self.rdata(e.data)))
            .collect();
        Stored { names, provenances: &self.provenances, azs: &self.azs, weights: &self.weights, records }.serialize(serializer)
    }
}

impl RecordList {
    /// A list from its stored tables, each index checked: a damaged file is an error, never
    /// a record with the wrong name. Its origins are sealed at once (the first table shares
    /// them), its rows left open: reading a state file is on the way to a restart's first
    /// answer, and the reader compacts the list once that is served.
    fn from_stored(stored: Read) -> Result<Self, String> {
        let mut list = Self { provenances: stored.provenances, azs: stored.azs, weights: stored.weights, ..Self::default() };
        let rows = &mut list.open;
        for text in &stored.names {
            match wire_from_text(text) {
                Some(wire) => rows.names.extend_from_slice(&wire),
                None => write_spelled(&name_from_text(text).map_err(|e| format!("name {text:?}: {e}"))?, &mut rows.names),
            }
            rows.name_ends.push(index(rows.names.len()));
        }
        let within = |at: u32, len: usize, what: &str| if (at as usize) < len { Ok(at) } else { Err(format!("{what} index {at} out of range")) };
        let (names, provenances, azs, weights) = (rows.name_ends.len(), list.provenances.len(), list.azs.len(), list.weights.len());
        let others = &mut list.others;
        rows.entries = stored
            .records
            .into_iter()
            .map(|(name, ttl, provenance, az, weight, data)| {
                Ok(Entry {
                    name: within(name, names, "name")?,
                    ttl,
                    provenance: within(provenance, provenances, "provenance")?,
                    az: az.map_or(Ok(NONE), |at| within(at, azs, "AZ"))?,
                    weight: weight.map_or(Ok(NONE), |at| within(at, weights, "weight"))?,
                    data: Data::store(data, others),
                })
            })
            .collect::<Result<_, String>>()?;
        list.len = rows.entries.len();
        crate::origin::pack(list.provenances.iter_mut().map(|p| &mut p.origin));
        Ok(list)
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
        assert_eq!(list.rows().name_ends.len(), 5);
        assert_eq!(list.provenances.len(), 3);
        assert_eq!(list.azs.len(), 2);

        // Through the state file's layout and back: the same list, spelling included.
        let json = serde_json::to_string(&list).unwrap();
        let mut read: RecordList = serde_json::from_str(&json).unwrap();
        assert_eq!(read, list);
        assert!(read.sealed.is_empty(), "rows read open: a restart serves before it compacts");
        read.compact();
        assert!(!read.sealed.is_empty());
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

    /// A compacted list is sealed, much smaller than its rows, and opened again by a push.
    #[test]
    fn a_sealed_list_is_small_reads_back_whole_and_takes_more_records() {
        // Endpoint-shaped: a regional name over two ENIs, then a zonal name per ENI.
        let mut records = Vec::new();
        for endpoint in 0..1_000u32 {
            let regional = format!("vpce-{endpoint:017}-abcd1234.vpce-svc-{endpoint:017}.us-east-1.vpce.amazonaws.com.");
            let [a, b] = [0u8, 1].map(|eni| format!("vpc_endpoints vpce-{endpoint:017} eni=eni-{endpoint:016}{eni} az=us-east-1{eni}"));
            let address = |eni: u8| RData::A(A::new(10, eni, (endpoint >> 8) as u8, endpoint as u8));
            records.push(record(&regional, address(0), &a, Some("use1-az1")));
            records.push(record(&regional, address(1), &b, Some("use1-az2")));
            records.push(record(&format!("us-east-1a.{regional}"), address(0), &a, Some("use1-az1")));
            records.push(record(&format!("us-east-1b.{regional}"), address(1), &b, Some("use1-az2")));
        }
        let mut list = RecordList::from(records.clone());
        assert!(list.open.entries.is_empty() && !list.sealed.is_empty(), "sealed when compacted");
        let plain = list.rows();
        let plain_size = plain.names.len() + 4 * plain.name_ends.len() + std::mem::size_of::<Entry>() * plain.entries.len();
        assert!(list.sealed.len() * 4 < plain_size, "sealed {} bytes of {plain_size}", list.sealed.len());
        assert_eq!(list.len(), 4_000);
        assert_eq!(list.iter().collect::<Vec<_>>(), records);

        // More records after sealing: the list opens, keeps the ones before, and seals again.
        let txt = record("t.corp.example.", RData::TXT(hickory_proto::rr::rdata::TXT::new(vec!["v=1".into()])), "route53 zone=Z1", None);
        list.push(txt.clone());
        records.push(txt);
        assert!(list.sealed.is_empty());
        list.compact();
        assert_eq!(list.iter().collect::<Vec<_>>(), records);
        assert_eq!(list.len(), 4_001);
        let read: RecordList = serde_json::from_str(&serde_json::to_string(&list).unwrap()).unwrap();
        assert_eq!(read, list);
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
