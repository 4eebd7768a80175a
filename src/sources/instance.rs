//! The hubdns instance's own placement, for `az.default = "instance"`: its AZ ID and region
//! from the instance metadata service (IMDSv2, through the SDK's client, which honours
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`; EC2 user guide, "Instance metadata categories":
//! `placement/availability-zone-id`, `placement/region`). Asked once, at start.

use std::time::Duration;

use aws_config::imds::client::Client;

/// The instance's (AZ ID, region), or why not, within `timeout` per request.
pub async fn placement(timeout: Duration) -> Result<(String, String), String> {
    let client = Client::builder().connect_timeout(timeout).read_timeout(timeout).max_attempts(1).build();
    let ask = |path: &'static str| {
        let client = client.clone();
        async move {
            let value = client.get(path).await.map_err(|e| format!("instance metadata {path}: {e}"))?;
            let value: String = value.into();
            Ok::<String, String>(value.trim().to_owned())
        }
    };
    let az_id = ask("/latest/meta-data/placement/availability-zone-id").await?;
    let region = ask("/latest/meta-data/placement/region").await?;
    if !crate::config::is_az_id(&az_id) {
        return Err(format!("instance metadata gave `{az_id}`, not an AZ ID"));
    }
    Ok((az_id, region))
}
