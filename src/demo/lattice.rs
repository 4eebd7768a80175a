//! The stand-in's VPC Lattice side: answers the REST JSON requests of the endpoint source —
//! GetResourceConfiguration (`GET /resourceconfigurations/{id or ARN}`) and
//! ListServiceNetworkServiceAssociations (`GET /servicenetworkserviceassociations?
//! serviceNetworkIdentifier=…`) — from recorded JSON, and fails as VPC Lattice does: an
//! unknown item is HTTP 404 `ResourceNotFoundException`, with the error's name in the
//! `x-amzn-ErrorType` header (VPC Lattice API reference, "Common errors").

use super::{Failure, LatticeResponses};

/// Whether `target` is a VPC Lattice request.
pub(super) fn is_lattice(target: &str) -> bool {
    target.starts_with("/resourceconfigurations/") || target.starts_with("/servicenetworkserviceassociations")
}

/// The API action of a VPC Lattice request.
pub(super) fn action(target: &str) -> &'static str {
    if target.starts_with("/resourceconfigurations/") { "GetResourceConfiguration" } else { "ListServiceNetworkServiceAssociations" }
}

/// An answer: status line, JSON body, and the error type when it is an error.
pub(super) type Answer = (&'static str, String, Option<&'static str>);

/// How VPC Lattice answers `failure`.
pub(super) fn failure(failure: Failure) -> Answer {
    match failure {
        Failure::Throttle => ("429 Too Many Requests", error_json("Request was denied due to request throttling."), Some("ThrottlingException")),
        Failure::ServerError => ("500 Internal Server Error", error_json("An unexpected error occurred."), Some("InternalServerException")),
        Failure::ExpiredCredentials => ("403 Forbidden", error_json("The security token included in the request is expired"), Some("ExpiredTokenException")),
        Failure::Hang => ("504 Gateway Timeout", error_json("The request timed out."), Some("InternalServerException")),
    }
}

/// The answer to `target` from `responses`.
pub(super) fn respond(target: &str, responses: &LatticeResponses) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if let Some(identifier) = path.strip_prefix("/resourceconfigurations/") {
        let id = last_segment(identifier);
        return match responses.resource_configurations.get(&id) {
            Some(json) => ("200 OK", json.clone(), None),
            None => not_found(&id, "RESOURCE_CONFIGURATION"),
        };
    }
    let network = query.split('&').find_map(|p| p.strip_prefix("serviceNetworkIdentifier=")).map(last_segment).unwrap_or_default();
    match responses.service_network_services.get(&network) {
        Some(json) => ("200 OK", json.clone(), None),
        None => not_found(&network, "SERVICE_NETWORK"),
    }
}

/// The id in an identifier that may be a percent-encoded ARN (`arn%3Aaws%3A…%2Frcfg-…`).
fn last_segment(identifier: &str) -> String {
    let decoded = identifier.replace("%3A", ":").replace("%3a", ":").replace("%2F", "/").replace("%2f", "/");
    decoded.rsplit('/').next().unwrap_or("").to_owned()
}

fn not_found(id: &str, kind: &str) -> Answer {
    let body = format!(r#"{{"message":"Resource not found","resourceId":"{id}","resourceType":"{kind}"}}"#);
    ("404 Not Found", body, Some("ResourceNotFoundException"))
}

fn error_json(message: &str) -> String {
    format!(r#"{{"message":"{message}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_found_by_id_or_percent_encoded_arn() {
        let responses = LatticeResponses {
            resource_configurations: [("rcfg-1".to_owned(), "{}".to_owned())].into(),
            service_network_services: [("sn-1".to_owned(), "{\"items\":[]}".to_owned())].into(),
        };
        assert_eq!(respond("/resourceconfigurations/rcfg-1", &responses).0, "200 OK");
        let arn = "/resourceconfigurations/arn%3Aaws%3Avpc-lattice%3Aus-east-1%3A444455556666%3Aresourceconfiguration%2Frcfg-1";
        assert_eq!(respond(arn, &responses).0, "200 OK");
        let (status, _, error) = respond("/resourceconfigurations/rcfg-2", &responses);
        assert_eq!((status, error), ("404 Not Found", Some("ResourceNotFoundException")));
        let list = "/servicenetworkserviceassociations?serviceNetworkIdentifier=arn%3Aaws%3Avpc-lattice%3Aus-east-1%3A4%3Aservicenetwork%2Fsn-1";
        assert_eq!(respond(list, &responses).0, "200 OK");
        assert!(is_lattice(list) && !is_lattice("/2013-04-01/hostedzone/Z1"));
    }
}
