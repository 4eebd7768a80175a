//! The fast path: a plain query whose answer is already encoded gets its response by copying.
//!
//! Nearly every query a resolver sees has the same shape: a QUERY with one question of class
//! IN, no records but perhaps an EDNS(0) OPT. When such a query asks for an owned name whose
//! answer the snapshot has pre-encoded, or a forwarded name the cache holds (see
//! [`crate::prepared`]), the response is the query's header turned around, the question as the
//! client sent it, the prepared records, and our OPT. No message is parsed into objects, no
//! record is cloned, nothing is allocated.
//!
//! [`PlainQuery::parse`] accepts only that shape and says `None` to everything else —
//! other opcodes, EDNS versions, classes, compressed or odd names, trailing bytes — which then
//! takes the full path in [`super::handler`]. What it copies is the answer engine's own plan
//! ([`crate::answer::Plan::prepared`]), so it holds no answer rule of its own
//! (ARCHITECTURE.md, "Invariants"); tests check that both paths give the same answers.

use hickory_proto::{
    op::{Header, HeaderCounts, Metadata, MessageType, OpCode},
    rr::{DNSClass, RecordType},
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
};

use crate::{
    name_key::WireKey,
    az::Order,
    prepared::{HEADER_LEN, Prepared},
};

/// Size of an OPT record without options: root name, type, class, TTL, RDLENGTH.
const OPT_FIXED_LEN: usize = 11;

/// The EDNS option code of NSID (RFC 5001 §2.3).
const NSID: u16 = 3;

/// Largest DNS message a client without EDNS accepts over UDP (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// A query of the common shape, read without building a message.
pub struct PlainQuery<'a> {
    header: Header,
    /// The question as sent: name, type, class.
    question: &'a [u8],
    /// The question name's lowercase key.
    key: WireKey,
    /// The question type.
    pub qtype: RecordType,
    /// The client's EDNS UDP payload size, if it sent an OPT.
    pub edns_payload: Option<u16>,
    /// The OPT's DO bit, which the response copies (RFC 3225 §3).
    pub dnssec_ok: bool,
}

impl<'a> PlainQuery<'a> {
    /// Reads `packet` if it is a plain query; `None` sends it down the full path.
    pub fn parse(packet: &'a [u8]) -> Option<Self> {
        let header = Header::read(&mut BinDecoder::new(packet.get(..HEADER_LEN)?)).ok()?;
        let (metadata, counts) = (&header.metadata, &header.counts);
        let plain = metadata.message_type == MessageType::Query
            && metadata.op_code == OpCode::Query
            && !metadata.truncation
            && counts.queries == 1
            && counts.answers == 0
            && counts.authorities == 0
            && counts.additionals <= 1;
        if !plain {
            return None;
        }
        let rest = &packet[HEADER_LEN..];
        let key = WireKey::read(rest)?;
        let fixed = rest.get(key.wire_len()..key.wire_len() + 4)?;
        let qtype = RecordType::from(u16::from_be_bytes([fixed[0], fixed[1]]));
        let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
        // ANY, zone transfers and meta types have answers of their own: the full path.
        if qclass != u16::from(DNSClass::IN) || matches!(qtype, RecordType::ANY | RecordType::AXFR | RecordType::IXFR | RecordType::OPT) {
            return None;
        }
        let question_len = key.wire_len() + 4;
        let additional = &rest[question_len..];
        let (edns_payload, dnssec_ok) = match counts.additionals {
            0 if additional.is_empty() => (None, false),
            1 => {
                let (payload, dnssec_ok) = opt_payload(additional)?;
                (Some(payload), dnssec_ok)
            }
            _ => return None,
        };
        Some(Self { header, question: &rest[..question_len], key, qtype, edns_payload, dnssec_ok })
    }

