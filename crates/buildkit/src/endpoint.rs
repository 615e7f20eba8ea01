//! Where to find BuildKit: Docker Engine's embedded BuildKit or a standalone
//! `buildkitd`.
//!
//! Accepted strings:
//!
//! | string | meaning |
//! |---|---|
//! | `docker`, `docker://` | Docker Engine at `$DOCKER_HOST` (default `unix:///var/run/docker.sock`) |
//! | `docker://unix:///path`, `docker://tcp://host:port` | Docker Engine at that address |
//! | `unix:///path` | buildkitd listening on a unix socket |
//! | `tcp://host:port` | buildkitd over plain TCP |
//! | `tcp://host:port?ca=F&cert=F&key=F&servername=N` | buildkitd over TLS |
//!
//! For Docker over `tcp://`, `DOCKER_TLS_VERIFY` (non-empty) turns TLS on
//! with `ca.pem`, `cert.pem` and `key.pem` from `DOCKER_CERT_PATH` (default
//! `~/.docker`), like the docker CLI. `DOCKER_API_VERSION` (e.g. `1.44`)
//! makes the upgrades use versioned paths (`/v1.44/grpc`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Default Docker Engine socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// A BuildKit endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Docker Engine's embedded BuildKit, reached through the Engine API's
    /// `POST /grpc` and `POST /session` h2c upgrades.
    Docker(DockerEndpoint),
    /// A standalone `buildkitd` on a unix socket.
    Unix(PathBuf),
    /// A standalone `buildkitd` over TCP, optionally with TLS.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// TLS settings; `None` for plain h2c.
        tls: Option<TlsConfig>,
    },
}

/// Docker Engine address and API options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEndpoint {
    /// Where the Engine API listens.
    pub host: DockerHost,
    /// API version for the upgrade paths (`1.44` → `/v1.44/grpc`); `None`
    /// uses the unversioned paths, which every Engine since 19.03 serves.
    pub api_version: Option<String>,
}

/// Address of the Docker Engine API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// `unix:///path`.
    Unix(PathBuf),
    /// `tcp://host:port`, optionally with TLS.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// TLS settings; `None` for plain HTTP.
        tls: Option<TlsConfig>,
    },
}

/// TLS settings for a TCP endpoint. Files are PEM encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA bundle used to verify the server; `None` uses the system bundle
    /// (`/etc/ssl/certs/ca-certificates.crt` and similar).
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (mutual TLS); needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Client private key (mutual TLS); needs `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Name to verify the server certificate against; defaults to the host.
    pub server_name: Option<String>,
}

impl Endpoint {
    /// Parses an endpoint string, reading `DOCKER_HOST`, `DOCKER_TLS_VERIFY`,
    /// `DOCKER_CERT_PATH` and `DOCKER_API_VERSION` from the process
    /// environment for `docker`.
    pub fn parse(s: &str) -> Result<Self> {
        Self::parse_with_env(s, |name| std::env::var(name).ok())
    }

    /// Docker Engine as configured by the environment (`DOCKER_HOST`, ...).
    pub fn docker_from_env() -> Result<Self> {
        Self::parse("docker")
    }

    /// Like [`Endpoint::parse`] with an explicit environment lookup.
    pub fn parse_with_env(s: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            endpoint: s.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = s.trim();
        if trimmed == "docker" || trimmed == "docker://" {
            let host = match env("DOCKER_HOST").filter(|h| !h.is_empty()) {
                Some(h) => {
                    parse_docker_host(&h, &env).map_err(|reason| Error::InvalidEndpoint {
                        endpoint: format!("DOCKER_HOST={h}"),
                        reason,
                    })?
                }
                None => DockerHost::Unix(PathBuf::from(DEFAULT_DOCKER_SOCKET)),
            };
            return Ok(Endpoint::Docker(DockerEndpoint {
                host,
                api_version: api_version_from_env(&env),
            }));
        }
        if let Some(rest) = trimmed.strip_prefix("docker://") {
            let host = parse_docker_host(rest, &env).map_err(|r| invalid(&r))?;
            return Ok(Endpoint::Docker(DockerEndpoint {
                host,
                api_version: api_version_from_env(&env),
            }));
        }
        if let Some(path) = trimmed.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(
                parse_unix_path(path).map_err(|r| invalid(&r))?,
            ));
        }
        if let Some(rest) = trimmed.strip_prefix("tcp://") {
            let (authority, query) = match rest.split_once('?') {
                Some((a, q)) => (a, Some(q)),
                None => (rest, None),
            };
            let (host, port) = parse_host_port(authority, None).map_err(|r| invalid(&r))?;
            let tls = match query {
                Some(q) => parse_tls_query(q).map_err(|r| invalid(&r))?,
                None => None,
            };
            return Ok(Endpoint::Tcp { host, port, tls });
        }
        Err(invalid(
            "expected docker, docker://, unix:///path or tcp://host:port",
        ))
    }

    /// Uses TLS with these settings (only for `tcp://` endpoints; ignored
    /// otherwise).
    pub fn with_tls(mut self, config: TlsConfig) -> Self {
        match &mut self {
            Endpoint::Tcp { tls, .. }
            | Endpoint::Docker(DockerEndpoint {
                host: DockerHost::Tcp { tls, .. },
                ..
            }) => *tls = Some(config),
            _ => {}
        }
        self
    }

    /// True for Docker Engine endpoints.
    pub fn is_docker(&self) -> bool {
        matches!(self, Endpoint::Docker(_))
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Endpoint::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Docker(d) => write!(f, "docker ({})", d.host),
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp { host, port, tls } => {
                write!(f, "tcp://{}", fmt_authority(host, *port))?;
                if tls.is_some() {
                    f.write_str(" (TLS)")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerHost::Unix(path) => write!(f, "unix://{}", path.display()),
            DockerHost::Tcp { host, port, tls } => {
                write!(f, "tcp://{}", fmt_authority(host, *port))?;
                if tls.is_some() {
                    f.write_str(" (TLS)")?;
                }
                Ok(())
            }
        }
    }
}

