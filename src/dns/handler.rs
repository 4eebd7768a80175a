//! One query in, one response out: the DNS duties of DESIGN in one place.
//!
//! [`Handler::handle`] is synchronous. It parses the packet, applies the allow list and the
//! protocol checks, and answers owned names straight from the snapshot — so the UDP loop can
//! reply without spawning a task. A name that is not ours becomes a [`ForwardJob`] (holding a
//! slot of the in-flight bound) that [`Handler::forward`] completes asynchronously.
//!
//! Duties, in the order they are checked:
//! - not a query (QR=1), or shorter than a header → dropped (no reflection);
//! - unparsable → FORMERR; client outside the allow list → REFUSED;
//! - opcode other than QUERY → NOTIMP; EDNS version above 0 → BADVERS;
//! - not exactly one question → FORMERR; class other than IN → REFUSED;
//! - AXFR / IXFR → REFUSED; ANY → RFC 8482 minimal answer;
//! - owned name → authoritative answer, NODATA or NXDOMAIN with SOA (RFC 2308), CNAMEs
//!   followed through owned names and then upstream;
//! - not owned and RD=0 → REFUSED; otherwise forwarded.
//!
//! Every response echoes the question bytes as sent (0x20 case) and, when the query had
//! EDNS, an OPT with our payload size. A UDP response that does not fit the client's buffer
//! is replaced by an empty TC=1 response that still carries the OPT (hickory drops it).

use std::{iter, net::SocketAddr, sync::Arc};

use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode},
    rr::{DNSClass, Name, RData, Record, RecordType, rdata::HINFO},
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
};
use hickory_server::{net::xfer::Protocol, server::Request, zone_handler::MessageResponseBuilder};
use tokio::sync::OwnedSemaphorePermit;

use crate::{
    dns::{acl::Acl, forwarder::Forwarder},
    name_key::{key_from_wire, name_key},
    snapshot::{Lookup, SharedSnapshot},
};

/// Most CNAMEs followed through owned names before answering with what we have.
const MAX_CNAME_HOPS: usize = 8;

/// Size of the fixed DNS header.
const HEADER_LEN: usize = 12;

/// Largest DNS message a client without EDNS accepts over UDP (RFC 1035 §4.2.1).
const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// The transport a query came over: it decides how large a response may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: the response must fit the client's buffer, else TC=1.
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

/// What to do with a packet.
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Ask upstream, then send [`Handler::forward`]'s bytes back.
    Forward(Box<ForwardJob>),
    /// Send nothing (not a query at all).
    Drop,
}

/// A query that needs an upstream answer. Holds a slot of `forward.max_in_flight`.
pub struct ForwardJob {
    request: Request,
    transport: Transport,
    /// CNAME records already followed through owned names.
    chain: Vec<Record>,
    /// The name to ask upstream: the query name, or the end of `chain`.
    target: Name,
    qtype: RecordType,
    _permit: OwnedSemaphorePermit,
}

/// Answers queries from the snapshot and the forwarder.
pub struct Handler {
    snapshot: SharedSnapshot,
    forwarder: Arc<Forwarder>,
    acl: Acl,
    /// The OPT we answer EDNS queries with: version 0, our payload size.
    edns: Edns,
    /// TTL of synthesized answers (RFC 8482 HINFO).
    synthesized_ttl: u32,
}

impl Handler {
    /// A handler answering from `snapshot`, forwarding through `forwarder`, serving `acl`.
    pub fn new(
        snapshot: SharedSnapshot,
        forwarder: Arc<Forwarder>,
        acl: Acl,
        max_udp_payload: u16,
        synthesized_ttl: u32,
    ) -> Self {
        let mut edns = Edns::new();
        edns.set_max_payload(max_udp_payload).set_version(0);
        Self { snapshot, forwarder, acl, edns, synthesized_ttl }
    }

