//! Pre-encoded answers: the bytes that follow the question, encoded once by hickory and then
//! copied into every response that needs them.
//!
//! A response is a header, the question as the client sent it, the answer and authority
//! records, and (with EDNS) an OPT record. For a given name and answer only the header and the
//! question change from query to query — and the question's length does not change, because a
//! name matches a key only if it has the same labels. So the records can be encoded once, with
//! their owner names compressed to a pointer at the question (offset 12, `0xC00C`), and every
//! other compression pointer stays valid for any query with that name, whatever its case.
//!
//! The snapshot prepares each RRset and each NODATA answer when it is built; the forwarder's
//! cache prepares each upstream answer when it stores it. A cached answer's TTLs must count
//! down, so the offset of every TTL field is kept for [`Prepared::write`] to patch.

use hickory_proto::{
    ProtoError,
    op::{Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode},
    rr::{Name, Record, RecordType},
    serialize::binary::{BinEncodable, BinEncoder},
};

/// Size of the fixed DNS header.
pub const HEADER_LEN: usize = 12;

/// The answer and authority sections of a response, encoded for one question name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// NOERROR or NXDOMAIN.
    pub rcode: ResponseCode,
    /// The AA bit: set for owned names.
    pub authoritative: bool,
    /// Whether the AD bit may be set (a trusted upstream validated it), for clients that ask
    /// with DO or AD (RFC 6840 §5.8). Never for owned names.
    pub authentic: bool,
    /// Records in the answer section.
    pub answers: u16,
    /// Records in the authority section.
    pub authorities: u16,
    /// The records, encoded as they follow a question of the prepared name's length.
    bytes: Box<[u8]>,
    /// Where each record's TTL sits in `bytes`, with the TTL as prepared.
    ttls: Box<[(u16, u32)]>,
}

impl Prepared {
    /// Encodes `answers` and `authorities` as they follow a question for `name` / `qtype`.
    /// Records owned by `name` (in any case) end up as pointers to the question.
    pub fn build(
        name: &Name,
        qtype: RecordType,
        rcode: ResponseCode,
        authoritative: bool,
        answers: &[Record],
        authorities: &[Record],
    ) -> Result<Self, ProtoError> {
        // Lowercase both question and owners so hickory's byte-exact compression matches them.
        let name = name.to_lowercase();
        let mut buf = Vec::with_capacity(HEADER_LEN + 2 * name.len() + 64);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.emit_vec(&[0; HEADER_LEN])?;
        Query::query(name.clone(), qtype).emit(&mut encoder)?;
        let start = encoder.offset();
        let mut ttls = Vec::with_capacity(answers.len() + authorities.len());
        for record in answers.iter().chain(authorities) {
            let at = encoder.offset();
            // Name equality is case-insensitive: a record of the question's name in any case
            // is re-owned by the lowercase name, so it compresses to a pointer.
            if record.name == name {
                let mut owned = record.clone();
                owned.name = name.clone();
                owned.emit(&mut encoder)?;
            } else {
                record.emit(&mut encoder)?;
            }
            let ttl_at = at + encoded_name_len(encoder.slice_of(at, encoder.offset())) + 4 - start;
            let ttl_at = u16::try_from(ttl_at).map_err(|_| ProtoError::from("answer too long"))?;
            ttls.push((ttl_at, record.ttl));
        }
        let count = |n: usize| u16::try_from(n).map_err(|_| ProtoError::from("too many records"));
        Ok(Self {
            rcode,
            authoritative,
            authentic: false,
            answers: count(answers.len())?,
            authorities: count(authorities.len())?,
            bytes: buf[start..].into(),
            ttls: ttls.into(),
        })
    }

