//! Sources of owned names. Each returns the whole set it knows — never a diff — as plain
//! [`crate::snapshot::Record`]s and [`crate::snapshot::Alias`]es with provenance, through a
//! pure conversion function that is unit-tested on its own.
//!
//! - [`aliases`]: the config file's `[[records]]` and `[[aliases]]`.
//! - [`vpc_endpoints`]: PrivateLink interface endpoints from EC2.
//! - [`route53`]: private hosted zones from Route 53.
//! - [`aws`]: what the AWS sources share (SDK settings, errors, rate limit).

pub mod aliases;
pub mod aws;
pub mod route53;
pub mod vpc_endpoints;
