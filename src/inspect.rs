//! `hubdns explain NAME`: the `/explain` answer for an operator with a shell on the instance.
//!
//! It asks the running hubdns through its admin listener (`admin.listen` in the config), so
//! the answer is what is being served right now, forwarder cache included. When nothing
//! answers there — hubdns stopped, or admin off — it builds the table itself from the config
//! and the state file, as a restart would before its first AWS call, and says so.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use hickory_proto::rr::RecordType;

use crate::{
    admin,
    config::Config,
    dns::forwarder::Forwarder,
    explain::{Explanation, explain},
    assemble::build_snapshot,
    sources::{orgs_in_state, planned},
    state_file,
    signed_parents::SignedOverlap,
};

/// Where an explanation came from.
pub enum Origin {
    /// The running hubdns at this admin address.
    Running(SocketAddr),
    /// Built here from the config and state file; the reason the running one was not asked.
    Offline(String),
}

/// `hubdns check`'s DNSSEC lines: the owned apexes the running hubdns found inside signed
/// public zones (it asks upstream after each refresh; `check` itself sends no DNS query), or
/// why they could not be read.
pub fn dnssec_lines(config: &Config) -> String {
    let Some(addr) = config.admin.listen.map(loopback_if_unspecified) else {
        return "dnssec        not checked: admin.listen is not set (a running hubdns checks after each refresh)\n".into();
    };
    let body = match admin::probe(addr, "/status.json", Duration::from_secs(3)) {
        Ok((200, body)) => body,
        Ok((status, _)) => return format!("dnssec        not checked: {addr}/status.json answered HTTP {status}\n"),
        Err(error) => return format!("dnssec        not checked: no running hubdns at {addr} ({error})\n"),
    };
    let overlaps: Vec<SignedOverlap> = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|status| serde_json::from_value(status.get("dnssec_overlaps")?.clone()).ok())
        .unwrap_or_default();
    match overlaps.is_empty() {
        true => format!("dnssec        no owned name is inside a signed public zone (as {addr} found)\n"),
        false => overlaps.iter().map(|o| format!("warning       {}\n", o.advice())).collect(),
    }
}

/// Explains `name`/`qtype` for the hubdns that `config` describes.
pub fn explain_for(config: &Config, name: &str, qtype: RecordType, client: Option<std::net::IpAddr>) -> anyhow::Result<(Explanation, Origin)> {
    let why_offline = match config.admin.listen {
        None => "admin.listen is not set".to_owned(),
        Some(addr) => {
            let addr = loopback_if_unspecified(addr);
            let client_param = client.map(|c| format!("&client={}", percent_encode(&c.to_string()))).unwrap_or_default();
            let path = format!("/explain?name={}&type={qtype}{client_param}", percent_encode(name));
            match admin::probe(addr, &path, Duration::from_secs(3)) {
                Ok((200, body)) => {
                    let explanation = serde_json::from_str(&body).with_context(|| format!("unexpected answer from {addr}{path}"))?;
                    return Ok((explanation, Origin::Running(addr)));
                }
                Ok((status, body)) => {
                    let error = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                        .unwrap_or(body);
                    anyhow::bail!("{addr} answered HTTP {status}: {error}");
                }
                Err(error) => format!("nothing answers at {addr} ({error})"),
            }
        }
    };
    let restored = config.refresh.state_file.as_deref().map(state_file::read).unwrap_or_default();
    // In config order, as the server builds it: of zones with one name, the earlier source's wins.
    let orgs = orgs_in_state(config, &restored.keys().collect::<Vec<_>>());
    let outputs: Vec<_> = planned(config, &orgs).iter().filter_map(|p| restored.get(&p.id).cloned()).collect();
    let (snapshot, _) = build_snapshot(config, &outputs);
    let forwarder = Forwarder::new(&config.forward).context("cannot set up forwarding as configured")?;
    let explanation = explain(&snapshot, &forwarder, name, qtype, client).map_err(anyhow::Error::msg)?;
    let state = match &config.refresh.state_file {
        Some(path) => format!("{} sources from the state file {}", restored.len(), path.display()),
        None => "no state file configured, so no AWS source's names".to_owned(),
    };
    Ok((explanation, Origin::Offline(format!("{why_offline}; built from the config and {state}"))))
}

/// An admin listener on 0.0.0.0 / [::] is reached on loopback.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && addr.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_for_a_query_string() {
        assert_eq!(percent_encode("a.b-c_d~e"), "a.b-c_d~e");
        assert_eq!(percent_encode("x&type=MX y"), "x%26type%3DMX%20y");
        assert_eq!(loopback_if_unspecified("0.0.0.0:9153".parse().unwrap()), "127.0.0.1:9153".parse().unwrap());
    }
}
