//! The endpoints a source published, held compactly between fetches.
//!
//! The refresh loop keeps every vpc_endpoints source's endpoint summaries until its next
//! fetch: for the status board, for config aliases that name an endpoint by id or service,
//! and for the state file. As [`EndpointSummary`]s each endpoint took eleven allocations —
//! its id, service, every name, every ENI's id and addresses — and 5,000 endpoints held
//! 5 MiB resident, a seventh of the process (bench/scale; measured by leaving them out). An
//! [`EndpointList`] keeps all their text back to back in one buffer, each VPC, type, AZ and
//! AZ ID once, and the rest in fixed-size rows: a handful of allocations for the whole list.
//!
//! The text is read only when the status board is shown, a table with config aliases is
//! built, or the state file is written, so it is kept LZ4-compressed between those: 5,000
//! endpoints' ids, services, names and ENI ids are 2.0 MB of text, 0.3 MB sealed (their names
//! differ in a few characters). A reader opens the list ([`EndpointList::open`], a copy at
//! memory speed) and gets the same summaries, in the same order ([`Opened::iter`]); the state
//! file and `/status.json` keep their shape: a sequence of summaries.

use std::{collections::HashMap, fmt, net::IpAddr, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::SeqAccess};

use crate::sources::output::{DomainSummary, EndpointSummary, InterfaceSummary, regional_at};

/// Endpoint summaries in order, their text in one sealed buffer.
#[derive(Clone, Default, PartialEq)]
pub struct EndpointList {
    /// Every endpoint's id, service, names and ENI ids, back to back, LZ4-compressed
    /// ([`seal`]); piece `i` ends at `ends[i]` of the text opened.
    text: Box<[u8]>,
    ends: Vec<u32>,
    /// VPCs, types, AZs and AZ IDs, each once.
    shared: Vec<Arc<str>>,
    rows: Vec<Row>,
    interfaces: Vec<Interface>,
    addresses: Vec<IpAddr>,
    domains: Vec<DomainSummary>,
}

/// One endpoint: where its pieces, interfaces and domains start, and how many it has.
#[derive(Clone, PartialEq)]
struct Row {
    /// Its id's piece; the service's is next, then its names'.
    first_piece: u32,
    names: u32,
    vpc: u32,
    kind: u32,
    first_interface: u32,
    interface_count: u32,
    first_domain: u32,
    domain_count: u32,
}

/// One network interface: its id's piece, its AZ and AZ ID, and its addresses.
#[derive(Clone, PartialEq)]
struct Interface {
    piece: u32,
    az: u32,
    az_id: u32,
    first_address: u32,
    address_count: u32,
}

/// A position in one of the list's vectors. The list holds at most a few hundred thousand of
/// anything (pieces, addresses), far below `u32::MAX`.
fn index(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

impl EndpointList {
    /// How many endpoints it holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The list with its text unsealed, to read its endpoints.
    pub fn open(&self) -> Opened<'_> {
        Opened { list: self, text: unseal(&self.text) }
    }

    /// Every endpoint's custom domain names, without opening the text.
    pub fn domains(&self) -> impl Iterator<Item = &DomainSummary> + '_ {
        self.domains.iter()
    }

    /// Calls `edit` with every endpoint's id and its custom domain names, to change what the
    /// status board shows of them.
    pub fn edit_domains(&mut self, mut edit: impl FnMut(&str, &mut [DomainSummary])) {
        let text = unseal(&self.text);
        // Rows hold their domains in row order, back to back (`Builder::push`).
        let mut rest = &mut self.domains[..];
        for row in &self.rows {
            let (mine, after) = std::mem::take(&mut rest).split_at_mut(row.domain_count as usize);
            rest = after;
            edit(piece(&text, &self.ends, row.first_piece), mine);
        }
    }

    /// How many distinct VPCs, types, AZs and AZ IDs it holds (each is kept once).
    #[cfg(test)]
    pub fn distinct_shared(&self) -> usize {
        self.shared.len()
    }
}

/// An [`EndpointList`] with its text unsealed ([`EndpointList::open`]).
pub struct Opened<'a> {
    list: &'a EndpointList,
    text: String,
}