    /// Decides what `packet` from `src` gets. Never blocks.
    pub fn handle(&self, packet: &[u8], src: SocketAddr, transport: Transport) -> Outcome {
        // Shorter than a header, or a response (QR, the top bit of byte 2): never answered, so
        // hubdns cannot be used to reflect traffic.
        if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
            return Outcome::Drop;
        }
        let protocol = match transport {
            Transport::Udp => Protocol::Udp,
            Transport::Tcp => Protocol::Tcp,
        };
        let request = match Request::from_bytes(packet.to_vec(), src, protocol) {
            Ok(request) => request,
            Err(error) => {
                let rcode = if self.acl.allows(src.ip()) { ResponseCode::FormErr } else { ResponseCode::Refused };
                tracing::debug!(%src, %error, %rcode, "unparsable query");
                return match Header::read(&mut BinDecoder::new(packet)) {
                    Ok(header) => Outcome::Reply(header_only(&header.metadata, rcode)),
                    Err(_) => Outcome::Drop,
                };
            }
        };
        if !self.acl.allows(src.ip()) {
            return self.reply(&request, transport, ResponseCode::Refused, false, &[], &[]);
        }
        if request.metadata.op_code != OpCode::Query {
            return self.reply(&request, transport, ResponseCode::NotImp, false, &[], &[]);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return self.reply(&request, transport, ResponseCode::BADVERS, false, &[], &[]);
        }
        let [query] = request.queries.queries() else {
            return self.reply(&request, transport, ResponseCode::FormErr, false, &[], &[]);
        };
        let qtype = query.query_type();
        if query.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return self.reply(&request, transport, ResponseCode::Refused, false, &[], &[]);
        }
        // The question's own bytes are the key, lowercased; hickory's parse already checked them.
        let key = key_from_wire(request.queries.as_bytes()).unwrap_or_else(|| name_key(query.name()));
        let snapshot = self.snapshot.load();

        // The common case, answered from the snapshot without copying a record.
        let first = snapshot.lookup(&key, qtype);
        match first {
            Lookup::Found { records, wildcard: false }
                if !is_cname_to_follow(records, qtype) =>
            {
                return self.reply(&request, transport, ResponseCode::NoError, true, records, &[]);
            }
            Lookup::NoData { soa } => {
                return self.reply(&request, transport, ResponseCode::NoError, true, &[], std::slice::from_ref(soa));
            }
            Lookup::NxDomain { soa } => {
                return self.reply(&request, transport, ResponseCode::NXDomain, true, &[], std::slice::from_ref(soa));
            }
            Lookup::NotOwned if qtype == RecordType::ANY => {
                let hinfo = Record::from_rdata(
                    query.original().name().clone(),
                    self.synthesized_ttl,
                    RData::HINFO(HINFO::new("RFC8482".into(), String::new())),
                );
                return self.reply(&request, transport, ResponseCode::NoError, false, &[hinfo], &[]);
            }
            Lookup::NotOwned if !request.metadata.recursion_desired => {
                return self.reply(&request, transport, ResponseCode::Refused, false, &[], &[]);
            }
            _ => {}
        }

        // Wildcards and CNAMEs: build the answer record by record.
        let mut chain: Vec<Record> = Vec::new();
        let mut name = query.original().name().clone();
        let mut key = key;
        let mut current = first;
        for hop in 0..MAX_CNAME_HOPS {
            if hop > 0 {
                current = snapshot.lookup(&key, qtype);
            }
            match current {
                Lookup::Found { records, wildcard } => {
                    let follow = is_cname_to_follow(records, qtype);
                    chain.extend(records.iter().map(|r| {
                        let mut r = r.clone();
                        if wildcard {
                            r.name = name.clone();
                        }
                        r
                    }));
                    if !follow {
                        return self.reply(&request, transport, ResponseCode::NoError, true, &chain, &[]);
                    }
                    name = match &records[0].data {
                        RData::CNAME(target) => target.0.clone(),
                        _ => unreachable!("is_cname_to_follow checked the type"),
                    };
                    key = name_key(&name);
                }
                Lookup::NoData { soa } => {
                    return self.reply(&request, transport, ResponseCode::NoError, true, &chain, std::slice::from_ref(soa));
                }
                Lookup::NxDomain { soa } => {
                    return self.reply(&request, transport, ResponseCode::NXDomain, true, &chain, std::slice::from_ref(soa));
                }
                Lookup::NotOwned if !request.metadata.recursion_desired => {
                    return self.reply(&request, transport, ResponseCode::NoError, true, &chain, &[]);
                }
                Lookup::NotOwned => {
                    let Some(permit) = self.forwarder.try_permit() else {
                        tracing::debug!(%src, "forward refused: max_in_flight reached");
                        return self.reply(&request, transport, ResponseCode::ServFail, false, &[], &[]);
                    };
                    return Outcome::Forward(Box::new(ForwardJob {
                        request,
                        transport,
                        chain,
                        target: name,
                        qtype,
                        _permit: permit,
                    }));
                }
            }
        }
        tracing::debug!(%src, "CNAME chain longer than {MAX_CNAME_HOPS} owned hops");
        self.reply(&request, transport, ResponseCode::NoError, true, &chain, &[])
    }

    /// Completes a forward: asks upstream and encodes the response.
    pub async fn forward(&self, job: Box<ForwardJob>) -> Vec<u8> {
        let forwarded = self.forwarder.forward(&job.target, job.qtype).await;
        let job = *job;
        let mut answers = job.chain;
        answers.extend(forwarded.answers);
        self.encode(&job.request, job.transport, forwarded.rcode, false, &answers, &forwarded.authorities)
    }

    fn reply(
        &self,
        request: &Request,
        transport: Transport,
        rcode: ResponseCode,
        authoritative: bool,
        answers: &[Record],
        authorities: &[Record],
    ) -> Outcome {
        Outcome::Reply(self.encode(request, transport, rcode, authoritative, answers, authorities))
    }

    /// Encodes a response, truncating it properly for UDP when it does not fit.
    fn encode(
        &self,
        request: &Request,
        transport: Transport,
        rcode: ResponseCode,
        authoritative: bool,
        answers: &[Record],
        authorities: &[Record],
    ) -> Vec<u8> {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = rcode;
        metadata.authoritative = authoritative;
        metadata.recursion_available = true;
        let edns = request.edns.as_ref().map(|_| &self.edns);
        let limit = match (transport, &request.edns) {
            (Transport::Tcp, _) => u16::MAX,
            (Transport::Udp, None) => CLASSIC_UDP_PAYLOAD,
            (Transport::Udp, Some(_)) => request.max_payload().min(self.edns.max_payload()),
        };

        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(limit);
        let response = MessageResponseBuilder::new(&request.queries, edns).build(
            metadata,
            answers,
            authorities,
            iter::empty(),
            iter::empty(),
        );
        match response.destructive_emit(&mut encoder) {
            Ok(info) if !info.truncation => return bytes,
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "response did not encode whole; truncating"),
        }
        if transport == Transport::Tcp {
            // Over TCP only a message above 64 KiB fails to fit: say so rather than send half.
            return header_only(&metadata, ResponseCode::ServFail);
        }
        // Did not fit: an empty TC=1 answer, OPT kept, so the client retries over TCP.
        metadata.truncation = true;
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        match MessageResponseBuilder::new(&request.queries, edns).build_no_records(metadata).destructive_emit(&mut encoder) {
            Ok(_) => bytes,
            Err(error) => {
                tracing::warn!(%error, "cannot encode even a truncated response");
                header_only(&metadata, ResponseCode::ServFail)
            }
        }
    }
}

/// Whether `records` is a CNAME that must be followed to answer `qtype`.
fn is_cname_to_follow(records: &[Record], qtype: RecordType) -> bool {
    !matches!(qtype, RecordType::CNAME | RecordType::ANY)
        && records.first().is_some_and(|r| r.record_type() == RecordType::CNAME)
}

/// A response of just a header, for queries too broken to echo.
fn header_only(request: &Metadata, rcode: ResponseCode) -> Vec<u8> {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = rcode;
    metadata.recursion_available = true;
    let header = Header { metadata, counts: HeaderCounts::default() };
    // Encoding twelve fixed bytes into a Vec cannot fail.
    header.to_bytes().unwrap_or_default()
}