    /// The records again, decoded (for a stale answer, which is re-encoded with a new TTL):
    /// the bytes are put back behind a header and the question for `name` / `qtype` that they
    /// were encoded after, and read as a message.
    pub fn records(&self, name: &Name, qtype: RecordType) -> Result<(Vec<Record>, Vec<Record>), ProtoError> {
        let mut buf = Vec::with_capacity(HEADER_LEN + name.len() + 6 + self.bytes.len());
        let mut encoder = BinEncoder::new(&mut buf);
        let header = Header {
            metadata: Metadata::new(0, MessageType::Response, OpCode::Query),
            counts: HeaderCounts { queries: 1, answers: self.answers, authorities: self.authorities, additionals: 0 },
        };
        header.emit(&mut encoder)?;
        Query::query(name.to_lowercase(), qtype).emit(&mut encoder)?;
        buf.extend_from_slice(&self.bytes);
        let message = Message::from_vec(&buf)?;
        Ok((message.answers, message.authorities))
    }

    /// How many bytes [`Prepared::write`] appends.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no records at all.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The smallest TTL among the records: how long the answer may be cached.
    pub fn min_ttl(&self) -> u32 {
        self.ttls.iter().map(|&(_, ttl)| ttl).min().unwrap_or(0)
    }

    /// The size of each record, when every one has the same (an address RRset of one owner:
    /// the owner a pointer to the question, fixed-size data) and there is no authority
    /// section; then the records can be written in another order ([`Prepared::write_in`]).
    pub fn record_len(&self) -> Option<usize> {
        let answers = usize::from(self.answers);
        let len = self.bytes.len().checked_div(answers)?;
        (self.authorities == 0 && len * answers == self.bytes.len()).then_some(len)
    }

    /// Appends the records at `indexes` (into the answer section, in that order) with their
    /// TTLs as prepared — how AZ affinity answers one client (see [`crate::az::Order`]).
    /// Returns `false`, writing nothing, when the records are not of one size.
    pub fn write_in(&self, indexes: impl Iterator<Item = usize>, out: &mut Vec<u8>) -> bool {
        let Some(len) = self.record_len() else { return false };
        for at in indexes {
            if let Some(record) = self.bytes.get(at * len..(at + 1) * len) {
                out.extend_from_slice(record);
            }
        }
        true
    }

    /// Appends the records to `out`, every TTL lowered by `age` seconds.
    pub fn write(&self, age: u32, out: &mut Vec<u8>) {
        let base = out.len();
        out.extend_from_slice(&self.bytes);
        if age == 0 {
            return;
        }
        for &(at, ttl) in &self.ttls {
            let at = base + usize::from(at);
            out[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
        }
    }
}

/// Length of the (possibly compressed) name at the start of `wire`, as an encoder just wrote it.
fn encoded_name_len(wire: &[u8]) -> usize {
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        match len {
            0 => return at + 1,
            len if len & 0xC0 == 0xC0 => return at + 2,
            len => at += 1 + usize::from(len),
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        op::{Header, HeaderCounts, Message, MessageType, Metadata, OpCode},
        rr::{RData, rdata},
        serialize::binary::BinDecodable,
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(owner: &str, ip: [u8; 4], ttl: u32) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(rdata::A(Ipv4Addr::from(ip))))
    }

    /// A whole response: header with counts, the question `qname` as a client spelled it,
    /// then the prepared records.
    fn response(prepared: &Prepared, qname: &str, age: u32) -> Message {
        let mut out = Vec::new();
        let mut encoder = BinEncoder::new(&mut out);
        let metadata = Metadata::new(7, MessageType::Response, OpCode::Query);
        let counts = HeaderCounts { queries: 1, answers: prepared.answers, authorities: prepared.authorities, additionals: 0 };
        Header { metadata, counts }.emit(&mut encoder).unwrap();
        Query::query(name(qname), RecordType::A).emit(&mut encoder).unwrap();
        prepared.write(age, &mut out);
        Message::from_bytes(&out).unwrap()
    }

