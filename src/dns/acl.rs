//! The client allow list. hubdns is never an open resolver: a client outside every listed
//! network gets REFUSED. One list covers both address families (hickory-server's own ACL is
//! per family), and IPv4-mapped IPv6 sources (`::ffff:10.0.0.1`, seen on dual-stack sockets)
//! are checked as the IPv4 address they are.

use std::net::IpAddr;

use ipnet::IpNet;

/// Networks allowed to query.
#[derive(Debug, Clone)]
pub struct Acl {
    allowed: Vec<IpNet>,
}

impl Acl {
    /// An allow list of exactly these networks.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Whether `ip` may query.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_allow;

    #[test]
    fn default_list_is_private_only() {
        let acl = Acl::new(default_allow());
        for ok in ["127.0.0.1", "10.20.0.5", "172.31.255.1", "192.168.1.1", "100.64.0.9", "::1", "fd12::1", "::ffff:10.0.0.1"] {
            assert!(acl.allows(ok.parse().unwrap()), "{ok} should be allowed");
        }
        for no in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!acl.allows(no.parse().unwrap()), "{no} should be refused");
        }
    }
}
