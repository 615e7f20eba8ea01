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

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1).
    pub attempts: u32,
    /// The delay after the first failed attempt; doubled after each further one.
    pub initial_delay: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling up to 10 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based) before its
    /// jitter: `initial_delay * 2^(attempt-1)`, at most `max_delay`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }

    /// The delay actually waited: [`Self::base_delay`] scaled by a random
    /// factor in [0.5, 1.0] so that parallel requests do not retry in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
        self.base_delay(attempt).mul_f64(fraction)
    }
}

/// How to reach registries.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Registries (`host` or `host:port`) to reach over plain HTTP besides
    /// the loopback ones; a bare host covers all its ports.
    pub insecure: Vec<String>,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
    /// The limit for one attempt of a small request (manifests, HEADs,
    /// mounts, tag writes).
    pub request_timeout: Duration,
    /// The limit for opening a connection.
    pub connect_timeout: Duration,
    /// The limit for a pause while reading a response (blob transfers).
    pub read_timeout: Duration,
    /// Where credentials come from; `None`: the user's Docker configuration
    /// ([`AuthService::from_env`]).
    pub auth: Option<AuthService>,
    /// Once cancelled, every request of the client stops at once (the
    /// attempt in flight is dropped, no retry is made) and fails with
    /// [`RegistryError::Interrupted`].
    pub cancel: CancellationToken,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            auth: None,
            cancel: CancellationToken::new(),
        }
    }
}

impl fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("insecure", &self.insecure)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("auth", &self.auth.as_ref().map(|_| "<configured>"))
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// A failed registry operation, naming the reference it was about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry refused the credentials (or their absence): 401/403.
    #[error("{reference}: authentication denied: {message}")]
    AuthDenied {
        /// The reference.
        reference: String,
        /// The registry's explanation.
        message: String,
    },
    /// The manifest, blob or repository does not exist.
    #[error("{reference}: not found: {message}")]
    NotFound {
        /// The reference.
        reference: String,
        /// The registry's explanation.
        message: String,
    },
    /// The registry rejected a manifest (invalid, or naming content the
    /// repository does not have), or a manifest read is not a valid one.
    #[error("{reference}: manifest invalid: {message}")]
    ManifestInvalid {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// No usable answer after all attempts: connection errors, timeouts,
    /// `429` or `5xx`.
    #[error("{reference}: registry unreachable after {attempts} attempt(s): {message}")]
    Unreachable {
        /// The reference.
        reference: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// Any other refusal.
    #[error("{reference}: registry answered {status}: {message}")]
    Rejected {
        /// The reference.
        reference: String,
        /// The HTTP status (0 when unknown).
        status: u16,
        /// The registry's explanation.
        message: String,
    },
    /// The reference or the content is not valid (bad reference syntax,
    /// digest mismatch, unparsable answer).
    #[error("{reference}: {message}")]
    Invalid {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// The client was cancelled (SIGINT/SIGTERM) before the request
    /// ended; it may or may not have reached the registry.
    #[error("{reference}: interrupted")]
    Interrupted {
        /// The reference.
        reference: String,
    },
    /// Credentials could not be looked up.
    #[error("credentials for {registry}: {message}")]
    Credentials {
        /// The registry host.
        registry: String,
        /// The credential store's error.
        message: String,
    },
}

impl RegistryError {
    /// The reference (or registry) the error is about.
    pub fn reference(&self) -> &str {
        match self {
            RegistryError::AuthDenied { reference, .. }
            | RegistryError::NotFound { reference, .. }
            | RegistryError::ManifestInvalid { reference, .. }
            | RegistryError::Unreachable { reference, .. }
            | RegistryError::Rejected { reference, .. }
            | RegistryError::Invalid { reference, .. }
            | RegistryError::Interrupted { reference } => reference,
            RegistryError::Credentials { registry, .. } => registry,
        }
    }
}

/// One failed attempt, before the retry decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Connection refused/reset/closed early, timeout, broken body.
    Transport(String),
    /// An HTTP answer that is an error. `status` is `None` when `oci-client`
    /// kept only the OCI error envelope (a 4xx other than 401).
    Status {
        status: Option<u16>,
        codes: Vec<String>,
        message: String,
    },
    /// 401 (from `oci-client`'s own check) or a failed token request.
    Unauthorized(String),
    /// Not a registry problem to retry: bad content, digest mismatch, ...
    Invalid(String),
}

/// What kind of request failed, for mapping a 4xx to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    PutManifest,
}

