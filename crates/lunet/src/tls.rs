//! TLS on rustls (ring provider): configurations, their cache, and the
//! per-connection session that sits between libuv and the read buffer.
//!
//! A TLS connection is an ordinary stream socket with a [`Session`]: the
//! ciphertext libuv reads is fed to rustls and the plaintext it yields goes
//! into the connection's `ReadBuf`, where every read format works unchanged;
//! plaintext written by the script is encrypted by rustls and the records go
//! out through the connection's ordinary write queue. The handshake is driven
//! by the bytes that arrive, in libuv's callbacks, so it never blocks another
//! connection; the script waits for it in its first read (or in `starttls`
//! / a TLS `connect`), under that wait's time limits.
//!
//! Configurations are built once per distinct set of options and shared (so
//! client sessions resume across connections with the same options).

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, Connection, DigitallySignedStruct, RootCertStore, ServerConfig, ServerConnection, SignatureScheme};

/// The options of a TLS client or server, as given in Lua.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Opts {
    pub server_name: Option<String>,
    /// Verify the peer's certificate (clients: on unless set to false).
    pub verify: bool,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub alpn: Vec<Vec<u8>>,
    /// Servers: require client certificates signed by this CA (mTLS).
    pub client_ca_file: Option<String>,
}

impl Opts {
    pub fn new() -> Opts {
        Opts { verify: true, ..Default::default() }
    }
}

/// Why TLS failed: the message scripts see (`"tls: ..."`).
pub fn error_text(e: &rustls::Error) -> String {
    format!("tls: {e}")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("tls: cannot read {what} {path}: {e}"))?
        .collect();
    let certs = certs.map_err(|e| format!("tls: bad {what} {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("tls: no certificate in {what} {path}"));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("tls: cannot read key_file {path}: {e}"))
}

fn roots_from(path: &str, what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path, what)? {
        roots.add(c).map_err(|e| format!("tls: bad certificate in {what} {path}: {e}"))?;
    }
    Ok(roots)
}

/// The system trust store (loaded once per runtime).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    for c in found.certs {
        let _ = roots.add(c); // (a system certificate rustls cannot use is skipped)
    }
    if roots.is_empty() {
        return Err("tls: no trusted certificates found in the system store (install ca-certificates, or give ca_file)".into());
    }
    Ok(roots)
}

/// Accepts any server certificate (`verify = false`), still checking the
/// handshake's signatures. Documented as insecure.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Built configurations, by options.
#[derive(Default)]
pub struct Configs {
    system: Option<Arc<RootCertStore>>,
    clients: HashMap<Opts, Arc<ClientConfig>>,
    servers: HashMap<Opts, Arc<ServerConfig>>,
}

/// How many distinct configurations of each kind are kept (a program that
/// builds options per connection must not grow without bound).
const MAX_CONFIGS: usize = 64;

impl Configs {
    pub fn client(&mut self, o: &Opts) -> Result<Arc<ClientConfig>, String> {
        let mut key = o.clone();
        key.server_name = None; // (one configuration serves every host)
        if let Some(c) = self.clients.get(&key) {
            return Ok(c.clone());
        }
        let p = provider();
        let b = ClientConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| error_text(&e))?;
        let b = if !o.verify {
            b.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(p)))
        } else if let Some(ca) = &o.ca_file {
            b.with_root_certificates(roots_from(ca, "ca_file")?)
        } else {
            if self.system.is_none() {
                self.system = Some(Arc::new(system_roots()?));
            }
            b.with_root_certificates(self.system.clone().unwrap())
        };
        let mut cfg = match (&o.cert_file, &o.key_file) {
            (Some(c), Some(k)) => b.with_client_auth_cert(read_certs(c, "cert_file")?, read_key(k)?).map_err(|e| error_text(&e))?,
            (None, None) => b.with_no_client_auth(),
            _ => return Err("tls: cert_file and key_file go together".into()),
        };
        cfg.alpn_protocols = o.alpn.clone();
        let cfg = Arc::new(cfg);
        if self.clients.len() >= MAX_CONFIGS {
            self.clients.clear();
        }
        self.clients.insert(key, cfg.clone());
        Ok(cfg)
    }

    pub fn server(&mut self, o: &Opts) -> Result<Arc<ServerConfig>, String> {
        if let Some(c) = self.servers.get(o) {
            return Ok(c.clone());
        }
        let (Some(cert), Some(key)) = (&o.cert_file, &o.key_file) else {
            return Err("tls: a server needs cert_file and key_file".into());
        };
        let p = provider();
        let b = ServerConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| error_text(&e))?;
        let b = match &o.client_ca_file {
            Some(ca) => {
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots_from(ca, "client_ca_file")?), p)
                    .build()
                    .map_err(|e| format!("tls: client_ca_file {ca}: {e}"))?;
                b.with_client_cert_verifier(v)
            }
            None => b.with_no_client_auth(),
        };
        let mut cfg = b.with_single_cert(read_certs(cert, "cert_file")?, read_key(key)?).map_err(|e| error_text(&e))?;
        cfg.alpn_protocols = o.alpn.clone();
        let cfg = Arc::new(cfg);
        if self.servers.len() >= MAX_CONFIGS {
            self.servers.clear();
        }
        self.servers.insert(o.clone(), cfg.clone());
        Ok(cfg)
    }
}

