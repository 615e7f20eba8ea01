//! Docker Engine API transport.
//!
//! BuildKit embedded in Docker Engine is reached through two HTTP/1.1
//! upgrade endpoints of the Engine API (since Engine 19.03):
//!
//! * `POST /grpc` with `Connection: Upgrade`, `Upgrade: h2c`: after
//!   `101 Switching Protocols` the stream is an HTTP/2 connection to the
//!   BuildKit Control API (the daemon is the HTTP/2 server);
//! * `POST /session` with the same headers plus the
//!   `X-Docker-Expose-Session-*` headers: after `101` the daemon is the
//!   HTTP/2 *client* and the caller serves the session services.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::transport::Channel;

use super::{BoxIo, CONNECT_TIMEOUT};
use crate::endpoint::{DockerEndpoint, DockerHost};
use crate::error::{error_chain, Error, Result};

/// Largest error body read from a refused upgrade.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// User agent sent on the Engine API requests.
const USER_AGENT_VALUE: &str = concat!("mybake-buildkit/", env!("CARGO_PKG_VERSION"));

/// Dials the Docker Engine API and performs h2c upgrades on it.
pub(crate) struct DockerTransport {
    host: DockerHost,
    api_version: Option<String>,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    target: String,
}

impl std::fmt::Debug for DockerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerTransport")
            .field("host", &self.host)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

impl DockerTransport {
    /// Prepares the transport (loads TLS material; does not connect).
    pub(crate) fn new(endpoint: &DockerEndpoint) -> Result<Self> {
        let tls = match &endpoint.host {
            DockerHost::Tcp {
                host,
                tls: Some(tls),
                ..
            } => Some(super::tls::rustls_connector(tls, host)?),
            _ => None,
        };
        Ok(DockerTransport {
            host: endpoint.host.clone(),
            api_version: endpoint.api_version.clone(),
            tls,
            target: endpoint.host.to_string(),
        })
    }

    /// Human readable daemon address, for messages.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Request path for an Engine API endpoint (`/grpc` or `/v1.44/grpc`).
    pub(crate) fn path(&self, endpoint: &str) -> String {
        match &self.api_version {
            Some(v) => format!("/v{v}{endpoint}"),
            None => endpoint.to_owned(),
        }
    }

    /// Opens a new connection to the Engine API socket.
    pub(crate) async fn dial(&self) -> Result<BoxIo> {
        match &self.host {
            DockerHost::Unix(path) => Ok(Box::new(super::unix::dial(path).await?)),
            DockerHost::Tcp { host, port, .. } => {
                let tcp = super::tcp::dial(host, *port).await?;
                match &self.tls {
                    None => Ok(Box::new(tcp)),
                    Some((connector, name)) => {
                        let stream =
                            connector
                                .connect(name.clone(), tcp)
                                .await
                                .map_err(|e| Error::Tls {
                                    target: self.target.clone(),
                                    reason: crate::error::tls_error_chain(&e),
                                })?;
                        Ok(Box::new(stream))
                    }
                }
            }
        }
    }

    /// Opens a new connection and upgrades it with `POST {path}` to h2c,
    /// sending `headers` (repeated names allowed) with the request.
    pub(crate) async fn upgrade(
        &self,
        endpoint: &str,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Upgraded> {
        let path = self.path(endpoint);
        match tokio::time::timeout(CONNECT_TIMEOUT, self.upgrade_inner(&path, headers)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                target: self.target.clone(),
                reason: format!("timed out waiting for the POST {path} upgrade"),
            }),
        }
    }

    async fn upgrade_inner(
        &self,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Upgraded> {
        let io = self.dial().await?;
        let connect_err = |what: &str, e: &hyper::Error| Error::Connect {
            target: self.target.clone(),
            reason: format!("{what}: {}", error_chain(e)),
        };
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| connect_err("HTTP handshake failed", &e))?;
        // Drives the HTTP/1.1 exchange until the upgrade hands the stream
        // over; its own errors show up in `send_request` below.
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });

        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, "docker")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "h2c")
            .body(Empty::<Bytes>::new())
            .map_err(|e| Error::Connect {
                target: self.target.clone(),
                reason: format!("invalid request POST {path}: {e}"),
            })?;
        for (name, value) in headers {
            request.headers_mut().append(name.clone(), value.clone());
        }

        let response = sender
            .send_request(request)
            .await
            .map_err(|e| connect_err(&format!("POST {path} failed"), &e))?;
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let body = Limited::new(response.into_body(), MAX_ERROR_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(Error::UpgradeRefused {
                target: self.target.clone(),
                path: path.to_owned(),
                status,
                message: error_message(&body),
            });
        }
        hyper::upgrade::on(response)
            .await
            .map_err(|e| connect_err(&format!("upgrade of POST {path} failed"), &e))
    }

    /// A Control API channel; every (re)connection is a new `POST /grpc`
    /// upgrade.
    pub(crate) async fn control_channel(self: &Arc<Self>) -> Result<Channel> {
        let first = self.upgrade("/grpc", &[]).await?;
        let this = Arc::clone(self);
        let dial_again = move || {
            let this = Arc::clone(&this);
            async move { this.upgrade("/grpc", &[]).await }
        };
        super::channel_with("http://docker", first, dial_again)
            .await
            .map_err(|e| Error::Connect {
                target: self.target.clone(),
                reason: error_chain(&e),
            })
    }
}

