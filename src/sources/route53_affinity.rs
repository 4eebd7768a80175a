//! Route 53's AZ-affinity routing policy, which the pinned `aws-sdk-route53` does not know.
//!
//! A record set of that policy carries an `AZAffinity` element (Route 53 API reference,
//! data type `AZAffinity`) with a `LocationType` (`AvailabilityZone`,
//! `AvailabilityZoneGroup`, `Region`, `Partition`, `Global`) and a `LocationId`
//! (`use1-az1`, `us-east-1-zg-1`, `us-east-1`, `aws`, …). The SDK's XML parser skips elements
//! its model lacks, so such sets reach hubdns as sets with a `SetIdentifier` and no policy.
//!
//! This module reads the element from the raw ListResourceRecordSets body:
//! - [`parse_affinities`] is the pure parser (aws-smithy-xml, the SDK's own XML reader, so
//!   names are unescaped exactly as the SDK unescapes the `Name` it hands back);
//! - [`AffinityTaps`] is an SDK interceptor that runs it on the body of one call, in
//!   `read_after_deserialization` (the body is still buffered there: the orchestrator reads a
//!   non-streaming response whole into the `HttpResponse` before deserializing it), and keeps
//!   the result in a sink of its own;
//! - [`send_with_affinities`] attaches a fresh tap to one call (`.customize().interceptor`)
//!   and returns the page together with its affinities.
//!
//! Why a per-call sink: the SDK gives a caller nothing but the modelled output back — the
//! config bag dies with the operation, and `ListResourceRecordSetsOutput` has no extension
//! map to stash extra data in. A tap created for one call and attached with `.customize()`
//! sees that call's attempts alone, so concurrent calls on one client (zones read at once)
//! cannot see each other's bodies, and no key (zone id, start record) has to be invented.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use aws_sdk_route53::{
    config::{ConfigBag, Intercept, RuntimeComponents, http::HttpResponse, interceptors::AfterDeserializationInterceptorContextRef},
    error::{BoxError, SdkError},
    operation::list_resource_record_sets::{
        ListResourceRecordSetsError, ListResourceRecordSetsOutput, builders::ListResourceRecordSetsFluentBuilder,
    },
    types::ResourceRecordSet,
};
use aws_smithy_xml::decode::{Document, ScopedDecoder, try_data};

pub use crate::az::{Location, LocationType};

/// A record set of a zone, as Route 53 keeps set identifiers unique per name and type:
/// (name, type, set identifier) as the SDK hands them back.
pub type SetKey = (String, String, String);

/// The key of `set`; `None` for a set without a set identifier (no routing policy).
pub fn set_key(set: &ResourceRecordSet) -> Option<SetKey> {
    Some((set.name().to_owned(), set.r#type().as_str().to_owned(), set.set_identifier()?.to_owned()))
}

/// An AZ-affinity record set as the body named it. `name`, `rtype` and `set_identifier` are
/// the strings the SDK hands back for the same set (`ResourceRecordSet::name`,
/// `r#type().as_str()`, `set_identifier`): Route 53's octal escapes kept, XML entities
/// decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    /// `Name`.
    pub name: String,
    /// `Type`.
    pub rtype: String,
    /// `SetIdentifier`.
    pub set_identifier: String,
    /// `AZAffinity`: its `LocationType` and `LocationId` (as sent; the API asks for lowercase).
    pub affinity: Location,
}

/// What one ListResourceRecordSets page says of AZ affinity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageAffinities {
    /// The AZ-affinity record sets, in body order.
    pub records: Vec<Affinity>,
    /// `AZAffinity` elements left out, and why (no `LocationType` or `LocationId`, an unknown
    /// `LocationType`, a set without `Name`, `Type` or `SetIdentifier`).
    pub skipped: Vec<String>,
}

impl PageAffinities {
    /// The affinity of the set named (name, type, set identifier as the SDK hands them back).
    pub fn get(&self, name: &str, rtype: &str, set_identifier: &str) -> Option<&Location> {
        self.records
            .iter()
            .find(|r| r.name == name && r.rtype == rtype && r.set_identifier == set_identifier)
            .map(|r| &r.affinity)
    }

