//! The stand-in's EC2 side: answers the form-encoded EC2 Query requests of the endpoint source
//! from the recorded responses, paging DescribeVpcEndpoints, filtering
//! DescribeNetworkInterfaces by id, DescribeVpcEndpointServices by name (a name EC2 does not
//! know fails the call with `InvalidServiceName`) and DescribeVpcEndpointAssociations by
//! endpoint id, and DescribeSubnets by VPC or subnet id, as EC2 does.

use std::collections::HashSet;

use super::{Failure, Responses};

/// The `Action=` of a form-encoded EC2 Query request.
pub(super) fn action(body: &str) -> &str {
    body.split('&').find_map(|pair| pair.strip_prefix("Action=")).unwrap_or("")
}

/// The status line and XML EC2 answers `failure` with.
pub(super) fn failure(failure: Failure) -> (&'static str, String) {
    match failure {
        Failure::Throttle => ("503 Service Unavailable", error_xml("RequestLimitExceeded", "Request limit exceeded.")),
        Failure::ServerError => ("500 Internal Server Error", error_xml("InternalError", "An internal error has occurred")),
        Failure::ExpiredCredentials => {
            ("401 Unauthorized", error_xml("AuthFailure", "AWS was not able to validate the provided access credentials"))
        }
        // The server never answers a hung request; this is here for completeness.
        Failure::Hang => ("504 Gateway Timeout", error_xml("RequestTimeout", "The request timed out.")),
    }
}

/// The status line and XML for EC2 `action` with form `body`, asked by `account`.
pub(super) fn respond(action: &str, body: &str, responses: &Responses, account: &str) -> (&'static str, String) {
    let params = || body.split('&').filter_map(|pair| pair.split_once('='));
    // Filter.N.Name=…&Filter.N.Value.M=…: the values asked for, whatever the filter's name.
    let filtered = || params().filter(|(k, _)| k.starts_with("Filter.") && k.contains(".Value.")).map(|(_, v)| v).collect::<HashSet<&str>>();
    match action {
        "DescribeVpcEndpoints" => {
            let page = params()
                .find(|(k, _)| *k == "NextToken")
                .and_then(|(_, v)| v.strip_prefix("page-")?.parse::<usize>().ok())
                .unwrap_or(0);
            // Filter vpc-id (and tag filters, which the recordings' endpoints are taken to match).
            let vpcs: HashSet<&str> = filtered().into_iter().filter(|v| v.starts_with("vpc-")).collect();
            match responses.describe_vpc_endpoints.get(page) {
                Some(xml) if vpcs.is_empty() => ("200 OK", xml.clone()),
                Some(xml) => ("200 OK", keep_items(xml, |item| vpcs.iter().any(|v| item.contains(&format!("<vpcId>{v}</vpcId>"))))),
                None => ("400 Bad Request", error_xml("InvalidPaginationToken", "The token is not valid.")),
            }
        }
        "DescribeNetworkInterfaces" => {
            // Filter.N.Name=network-interface-id with Filter.N.Value.M=eni-…
            let wanted: HashSet<&str> =
                params().filter(|(k, _)| k.starts_with("Filter.") && k.contains(".Value.")).map(|(_, v)| v).collect();
            let xml = &responses.describe_network_interfaces;
            let body = if wanted.is_empty() {
                xml.clone()
            } else {
                keep_items(xml, |item| eni_id(item).is_some_and(|id| wanted.contains(id)))
            };
            ("200 OK", body)
        }
        "DescribeVpcEndpointServices" => {
            // ServiceName.N=…: only those services; one the recording lacks fails the whole
            // call with InvalidServiceName, as EC2 does for a deleted service.
            let wanted: Vec<&str> = params().filter(|(k, _)| k.starts_with("ServiceName.")).map(|(_, v)| v).collect();
            let xml = &responses.describe_vpc_endpoint_services;
            if let Some(missing) = wanted.iter().find(|name| !xml.contains(&format!("<serviceName>{name}</serviceName>"))) {
                let message = format!("The Vpc Endpoint Service '{missing}' does not exist");
                return ("400 Bad Request", error_xml("InvalidServiceName", &message));
            }
            if wanted.is_empty() {
                return ("200 OK", xml.clone());
            }
            let keep = |item: &str| {
                wanted.iter().any(|name| item == format!("<item>{name}</item>") || item.contains(&format!("<serviceName>{name}</serviceName>")))
            };
            ("200 OK", keep_items(xml, keep))
        }
        "DescribeSubnets" => {
            // Filter.N.Name=vpc-id or subnet-id with Filter.N.Value.M=…: the subnets named.
            let wanted = filtered();
            let xml = responses.subnets_by_account.get(account).unwrap_or(&responses.describe_subnets);
            let named = |item: &str| {
                wanted.iter().any(|v| item.contains(&format!("<vpcId>{v}</vpcId>")) || item.contains(&format!("<subnetId>{v}</subnetId>")))
            };
            ("200 OK", if wanted.is_empty() { xml.clone() } else { keep_items(xml, named) })
        }
        "DescribeVpcEndpointAssociations" => {
            // Filter.N.Name=vpc-endpoint-id with Filter.N.Value.M=vpce-…: those endpoints' only.
            let wanted: HashSet<&str> =
                params().filter(|(k, _)| k.starts_with("Filter.") && k.contains(".Value.")).map(|(_, v)| v).collect();
            let page = params()
                .find(|(k, _)| *k == "NextToken")
                .and_then(|(_, v)| v.strip_prefix("page-")?.parse::<usize>().ok())
                .unwrap_or(0);
            let Some(xml) = responses.describe_vpc_endpoint_associations.get(page) else {
                return ("400 Bad Request", error_xml("InvalidPaginationToken", "The token is not valid."));
            };
            let body = match wanted.is_empty() {
                true => xml.clone(),
                false => keep_items(xml, |item| wanted.iter().any(|id| item.contains(&format!("<vpcEndpointId>{id}</vpcEndpointId>")))),
            };
            ("200 OK", body)
        }
        other => ("400 Bad Request", error_xml("InvalidAction", &format!("The action {other} is not valid for this web service."))),
    }
}