    #[test]
    fn owners_point_at_the_question_whatever_its_case() {
        let records = [a("Svc.Example.com.", [10, 0, 0, 1], 60), a("svc.example.com.", [10, 0, 0, 2], 60)];
        let prepared =
            Prepared::build(&name("svc.example.com."), RecordType::A, ResponseCode::NoError, true, &records, &[]).unwrap();
        // Two A records of 2 (pointer) + 10 (type, class, TTL, length) + 4 bytes each.
        assert_eq!(prepared.len(), 2 * 16);
        let message = response(&prepared, "SVC.example.COM.", 0);
        assert_eq!(message.answers.len(), 2);
        assert!(message.answers.iter().all(|r| r.name.eq_case(&name("SVC.example.COM."))));
        assert_eq!(message.answers[1].data, RData::A(rdata::A(Ipv4Addr::new(10, 0, 0, 2))));
    }

    #[test]
    fn ttls_count_down_and_stop_at_zero() {
        let records = [a("x.example.", [10, 0, 0, 1], 300), a("x.example.", [10, 0, 0, 2], 20)];
        let soa = Record::from_rdata(
            name("example."),
            100,
            RData::SOA(rdata::SOA::new(name("ns.example."), name("h.example."), 1, 2, 3, 4, 5)),
        );
        let prepared = Prepared::build(
            &name("x.example."),
            RecordType::A,
            ResponseCode::NoError,
            false,
            &records,
            std::slice::from_ref(&soa),
        )
        .unwrap();
        assert_eq!(prepared.min_ttl(), 20);
        let message = response(&prepared, "x.example.", 30);
        let ttls: Vec<u32> = message.answers.iter().chain(&message.authorities).map(|r| r.ttl).collect();
        assert_eq!(ttls, vec![270, 0, 70]);
        assert_eq!(message.authorities[0].data, soa.data, "the SOA's names survive compression");
    }

    #[test]
    fn address_records_can_be_written_in_another_order() {
        let records = [a("x.example.", [10, 0, 0, 1], 60), a("x.example.", [10, 0, 0, 2], 60), a("x.example.", [10, 0, 0, 3], 60)];
        let prepared = Prepared::build(&name("x.example."), RecordType::A, ResponseCode::NoError, true, &records, &[]).unwrap();
        assert_eq!(prepared.record_len(), Some(16));
        let mut out = Vec::new();
        let mut encoder = BinEncoder::new(&mut out);
        let counts = HeaderCounts { queries: 1, answers: 2, authorities: 0, additionals: 0 };
        Header { metadata: Metadata::new(7, MessageType::Response, OpCode::Query), counts }.emit(&mut encoder).unwrap();
        Query::query(name("X.example."), RecordType::A).emit(&mut encoder).unwrap();
        assert!(prepared.write_in([2, 0].into_iter(), &mut out));
        let message = Message::from_bytes(&out).unwrap();
        let ips: Vec<RData> = message.answers.iter().map(|r| r.data.clone()).collect();
        assert_eq!(ips, [RData::A(rdata::A(Ipv4Addr::new(10, 0, 0, 3))), RData::A(rdata::A(Ipv4Addr::new(10, 0, 0, 1)))]);
        let soa = Record::from_rdata(name("x.example."), 5, RData::SOA(rdata::SOA::new(name("a."), name("b."), 1, 2, 3, 4, 5)));
        let nodata = Prepared::build(&name("x.example."), RecordType::A, ResponseCode::NoError, true, &[], &[soa]).unwrap();
        assert_eq!(nodata.record_len(), None, "a negative answer has no records to order");
        assert!(!nodata.write_in([0].into_iter(), &mut out));
    }

    #[test]
    fn compressed_name_lengths() {
        assert_eq!(encoded_name_len(b"\xc0\x0c\x00\x01"), 2);
        assert_eq!(encoded_name_len(b"\x01a\xc0\x0c"), 4);
        assert_eq!(encoded_name_len(b"\x01a\x00\x00\x01"), 3);
    }
}
