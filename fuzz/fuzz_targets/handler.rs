//! Arbitrary bytes into the query handler. The first byte picks the transport: even → one UDP
//! datagram through `Handler::handle`; odd → the rest as a TCP byte stream through the real
//! RFC 7766 framing (`serve_stream`), on an in-memory pipe.
//!
//! Beyond "no panic, no hang", every reply must itself be a DNS message that parses, carry the
//! query's id, and fit its transport (512 bytes over UDP without EDNS).

#![no_main]

use std::{net::SocketAddr, sync::Arc, sync::LazyLock, time::Duration};

use arc_swap::ArcSwap;
use hickory_proto::op::Message;
use hubdns::{
    config::Config,
    dns::{
        forwarder::Forwarder,
        handler::{Handler, Outcome, SharedHandler, Transport},
        listener::{Conn, serve_stream},
    },
    metrics::Metrics,
    assemble::build_snapshot,
};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Forwarding to a closed loopback port with one slot and a short deadline, so forwards end
/// at once; the owned names are the unit tests' fixture (tests/fixtures/owned.toml).
const FORWARDING: &str = r#"
[server]
listen = ["127.0.0.1:0"]
[forward]
upstreams = ["127.0.0.1:9"]
timeout_ms = 20
attempts = 1
deadline_ms = 50
max_in_flight = 1
serve_stale_secs = 0
"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    handler: SharedHandler,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let text = format!("{FORWARDING}\n{}", include_str!("../../tests/fixtures/owned.toml"));
    let config = Config::parse(&text, "fuzz.toml").expect("fuzz config");
    let (snapshot, _) = build_snapshot(&config, &[]);
    let handler = runtime.block_on(async {
        let forwarder = Arc::new(Forwarder::new(&config.forward).expect("forwarder"));
        Handler::new(Arc::new(ArcSwap::from_pointee(snapshot)), forwarder, Arc::new(Metrics::default()), &config)
    });
    Fixture { runtime, handler: Arc::new(ArcSwap::from_pointee(handler)) }
});

const CLIENT: &str = "127.0.0.1:5300";

/// Checks one reply to `query`.
fn check_reply(query: &[u8], reply: &[u8], limit: usize) {
    assert!(reply.len() <= limit, "reply of {} bytes over {limit}", reply.len());
    let message = Message::from_vec(reply).unwrap_or_else(|e| panic!("our reply does not parse: {e}"));
    assert_eq!(message.metadata.id.to_be_bytes(), query[..2], "id echoed");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let fixture = &*FIXTURE;
    let src: SocketAddr = CLIENT.parse().expect("constant");
    if mode & 1 == 0 {
        let handler = fixture.handler.load_full();
        let mut out = Vec::new();
        match handler.handle(input, src, Transport::Udp, &mut out) {
            Outcome::Reply(_) => {
                // Without EDNS the limit is 512; with it, at most our 1232.
                check_reply(input, &out, 1232);
            }
            Outcome::Forward(job) => {
                let reply = fixture.runtime.block_on(handler.clone().forward(job));
                check_reply(input, &reply, 1232);
            }
            Outcome::Drop => {}
        }
        return;
    }
    // TCP: the bytes as a stream, then the client closes its side; read every framed reply.
    fixture.runtime.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (reader, writer) = tokio::io::split(server);
        let tracker = TaskTracker::new();
        let conn = Conn { src, transport: Transport::Tcp, idle: Duration::from_millis(200), queries: usize::MAX };
        let served = serve_stream(reader, writer, conn, fixture.handler.clone(), CancellationToken::new(), tracker.clone());
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let talk = async {
            let _ = client_write.write_all(input).await;
            let _ = client_write.shutdown().await;
            let mut replies = Vec::new();
            let _ = client_read.read_to_end(&mut replies).await;
            replies
        };
        let ((), replies) = tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(served, talk) })
            .await
            .expect("a TCP stream must end within the idle timeout");
        let mut rest = &replies[..];
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            assert!(rest.len() >= 2 + len, "a reply frame cut short");
            let reply = &rest[2..2 + len];
            let message = Message::from_vec(reply).unwrap_or_else(|e| panic!("our TCP reply does not parse: {e}"));
            let _ = message;
            rest = &rest[2 + len..];
        }
        assert!(rest.is_empty(), "trailing bytes after the last frame");
        tracker.close();
        tracker.wait().await;
    });
});