/// The TLS state of one connection.
pub struct Session {
    pub conn: Connection,
    /// The failure that ended the session (sticky), as scripts see it.
    pub error: Option<String>,
    /// The peer's close_notify arrived (a clean end of stream).
    pub closed_clean: bool,
}

/// What feeding bytes to a session produced.
#[derive(Default, Debug)]
pub struct Fed {
    /// Records to send to the peer (handshake messages, alerts).
    pub out: Vec<u8>,
    /// The handshake finished during this call.
    pub handshake_done: bool,
}

impl Session {
    pub fn client(cfg: Arc<ClientConfig>, server_name: &str) -> Result<Session, String> {
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| format!("tls: invalid server_name '{server_name}'"))?;
        let mut c = ClientConnection::new(cfg, name).map_err(|e| error_text(&e))?;
        // Plaintext written before the handshake ends waits in rustls; the
        // connection's own write path bounds what reaches it.
        c.set_buffer_limit(None);
        Ok(Session { conn: Connection::Client(c), error: None, closed_clean: false })
    }

    pub fn server(cfg: Arc<ServerConfig>) -> Result<Session, String> {
        let mut c = ServerConnection::new(cfg).map_err(|e| error_text(&e))?;
        c.set_buffer_limit(None);
        Ok(Session { conn: Connection::Server(c), error: None, closed_clean: false })
    }

    pub fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Takes the records rustls wants to send.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Feeds ciphertext from the peer (`None`: the peer ended the stream);
    /// plaintext goes to `plain`. Errors are sticky in `self.error`.
    pub fn feed(&mut self, input: Option<&[u8]>, plain: &mut impl FnMut(&[u8])) -> Fed {
        let mut fed = Fed::default();
        if self.error.is_some() {
            return fed;
        }
        let was = self.handshaking();
        let mut rest = input.unwrap_or(&[]);
        loop {
            if input.is_some() && rest.is_empty() {
                break;
            }
            match self.conn.read_tls(&mut rest) {
                Ok(_) => {}
                Err(e) => {
                    self.error = Some(format!("tls: {e}"));
                    break;
                }
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.error = Some(error_text(&e));
                break;
            }
            self.drain_plain(plain);
            if input.is_none() {
                break;
            }
        }
        if input.is_none() && self.error.is_none() && !self.closed_clean {
            self.error = Some(if self.handshaking() {
                "tls: the peer closed the connection during the handshake".into()
            } else {
                "tls: the peer closed the connection without close_notify (truncated)".into()
            });
        }
        // Alerts for an error, handshake messages otherwise.
        self.take_output(&mut fed.out);
        fed.handshake_done = was && !self.handshaking() && self.error.is_none();
        fed
    }

    /// Hands rustls' plaintext to `plain` where it lies (no copy of ours).
    fn drain_plain(&mut self, plain: &mut impl FnMut(&[u8])) {
        loop {
            let mut r = self.conn.reader();
            match r.fill_buf() {
                Ok([]) => {
                    self.closed_clean = true;
                    return;
                }
                Ok(chunk) => {
                    let n = chunk.len();
                    plain(chunk);
                    r.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return, // (end of stream without close_notify: reported by feed)
            }
        }
    }

    /// Encrypts the plaintext of `bufs` (in order, records filled across
    /// buffer boundaries); the records go to `out`.
    pub fn encrypt(&mut self, bufs: &[&[u8]], out: &mut Vec<u8>) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let slices: Vec<io::IoSlice> = bufs.iter().map(|b| io::IoSlice::new(b)).collect();
        let mut skip = self.conn.writer().write_vectored(&slices).map_err(|e| format!("tls: {e}"))?;
        // (Without a buffer limit rustls takes it all; any rest goes the plain way.)
        for b in bufs {
            let n = skip.min(b.len());
            skip -= n;
            self.conn.writer().write_all(&b[n..]).map_err(|e| format!("tls: {e}"))?;
        }
        self.take_output(out);
        Ok(())
    }

    /// Queues close_notify; the records go to `out`.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        if self.error.is_none() {
            self.conn.send_close_notify();
            self.take_output(out);
        }
    }

    /// `socket.tlsinfo`'s fields: version, cipher, alpn, server_name, peer
    /// certificate (DER) — whatever is known.
    pub fn info(&self) -> Info {
        let version = self.conn.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            other => format!("{other:?}"),
        });
        let cipher = self.conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite()));
        let alpn = self.conn.alpn_protocol().map(|a| a.to_vec());
        let server_name = match &self.conn {
            Connection::Server(s) => s.server_name().map(str::to_string),
            Connection::Client(_) => None,
        };
        let peer_cert = self.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec());
        let peer_subject = peer_cert.as_deref().and_then(subject_of);
        let resumed = matches!(self.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        Info { version, cipher, alpn, server_name, peer_cert, peer_subject, resumed }
    }
}

