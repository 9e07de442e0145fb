//! TLS settings: the server's certificate (reloadable while running) and
//! the clients' trust, built with rustls on the `ring` provider.
//!
//! The server reads a PEM certificate chain and a PEM private key. On
//! SIGHUP it reads them again: new connections get the new certificate,
//! connections already open keep theirs (ACME clients renew every 60 to 90
//! days, and a renewal must not drop anyone). A reload that fails keeps the
//! certificate in use and says why.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::ring::default_provider;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, ServerConnection, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Plaintext a TLS connection may hold in rustls before more is refused.
/// Beyond it, output waits in the connection's own bounded buffer.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// The certificate chain in a PEM file.
fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading a PEM private key from {}", key.display()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the key do not make a usable pair")?;
    Ok(Arc::new(config))
}

/// The server's TLS identity, swapped whole on reload.
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads the certificate chain and key; fails with what is wrong.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<ServerTls> {
        Ok(ServerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(server_config(cert, key)?),
        })
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        *self.current.write() = config;
        Ok(())
    }

    /// A new server-side TLS session with the current certificate.
    pub fn accept(&self) -> Result<ServerConnection, rustls::Error> {
        let config = self.current.read().clone();
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(conn)
    }
}

/// A client's TLS settings. The client trusts what the `ca` file holds: CA
/// certificates, whose signatures it checks as usual, and also the exact
/// certificates in it as they are, so that a self-signed server certificate
/// given as `--ca` works (however its basic constraints are set).
pub fn client_config(ca: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(default_provider());
    let pinned = read_certs(ca)?;
    let mut roots = RootCertStore::empty();
    for cert in &pinned {
        roots
            .add(cert.clone())
            .with_context(|| format!("{} is not a usable certificate", ca.display()))?;
    }
    let chains = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the certificate verifier")?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustedFile { pinned, chains }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts a server certificate that is one of the trusted file's own, or
/// that chains to one of them (the usual checks of name, dates and usage).
/// Handshake signatures are always checked against the certificate shown.
#[derive(Debug)]
struct TrustedFile {
    pinned: Vec<CertificateDer<'static>>,
    chains: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for TrustedFile {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        self.chains
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chains.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chains.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chains.supported_verify_schemes()
    }
}

/// The name a client checks the server's certificate against: the host
/// part of `host:port` (an IP address, or a DNS name).
pub fn server_name(addr: &str) -> anyhow::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_owned()).with_context(|| format!("{host:?} is not a host name or address"))
}
