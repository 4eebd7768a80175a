//! The stand-in's instance metadata (IMDSv2): a session token for `PUT /latest/api/token`,
//! and the instance's placement (`/latest/meta-data/placement/availability-zone-id`,
//! `…/region`), as the EC2 user guide's "Instance metadata categories" describe them, so
//! `az.default = "instance"` is tested through the SDK's own IMDS client.

use super::Responses;

/// The token the stand-in hands out; a metadata request must carry it.
const TOKEN: &str = "AQAEAHubdnsDemoSessionToken==";

/// Whether `target` is an instance metadata path.
pub(super) fn is_imds(target: &str) -> bool {
    target.starts_with("/latest/")
}

/// The action name for the request counts.
pub(super) fn action(target: &str) -> &str {
    target.trim_start_matches("/latest/")
}

/// Status, body, and extra header lines for `target`.
pub(super) fn respond(target: &str, responses: &Responses) -> (&'static str, String, String) {
    let placement = responses.instance_placement.as_ref();
    match (target, placement) {
        ("/latest/api/token", _) => ("200 OK", TOKEN.to_owned(), "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n".to_owned()),
        ("/latest/meta-data/placement/availability-zone-id", Some((az_id, _))) => ("200 OK", az_id.clone(), String::new()),
        ("/latest/meta-data/placement/region", Some((_, region))) => ("200 OK", region.clone(), String::new()),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}
