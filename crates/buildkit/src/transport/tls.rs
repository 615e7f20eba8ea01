//! Loading TLS material for tonic (Control API over `tcp://`) and for
//! tokio-rustls (Docker Engine API over `tcp://`).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

use crate::endpoint::TlsConfig;
use crate::error::{Error, Result};

/// System CA bundles tried when no CA file is configured.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn tls_error(target: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Tls {
        target: target.into(),
        reason: reason.into(),
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        tls_error(
            path.display().to_string(),
            format!("cannot read {what}: {e}"),
        )
    })
}

/// The configured CA bundle, or the first system bundle found.
fn ca_bundle(config: &TlsConfig) -> Result<Vec<u8>> {
    if let Some(path) = &config.ca_cert {
        return read(path, "CA certificate");
    }
    for candidate in SYSTEM_CA_BUNDLES {
        if let Ok(bytes) = std::fs::read(candidate) {
            return Ok(bytes);
        }
    }
    Err(tls_error(
        "CA bundle",
        "no CA certificate configured and no system CA bundle found",
    ))
}

/// Client certificate and key, if configured (both or neither).
fn identity(config: &TlsConfig) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => Ok(Some((
            read(cert, "client certificate")?,
            read(key, "client key")?,
        ))),
        (None, None) => Ok(None),
        _ => Err(tls_error(
            "client certificate",
            "client certificate and key must be given together",
        )),
    }
}

/// tonic client TLS settings for a buildkitd at `host`.
pub(crate) fn tonic_config(
    config: &TlsConfig,
    host: &str,
) -> Result<tonic::transport::ClientTlsConfig> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_bundle(config)?))
        .domain_name(
            config
                .server_name
                .clone()
                .unwrap_or_else(|| host.to_owned()),
        );
    if let Some((cert, key)) = identity(config)? {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    Ok(tls)
}

/// A rustls connector (HTTP/1.1, no ALPN) and the server name to verify,
/// for the Docker Engine API over TLS.
pub(crate) fn rustls_connector(
    config: &TlsConfig,
    host: &str,
) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>)> {
    let mut roots = RootCertStore::empty();
    let bundle = ca_bundle(config)?;
    for cert in CertificateDer::pem_slice_iter(&bundle) {
        let cert = cert.map_err(|e| tls_error("CA bundle", format!("invalid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| tls_error("CA bundle", format!("invalid CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(tls_error(
            "CA bundle",
            "no certificate found in the CA bundle",
        ));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(host, e.to_string()))?
    .with_root_certificates(roots);
    let client = match identity(config)? {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| tls_error("client certificate", format!("invalid PEM: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| tls_error("client key", format!("invalid PEM: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error("client certificate", e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    let name = config
        .server_name
        .clone()
        .unwrap_or_else(|| host.to_owned());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| tls_error(host, format!("invalid server name {name:?}: {e}")))?;
    Ok((
        tokio_rustls::TlsConnector::from(Arc::new(client)),
        server_name,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_tls_error() {
        let config = TlsConfig {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = tonic_config(&config, "h").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("TLS error for /nonexistent/ca.pem: cannot read CA certificate"),
            "{err}"
        );
    }

    #[test]
    fn garbage_ca_is_rejected_by_rustls_connector() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let config = TlsConfig {
            ca_cert: Some(ca),
            ..TlsConfig::default()
        };
        let err = rustls_connector(&config, "h").err().unwrap();
        assert!(matches!(err, Error::Tls { .. }), "{err}");
    }
}