    /// The affinity of `set`, one of the sets the SDK parsed from the same body.
    pub fn of(&self, set: &ResourceRecordSet) -> Option<&Location> {
        self.get(set.name(), set.r#type().as_str(), set.set_identifier()?)
    }

    /// By [`SetKey`].
    pub fn into_map(self) -> HashMap<SetKey, Location> {
        self.records.into_iter().map(|r| ((r.name, r.rtype, r.set_identifier), r.affinity)).collect()
    }
}

/// Why a body's affinities could not be read (the whole body: nothing from it is trusted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AffinityError {
    /// Not well-formed XML, or a value where an element was expected.
    #[error("ListResourceRecordSets body: {0}")]
    Xml(String),
    /// Another response than ListResourceRecordSets's.
    #[error("ListResourceRecordSets body: the root element is {0:?}, not ListResourceRecordSetsResponse")]
    Root(String),
    /// The SDK did not hand the interceptor a buffered body (it would have to stream it).
    #[error("ListResourceRecordSets body was not buffered when the interceptor read it")]
    NotBuffered,
}

impl From<aws_smithy_xml::decode::XmlDecodeError> for AffinityError {
    fn from(error: aws_smithy_xml::decode::XmlDecodeError) -> Self {
        Self::Xml(error.to_string())
    }
}

/// The AZ-affinity record sets of a ListResourceRecordSets response body. Pure.
///
/// Elements are found by local name under `ListResourceRecordSetsResponse` /
/// `ResourceRecordSets` / `ResourceRecordSet`, in any order, anything else skipped (as the
/// SDK does). An `AZAffinity` without a `LocationType` or `LocationId` (the API requires
/// both), with an unknown `LocationType`, or on a set without `Name`, `Type` or
/// `SetIdentifier` is left out with its reason in [`PageAffinities::skipped`].
pub fn parse_affinities(xml: &[u8]) -> Result<PageAffinities, AffinityError> {
    let mut doc = Document::try_from(xml)?;
    let mut root = doc.root_element()?;
    if !root.start_el().matches("ListResourceRecordSetsResponse") {
        return Err(AffinityError::Root(root.start_el().local().to_owned()));
    }
    let mut page = PageAffinities::default();
    while let Some(mut tag) = root.next_tag() {
        if !tag.start_el().matches("ResourceRecordSets") {
            continue;
        }
        while let Some(mut set) = tag.next_tag() {
            if set.start_el().matches("ResourceRecordSet") {
                read_set(&mut set, &mut page)?;
            }
        }
    }
    Ok(page)
}

/// One `ResourceRecordSet`: its key and, if it has one, its `AZAffinity`.
fn read_set(set: &mut ScopedDecoder<'_, '_>, page: &mut PageAffinities) -> Result<(), AffinityError> {
    let (mut name, mut rtype, mut identifier) = (None, None, None);
    // Each AZAffinity element: (LocationType, LocationId) as found.
    let mut affinities: Vec<(Option<String>, Option<String>)> = Vec::new();
    while let Some(mut field) = set.next_tag() {
        let el = field.start_el();
        if el.matches("Name") {
            name = Some(try_data(&mut field)?.into_owned());
        } else if el.matches("Type") {
            rtype = Some(try_data(&mut field)?.into_owned());
        } else if el.matches("SetIdentifier") {
            identifier = Some(try_data(&mut field)?.into_owned());
        } else if el.matches("AZAffinity") {
            let (mut location_type, mut location_id) = (None, None);
            while let Some(mut part) = field.next_tag() {
                if part.start_el().matches("LocationType") {
                    location_type = Some(try_data(&mut part)?.trim().to_owned()).filter(|t| !t.is_empty());
                } else if part.start_el().matches("LocationId") {
                    location_id = Some(try_data(&mut part)?.trim().to_owned()).filter(|t| !t.is_empty());
                }
            }
            affinities.push((location_type, location_id));
        }
    }
    if affinities.is_empty() {
        return Ok(());
    }
    let label = format!(
        "{} {} set {:?}",
        name.as_deref().unwrap_or("(no Name)"),
        rtype.as_deref().unwrap_or("(no Type)"),
        identifier.as_deref().unwrap_or("(none)")
    );
    let (Some(name), Some(rtype), Some(set_identifier)) = (name, rtype, identifier) else {
        page.skipped.push(format!("{label}: AZAffinity on a record set without Name, Type or SetIdentifier"));
        return Ok(());
    };
    if affinities.len() > 1 {
        page.skipped.push(format!("{label}: {} AZAffinity elements, one expected", affinities.len()));
        return Ok(());
    }
    let reason = match affinities.pop() {
        Some((None, _)) => "AZAffinity without LocationType".to_owned(),
        Some((_, None)) => "AZAffinity without LocationId".to_owned(),
        Some((Some(text), Some(location_id))) => match LocationType::parse(&text) {
            Some(location_type) => {
                let affinity = Location { kind: location_type, id: Arc::from(location_id) };
                page.records.push(Affinity { name, rtype, set_identifier, affinity });
                return Ok(());
            }
            None => format!("AZAffinity with an unknown LocationType {text:?}"),
        },
        None => return Ok(()),
    };
    page.skipped.push(format!("{label}: {reason}"));
    Ok(())
}