/// The subject of a DER certificate, as RFC 4514 text.
pub fn subject_of(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.subject.to_string())
}

pub struct Info {
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub alpn: Option<Vec<u8>>,
    pub server_name: Option<String>,
    pub peer_cert: Option<Vec<u8>>,
    /// Its subject as RFC 4514 text (`CN=localhost`).
    pub peer_subject: Option<String>,
    /// The handshake resumed an earlier session.
    pub resumed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_errors() {
        let mut c = Configs::default();
        let mut o = Opts::new();
        o.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(c.client(&o).unwrap_err().starts_with("tls: cannot read ca_file /nonexistent/ca.pem"));
        let mut o = Opts::new();
        o.verify = false;
        o.cert_file = Some("x".into());
        assert_eq!(c.client(&o).unwrap_err(), "tls: cert_file and key_file go together");
        assert_eq!(c.server(&Opts::new()).unwrap_err(), "tls: a server needs cert_file and key_file");
        let o = Opts { verify: false, ..Opts::new() };
        let a = c.client(&o).unwrap();
        let b = c.client(&Opts { server_name: Some("x".into()), ..o.clone() }).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one configuration per set of options");
        assert!(Session::client(a, "").is_err());
    }

    #[test]
    fn a_session_that_hears_nothing_fails_cleanly_at_end_of_stream() {
        let mut c = Configs::default();
        let cfg = c.client(&Opts { verify: false, ..Opts::new() }).unwrap();
        let mut s = Session::client(cfg, "localhost").unwrap();
        let mut hello = Vec::new();
        s.take_output(&mut hello);
        assert!(!hello.is_empty(), "a client speaks first");
        let fed = s.feed(Some(b"HTTP/1.1 400 Bad Request\r\n\r\n"), &mut |_| panic!("no plaintext"));
        assert!(s.error.as_deref().unwrap().starts_with("tls: "), "{:?}", s.error);
        assert!(!fed.handshake_done);
        let mut out = Vec::new();
        assert!(s.encrypt(&[b"x"], &mut out).is_err());
    }
}