impl Opened<'_> {
    /// The endpoints, in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Endpoint<'_>> + '_ {
        self.list.rows.iter().map(|row| Endpoint { list: self.list, text: &self.text, row })
    }
}

/// `text` LZ4-compressed, its length first.
fn seal(text: &str) -> Box<[u8]> {
    lz4_flex::block::compress_prepend_size(text.as_bytes()).into_boxed_slice()
}

/// The text [`seal`] sealed.
fn unseal(sealed: &[u8]) -> String {
    // Sealed by `seal` from a `String`, so it decompresses to UTF-8; a buffer that did not
    // would be a bug here, and reads as empty pieces rather than as wrong ones.
    let plain = lz4_flex::block::decompress_size_prepended(sealed).unwrap_or_default();
    String::from_utf8(plain).unwrap_or_default()
}

/// An [`EndpointList`] being filled: the list, its text still open, and where each shared
/// string already is in it.
#[derive(Default)]
struct Builder {
    list: EndpointList,
    text: String,
    shared_at: HashMap<Arc<str>, u32>,
}

impl Builder {
    /// Adds `endpoint` at the end of the list.
    fn push(&mut self, endpoint: &EndpointSummary) {
        let (vpc, kind) = (self.share(&endpoint.vpc), self.share(&endpoint.kind));
        let first_piece = index(self.list.ends.len());
        for text in [&endpoint.id, &endpoint.service].into_iter().chain(endpoint.names.iter()) {
            self.add_piece(text);
        }
        let first_interface = index(self.list.interfaces.len());
        for interface in &endpoint.interfaces {
            let (az, az_id) = (self.share(&interface.az), self.share(&interface.az_id));
            let piece = index(self.list.ends.len());
            self.add_piece(&interface.id);
            let first_address = index(self.list.addresses.len());
            self.list.addresses.extend_from_slice(&interface.addresses);
            self.list.interfaces.push(Interface { piece, az, az_id, first_address, address_count: index(interface.addresses.len()) });
        }
        let first_domain = index(self.list.domains.len());
        self.list.domains.extend_from_slice(&endpoint.domains);
        self.list.rows.push(Row {
            first_piece,
            names: index(endpoint.names.len()),
            vpc,
            kind,
            first_interface,
            interface_count: index(endpoint.interfaces.len()),
            first_domain,
            domain_count: index(endpoint.domains.len()),
        });
    }

    /// Where `text` is among the list's shared strings, added if it is new.
    fn share(&mut self, text: &Arc<str>) -> u32 {
        let shared = &mut self.list.shared;
        *self.shared_at.entry(text.clone()).or_insert_with(|| {
            shared.push(text.clone());
            index(shared.len() - 1)
        })
    }

    fn add_piece(&mut self, text: &str) {
        self.text.push_str(text);
        self.list.ends.push(index(self.text.len()));
    }

    /// The list, its text sealed, without the room grown for endpoints no longer coming (it is
    /// kept until the next fetch).
    fn finish(self) -> EndpointList {
        let mut list = self.list;
        list.text = seal(&self.text);
        list.ends.shrink_to_fit();
        list.shared.shrink_to_fit();
        list.rows.shrink_to_fit();
        list.interfaces.shrink_to_fit();
        list.addresses.shrink_to_fit();
        list.domains.shrink_to_fit();
        list
    }
}

/// Piece `at` of `text` (empty if the text is not the one the ends were counted in).
fn piece<'a>(text: &'a str, ends: &[u32], at: u32) -> &'a str {
    let at = at as usize;
    let start = if at == 0 { 0 } else { ends[at - 1] as usize };
    text.get(start..ends[at] as usize).unwrap_or_default()
}

impl FromIterator<EndpointSummary> for EndpointList {
    fn from_iter<I: IntoIterator<Item = EndpointSummary>>(endpoints: I) -> Self {
        let mut builder = Builder::default();
        for endpoint in endpoints {
            builder.push(&endpoint);
        }
        builder.finish()
    }
}

impl From<Vec<EndpointSummary>> for EndpointList {
    fn from(endpoints: Vec<EndpointSummary>) -> Self {
        endpoints.into_iter().collect()
    }
}