/// An SDK interceptor that reads the AZ affinities of the ListResourceRecordSets body of the
/// one call it is attached to (`.customize().interceptor(taps.clone())`), for that call's
/// caller to [`take`](Self::take) after `send()`. Clones share one sink: keep one clone,
/// give the other to the call. Attached to any other operation, it does nothing.
///
/// Each attempt that ends in a ListResourceRecordSets output replaces what the sink holds;
/// attempts that end in an error leave it alone, so after a retried call the sink holds the
/// answer the SDK returned.
#[derive(Debug, Clone, Default)]
pub struct AffinityTaps {
    sink: Arc<Mutex<Option<Result<PageAffinities, AffinityError>>>>,
}

impl AffinityTaps {
    /// A tap with an empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the call's body said, once: `None` when no ListResourceRecordSets output was seen
    /// (the call failed, or the tap was not attached).
    pub fn take(&self) -> Option<Result<PageAffinities, AffinityError>> {
        self.sink.lock().ok()?.take()
    }

    fn put(&self, value: Result<PageAffinities, AffinityError>) {
        if let Ok(mut sink) = self.sink.lock() {
            *sink = Some(value);
        }
    }
}

impl Intercept for AffinityTaps {
    fn name(&self) -> &'static str {
        "hubdns::AffinityTaps"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Only a body the SDK read as a ListResourceRecordSets answer (not an error body, not
        // another operation's).
        let Ok(output) = context.output_or_error() else { return Ok(()) };
        if output.downcast_ref::<ListResourceRecordSetsOutput>().is_none() {
            return Ok(());
        }
        self.put(match context.response().body().bytes() {
            Some(body) => parse_affinities(body),
            None => Err(AffinityError::NotBuffered),
        });
        Ok(())
    }
}