/// `host:port`, bracketing IPv6 addresses.
pub(crate) fn fmt_authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn api_version_from_env(env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    env("DOCKER_API_VERSION")
        .map(|v| v.trim().trim_start_matches('v').to_owned())
        .filter(|v| !v.is_empty())
}

fn parse_unix_path(path: &str) -> std::result::Result<PathBuf, String> {
    if path.is_empty() {
        return Err("unix:// needs a socket path".into());
    }
    Ok(PathBuf::from(path))
}

fn parse_docker_host(
    value: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> std::result::Result<DockerHost, String> {
    let value = value.trim();
    if let Some(path) = value.strip_prefix("unix://") {
        return Ok(DockerHost::Unix(parse_unix_path(path)?));
    }
    if let Some(rest) = value.strip_prefix("tcp://") {
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let tls_verify = env("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
        let (host, port) = parse_host_port(authority, Some(if tls_verify { 2376 } else { 2375 }))?;
        let tls = tls_verify.then(|| {
            let dir = env("DOCKER_CERT_PATH")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".docker")))
                .unwrap_or_else(|| PathBuf::from(".docker"));
            TlsConfig {
                ca_cert: Some(dir.join("ca.pem")),
                client_cert: Some(dir.join("cert.pem")),
                client_key: Some(dir.join("key.pem")),
                server_name: None,
            }
        });
        return Ok(DockerHost::Tcp { host, port, tls });
    }
    let scheme = value.split("://").next().unwrap_or(value);
    Err(format!(
        "unsupported Docker host {value:?} (scheme {scheme:?}); use unix:///path or tcp://host:port"
    ))
}

fn parse_host_port(
    authority: &str,
    default_port: Option<u16>,
) -> std::result::Result<(String, u16), String> {
    let authority = authority.trim_end_matches('/');
    if authority.is_empty() {
        return Err("missing host".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unterminated IPv6 address".to_owned())?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected {after:?} after IPv6 address")),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("invalid port {p:?}"))?,
        None => default_port.ok_or_else(|| "missing port (tcp://host:port)".to_owned())?,
    };
    Ok((host, port))
}