/// One endpoint of an opened [`EndpointList`], read in place.
#[derive(Clone, Copy)]
pub struct Endpoint<'a> {
    list: &'a EndpointList,
    text: &'a str,
    row: &'a Row,
}

impl<'a> Endpoint<'a> {
    fn piece(&self, at: u32) -> &'a str {
        piece(self.text, &self.list.ends, at)
    }

    /// `vpce-…`.
    pub fn id(&self) -> &'a str {
        self.piece(self.row.first_piece)
    }

    /// The service (or resource configuration) it connects to.
    pub fn service(&self) -> &'a str {
        self.piece(self.row.first_piece + 1)
    }

    /// Its VPC.
    pub fn vpc(&self) -> &'a str {
        &self.list.shared[self.row.vpc as usize]
    }

    /// Its type as EC2 spells it.
    pub fn kind(&self) -> &'a str {
        &self.list.shared[self.row.kind as usize]
    }

    /// Every name it is published under, the regional one first.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &'a str> + Clone + 'a {
        let this = *self;
        (0..self.row.names).map(move |at| this.piece(this.row.first_piece + 2 + at))
    }

    /// Its regional DNS name ([`regional_at`]).
    pub fn regional(&self) -> Option<&'a str> {
        regional_at(self.kind(), self.names()).and_then(|at| self.names().nth(at))
    }

    /// Its custom domain names.
    pub fn domains(&self) -> &'a [DomainSummary] {
        let start = self.row.first_domain as usize;
        &self.list.domains[start..start + self.row.domain_count as usize]
    }

    /// Its network interfaces, as summaries.
    pub fn interfaces(&self) -> impl Iterator<Item = InterfaceSummary> + 'a {
        let (list, text, start) = (self.list, self.text, self.row.first_interface as usize);
        list.interfaces[start..start + self.row.interface_count as usize].iter().map(move |i| {
            let first = i.first_address as usize;
            InterfaceSummary {
                id: piece(text, &list.ends, i.piece).into(),
                az: list.shared[i.az as usize].clone(),
                az_id: list.shared[i.az_id as usize].clone(),
                addresses: list.addresses[first..first + i.address_count as usize].into(),
            }
        })
    }

    /// The endpoint as a plain summary.
    pub fn to_summary(&self) -> EndpointSummary {
        EndpointSummary {
            id: self.id().into(),
            service: self.service().into(),
            vpc: self.list.shared[self.row.vpc as usize].clone(),
            names: self.names().map(Box::from).collect(),
            interfaces: self.interfaces().collect(),
            kind: self.list.shared[self.row.kind as usize].clone(),
            domains: self.domains().to_vec(),
        }
    }
}

impl fmt::Debug for EndpointList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.open().iter().map(|e| e.to_summary())).finish()
    }
}

impl Serialize for EndpointList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.open().iter().map(|e| e.to_summary()))
    }
}