/// Sends one ListResourceRecordSets call with its own [`AffinityTaps`] and returns the page
/// and what its body said of AZ affinity. The SDK's error is returned as is (the caller
/// classifies it as before); an affinity error beside a good page means the body could not be
/// read for affinities, and the caller should not serve the page's sets as if it had none.
pub async fn send_with_affinities(
    call: ListResourceRecordSetsFluentBuilder,
) -> Result<(ListResourceRecordSetsOutput, Result<PageAffinities, AffinityError>), SdkError<ListResourceRecordSetsError, HttpResponse>> {
    let taps = AffinityTaps::new();
    let output = call.customize().interceptor(taps.clone()).send().await?;
    let affinities = taps.take().unwrap_or(Err(AffinityError::NotBuffered));
    Ok((output, affinities))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_route53::{Client, config::{BehaviorVersion, Credentials, Region}, types::RrType};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
        sync::Barrier,
    };

    use super::*;

    /// A ListResourceRecordSets body shaped as the API reference's response syntax
    /// (ListResourceRecordSets, "Response Syntax"; ResourceRecordSet; AZAffinity), with every
    /// location type, an alias set, elements out of the reference's order, unknown elements,
    /// and the AZAffinity elements a server must never send (left out with a reason).
    const BODY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
   <ResourceRecordSets>
      <ResourceRecordSet>
         <Name>corp.example.</Name>
         <Type>SOA</Type>
         <TTL>900</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400</Value></ResourceRecord>
         </ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>api.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>api-use1-az1</SetIdentifier>
         <AZAffinity>
            <LocationType>AvailabilityZone</LocationType>
            <LocationId>use1-az1</LocationId>
         </AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>10.0.1.10</Value></ResourceRecord>
         </ResourceRecords>
         <HealthCheckId>abcdef11-2222-3333-4444-555555fedcba</HealthCheckId>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>api.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>api-use1-az2</SetIdentifier>
         <AZAffinity>
            <LocationId>use1-az2</LocationId>
            <LocationType>AvailabilityZone</LocationType>
         </AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>10.0.2.10</Value></ResourceRecord>
         </ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>api.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>api-zg1</SetIdentifier>
         <AZAffinity>
            <LocationType>AvailabilityZoneGroup</LocationType>
            <LocationId>us-east-1-zg-1</LocationId>
         </AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>10.0.3.10</Value></ResourceRecord>
         </ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <TTL>60</TTL>
         <AZAffinity>
            <LocationType>AvailabilityZoneGroup</LocationType>
            <LocationId>us-west-2-zg-1</LocationId>
         </AZAffinity>
         <ResourceRecords>
            <ResourceRecord><Value>10.8.3.10</Value></ResourceRecord>
         </ResourceRecords>
         <SetIdentifier>api-usw2-zg1</SetIdentifier>
         <Type>A</Type>
         <Name>api.corp.example.</Name>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>api.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>api-use1</SetIdentifier>
         <AZAffinity>
            <LocationType>Region</LocationType>
            <LocationId>us-east-1</LocationId>
         </AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>10.0.4.10</Value></ResourceRecord>
         </ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>api.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>api-usw2</SetIdentifier>
         <AZAffinity>
            <LocationType>Region</LocationType>
            <LocationId>us-west-2</LocationId>
         </AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>10.8.4.10</Value></ResourceRecord>
         </ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>api.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>api-aws</SetIdentifier>
         <AZAffinity>
            <LocationType>Partition</LocationType>
            <LocationId>aws</LocationId>
         </AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>10.9.0.10</Value></ResourceRecord>
         </ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>api.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>api-global</SetIdentifier>
         <AZAffinity>
            <LocationType>Global</LocationType>
            <LocationId>global</LocationId>
         </AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>10.9.9.10</Value></ResourceRecord>
         </ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>\052.svc.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>svc-use1-az4</SetIdentifier>
         <AZAffinity>
            <LocationType>AvailabilityZone</LocationType>
            <LocationId>use1-az4</LocationId>
            <FutureField>ignored</FutureField>
         </AZAffinity>
         <AliasTarget>
            <HostedZoneId>Z26RNL4JYFTOTI</HostedZoneId>
            <DNSName>use1-az4.nlb-0123456789abcdef.elb.us-east-1.amazonaws.com.</DNSName>
            <EvaluateTargetHealth>true</EvaluateTargetHealth>
         </AliasTarget>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>\052.svc.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>svc-partition</SetIdentifier>
         <AZAffinity>
            <LocationType>Partition</LocationType>
            <LocationId>aws-us-gov</LocationId>
         </AZAffinity>
         <AliasTarget>
            <HostedZoneId>Z26RNL4JYFTOTI</HostedZoneId>
            <DNSName>nlb-0123456789abcdef.elb.us-east-1.amazonaws.com.</DNSName>
            <EvaluateTargetHealth>true</EvaluateTargetHealth>
         </AliasTarget>
         <SomethingNew><Nested>x</Nested></SomethingNew>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>\052.svc.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>svc-global</SetIdentifier>
         <AZAffinity>
            <LocationType>Global</LocationType>
            <LocationId>global</LocationId>
         </AZAffinity>
         <AliasTarget>
            <HostedZoneId>Z0C0RP5EXAMPLE1DEMO0</HostedZoneId>
            <DNSName>api.corp.example.</DNSName>
            <EvaluateTargetHealth>false</EvaluateTargetHealth>
         </AliasTarget>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>weighted.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>blue</SetIdentifier>
         <Weight>10</Weight>
         <TTL>60</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>10.0.5.10</Value></ResourceRecord>
         </ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>bad.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>no-id</SetIdentifier>
         <AZAffinity><LocationType>Region</LocationType></AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords><ResourceRecord><Value>10.0.6.1</Value></ResourceRecord></ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>bad.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>no-type</SetIdentifier>
         <AZAffinity><LocationId>use1-az1</LocationId></AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords><ResourceRecord><Value>10.0.6.2</Value></ResourceRecord></ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>bad.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>unknown-type</SetIdentifier>
         <AZAffinity><LocationType>LocalZone</LocationType><LocationId>use1-bos1-az1</LocationId></AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords><ResourceRecord><Value>10.0.6.3</Value></ResourceRecord></ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>bad.corp.example.</Name>
         <Type>A</Type>
         <SetIdentifier>lowercase-type</SetIdentifier>
         <AZAffinity><LocationType>region</LocationType><LocationId>us-east-1</LocationId></AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords><ResourceRecord><Value>10.0.6.4</Value></ResourceRecord></ResourceRecords>
      </ResourceRecordSet>
      <ResourceRecordSet>
         <Name>bad.corp.example.</Name>
         <Type>A</Type>
         <AZAffinity><LocationType>Region</LocationType><LocationId>us-east-1</LocationId></AZAffinity>
         <TTL>60</TTL>
         <ResourceRecords><ResourceRecord><Value>10.0.6.5</Value></ResourceRecord></ResourceRecords>
      </ResourceRecordSet>
   </ResourceRecordSets>
   <IsTruncated>false</IsTruncated>
   <MaxItems>300</MaxItems>