fn parse_tls_query(query: &str) -> std::result::Result<Option<TlsConfig>, String> {
    let mut tls = TlsConfig::default();
    let mut enabled = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "ca" | "cacert" => tls.ca_cert = Some(PathBuf::from(value)),
            "cert" => tls.client_cert = Some(PathBuf::from(value)),
            "key" => tls.client_key = Some(PathBuf::from(value)),
            "servername" | "server-name" => tls.server_name = Some(value.to_owned()),
            "tls" => {
                enabled = match value {
                    "" | "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(format!("invalid tls={value:?}")),
                };
                continue;
            }
            _ => {
                return Err(format!(
                    "unknown option {key:?} (expected ca, cert, key, servername, tls)"
                ))
            }
        }
        enabled = true;
    }
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        return Err("cert and key must be given together".into());
    }
    Ok(enabled.then_some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(s: &str, env: &[(&str, &str)]) -> Result<Endpoint> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Endpoint::parse_with_env(s, |k| env.get(k).cloned())
    }

    fn docker(host: DockerHost) -> Endpoint {
        Endpoint::Docker(DockerEndpoint {
            host,
            api_version: None,
        })
    }

    #[test]
    fn docker_default_socket() {
        for s in ["docker", "docker://", " docker "] {
            assert_eq!(
                parse(s, &[]).unwrap(),
                docker(DockerHost::Unix("/var/run/docker.sock".into()))
            );
        }
    }

    #[test]
    fn docker_host_unix_and_tcp() {
        assert_eq!(
            parse(
                "docker",
                &[("DOCKER_HOST", "unix:///run/user/1000/docker.sock")]
            )
            .unwrap(),
            docker(DockerHost::Unix("/run/user/1000/docker.sock".into()))
        );
        assert_eq!(
            parse("docker", &[("DOCKER_HOST", "tcp://10.0.0.5:2375")]).unwrap(),
            docker(DockerHost::Tcp {
                host: "10.0.0.5".into(),
                port: 2375,
                tls: None
            })
        );
        assert_eq!(
            parse("docker", &[("DOCKER_HOST", "tcp://example")]).unwrap(),
            docker(DockerHost::Tcp {
                host: "example".into(),
                port: 2375,
                tls: None
            })
        );
        assert_eq!(
            parse("docker://tcp://[::1]:2375", &[]).unwrap(),
            docker(DockerHost::Tcp {
                host: "::1".into(),
                port: 2375,
                tls: None
            })
        );
    }

    #[test]
    fn docker_tls_verify() {
        let ep = parse(
            "docker",
            &[
                ("DOCKER_HOST", "tcp://dockerd:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs"),
                ("DOCKER_API_VERSION", "1.44"),
            ],
        )
        .unwrap();
        assert_eq!(
            ep,
            Endpoint::Docker(DockerEndpoint {
                host: DockerHost::Tcp {
                    host: "dockerd".into(),
                    port: 2376,
                    tls: Some(TlsConfig {
                        ca_cert: Some("/certs/ca.pem".into()),
                        client_cert: Some("/certs/cert.pem".into()),
                        client_key: Some("/certs/key.pem".into()),
                        server_name: None,
                    }),
                },
                api_version: Some("1.44".into()),
            })
        );
    }

    #[test]
    fn docker_host_unsupported() {
        let err = parse("docker", &[("DOCKER_HOST", "ssh://me@box")]).unwrap_err();
        assert!(
            err.to_string().contains("DOCKER_HOST=ssh://me@box"),
            "{err}"
        );
        assert!(err.to_string().contains("unsupported Docker host"), "{err}");
    }

    #[test]
    fn standalone_unix() {
        assert_eq!(
            parse("unix:///run/buildkit/buildkitd.sock", &[]).unwrap(),
            Endpoint::Unix("/run/buildkit/buildkitd.sock".into())
        );
        assert!(parse("unix://", &[]).is_err());
    }

    #[test]
    fn standalone_tcp_plain_and_tls() {
        assert_eq!(
            parse("tcp://buildkitd:1234", &[]).unwrap(),
            Endpoint::Tcp {
                host: "buildkitd".into(),
                port: 1234,
                tls: None
            }
        );
        assert_eq!(
            parse(
                "tcp://buildkitd:1234?ca=/c/ca.pem&cert=/c/cert.pem&key=/c/key.pem&servername=bk",
                &[]
            )
            .unwrap(),
            Endpoint::Tcp {
                host: "buildkitd".into(),
                port: 1234,
                tls: Some(TlsConfig {
                    ca_cert: Some("/c/ca.pem".into()),
                    client_cert: Some("/c/cert.pem".into()),
                    client_key: Some("/c/key.pem".into()),
                    server_name: Some("bk".into()),
                })
            }
        );
        assert_eq!(
            parse("tcp://h:1?tls", &[]).unwrap(),
            Endpoint::Tcp {
                host: "h".into(),
                port: 1,
                tls: Some(TlsConfig::default())
            }
        );
    }

    #[test]
    fn tcp_errors() {
        for s in [
            "tcp://host",
            "tcp://:12",
            "tcp://h:99999",
            "tcp://h:1?cert=/x",
            "tcp://h:1?bogus=1",
            "ssh://x",
            "",
        ] {
            let err = parse(s, &[]).unwrap_err();
            assert!(matches!(err, Error::InvalidEndpoint { .. }), "{s}: {err:?}");
        }
    }

    #[test]
    fn display() {
        assert_eq!(
            parse("tcp://[::1]:80", &[]).unwrap().to_string(),
            "tcp://[::1]:80"
        );
        assert_eq!(
            parse("docker", &[]).unwrap().to_string(),
            "docker (unix:///var/run/docker.sock)"
        );
    }

    #[test]
    fn with_tls_sets_tcp_only() {
        let tls = TlsConfig {
            server_name: Some("x".into()),
            ..TlsConfig::default()
        };
        let ep = parse("tcp://h:1", &[]).unwrap().with_tls(tls.clone());
        assert!(matches!(ep, Endpoint::Tcp { tls: Some(_), .. }));
        let ep = parse("unix:///s", &[]).unwrap().with_tls(tls);
        assert_eq!(ep, Endpoint::Unix("/s".into()));
    }
}
