//! Integration tests, one binary: hubdns started in-process on 127.0.0.1:0 (see `harness`),
//! queried over the wire with a real DNS client and with `dig`.

mod aws;
mod az;
mod cli;
mod conformance;
mod deploy;
mod differential;
mod dnssec;
mod encrypted;
mod events;
mod forwarding;
mod harden;
mod harness;
mod lattice;
mod listeners;
mod load;
mod operate;
mod organizations;
mod owned;
mod page;
mod peers;
mod protocol;
mod querylog;
mod readme;
mod route53;
mod sources;
