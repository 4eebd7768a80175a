//! The demo's stand-in for the EC2 API: a loopback HTTP server that answers
//! DescribeVpcEndpoints, DescribeNetworkInterfaces and DescribeVpcEndpointServices with
//! recorded, real-shaped XML responses (`config/demo-aws/`).
//!
//! `hubdns demo` points its `vpc_endpoints` source at it, so the demo runs the production path
//! end to end — SDK, HTTP, XML parsing, conversion, refresh loop — without AWS. Tests use it
//! too: to serve responses shaped like real AWS (DnsEntries, DnsOptions) that moto cannot
//! produce, and to answer with throttling or server errors on demand.

use std::{
    collections::HashSet,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

use crate::config::Config;

/// Largest request the stand-in reads (EC2 Query requests are small form posts).
const MAX_REQUEST: usize = 1 << 20;

/// The recorded response body for each EC2 action the endpoint source calls.
#[derive(Debug, Clone)]
pub struct Responses {
    /// DescribeVpcEndpoints, page by page: page `i` (from 0) ends with
    /// `<nextToken>page-{i+1}</nextToken>` when another follows, and the request carrying
    /// `NextToken=page-{i+1}` gets the next one, as EC2 pages.
    pub describe_vpc_endpoints: Vec<String>,
    /// DescribeNetworkInterfaces for every ENI; a request with a `network-interface-id`
    /// filter gets only the ENIs it names, as EC2 answers.
    pub describe_network_interfaces: String,
    /// DescribeVpcEndpointServices.
    pub describe_vpc_endpoint_services: String,
}

impl Responses {
    /// The demo's recordings: a hub VPC in us-east-1 with Secrets Manager, a provider's
    /// service, S3 (dual-stack, wildcards), KMS (with a `hubdns:alias` tag), one endpoint
    /// pending acceptance and one Gateway endpoint.
    pub fn demo() -> Self {
        Self {
            describe_vpc_endpoints: vec![include_str!("../config/demo-aws/DescribeVpcEndpoints.xml").into()],
            describe_network_interfaces: include_str!("../config/demo-aws/DescribeNetworkInterfaces.xml").into(),
            describe_vpc_endpoint_services: include_str!("../config/demo-aws/DescribeVpcEndpointServices.xml").into(),
        }
    }
}

/// An error the stand-in can answer with instead of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 503 `RequestLimitExceeded`, as EC2 throttles.
    Throttle,
    /// HTTP 500 `InternalError`.
    ServerError,
    /// HTTP 401 `AuthFailure`, as EC2 answers expired or revoked credentials.
    ExpiredCredentials,
    /// Read the request and never answer: the SDK's attempt timeout has to end it.
    Hang,
}

/// A running stand-in.
pub struct Ec2Replay {
    addr: SocketAddr,
    state: Arc<ReplayState>,
}

struct ReplayState {
    responses: Mutex<Responses>,
    failure: Mutex<Option<Failure>>,
    requests: AtomicUsize,
}

impl Ec2Replay {
    /// Serves `responses` on 127.0.0.1 at a free port until the process ends.
    pub async fn start(responses: Responses) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ReplayState {
            responses: Mutex::new(responses),
            failure: Mutex::new(None),
            requests: AtomicUsize::new(0),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Ok(Self { addr, state })
    }

    /// The `endpoint_url` to give the source.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer every request with `failure` from now on (`None`: data again).
    pub fn fail_with(&self, failure: Option<Failure>) {
        if let Ok(mut slot) = self.state.failure.lock() {
            *slot = failure;
        }
    }

    /// Replace the recorded responses (an endpoint deleted, say).
    pub fn set_responses(&self, responses: Responses) {
        if let Ok(mut slot) = self.state.responses.lock() {
            *slot = responses;
        }
    }

    /// How many API requests have arrived.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::Relaxed)
    }
}

/// Points every `vpc_endpoints` source of `config` at a stand-in serving the demo's
/// recordings, with fixed local credentials (nothing leaves the machine).
pub async fn attach(config: &mut Config) -> io::Result<Ec2Replay> {
    let replay = Ec2Replay::start(Responses::demo()).await?;
    for source in &mut config.sources.vpc_endpoints {
        let source = source.get_mut();
        source.endpoint_url = Some(replay.url());
        source.static_credentials = true;
    }
    Ok(replay)
}

/// One keep-alive HTTP/1.1 connection from the SDK.
async fn serve(stream: TcpStream, state: Arc<ReplayState>) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    loop {
        let Ok(Some(body)) = read_request(&mut reader).await else { return };
        state.requests.fetch_add(1, Ordering::Relaxed);
        let failure = state.failure.lock().ok().and_then(|f| *f);
        if failure == Some(Failure::Hang) {
            // Hold the connection open without a word until the client gives up on it.
            let mut sink = [0u8; 1];
            let _ = reader.read(&mut sink).await;
            return;
        }
        let (status, xml) = respond(&body, failure, &state);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\nServer: hubdns-demo-ec2\r\n\r\n",
            xml.len()
        );
        if writer.write_all(head.as_bytes()).await.is_err() || writer.write_all(xml.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one request; returns its body, or `None` when the client closed the connection.
async fn read_request(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> io::Result<Option<String>> {
    let mut length = 0usize;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            if first {
                continue; // stray CRLF between requests
            }
            break;
        }
        first = false;
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(|_| io::Error::other("bad content-length"))?;
        }
    }
    if length > MAX_REQUEST {
        return Err(io::Error::other("request too large"));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
}

/// The status line and XML for a form-encoded EC2 Query request, or for `failure`.
fn respond(body: &str, failure: Option<Failure>, state: &ReplayState) -> (&'static str, String) {
    match failure {
        Some(Failure::Throttle) => {
            return ("503 Service Unavailable", error_xml("RequestLimitExceeded", "Request limit exceeded."));
        }
        Some(Failure::ServerError) => {
            return ("500 Internal Server Error", error_xml("InternalError", "An internal error has occurred"));
        }
        Some(Failure::ExpiredCredentials) => {
            return ("401 Unauthorized", error_xml("AuthFailure", "AWS was not able to validate the provided access credentials"));
        }
        // `serve` never calls this for Hang.
        Some(Failure::Hang) | None => {}
    }
    let action = body.split('&').find_map(|pair| pair.strip_prefix("Action=")).unwrap_or("");
    let Ok(responses) = state.responses.lock() else {
        return ("500 Internal Server Error", error_xml("InternalError", "stand-in state poisoned"));
    };
    let params = || body.split('&').filter_map(|pair| pair.split_once('='));
    match action {
        "DescribeVpcEndpoints" => {
            let page = params()
                .find(|(k, _)| *k == "NextToken")
                .and_then(|(_, v)| v.strip_prefix("page-")?.parse::<usize>().ok())
                .unwrap_or(0);
            match responses.describe_vpc_endpoints.get(page) {
                Some(xml) => ("200 OK", xml.clone()),
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
        "DescribeVpcEndpointServices" => ("200 OK", responses.describe_vpc_endpoint_services.clone()),
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
