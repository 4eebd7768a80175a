//! The benchmark's no-DNS floor: a UDP responder that sets the QR bit and sends each query
//! straight back. Nothing is parsed or looked up, so its CPU per query is the least any DNS
//! server can spend on this machine's network stack; `bench/run` measures it beside the servers.
//!
//! Usage: `udp_echo 127.0.0.1:5306`

use std::net::UdpSocket;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:5306".into());
    let socket = UdpSocket::bind(&addr)?;
    let mut buf = [0u8; 4096];
    loop {
        let (len, peer) = socket.recv_from(&mut buf)?;
        if len >= 12 {
            buf[2] |= 0x80; // QR: this is a response
            socket.send_to(&buf[..len], peer)?;
        }
    }
}
