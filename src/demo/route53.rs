//! The stand-in's Route 53 side: answers the REST-XML requests of the zone source from the
//! recorded responses. ListResourceRecordSets pages as Route 53 does: the next request starts
//! at the previous page's `NextRecordName`, so a recording whose pages repeat a token makes
//! Route 53's (rare, but seen) repeating-token behaviour reproducible.

use super::{Failure, Route53Responses};

/// Every Route 53 path starts with the API version.
const PREFIX: &str = "/2013-04-01/";

/// Whether `target` (path and query) is a Route 53 request.
pub(super) fn is_route53(target: &str) -> bool {
    target.starts_with(PREFIX)
}

/// The API action a Route 53 request target stands for.
pub(super) fn action(target: &str) -> &'static str {
    let path = target.split('?').next().unwrap_or_default().trim_start_matches(PREFIX);
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["hostedzonesbyvpc"] => "ListHostedZonesByVPC",
        ["hostedzone", _] => "GetHostedZone",
        ["hostedzone", _, "rrset"] => "ListResourceRecordSets",
        _ => "Unknown",
    }
}

/// The status line and XML Route 53 answers `failure` with.
pub(super) fn failure(failure: Failure) -> (&'static str, String) {
    match failure {
        Failure::Throttle => ("400 Bad Request", error_xml("Sender", "Throttling", "Rate exceeded")),
        Failure::ServerError => ("500 Internal Server Error", error_xml("Receiver", "InternalFailure", "An internal error occurred.")),
        Failure::ExpiredCredentials => (
            "403 Forbidden",
            error_xml("Sender", "InvalidClientTokenId", "The security token included in the request is invalid."),
        ),
        // The server never answers a hung request; this is here for completeness.
        Failure::Hang => ("504 Gateway Timeout", error_xml("Receiver", "RequestTimeout", "The request timed out.")),
    }
}

/// The status line and XML for the Route 53 request `target`.
pub(super) fn respond(target: &str, responses: &Route53Responses) -> (&'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |key: &str| query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| decode(v));
    let parts: Vec<&str> = path.trim_start_matches(PREFIX).split('/').collect();
    match parts.as_slice() {
        ["hostedzonesbyvpc"] => {
            let vpc = param("vpcid").unwrap_or_default();
            let xml = responses.zones_by_vpc.get(&vpc).cloned().unwrap_or_else(|| {
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListHostedZonesByVPCResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><HostedZoneSummaries/><MaxItems>100</MaxItems></ListHostedZonesByVPCResponse>".to_owned()
            });
            ("200 OK", xml)
        }
        ["hostedzone", id] => match responses.hosted_zones.get(*id) {
            Some(xml) => ("200 OK", xml.clone()),
            None => no_such_zone(id),
        },
        ["hostedzone", id, "rrset"] => {
            let Some(pages) = responses.record_sets.get(*id) else { return no_such_zone(id) };
            let page = match param("name") {
                None => pages.first(),
                Some(name) => {
                    let marker = format!("<NextRecordName>{name}</NextRecordName>");
                    pages.iter().position(|page| page.contains(&marker)).and_then(|i| pages.get(i + 1))
                }
            };
            match page {
                Some(xml) => ("200 OK", xml.clone()),
                None => ("400 Bad Request", error_xml("Sender", "InvalidInput", "The start record is not in this zone.")),
            }
        }
        _ => ("404 Not Found", error_xml("Sender", "UnknownOperationException", "Unknown operation.")),
    }
}

fn no_such_zone(id: &str) -> (&'static str, String) {
    ("404 Not Found", error_xml("Sender", "NoSuchHostedZone", &format!("No hosted zone found with ID: {id}")))
}

/// Decodes `%XX` escapes of a query parameter.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error_xml(kind: &str, code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>00000000-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_and_paged_as_route53_does() {
        assert_eq!(action("/2013-04-01/hostedzonesbyvpc?vpcid=vpc-1&vpcregion=us-east-1"), "ListHostedZonesByVPC");
        assert_eq!(action("/2013-04-01/hostedzone/Z1"), "GetHostedZone");
        assert_eq!(action("/2013-04-01/hostedzone/Z1/rrset?name=a.example.&type=A"), "ListResourceRecordSets");
        assert_eq!(decode("%5C052.a.example."), "\\052.a.example.");

        let page = |next: &str| format!("<R>{next}</R>");
        let responses = Route53Responses {
            record_sets: [("Z1".to_owned(), vec![page("<NextRecordName>b.example.</NextRecordName>"), page("last")])].into(),
            ..Route53Responses::default()
        };
        assert_eq!(respond("/2013-04-01/hostedzone/Z1/rrset", &responses).1, page("<NextRecordName>b.example.</NextRecordName>"));
        assert_eq!(respond("/2013-04-01/hostedzone/Z1/rrset?name=b.example.&type=A", &responses).1, page("last"));
        assert_eq!(respond("/2013-04-01/hostedzone/Z2/rrset", &responses).0, "404 Not Found");
        let empty = respond("/2013-04-01/hostedzonesbyvpc?vpcid=vpc-9&vpcregion=us-east-1", &responses).1;
        assert!(empty.contains("<HostedZoneSummaries/>"), "{empty}");
    }
}
