//! A small OCI distribution client for the publish stage, on `oci-client`.
//!
//! * Credentials come from the user's Docker configuration and credential
//!   helpers ([`mybake_buildkit::auth::AuthService`]), looked up once per
//!   registry host.
//! * Plain HTTP for loopback registries (`localhost`, `127.0.0.0/8`, `::1`)
//!   and for the hosts listed in [`RegistryOptions::insecure`]; HTTPS
//!   (rustls, ring) otherwise.
//! * Every operation is retried with exponential backoff (jittered, bounded
//!   by [`RetryPolicy`]) on connection errors, timeouts, `429` and `5xx`;
//!   each attempt of a small request is bounded by
//!   [`RegistryOptions::request_timeout`] (blob transfers by the connect and
//!   read timeouts instead, as they may legitimately take long).
//! * Failures are typed ([`RegistryError`]) and name the reference.
//!
//! Where `oci-client` 0.18 lacks something, this module talks HTTP itself
//! with the same `reqwest` (see [`RegistryClient::head_manifest`] and
//! [`RegistryClient::mount_blob`]):
//! * `HEAD` of a manifest returning digest, size and media type
//!   (`fetch_manifest_digest` falls back to a `GET` and returns the digest
//!   only);
//! * cross-repository blob mount: `oci-client`'s `mount_blob` treats `202`
//!   (mount refused, upload session opened) as an error and leaves the
//!   session open; here `202` cancels the session and reports "not
//!   mounted" so the caller copies the blob.
//!
//! Those raw requests authenticate lazily: without an `Authorization`
//! header first, then on a `401` challenge with a bearer token obtained
//! through `oci-client`'s token flow (`Bearer` challenge) or with the basic
//! credentials (`Basic` challenge), cached per repository and operation.
//!
//! Files: `options.rs` (retry policy, timeouts, credentials, cancellation),
//! `error.rs` (typed failures, the retry decision, OCI error envelopes),
//! this file (the client and reference helpers).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use mybake_buildkit::auth::{AuthConfig, AuthService};
use mybake_buildkit::CancellationToken;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
// oci-client's descriptor: a boundary type, built only here from a digest
// and size for its blob calls (the one descriptor type is `crate::oci::Descriptor`).
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;
use tokio::sync::{mpsc, Mutex};

pub use oci_client::Reference;

use super::index::{sha256_digest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use super::PublishEvent;

/// The manifest media types asked for (`Accept`) when reading manifests:
/// distribution 2.8 refuses to serve an OCI index without its type here.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

mod error;
mod options;

pub use error::RegistryError;
pub(crate) use error::{Fault, Op};
pub use options::{RegistryOptions, RetryPolicy};

pub use crate::oci::is_plain_http;

/// A manifest as read from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The raw bytes (what the digest is computed over).
    pub bytes: Bytes,
    /// `sha256:...` of the bytes.
    pub digest: String,
    /// The media type (the document's `mediaType`; without one, OCI index
    /// when it lists `manifests`, else OCI image manifest).
    pub media_type: String,
}

impl FetchedManifest {
    /// The size in bytes.
    pub fn size(&self) -> i64 {
        self.bytes.len() as i64
    }
}

/// The media type of a manifest document: its `mediaType`, else guessed
/// from its shape.
pub fn manifest_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    Some(match probe.media_type {
        Some(m) if !m.is_empty() => m,
        _ if probe.manifests.is_some() => OCI_INDEX.to_owned(),
        _ => OCI_MANIFEST.to_owned(),
    })
}

/// What a manifest `HEAD` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`.
    pub digest: String,
    /// `Content-Length` (-1 when absent).
    pub size: i64,
    /// `Content-Type`.
    pub media_type: String,
}

#[derive(Clone)]
enum RawAuth {
    Bearer(String),
    Basic(String, String),
}

/// The per-registry state: an `oci-client` client with that registry's
/// protocol, a plain `reqwest` client for the raw calls, the credentials.
struct Host {
    registry: String,
    scheme: &'static str,
    oci: oci_client::Client,
    http: reqwest::Client,
    auth: RegistryAuth,
    raw_auth: Mutex<HashMap<(String, bool), RawAuth>>,
}