</ListResourceRecordSetsResponse>"#;

    const GET_HOSTED_ZONE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<GetHostedZoneResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><HostedZone><Id>/hostedzone/ZONE1</Id><Name>corp.example.</Name><CallerReference>demo</CallerReference><Config><PrivateZone>true</PrivateZone></Config><ResourceRecordSetCount>18</ResourceRecordSetCount></HostedZone></GetHostedZoneResponse>"#;

    fn found(page: &PageAffinities) -> Vec<(&str, &str, &str, LocationType, &str)> {
        page.records
            .iter()
            .map(|r| (r.name.as_str(), r.rtype.as_str(), r.set_identifier.as_str(), r.affinity.kind, &*r.affinity.id))
            .collect()
    }

    #[test]
    fn every_location_type_is_read_in_any_element_order() {
        use LocationType::*;
        let page = parse_affinities(BODY.as_bytes()).expect("parses");
        assert_eq!(
            found(&page),
            [
                ("api.corp.example.", "A", "api-use1-az1", AvailabilityZone, "use1-az1"),
                ("api.corp.example.", "A", "api-use1-az2", AvailabilityZone, "use1-az2"),
                ("api.corp.example.", "A", "api-zg1", AvailabilityZoneGroup, "us-east-1-zg-1"),
                ("api.corp.example.", "A", "api-usw2-zg1", AvailabilityZoneGroup, "us-west-2-zg-1"),
                ("api.corp.example.", "A", "api-use1", Region, "us-east-1"),
                ("api.corp.example.", "A", "api-usw2", Region, "us-west-2"),
                ("api.corp.example.", "A", "api-aws", Partition, "aws"),
                ("api.corp.example.", "A", "api-global", Global, "global"),
                ("\\052.svc.corp.example.", "A", "svc-use1-az4", AvailabilityZone, "use1-az4"),
                ("\\052.svc.corp.example.", "A", "svc-partition", Partition, "aws-us-gov"),
                ("\\052.svc.corp.example.", "A", "svc-global", Global, "global"),
            ]
        );
        let skipped = page.skipped.join("\n");
        for (set, reason) in [
            ("no-id", "without LocationId"),
            ("no-type", "without LocationType"),
            ("unknown-type", "unknown LocationType \"LocalZone\""),
            ("lowercase-type", "unknown LocationType \"region\""),
            ("(none)", "without Name, Type or SetIdentifier"),
        ] {
            assert!(page.skipped.iter().any(|s| s.contains(&format!("{set:?}")) && s.contains(reason)), "{set}: {skipped}");
        }
        assert_eq!(page.skipped.len(), 5, "{skipped}");
        // The weighted set has no affinity; lookups are by the SDK's strings.
        assert_eq!(page.get("weighted.corp.example.", "A", "blue"), None);
        assert_eq!(
            page.get("\\052.svc.corp.example.", "A", "svc-global"),
            Some(&Location { kind: Global, id: Arc::from("global") })
        );
        assert_eq!(page.clone().into_map().len(), 11);
    }

    #[test]
    fn location_types_order_most_specific_first() {
        let mut shuffled = [LocationType::Global, LocationType::Region, LocationType::AvailabilityZone, LocationType::Partition, LocationType::AvailabilityZoneGroup];
        shuffled.sort();
        assert_eq!(shuffled, LocationType::ALL);
        for t in LocationType::ALL {
            assert_eq!(LocationType::parse(t.as_str()), Some(t));
        }
        assert_eq!(LocationType::parse("global"), None);
    }

    #[test]
    fn bad_bodies_are_errors_and_plain_ones_have_no_affinities() {
        for bad in [
            &b""[..],
            b"not xml",
            b"<ListResourceRecordSetsResponse><ResourceRecordSets><ResourceRecordSet><Name>&bogus;</Name><AZAffinity/></ResourceRecordSet></ResourceRecordSets></ListResourceRecordSetsResponse>",
            b"<ListResourceRecordSetsResponse><ResourceRecordSets><ResourceRecordSet><Name><x/></Name></ResourceRecordSet></ResourceRecordSets></ListResourceRecordSetsResponse>",
        ] {
            assert!(matches!(parse_affinities(bad), Err(AffinityError::Xml(_))), "{}", String::from_utf8_lossy(bad));
        }
        // Like the SDK's own parse (the same reader), a body cut short ends where it ends:
        // HTTP's Content-Length, which the SDK checks, is what catches a cut body.
        assert_eq!(parse_affinities(b"<ListResourceRecordSetsResponse><ResourceRecordSets>"), Ok(PageAffinities::default()));
        assert_eq!(
            parse_affinities(b"<GetHostedZoneResponse/>"),
            Err(AffinityError::Root("GetHostedZoneResponse".into()))
        );
        let plain = r#"<ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ResourceRecordSets/><IsTruncated>false</IsTruncated><MaxItems>300</MaxItems></ListResourceRecordSetsResponse>"#;
        assert_eq!(parse_affinities(plain.as_bytes()), Ok(PageAffinities::default()));
        // Two AZAffinity elements on one set: neither is trusted.
        let twice = r#"<ListResourceRecordSetsResponse><ResourceRecordSets><ResourceRecordSet><Name>a.</Name><Type>A</Type><SetIdentifier>x</SetIdentifier><AZAffinity><LocationType>Region</LocationType><LocationId>us-east-1</LocationId></AZAffinity><AZAffinity><LocationType>Global</LocationType><LocationId>global</LocationId></AZAffinity></ResourceRecordSet></ResourceRecordSets></ListResourceRecordSetsResponse>"#;
        let page = parse_affinities(twice.as_bytes()).expect("parses");
        assert!(page.records.is_empty() && page.skipped[0].contains("2 AZAffinity elements"), "{page:?}");
        // XML entities are decoded as the SDK decodes them.
        let escaped = r#"<ListResourceRecordSetsResponse><ResourceRecordSets><ResourceRecordSet><Name>a&amp;b.</Name><Type>TXT</Type><SetIdentifier>&lt;1&gt;</SetIdentifier><AZAffinity><LocationType>Global</LocationType><LocationId>global</LocationId></AZAffinity></ResourceRecordSet></ResourceRecordSets></ListResourceRecordSetsResponse>"#;
        let page = parse_affinities(escaped.as_bytes()).expect("parses");
        assert!(page.get("a&b.", "TXT", "<1>").is_some(), "{page:?}");
    }

    /// Zone id → body, answered only once `barrier` has seen every expected request, so the
    /// calls are in flight together. Returns the endpoint URL.
    async fn serve(bodies: Vec<(&'static str, String)>, barrier: Arc<Barrier>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let bodies = Arc::new(bodies);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (bodies, barrier) = (bodies.clone(), barrier.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
                    let (status, body) = match bodies.iter().find(|(zone, _)| line.contains(&format!("/hostedzone/{zone}/rrset"))) {
                        Some((_, body)) => ("200 OK", body.clone()),
                        // GetHostedZone of a served zone: another operation's good answer.
                        None if bodies.iter().any(|(zone, _)| line.contains(&format!("/hostedzone/{zone} "))) => ("200 OK", GET_HOSTED_ZONE.to_owned()),
                        None => ("404 Not Found", "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>NoSuchHostedZone</Code><Message>No hosted zone found</Message></Error><RequestId>00000000-0000-4000-8000-000000000000</RequestId></ErrorResponse>".to_owned()),
                    };
                    barrier.wait().await;
                    let head = format!("HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nx-amzn-RequestId: 1\r\nConnection: close\r\n\r\n", body.len());
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        url
    }

    fn client(url: &str) -> Client {
        let config = aws_sdk_route53::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("hubdns-local", "hubdns-local", None, None, "hubdns-test"))
            .endpoint_url(url)
            .retry_config(aws_sdk_route53::config::retry::RetryConfig::disabled())
            .build();
        Client::from_conf(config)
    }

    /// A page of one AZ-affinity set, `name` and `location` differing per zone.
    fn page(name: &str, set: &str, location_type: &str, location_id: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ResourceRecordSets><ResourceRecordSet><Name>{name}</Name><Type>A</Type><SetIdentifier>{set}</SetIdentifier><AZAffinity><LocationType>{location_type}</LocationType><LocationId>{location_id}</LocationId></AZAffinity><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>10.0.0.1</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></ResourceRecordSets><IsTruncated>false</IsTruncated><MaxItems>300</MaxItems></ListResourceRecordSetsResponse>"#
        )
    }

    #[tokio::test]
    async fn the_real_sdk_call_hands_back_its_own_affinities() {
        let url = serve(vec![("ZONE1", BODY.to_owned())], Arc::new(Barrier::new(1))).await;
        let client = client(&url);
        let (output, affinities) = send_with_affinities(client.list_resource_record_sets().hosted_zone_id("ZONE1")).await.expect("call");
        let affinities = affinities.expect("affinities");
        assert_eq!(affinities, parse_affinities(BODY.as_bytes()).expect("parses"));
        // Every affinity names a set the SDK parsed from the same body, and the SDK saw none.
        let sets = output.resource_record_sets();
        for record in &affinities.records {
            assert!(
                sets.iter().any(|s| s.name() == record.name && s.r#type().as_str() == record.rtype && s.set_identifier() == Some(&record.set_identifier)),
                "{record:?}"
            );
        }
        let with_affinity: Vec<_> = sets.iter().filter(|s| affinities.of(s).is_some()).collect();
        assert_eq!(with_affinity.len(), 11);
        assert!(with_affinity.iter().all(|s| s.weight().is_none() && s.region().is_none() && s.geo_location().is_none()));
        assert_eq!(sets.iter().find(|s| s.set_identifier() == Some("blue")).and_then(|s| affinities.of(s)), None);
        assert_eq!(sets.iter().find(|s| s.r#type() == &RrType::Soa).and_then(|s| affinities.of(s)), None);

        // A failed call: the SDK's error, and the tap saw no answer.
        let taps = AffinityTaps::new();
        let error = client.list_resource_record_sets().hosted_zone_id("ZGONE").customize().interceptor(taps.clone()).send().await;
        assert!(error.is_err());
        assert_eq!(taps.take(), None);
        // Another operation through the tap: ignored.
        let taps = AffinityTaps::new();
        let zone = client.get_hosted_zone().id("ZONE1").customize().interceptor(taps.clone()).send().await.expect("GetHostedZone");
        assert_eq!(zone.hosted_zone().map(|z| z.name()), Some("corp.example."));
        assert_eq!(taps.take(), None);
    }

    #[tokio::test]
    async fn concurrent_calls_on_one_client_each_get_their_own() {
        use LocationType::*;
        let bodies = vec![
            ("ZONEA", page("a.corp.example.", "a-az1", "AvailabilityZone", "use1-az1")),
            ("ZONEB", page("b.other.example.", "b-global", "Global", "global")),
        ];
        // Neither answer leaves before both requests have arrived.
        let url = serve(bodies, Arc::new(Barrier::new(2))).await;
        let client = client(&url);
        let both = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(
                send_with_affinities(client.list_resource_record_sets().hosted_zone_id("ZONEA")),
                send_with_affinities(client.list_resource_record_sets().hosted_zone_id("ZONEB")),
            )
        })
        .await
        .expect("both calls in flight together");
        let (a, b) = (both.0.expect("call A").1.expect("A"), both.1.expect("call B").1.expect("B"));
        assert_eq!(found(&a), [("a.corp.example.", "A", "a-az1", AvailabilityZone, "use1-az1")]);
        assert_eq!(found(&b), [("b.other.example.", "A", "b-global", Global, "global")]);
    }
}
