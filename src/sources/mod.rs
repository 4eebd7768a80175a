//! Sources of owned names. Each returns the whole set it knows — never a diff — as plain
//! [`crate::snapshot::Record`]s and [`crate::snapshot::Alias`]es with provenance, through a
//! pure conversion function that is unit-tested on its own.
//!
//! - [`aliases`]: the config file's `[[records]]` and `[[aliases]]`.
//! - [`vpc_endpoints`]: PrivateLink interface endpoints from EC2.
//! - [`route53`]: private hosted zones from Route 53.
//! - [`route53_affinity`]: Route 53's AZ-affinity records, which the SDK's model lacks, read
//!   from the raw ListResourceRecordSets body by a per-call interceptor.
//! - [`aws`]: what the AWS sources share (SDK settings, errors, rate limit).
//! - [`runner`]: the task each AWS source runs as: its schedule, backoff and status.
//! - [`output`]: a source's answer, as plain data.
//! - [`organization`]: the accounts of an AWS Organization, for `accounts = "organization"`.
//!
//! Every AWS source kind implements `Source`; `planned` (both in `registry.rs`) is the one place
//! that says which config sections make which sources. Adding a kind is a file implementing
//! `Source` and a line in `planned`. [`output`] is what every source returns: plain data, built
//! into the table without any AWS code (the fuzz build leaves the `aws` feature off).

pub mod aliases;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod organization;
#[cfg(feature = "aws")]
pub mod instance;
pub mod output;
#[cfg(feature = "aws")]
mod registry;
#[cfg(feature = "aws")]
pub mod route53;
#[cfg(feature = "aws")]
pub mod route53_affinity;
#[cfg(feature = "aws")]
pub mod lattice;
#[cfg(feature = "aws")]
pub mod endpoint_associations;
#[cfg(feature = "aws")]
pub mod runner;
#[cfg(feature = "aws")]
pub mod upstream;
#[cfg(feature = "aws")]
pub mod vpc_endpoints;

pub use output::SourceOutput;
#[cfg(feature = "aws")]
pub use registry::*;