    /// The question name's lowercase wire key.
    pub fn key(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// Whether the client asked for recursion (RD).
    pub fn recursion_desired(&self) -> bool {
        self.header.metadata.recursion_desired
    }

    /// Whether the client asked that DNSSEC checking be disabled (CD).
    pub fn checking_disabled(&self) -> bool {
        self.header.metadata.checking_disabled
    }

    /// Writes the response to `out`: `prepared` with its TTLs lowered by `age`, and `opt` (our
    /// encoded OPT record, with the query's DO bit) if the query had EDNS. Returns `false`, leaving `out` unspecified, if
    /// the response would not fit in `limit` bytes; the full path then truncates it properly.
    /// With an `order` (AZ affinity), the records go in that order, from a cached answer never.
    pub fn respond(&self, prepared: &Prepared, order: Option<Order<'_>>, age: u32, opt: &[u8], limit: u16, out: &mut Vec<u8>) -> bool {
        let opt = if self.edns_payload.is_some() { opt } else { &[] };
        let (answers, records_len) = match order {
            None => (prepared.answers, prepared.len()),
            Some(order) => {
                let (Some(record_len), Ok(count)) = (prepared.record_len(), u16::try_from(order.count())) else { return false };
                (count, record_len * usize::from(count))
            }
        };
        let len = HEADER_LEN + self.question.len() + records_len + opt.len();
        if len > usize::from(limit) {
            return false;
        }
        let mut metadata = Metadata::response_from_request(&self.header.metadata);
        metadata.response_code = prepared.rcode;
        metadata.authoritative = prepared.authoritative;
        // RFC 6840 §5.8: AD only to a client that set DO or AD.
        metadata.authentic_data = prepared.authentic && (self.dnssec_ok || self.header.metadata.authentic_data);
        metadata.recursion_available = true;
        let counts = HeaderCounts {
            queries: 1,
            answers,
            authorities: prepared.authorities,
            additionals: u16::from(!opt.is_empty()),
        };
        out.clear();
        out.reserve(len);
        // Twelve fixed bytes into a Vec: encoding cannot fail.
        if (Header { metadata, counts }).emit(&mut BinEncoder::new(out)).is_err() {
            return false;
        }
        out.extend_from_slice(self.question);
        match order {
            Some(order) => {
                prepared.write_in(order.indexes(), out);
            }
            None => prepared.write(age, out),
        }
        out.extend_from_slice(opt);
        true
    }

    /// The most bytes a response may have: the client's UDP buffer (at least 512) capped by
    /// ours, or 512 without EDNS; 65535 over TCP.
    pub fn limit(&self, tcp: bool, our_payload: u16) -> u16 {
        match (tcp, self.edns_payload) {
            (true, _) => u16::MAX,
            (false, None) => CLASSIC_UDP_PAYLOAD,
            (false, Some(payload)) => payload.max(CLASSIC_UDP_PAYLOAD).min(our_payload),
        }
    }
}

/// The UDP payload size and DO bit of an EDNS version 0 OPT record that makes up all of
/// `wire`; `None` for anything else (another version, a record that is not OPT, bad option
/// framing).
fn opt_payload(wire: &[u8]) -> Option<(u16, bool)> {
    let fixed = wire.get(..OPT_FIXED_LEN)?;
    let is_opt = fixed[0] == 0 && u16::from_be_bytes([fixed[1], fixed[2]]) == u16::from(RecordType::OPT);
    // TTL bytes: extended RCODE, version, flags. A query's extended RCODE is 0.
    if !is_opt || fixed[5] != 0 || fixed[6] != 0 {
        return None;
    }
    let rdlen = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
    let mut options = wire.get(OPT_FIXED_LEN..)?;
    if options.len() != rdlen {
        return None;
    }
    // Options are code, length, data; they must be well framed, and NSID (code 3, RFC 5001)
    // is answered by the full path.
    while !options.is_empty() {
        let code = u16::from_be_bytes([*options.first()?, *options.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*options.get(2)?, *options.get(3)?]));
        if code == NSID {
            return None;
        }
        options = options.get(4 + len..)?;
    }
    Some((u16::from_be_bytes([fixed[3], fixed[4]]), fixed[7] & 0x80 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (dotted, no trailing dot) of `qtype`, RD set, optional OPT bytes.
    fn query(name: &str, qtype: u16, opt: &[u8]) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(!opt.is_empty())];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
        q.extend_from_slice(opt);
        q
    }

    const OPT: &[u8] = &[0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0];

    #[test]
    fn plain_queries_are_read() {
        let q = query("Svc.Example.com", 1, &[]);
        let plain = PlainQuery::parse(&q).expect("plain");
        assert_eq!(plain.key(), b"\x03svc\x07example\x03com\x00");
        assert_eq!(plain.qtype, RecordType::A);
        assert_eq!(plain.edns_payload, None);
        assert!(plain.recursion_desired());
        assert_eq!(plain.limit(false, 1232), 512);

        let q = query("svc.example.com", 28, OPT);
        let plain = PlainQuery::parse(&q).expect("plain with EDNS");
        assert_eq!(plain.edns_payload, Some(4096));
        assert!(plain.dnssec_ok, "the DO bit is read");
        assert_eq!(plain.limit(false, 1232), 1232);
        assert_eq!(plain.limit(true, 1232), u16::MAX);

        // A cookie option (code 10, 8 bytes) is framed properly: still plain.
        let cookie = [&OPT[..9], &[0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8][..]].concat();
        assert!(PlainQuery::parse(&query("a.b", 1, &cookie)).is_some());
    }

    #[test]
    fn everything_else_takes_the_full_path() {
        let base = query("svc.example.com", 1, &[]);
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut response = base.clone();
        response[2] |= 0x80;
        cases.push(("a response", response));
        let mut notify = base.clone();
        notify[2] = 4 << 3;
        cases.push(("opcode NOTIFY", notify));
        let mut two = base.clone();
        two[5] = 2;
        cases.push(("two questions", two));
        let mut chaos = base.clone();
        let at = chaos.len() - 1;
        chaos[at] = 3;
        cases.push(("class CH", chaos));
        cases.push(("ANY", query("svc.example.com", 255, &[])));
        cases.push(("AXFR", query("svc.example.com", 252, &[])));
        cases.push(("trailing bytes", [&base[..], &[0][..]].concat()));
        cases.push(("truncated question", base[..base.len() - 2].to_vec()));
        cases.push(("EDNS version 1", query("a.b", 1, &[0, 0, 41, 0x10, 0, 0, 1, 0, 0, 0, 0])));
        cases.push(("NSID asked for", query("a.b", 1, &[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 0])));
        cases.push(("OPT with a bad option length", query("a.b", 1, &[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 9])));
        cases.push(("arcount without a record", {
            let mut q = base.clone();
            q[11] = 1;
            q
        }));
        let mut compressed = base[..HEADER_LEN].to_vec();
        compressed.extend_from_slice(&[3, b'a', b'b', b'c', 0xc0, 12, 0, 1, 0, 1]);
        cases.push(("a compressed name", compressed));
        cases.push(("a short header", base[..8].to_vec()));
        for (what, packet) in cases {
            assert!(PlainQuery::parse(&packet).is_none(), "{what} must take the full path");
        }
    }
}