/// The id in an ENI `<item>`.
fn eni_id(item: &str) -> Option<&str> {
    let start = item.find("<networkInterfaceId>")? + "<networkInterfaceId>".len();
    item[start..].split('<').next()
}

/// `xml` with only the top-level `<item>`s of its list that `keep` accepts (nested `<item>`s,
/// like an ENI's security groups, travel with their parent).
fn keep_items(xml: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(xml.len());
    let (mut depth, mut at, mut item_start) = (0usize, 0usize, 0usize);
    while let Some(offset) = xml[at..].find("<item>").into_iter().chain(xml[at..].find("</item>")).min() {
        let pos = at + offset;
        if xml[pos..].starts_with("</item>") {
            let end = pos + "</item>".len();
            depth = depth.saturating_sub(1);
            if depth == 0 && keep(&xml[item_start..end]) {
                out.push_str(&xml[item_start..end]);
            }
            at = end;
        } else {
            if depth == 0 {
                out.push_str(&xml[at..pos]);
                item_start = pos;
            }
            depth += 1;
            at = pos + "<item>".len();
        }
    }
    out.push_str(&xml[at..]);
    out
}

fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>00000000-0000-4000-8000-000000000000</RequestID></Response>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_items_filters_top_level_items_only() {
        let xml = "<r><set><item><id>a</id><g><item>x</item></g></item><item><id>b</id></item></set></r>";
        assert_eq!(keep_items(xml, |i| i.contains("<id>b</id>")), "<r><set><item><id>b</id></item></set></r>");
        assert_eq!(keep_items(xml, |i| i.contains("<id>a</id>")), "<r><set><item><id>a</id><g><item>x</item></g></item></set></r>");
        assert_eq!(keep_items("<r/>", |_| true), "<r/>");
    }
}