impl Fault {
    /// Whether another attempt may succeed: transport errors, timeouts,
    /// 408, 429, 5xx and an OCI `TOOMANYREQUESTS` error.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Fault::Transport(_) => true,
            Fault::Status { status, codes, .. } => {
                matches!(status, Some(408) | Some(429) | Some(500..=599))
                    || codes.iter().any(|c| c == "TOOMANYREQUESTS")
            }
            Fault::Unauthorized(_) | Fault::Invalid(_) => false,
        }
    }

    fn from_status(status: StatusCode, body: &[u8]) -> Fault {
        let (codes, message) = envelope(body);
        let message = if message.is_empty() {
            status.to_string()
        } else {
            message
        };
        Fault::Status {
            status: Some(status.as_u16()),
            codes,
            message,
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Fault {
        if let Some(status) = e.status() {
            return Fault::Status {
                status: Some(status.as_u16()),
                codes: Vec::new(),
                message: status.to_string(),
            };
        }
        if e.is_builder() {
            return Fault::Invalid(error_chain(&e));
        }
        Fault::Transport(error_chain(&e))
    }

    /// Sorts an `oci-client` error into a fault.
    pub(crate) fn from_oci(e: OciDistributionError) -> Fault {
        match e {
            OciDistributionError::RequestError(e) => Fault::from_reqwest(e),
            OciDistributionError::IoError(e) => Fault::Transport(e.to_string()),
            OciDistributionError::ServerError { code, message, .. } => {
                let (codes, parsed) = envelope(message.as_bytes());
                let message = if !parsed.is_empty() {
                    parsed
                } else if message.trim().is_empty() {
                    StatusCode::from_u16(code)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|_| code.to_string())
                } else {
                    message.trim().to_owned()
                };
                Fault::Status {
                    status: Some(code),
                    codes,
                    message,
                }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes = envelope
                    .errors
                    .iter()
                    .map(|e| {
                        serde_json::to_value(&e.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    })
                    .collect();
                let message = envelope
                    .errors
                    .iter()
                    .map(|e| describe_oci_error(&e.message, &e.detail))
                    .collect::<Vec<_>>()
                    .join("; ");
                Fault::Status {
                    status: None,
                    codes,
                    message,
                }
            }
            OciDistributionError::UnauthorizedError { .. } => {
                Fault::Unauthorized("the registry requires (other) credentials".to_owned())
            }
            OciDistributionError::AuthenticationFailure(m) => {
                Fault::Unauthorized(format!("token request failed: {}", m.trim()))
            }
            other => Fault::Invalid(other.to_string()),
        }
    }

    /// The error to report once no attempt is left.
    pub(crate) fn into_error(self, reference: &str, attempts: u32, op: Op) -> RegistryError {
        let reference = reference.to_owned();
        match self {
            Fault::Transport(message) => RegistryError::Unreachable {
                reference,
                attempts,
                message,
            },
            Fault::Unauthorized(message) => RegistryError::AuthDenied { reference, message },
            Fault::Invalid(message) => RegistryError::Invalid { reference, message },
            f @ Fault::Status { .. } if f.is_retryable() => {
                let Fault::Status { message, .. } = f else {
                    unreachable!()
                };
                RegistryError::Unreachable {
                    reference,
                    attempts,
                    message,
                }
            }
            Fault::Status {
                status,
                codes,
                message,
            } => {
                let has = |c: &str| codes.iter().any(|x| x == c);
                if matches!(status, Some(401) | Some(403)) || has("UNAUTHORIZED") || has("DENIED") {
                    RegistryError::AuthDenied { reference, message }
                } else if op == Op::PutManifest
                    && (status == Some(400)
                        || has("MANIFEST_INVALID")
                        || has("MANIFEST_BLOB_UNKNOWN")
                        || has("MANIFEST_UNVERIFIED")
                        || has("BLOB_UNKNOWN")
                        || has("DIGEST_INVALID")
                        || has("SIZE_INVALID"))
                {
                    RegistryError::ManifestInvalid { reference, message }
                } else if status == Some(404)
                    || has("MANIFEST_UNKNOWN")
                    || has("BLOB_UNKNOWN")
                    || has("NAME_UNKNOWN")
                    || has("NOT_FOUND")
                {
                    RegistryError::NotFound { reference, message }
                } else {
                    RegistryError::Rejected {
                        reference,
                        status: status.unwrap_or(0),
                        message,
                    }
                }
            }
        }
    }
}

fn describe_oci_error(message: &str, detail: &serde_json::Value) -> String {
    match detail {
        serde_json::Value::Null => message.to_owned(),
        serde_json::Value::String(s) if s.is_empty() => message.to_owned(),
        serde_json::Value::String(s) => format!("{message}: {s}"),
        serde_json::Value::Object(m) if m.is_empty() => message.to_owned(),
        other => format!("{message}: {other}"),
    }
}

/// The codes and messages of an OCI error envelope (`{"errors": [...]}`),
/// or no codes and the body's text.
fn envelope(body: &[u8]) -> (Vec<String>, String) {
    #[derive(serde::Deserialize)]
    struct Env {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: serde_json::Value,
    }
    match serde_json::from_slice::<Env>(body) {
        Ok(env) if !env.errors.is_empty() => (
            env.errors.iter().map(|e| e.code.clone()).collect(),
            env.errors
                .iter()
                .map(|e| describe_oci_error(&e.message, &e.detail))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let text: String = text.chars().take(300).collect();
            (Vec::new(), text)
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

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

/// Parses an image reference (`localhost:5000/app:dev`, `app@sha256:...`).
pub fn parse_reference(text: &str) -> Result<Reference, RegistryError> {
    Reference::try_from(text.trim()).map_err(|e| RegistryError::Invalid {
        reference: text.to_owned(),
        message: format!("invalid image reference: {e}"),
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
    fn backoff_is_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(p.base_delay(1), Duration::from_millis(200));
        assert_eq!(p.base_delay(2), Duration::from_millis(400));
        assert_eq!(p.base_delay(4), Duration::from_millis(1600));
        assert_eq!(p.base_delay(10), Duration::from_secs(10));
        assert_eq!(p.base_delay(64), Duration::from_secs(10));
        for n in 1..8 {
            let d = p.delay(n);
            assert!(d <= p.base_delay(n) && d >= p.base_delay(n) / 2, "{d:?}");
        }
    }

    fn server_error(code: u16, message: &str) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://r/v2/x".into(),
            message: message.into(),
        }
    }

    #[test]
    fn retry_classification() {
        let retry = |e| Fault::from_oci(e).is_retryable();
        assert!(retry(server_error(503, "")));
        assert!(retry(server_error(500, "oops")));
        assert!(retry(server_error(502, "")));
        assert!(retry(server_error(429, "")));
        assert!(retry(server_error(408, "")));
        assert!(!retry(server_error(400, "")));
        assert!(!retry(server_error(404, "")));
        assert!(!retry(server_error(403, "")));
        assert!(retry(OciDistributionError::IoError(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset"
        ))));
        assert!(!retry(OciDistributionError::UnauthorizedError {
            url: "u".into()
        }));
        assert!(!retry(OciDistributionError::AuthenticationFailure(
            "no".into()
        )));
        let envelope = |code: &str| OciDistributionError::RegistryError {
            envelope: serde_json::from_str(&format!(
                r#"{{"errors":[{{"code":"{code}","message":"m","detail":"sha256:abc"}}]}}"#
            ))
            .unwrap(),
            url: "u".into(),
        };
        assert!(retry(envelope("TOOMANYREQUESTS")));
        assert!(!retry(envelope("MANIFEST_UNKNOWN")));
        assert!(!retry(OciDistributionError::SpecViolationError("x".into())));
        // Raw statuses.
        assert!(Fault::from_status(StatusCode::SERVICE_UNAVAILABLE, b"").is_retryable());
        assert!(!Fault::from_status(StatusCode::CONFLICT, b"").is_retryable());
        assert!(Fault::Transport("timeout".into()).is_retryable());

        // Final errors name the reference and the kind.
        let r = "localhost:5000/app:dev";
        assert!(matches!(
            Fault::from_oci(envelope("MANIFEST_UNKNOWN")).into_error(r, 1, Op::Read),
            RegistryError::NotFound { .. }
        ));
        let e = Fault::from_oci(server_error(
            400,
            r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:0123"}]}"#,
        ))
        .into_error(r, 1, Op::PutManifest);
        assert!(matches!(e, RegistryError::ManifestInvalid { .. }), "{e:?}");
        assert!(
            e.to_string().contains(r) && e.to_string().contains("sha256:0123"),
            "{e}"
        );
        let e = Fault::from_oci(server_error(503, "")).into_error(r, 5, Op::Read);
        assert_eq!(
            e.to_string(),
            "localhost:5000/app:dev: registry unreachable after 5 attempt(s): 503 Service Unavailable"
        );
        assert!(matches!(
            Fault::from_oci(OciDistributionError::UnauthorizedError { url: "u".into() })
                .into_error(r, 1, Op::Read),
            RegistryError::AuthDenied { .. }
        ));
        assert!(matches!(
            Fault::from_oci(server_error(403, "denied")).into_error(r, 1, Op::PutManifest),
            RegistryError::AuthDenied { .. }
        ));
        assert!(matches!(
            Fault::from_oci(server_error(409, "conflict")).into_error(r, 1, Op::Read),
            RegistryError::Rejected { status: 409, .. }
        ));
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        // A port nobody listens on (bound, then closed).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let e = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/v2/"))
            .send()
            .await
            .unwrap_err();
        let fault = Fault::from_oci(OciDistributionError::RequestError(e));
        assert!(matches!(fault, Fault::Transport(_)), "{fault:?}");
        assert!(fault.is_retryable());
        assert!(matches!(
            fault.into_error("127.0.0.1/x:y", 5, Op::Read),
            RegistryError::Unreachable { attempts: 5, .. }
        ));
    }

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
