//! The demo's EC2 stand-in serving responses from a directory, for `bench/scale`:
//! `DescribeVpcEndpoints.0.xml`, `.1.xml`, … (pages chained by nextToken `page-N`),
//! `DescribeNetworkInterfaces.xml` and `DescribeVpcEndpointServices.xml`.
//! Prints the endpoint URL on stdout, then serves until killed.
//!
//! Usage: `ec2_standin DIR`

use std::path::PathBuf;

use hubdns::demo::{AwsReplay, Responses};

/// No resource or service-network endpoints in the scale recordings.
const EMPTY_SUBNETS: &str = "<DescribeSubnetsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><subnetSet/></DescribeSubnetsResponse>";

const EMPTY_ASSOCIATIONS: &str = "<DescribeVpcEndpointAssociationsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><vpcEndpointAssociationSet/></DescribeVpcEndpointAssociationsResponse>";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let mut pages = Vec::new();
    while let Ok(page) = std::fs::read_to_string(dir.join(format!("DescribeVpcEndpoints.{}.xml", pages.len()))) {
        pages.push(page);
    }
    let responses = Responses {
        describe_vpc_endpoints: pages,
        describe_network_interfaces: std::fs::read_to_string(dir.join("DescribeNetworkInterfaces.xml"))?,
        describe_vpc_endpoint_services: std::fs::read_to_string(dir.join("DescribeVpcEndpointServices.xml"))?,
        describe_vpc_endpoint_associations: vec![EMPTY_ASSOCIATIONS.into()],
        // Only asked with [az] on; the generated accounts have no subnets of their own.
        describe_subnets: std::fs::read_to_string(dir.join("DescribeSubnets.xml")).unwrap_or_else(|_| EMPTY_SUBNETS.into()),
        subnets_by_account: Default::default(),
        instance_placement: None,
        route53: Default::default(),
        lattice: Default::default(),
    };
    let replay = AwsReplay::start(responses).await?;
    println!("{}", replay.url());
    std::future::pending::<()>().await;
    Ok(())
}