/// The registry client. Cheap to clone; clones share connections,
/// credentials and tokens.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    options: RegistryOptions,
    auth: AuthService,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    events: Option<mpsc::Sender<PublishEvent>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

const USER_AGENT: &str = concat!("mybake/", env!("CARGO_PKG_VERSION"));

impl RegistryClient {
    /// A client; `events` receives [`PublishEvent::Retrying`] notices.
    pub fn new(
        options: RegistryOptions,
        events: Option<mpsc::Sender<PublishEvent>>,
    ) -> Result<Self, RegistryError> {
        // reqwest (feature `rustls-no-provider`) needs a process-wide rustls
        // provider; ring is already in the tree. Installing twice is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let auth = match &options.auth {
            Some(a) => a.clone(),
            None => AuthService::from_env().map_err(|e| RegistryError::Credentials {
                registry: "(docker config)".to_owned(),
                message: e.to_string(),
            })?,
        };
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                options,
                auth,
                hosts: Mutex::new(HashMap::new()),
                events,
            }),
        })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    async fn host(&self, reference: &Reference) -> Result<Arc<Host>, RegistryError> {
        let registry = reference.resolve_registry().to_owned();
        let mut hosts = self.inner.hosts.lock().await;
        if let Some(h) = hosts.get(&registry) {
            return Ok(h.clone());
        }
        let opts = &self.inner.options;
        let plain = is_plain_http(&registry, &opts.insecure);
        let credentials = self.inner.auth.credentials(&registry).await.map_err(|e| {
            RegistryError::Credentials {
                registry: registry.clone(),
                message: e.to_string(),
            }
        })?;
        let auth = registry_auth(&credentials);
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(opts.connect_timeout),
            read_timeout: Some(opts.read_timeout),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let oci = oci_client::Client::try_from(config).map_err(|e| RegistryError::Invalid {
            reference: registry.clone(),
            message: format!("cannot create a registry client: {e}"),
        })?;
        // Anonymous access to a plain-HTTP (local) registry: store no auth,
        // so oci-client does not probe `/v2/` before every request. Other
        // registries get their auth stored (anonymous too: public registries
        // hand out anonymous bearer tokens).
        if !(plain && auth == RegistryAuth::Anonymous) {
            oci.store_auth_if_needed(&registry, &auth).await;
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .build()
            .map_err(|e| RegistryError::Invalid {
                reference: registry.clone(),
                message: format!("cannot create an HTTP client: {e}"),
            })?;
        let host = Arc::new(Host {
            registry: registry.clone(),
            scheme: if plain { "http" } else { "https" },
            oci,
            http,
            auth,
            raw_auth: Mutex::new(HashMap::new()),
        });
        hosts.insert(registry, host.clone());
        Ok(host)
    }

    /// Runs `attempt` until it succeeds, fails for good or runs out of
    /// attempts; each attempt bounded by `timeout` when given.
    async fn retry<T, F, Fut>(
        &self,
        reference: &str,
        op: Op,
        timeout: Option<Duration>,
        mut attempt: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        let policy = &self.inner.options.retry;
        let cancel = &self.inner.options.cancel;
        let interrupted = || RegistryError::Interrupted {
            reference: reference.to_owned(),
        };
        let attempts = policy.attempts.max(1);
        let mut n = 1;
        loop {
            if cancel.is_cancelled() {
                return Err(interrupted());
            }
            let one = async {
                match timeout {
                    Some(t) => match tokio::time::timeout(t, attempt()).await {
                        Ok(r) => r,
                        Err(_) => Err(Fault::Transport(format!(
                            "no answer within {} ms",
                            t.as_millis()
                        ))),
                    },
                    None => attempt().await,
                }
            };
            // An attempt that ended counts even when the cancellation
            // came at the same time (`biased`): its effect happened.
            let result = tokio::select! {
                biased;
                r = one => r,
                _ = cancel.cancelled() => return Err(interrupted()),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(fault) if fault.is_retryable() && n < attempts => {
                    let delay = policy.delay(n);
                    if let Some(events) = &self.inner.events {
                        let reason = match &fault {
                            Fault::Transport(m) => m.clone(),
                            Fault::Status {
                                status, message, ..
                            } => match status {
                                Some(s) => format!("{s}: {message}"),
                                None => message.clone(),
                            },
                            Fault::Unauthorized(m) | Fault::Invalid(m) => m.clone(),
                        };
                        let _ = events
                            .send(PublishEvent::Retrying {
                                reference: reference.to_owned(),
                                attempt: n,
                                delay,
                                reason,
                            })
                            .await;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return Err(interrupted()),
                    }
                    n += 1;
                }
                Err(fault) => return Err(fault.into_error(reference, n, op)),
            }
        }
    }

    fn small(&self) -> Option<Duration> {
        Some(self.inner.options.request_timeout)
    }

    /// Reads a manifest or index (by tag or digest), verifying the digest
    /// when the reference has one.
    pub async fn get_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        let host = self.host(reference).await?;
        let name = reference.whole();
        let (bytes, digest) = self
            .retry(&name, Op::Read, self.small(), || async {
                host.oci
                    .pull_manifest_raw(reference, &host.auth, MANIFEST_ACCEPT)
                    .await
                    .map_err(Fault::from_oci)
            })
            .await?;
        let media_type =
            manifest_media_type(&bytes).ok_or_else(|| RegistryError::ManifestInvalid {
                reference: name.clone(),
                message: "not a JSON manifest".to_owned(),
            })?;
        Ok(FetchedManifest {
            bytes,
            digest,
            media_type,
        })
    }

    /// `HEAD` of a manifest: `None` when it does not exist.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let host = self.host(reference).await?;
        let name = reference.whole();
        let target = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_owned();
        let url = format!(
            "{}://{}/v2/{}/manifests/{}",
            host.scheme,
            host.registry,
            reference.repository(),
            target
        );
        let accept = MANIFEST_ACCEPT.join(", ");
        self.retry(&name, Op::Read, self.small(), || async {
            let res = self
                .raw_send(&host, reference, RegistryOperation::Pull, |c| {
                    c.head(&url).header(ACCEPT, &accept)
                })
                .await?;
            let status = res.status();
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(Fault::from_status(status, b""));
            }
            let headers = res.headers();
            let text = |v: Option<&HeaderValue>| {
                v.and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let digest = text(headers.get("Docker-Content-Digest"));
            let digest = if digest.is_empty() {
                reference.digest().unwrap_or_default().to_owned()
            } else {
                digest
            };
            Ok(Some(ManifestHead {
                digest,
                size: text(headers.get(CONTENT_LENGTH)).parse().unwrap_or(-1),
                media_type: text(headers.get(CONTENT_TYPE)),
            }))
        })
        .await
    }

    /// Writes a manifest (by tag or digest) with its media type as the
    /// `Content-Type`.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let host = self.host(reference).await?;
        let name = reference.whole();
        let content_type =
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::Invalid {
                reference: name.clone(),
                message: format!("invalid media type {media_type:?}"),
            })?;
        self.retry(&name, Op::PutManifest, self.small(), || async {
            host.oci
                .push_manifest_raw(reference, bytes.clone(), content_type.clone())
                .await
                .map(|_| ())
                .map_err(Fault::from_oci)
        })
        .await
    }

    /// Whether `repository` (a reference whose tag/digest is ignored) has
    /// the blob.
    pub async fn blob_exists(
        &self,
        repository: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let host = self.host(repository).await?;
        let name = blob_name(repository, digest);
        self.retry(&name, Op::Read, self.small(), || async {
            host.oci
                .blob_exists(repository, digest)
                .await
                .map_err(Fault::from_oci)
        })
        .await
    }

    /// Cross-repository mount (`POST /v2/<to>/blobs/uploads/?mount=&from=`),
    /// same registry only: `true` when mounted (201), `false` when the
    /// registry declined (202; the upload session it opened is cancelled)
    /// and the blob must be copied.
    pub async fn mount_blob(
        &self,
        to: &Reference,
        from: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let host = self.host(to).await?;
        let name = blob_name(to, digest);
        let url = format!(
            "{}://{}/v2/{}/blobs/uploads/",
            host.scheme,
            host.registry,
            to.repository()
        );
        let query = [("mount", digest), ("from", from.repository())];
        self.retry(&name, Op::Read, self.small(), || async {
            let res = self
                .raw_send(&host, to, RegistryOperation::Push, |c| {
                    c.post(&url).query(&query).header(CONTENT_LENGTH, "0")
                })
                .await?;
            match res.status() {
                StatusCode::CREATED => Ok(true),
                StatusCode::ACCEPTED => {
                    if let Some(location) = res
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                    {
                        let location = if location.starts_with('/') {
                            format!("{}://{}{}", host.scheme, host.registry, location)
                        } else {
                            location.to_owned()
                        };
                        // Best effort: an abandoned session expires anyway.
                        let _ = self
                            .raw_send(&host, to, RegistryOperation::Push, |c| c.delete(&location))
                            .await;
                    }
                    Ok(false)
                }
                status => {
                    let body = res.bytes().await.unwrap_or_default();
                    Err(Fault::from_status(status, &body))
                }
            }
        })
        .await
    }

    /// Copies a blob between repositories (any registries), streaming it.
    pub async fn copy_blob(
        &self,
        from: &Reference,
        to: &Reference,
        digest: &str,
        size: i64,
    ) -> Result<(), RegistryError> {
        let src = self.host(from).await?;
        let dst = self.host(to).await?;
        let name = blob_name(to, digest);
        let descriptor = OciDescriptor {
            digest: digest.to_owned(),
            size,
            ..OciDescriptor::default()
        };
        self.retry(&name, Op::Read, None, || async {
            let stream = src
                .oci
                .pull_blob_stream(from, &descriptor)
                .await
                .map_err(Fault::from_oci)?;
            let body = stream.stream.map_err(OciDistributionError::IoError);
            dst.oci
                .push_blob_stream(to, body, digest, u64::try_from(size).ok())
                .await
                .map(|_| ())
                .map_err(Fault::from_oci)
        })
        .await
        .map_err(|e| match e {
            // Name the source for a blob that is missing there.
            RegistryError::NotFound { message, .. } => RegistryError::NotFound {
                reference: blob_name(from, digest),
                message,
            },
            other => other,
        })
    }

    /// Reads a (small) blob into memory, verifying its digest; refuses
    /// blobs larger than `max_size`.
    pub async fn get_blob(
        &self,
        repository: &Reference,
        digest: &str,
        size: i64,
        max_size: i64,
    ) -> Result<Bytes, RegistryError> {
        let name = blob_name(repository, digest);
        if size > max_size {
            return Err(RegistryError::Invalid {
                reference: name,
                message: format!("blob of {size} bytes is larger than {max_size}"),
            });
        }
        let host = self.host(repository).await?;
        let descriptor = OciDescriptor {
            digest: digest.to_owned(),
            size,
            ..OciDescriptor::default()
        };
        self.retry(&name, Op::Read, self.small(), || async {
            let mut out = Vec::new();
            host.oci
                .pull_blob(repository, &descriptor, &mut out)
                .await
                .map_err(Fault::from_oci)?;
            Ok(Bytes::from(out))
        })
        .await
    }

    /// Uploads a blob (returns its digest); used for small documents
    /// (configs, attestations) and by tests.
    pub async fn push_blob(
        &self,
        repository: &Reference,
        data: Bytes,
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(&data);
        if self.blob_exists(repository, &digest).await? {
            return Ok(digest);
        }
        let host = self.host(repository).await?;
        let name = blob_name(repository, &digest);
        self.retry(&name, Op::Read, self.small(), || async {
            host.oci
                .push_blob(repository, data.clone(), &digest)
                .await
                .map(|_| ())
                .map_err(Fault::from_oci)
        })
        .await?;
        Ok(digest)
    }

    /// Sends a raw request with the cached credentials for the repository
    /// and operation; on a `401` challenge obtains them (bearer token
    /// through oci-client's token flow, or basic credentials) and resends.
    async fn raw_send(
        &self,
        host: &Host,
        reference: &Reference,
        op: RegistryOperation,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Fault> {
        let key = (
            reference.repository().to_owned(),
            op == RegistryOperation::Push,
        );
        let apply = |req: reqwest::RequestBuilder, auth: &Option<RawAuth>| match auth {
            Some(RawAuth::Bearer(t)) => req.header(AUTHORIZATION, format!("Bearer {t}")),
            Some(RawAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        };
        let cached = host.raw_auth.lock().await.get(&key).cloned();
        let res = apply(build(&host.http), &cached)
            .send()
            .await
            .map_err(Fault::from_reqwest)?;
        if res.status() != StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        let challenge = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let fresh = if challenge.starts_with("bearer") {
            // oci-client's token flow (it also caches the token for its own
            // requests); anonymous credentials get an anonymous token.
            match host
                .oci
                .auth(reference, &host.auth, op)
                .await
                .map_err(Fault::from_oci)?
            {
                Some(token) => RawAuth::Bearer(token),
                None => return Ok(res),
            }
        } else if challenge.starts_with("basic") {
            match &host.auth {
                RegistryAuth::Basic(u, p) => RawAuth::Basic(u.clone(), p.clone()),
                _ => return Ok(res),
            }
        } else {
            return Ok(res);
        };
        let fresh = Some(fresh);
        let res = apply(build(&host.http), &fresh)
            .send()
            .await
            .map_err(Fault::from_reqwest)?;
        if res.status() != StatusCode::UNAUTHORIZED {
            if let Some(f) = fresh {
                host.raw_auth.lock().await.insert(key, f);
            }
        }
        Ok(res)
    }
}

fn blob_name(repository: &Reference, digest: &str) -> String {
    format!(
        "{}/{}@{}",
        repository.registry(),
        repository.repository(),
        digest
    )
}

/// Docker credentials as `oci-client` auth: a registry token as a bearer
/// token, user/password as basic auth. An identity (OAuth refresh) token is
/// sent as the basic-auth password with the user `<token>`, which registries
/// that issue such tokens accept on their token endpoint in place of
/// docker's refresh-token grant (not implemented by oci-client).
fn registry_auth(c: &AuthConfig) -> RegistryAuth {
    if !c.registry_token.is_empty() {
        RegistryAuth::Bearer(c.registry_token.clone())
    } else if !c.identity_token.is_empty() {
        let user = if c.username.is_empty() {
            "<token>".to_owned()
        } else {
            c.username.clone()
        };
        RegistryAuth::Basic(user, c.identity_token.clone())
    } else if !c.username.is_empty() || !c.password.is_empty() {
        RegistryAuth::Basic(c.username.clone(), c.password.clone())
    } else {
        RegistryAuth::Anonymous
    }
}

/// Parses an image reference (`localhost:5000/app:dev`, `app@sha256:...`)
/// with the one reference parser ([`crate::oci::reference`]), into
/// oci-client's `Reference`, the type its calls take (a boundary type: it
/// is built here and nowhere else). No tag and no digest means `latest`.
pub fn parse_reference(text: &str) -> Result<Reference, RegistryError> {
    let r = crate::oci::reference::parse(text.trim()).map_err(|e| RegistryError::Invalid {
        reference: text.to_owned(),
        message: format!("invalid image reference: {}", e.message),
    })?;
    let registry = r.registry().to_owned();
    let repository = r.repository().into_owned();
    Ok(match (r.tag, r.digest) {
        (Some(t), Some(d)) => {
            Reference::with_tag_and_digest(registry, repository, t.into(), d.into())
        }
        (None, Some(d)) => Reference::with_digest(registry, repository, d.into()),
        (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest").into()),
    })
}

/// `registry/repository` of a reference.
pub fn repository_name(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// The same repository at a digest.
pub fn at_digest(repository: &Reference, digest: &str) -> Reference {
    Reference::with_digest(
        repository.registry().to_owned(),
        repository.repository().to_owned(),
        digest.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_mapping() {
        let mut c = AuthConfig::default();
        assert_eq!(registry_auth(&c), RegistryAuth::Anonymous);
        c.username = "u".into();
        c.password = "p".into();
        assert_eq!(
            registry_auth(&c),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        c.registry_token = "t".into();
        assert_eq!(registry_auth(&c), RegistryAuth::Bearer("t".into()));
    }

    #[test]
    fn media_type_guess() {
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2,"config":{}}"#).as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            manifest_media_type(format!(r#"{{"mediaType":"{DOCKER_MANIFEST}"}}"#).as_bytes())
                .as_deref(),
            Some(DOCKER_MANIFEST)
        );
        assert_eq!(manifest_media_type(b"nope"), None);
    }
}