impl<'de> Deserialize<'de> for EndpointList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Endpoints;
        impl<'de> serde::de::Visitor<'de> for Endpoints {
            type Value = EndpointList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of endpoint summaries")
            }
            // One summary at a time, straight into the list.
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<EndpointList, S::Error> {
                let mut builder = Builder::default();
                while let Some(endpoint) = seq.next_element::<EndpointSummary>()? {
                    builder.push(&endpoint);
                }
                Ok(builder.finish())
            }
        }
        deserializer.deserialize_seq(Endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, kind: &str, names: &[&str], domains: usize) -> EndpointSummary {
        let interface = |id: &str, az: &str, az_id: &str, ips: &[&str]| InterfaceSummary {
            id: id.into(),
            az: az.into(),
            az_id: az_id.into(),
            addresses: ips.iter().map(|ip| ip.parse().expect("address")).collect(),
        };
        EndpointSummary {
            id: id.into(),
            service: format!("com.amazonaws.us-east-1.{id}").into(),
            vpc: "vpc-1".into(),
            names: names.iter().map(|n| Box::from(*n)).collect(),
            interfaces: [interface(&format!("eni-{id}a"), "us-east-1a", "use1-az1", &["10.0.1.5", "fd00::5"]), interface(&format!("eni-{id}b"), "us-east-1b", "", &[])].into(),
            kind: kind.into(),
            domains: (0..domains)
                .map(|i| DomainSummary { name: format!("d{i}.{id}.example"), served: i % 2 == 0, ..DomainSummary::default() })
                .collect(),
        }
    }

    fn sample() -> Vec<EndpointSummary> {
        vec![
            endpoint("vpce-1", "Interface", &["vpce-1-x.svc.us-east-1.vpce.amazonaws.com", "vpce-1-x-us-east-1a.svc.us-east-1.vpce.amazonaws.com"], 0),
            endpoint("vpce-2", "Resource", &["db.corp.example"], 2),
            endpoint("vpce-3", "", &[], 0),
            endpoint("vpce-4", "ServiceNetwork", &["a.example", "b.example"], 1),
        ]
    }

    #[test]
    fn the_same_summaries_come_back_out_in_order() {
        let list = EndpointList::from(sample());
        assert_eq!(list.len(), 4);
        let open = list.open();
        assert_eq!(open.iter().map(|e| e.to_summary()).collect::<Vec<_>>(), sample());
        let second = open.iter().nth(1).expect("second");
        assert_eq!((second.id(), second.service(), second.vpc(), second.kind()), ("vpce-2", "com.amazonaws.us-east-1.vpce-2", "vpc-1", "Resource"));
        assert_eq!(second.names().collect::<Vec<_>>(), ["db.corp.example"]);
        assert_eq!(second.domains().len(), 2);
    }

    #[test]
    fn repeated_strings_are_kept_once() {
        let list = EndpointList::from(sample());
        // vpc-1; Interface, Resource, "", ServiceNetwork; us-east-1a, use1-az1, us-east-1b.
        assert_eq!(list.distinct_shared(), 8);
    }

    /// The text is sealed, a fraction of its size: endpoints' names differ in a few characters.
    #[test]
    fn the_text_is_kept_sealed() {
        let many: Vec<EndpointSummary> = (0..1_000)
            .map(|i| {
                let regional = format!("vpce-{i:017}-abcd1234.vpce-svc-{i:017}.us-east-1.vpce.amazonaws.com");
                let zonal = format!("vpce-{i:017}-abcd1234-us-east-1a.vpce-svc-{i:017}.us-east-1.vpce.amazonaws.com");
                endpoint(&format!("vpce-{i:017}"), "Interface", &[&regional, &zonal], 0)
            })
            .collect();
        let list = EndpointList::from(many.clone());
        let plain = unseal(&list.text);
        assert_eq!(plain.len() as u32, *list.ends.last().expect("pieces"));
        assert!(list.text.len() * 4 < plain.len(), "sealed {} bytes of {}", list.text.len(), plain.len());
        assert_eq!(list.open().iter().map(|e| e.to_summary()).collect::<Vec<_>>(), many);
    }

    #[test]
    fn the_regional_name_is_the_summarys() {
        for summary in sample() {
            let list = EndpointList::from(vec![summary.clone()]);
            let regional = summary.regional_at().map(|at| &*summary.names[at]);
            assert_eq!(list.open().iter().next().and_then(|e| e.regional()), regional, "{}", summary.id);
        }
    }

    #[test]
    fn domains_can_be_changed_in_place_each_with_its_endpoint() {
        let mut list = EndpointList::from(sample());
        let mut seen = Vec::new();
        list.edit_domains(|id, domains| {
            seen.push((id.to_owned(), domains.len()));
            for domain in domains {
                domain.served = false;
                domain.why = format!("changed for {id}");
            }
        });
        assert_eq!(seen, [("vpce-1".to_owned(), 0), ("vpce-2".to_owned(), 2), ("vpce-3".to_owned(), 0), ("vpce-4".to_owned(), 1)]);
        let open = list.open();
        let fourth = open.iter().nth(3).expect("fourth");
        assert_eq!(fourth.domains()[0].why, "changed for vpce-4");
        assert!(list.domains().all(|d| !d.served));
    }

    #[test]
    fn it_is_stored_as_a_sequence_of_summaries() {
        let list = EndpointList::from(sample());
        let json = serde_json::to_value(&list).expect("serialize");
        assert_eq!(json, serde_json::to_value(sample()).expect("serialize the plain summaries"));
        let back: EndpointList = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, list);
    }
}
