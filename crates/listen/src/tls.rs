//! TLS server configuration from PEM files (rustls on ring), for HEP over
//! TLS and for HTTPS.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
pub use tokio_rustls::TlsAcceptor;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading TLS certificate {0}: {1}")]
    Cert(PathBuf, String),
    #[error("TLS certificate file {0} holds no certificate")]
    NoCert(PathBuf),
    #[error("reading TLS private key {0}: {1}")]
    Key(PathBuf, String),
    #[error("TLS certificate {0} and key {1} do not make a configuration: {2}")]
    Config(PathBuf, PathBuf, String),
}

/// The ring provider, explicitly: the build carries no other.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a PEM certificate chain and PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert(cert.to_owned(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.to_owned()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key(key.to_owned(), e.to_string()))?;
    let config_err =
        |e: rustls::Error| TlsError::Config(cert.to_owned(), key.to_owned(), e.to_string());
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(config_err)
}

/// An acceptor for HEP streams (no ALPN: agents speak raw HEP over TLS).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(Arc::new(server_config(cert, key)?)))
}
