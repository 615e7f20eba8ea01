//! Typed registry failures: what an attempt got ([`Fault`]), whether to
//! retry it, and the error a caller sees ([`RegistryError`]).

use super::*;

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

    pub(super) fn from_status(status: StatusCode, body: &[u8]) -> Fault {
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

    pub(super) fn from_reqwest(e: reqwest::Error) -> Fault {
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

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::OciDistributionError;

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
}
