//! The certificate the DoT and DoH listeners present, reloaded when its files change.
//!
//! rustls asks [`Certificates`] for the certificate at each handshake; it hands out whatever
//! is current, one `ArcSwap` load. [`Certificates::watch`] looks at the two files once a
//! second and, when either changed (modified time, size or inode) and the pair loads — PEM
//! that parses, a key that matches the certificate — swaps the new pair in. Connections open
//! keep the session they have; the next handshake gets the new certificate. A pair that does
//! not load (a key written before its certificate, say) is logged and counted, and the
//! certificate served stays the last good one; the watch tries again at the next change.
//!
//! ALPN (RFC 7301): DoT offers `dot` (RFC 7858 §3.2 via the IANA registry), DoH `h2` and
//! `http/1.1` (RFC 8484 §5.2: HTTP/2 is the minimum recommended version).

use std::{
    io,
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, atomic::Ordering::Relaxed},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, server};
use tokio_util::sync::CancellationToken;

use crate::live::CertificateCounters;

/// How often the files are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// ALPN for DNS over TLS.
pub const ALPN_DOT: &[&[u8]] = &[b"dot"];
/// ALPN for DNS over HTTPS: HTTP/2 first.
pub const ALPN_DOH: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or held no PEM of its kind.
    #[error("{}: {what}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        what: String,
    },
    /// rustls refused the pair (key type, or a key that is not the certificate's).
    #[error("{} with {}: {reason} (the certificate file holds the server's certificate first, then its chain; the key file its private key)", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason (in the message, not a source: anyhow would print it twice).
        reason: rustls::Error,
    },
}

/// The certificate served, and where it comes from.
#[derive(Debug)]
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// What the files looked like when last loaded (or tried).
    seen: Mutex<Option<(Stamp, Stamp)>>,
    /// Reloads that served a new pair, and changes that did not load.
    counters: Arc<CertificateCounters>,
}

/// A file's identity and version, as cheaply as the file system says it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp { modified: meta.modified().ok(), len: meta.len(), inode: meta.ino() })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM certificate chain and private key and checks they belong together.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let read = |path: &Path, what: String| CertError::Read { path: path.to_owned(), what };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(read(cert, "no CERTIFICATE in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, e.to_string()))?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|reason| CertError::Pair { cert: cert.to_owned(), key: key.to_owned(), reason })
}

impl Certificates {
    /// Loads the pair; an error here stops the start (a listener without a certificate would
    /// fail every handshake).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, CertError> {
        let seen = (stamp(cert), stamp(key));
        let pair = load_pair(cert, key)?;
        Ok(Arc::new(Self {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            current: ArcSwap::from_pointee(pair),
            seen: Mutex::new(seen.0.zip(seen.1)),
            counters: Arc::default(),
        }))
    }

    /// A rustls server config presenting these certificates, offering `alpn`.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        // The provider's safe defaults (TLS 1.2 and 1.3) are rustls's: they cannot fail with
        // its own provider, but say so rather than panic if that ever changes.
        let builder = match ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions() {
            Ok(builder) => builder,
            Err(error) => {
                tracing::error!(%error, "rustls refused its own default protocol versions");
                ServerConfig::builder()
            }
        };
        let mut config = builder.with_no_client_auth().with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Reloads the pair if either file changed since last looked at; `Ok(true)` when a new
    /// certificate is being served.
    pub fn reload_if_changed(&self) -> Result<bool, CertError> {
        let now = stamp(&self.cert_path).zip(stamp(&self.key_path));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if now.is_none() || *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        match load_pair(&self.cert_path, &self.key_path) {
            Ok(pair) => {
                self.current.store(Arc::new(pair));
                self.counters.reloads.fetch_add(1, Relaxed);
                Ok(true)
            }
            Err(error) => {
                self.counters.failures.fetch_add(1, Relaxed);
                Err(error)
            }
        }
    }

    /// Looks at the files every second until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(WATCH_EVERY) => {}
            }
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                Ok(Ok(true)) => tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded; new connections get it"),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "TLS certificate changed but does not load; serving the last good one"),
                Err(error) => tracing::warn!(%error, "TLS certificate check failed"),
            }
        }
    }

    /// What the watch has done, for `/metrics`.
    pub fn counters(&self) -> Arc<CertificateCounters> {
        self.counters.clone()
    }

    /// The certificate being served (its DER), for tests and status.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The TLS handshake of a connection just accepted, within `within` (RFC 7858 §3.4: servers
/// bound it); `None`, logged at debug, when it fails or takes too long. `what` names the
/// listener in the log.
pub async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream, within: Duration, src: SocketAddr, what: &str) -> Option<server::TlsStream<TcpStream>> {
    match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%src, %error, "{what} handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%src, "{what} handshake timed out");
            None
        }
    }
}

/// Writes a new self-signed certificate for `names` (DNS names or IP addresses) and its key
/// as PEM files into `dir`: the demo's, and the tests'. Returns (certificate, key) paths.
pub fn write_self_signed(dir: &Path, names: &[&str]) -> io::Result<(PathBuf, PathBuf)> {
    let generated = rcgen::generate_simple_self_signed(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).map_err(io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    // The key first, then the certificate: a watcher that sees only the key changed keeps the
    // old pair (mismatched) and picks the new one up when the certificate lands.
    write_atomically(&key, generated.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(&cert, generated.cert.pem().as_bytes(), 0o644)?;
    Ok((cert, key))
}

/// Writes `bytes` to `path`, with permissions `mode`, by renaming a finished temporary file
/// over it.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