/// The Engine's error text: `{"message": "..."}` bodies are unwrapped,
/// anything else is returned trimmed.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct EngineError {
        message: String,
    }
    match serde_json::from_slice::<EngineError>(body) {
        Ok(e) => e.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// A fake Engine that records the request head and answers `answer`.
    async fn fake_engine(
        answer: &'static str,
    ) -> (
        tempfile::TempDir,
        DockerTransport,
        tokio::task::JoinHandle<String>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            conn.write_all(answer.as_bytes()).await.unwrap();
            if answer.starts_with("HTTP/1.1 101") {
                // Echo what follows the upgrade.
                let n = conn.read(&mut buf).await.unwrap();
                conn.write_all(&buf[..n]).await.unwrap();
            }
            String::from_utf8(head).unwrap()
        });
        let transport = DockerTransport::new(&DockerEndpoint {
            host: DockerHost::Unix(sock),
            api_version: Some("1.44".into()),
        })
        .unwrap();
        (dir, transport, server)
    }

    #[tokio::test]
    async fn refused_upgrade_reports_status_and_engine_message() {
        let (_dir, transport, server) = fake_engine(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n{\"message\":\"session not allowed\"}\n",
        )
        .await;
        let err = transport.upgrade("/session", &[]).await.unwrap_err();
        match &err {
            Error::UpgradeRefused {
                status,
                message,
                path,
                ..
            } => {
                assert_eq!(*status, StatusCode::BAD_REQUEST);
                assert_eq!(message, "session not allowed");
                assert_eq!(path, "/v1.44/session");
            }
            other => panic!("unexpected {other:?}"),
        }
        server.await.unwrap();
    }

    #[tokio::test]
    async fn upgrade_sends_headers_and_hands_over_the_stream() {
        let (_dir, transport, server) =
            fake_engine("HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
                .await;
        let method = HeaderName::from_static("x-docker-expose-session-grpc-method");
        let upgraded = transport
            .upgrade(
                "/session",
                &[
                    (method.clone(), HeaderValue::from_static("/a.B/C")),
                    (method, HeaderValue::from_static("/a.B/D")),
                ],
            )
            .await
            .unwrap();
        let mut io = TokioIo::new(upgraded);
        io.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        let head = server.await.unwrap();
        assert!(
            head.starts_with("POST /v1.44/session HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("Upgrade: h2c\r\n"), "{head}");
        assert!(head.contains("Connection: Upgrade\r\n"), "{head}");
        assert!(
            head.contains("X-Docker-Expose-Session-Grpc-Method: /a.B/C\r\n"),
            "{head}"
        );
        assert!(
            head.contains("X-Docker-Expose-Session-Grpc-Method: /a.B/D\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn missing_socket_is_connect_error() {
        let transport = DockerTransport::new(&DockerEndpoint {
            host: DockerHost::Unix("/nonexistent/docker.sock".into()),
            api_version: None,
        })
        .unwrap();
        let err = transport.upgrade("/grpc", &[]).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot connect to unix:///nonexistent/docker.sock: "),
            "{err}"
        );
    }
}
