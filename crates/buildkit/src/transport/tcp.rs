//! TCP connections: a standalone buildkitd over h2c or TLS (tonic does the
//! TLS), and raw streams for Docker Engine over `tcp://`.

use tokio::net::TcpStream;
use tonic::transport::Channel;

use crate::endpoint::{fmt_authority, TlsConfig};
use crate::error::{error_chain, Error, Result};

/// `tcp://host:port`.
pub(crate) fn target(host: &str, port: u16) -> String {
    format!("tcp://{}", fmt_authority(host, port))
}

/// Opens a TCP connection with `cannot connect to tcp://HOST:PORT: reason`
/// on failure.
pub(crate) async fn dial(host: &str, port: u16) -> Result<TcpStream> {
    let connect = TcpStream::connect((host, port));
    match tokio::time::timeout(super::CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => {
            // Best effort: gRPC is latency sensitive.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(Error::connect(target(host, port), &e)),
        Err(_) => Err(Error::Connect {
            target: target(host, port),
            reason: "timed out".into(),
        }),
    }
}

/// A Control API channel to a buildkitd at `host:port`.
pub(crate) async fn control_channel(
    host: &str,
    port: u16,
    tls: Option<&TlsConfig>,
) -> Result<Channel> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = format!("{scheme}://{}", fmt_authority(host, port));
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri.clone())
        .map_err(|e| Error::InvalidEndpoint {
            endpoint: uri.clone(),
            reason: error_chain(&e),
        })?
        .connect_timeout(super::CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        let config = super::tls::tonic_config(tls, host)?;
        endpoint = endpoint.tls_config(config).map_err(|e| Error::Tls {
            target: target(host, port),
            reason: error_chain(&e),
        })?;
    }
    endpoint.connect().await.map_err(|e| {
        let reason = if tls.is_some() {
            crate::error::tls_error_chain(&e)
        } else {
            error_chain(&e)
        };
        // rustls reports certificate problems as "invalid peer certificate".
        if tls.is_some()
            && (reason.contains("certificate") || reason.contains("tls") || reason.contains("TLS"))
        {
            Error::Tls {
                target: target(host, port),
                reason,
            }
        } else {
            Error::Connect {
                target: target(host, port),
                reason,
            }
        }
    })
}
