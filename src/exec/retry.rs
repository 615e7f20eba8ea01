//! Which failed solves are worth exporting again, and when.
//!
//! BuildKit pushes a node's result itself (`push=true,push-by-digest=true`)
//! and reports a failed push as the solve's error message, e.g.
//!
//! ```text
//! failed to push 127.0.0.1:5000/app: failed commit on ref "manifest-sha256:…":
//! unexpected status from PUT request to http://127.0.0.1:5000/v2/app/manifests/sha256:…: 400 Bad Request
//! ```
//!
//! Two per-platform solves that upload the same layer into one repository
//! make distribution rewrite the blob's link file non-atomically; a
//! manifest PUT in that window is answered `400` with
//! `MANIFEST_BLOB_UNKNOWN` or `DIGEST_INVALID`. Solving the node again
//! re-exports it from BuildKit's cache, and the push then finds every blob.
//!
//! The daemon's message carries the HTTP status but not the registry's
//! body (containerd's `ErrUnexpectedStatus` prints method, URL and status
//! only; checked on Docker Engine 26.1 / BuildKit v0.13), so a `400` on a
//! manifest or blob commit cannot be told apart from a manifest the
//! registry rejects for good (`MANIFEST_INVALID`): such a bare `400` is
//! retried once, and the same answer on the next attempt is final. When a
//! daemon does include distribution's error codes, they decide.

use std::time::Duration;

/// Solves per node, the first included, while its push keeps failing
/// transiently.
pub const PUSH_ATTEMPTS: u32 = 4;

/// Pause before attempt `n + 1` after attempt `n` failed: 0.5 s, 1 s, 2 s
/// (doubling), plus up to a quarter of that at random so that nodes that
/// failed together do not push together again.
pub fn backoff(failed_attempt: u32) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(failed_attempt.saturating_sub(1));
    let base = base.min(Duration::from_secs(8));
    base + base.mul_f64(jitter() * 0.25)
}

/// A number in [0, 1) that differs between calls and processes.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What a failed solve's message says about its push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFailure {
    /// Not a failure of the image push (a build step, the frontend, the
    /// cache export, ...): never retried.
    NotPush,
    /// The registry refused for good (authentication, missing repository,
    /// unknown host, a rejected manifest whose error code says so).
    Permanent,
    /// Worth another export: 5xx, 429, 408, a dropped or timed-out
    /// connection, or one of distribution's codes of the shared-blob race.
    Transient,
    /// `400 Bad Request` on a manifest PUT or a blob commit, without an
    /// error code: the shared-blob race or a rejected manifest. Retried
    /// once.
    BadRequest,
}

impl PushFailure {
    pub fn retryable(self) -> bool {
        matches!(self, PushFailure::Transient | PushFailure::BadRequest)
    }
}

/// True when `msg` (the daemon's solve error) is a push that failed with a
/// transient registry answer: exporting the node again may succeed. See
/// [`classify`].
pub fn transient_push_error(msg: &str) -> bool {
    classify(msg).retryable()
}

/// Error codes of distribution's answers (`{"errors":[{"code":…}]}`) that
/// the shared-blob race and lost uploads produce.
const TRANSIENT_CODES: [&str; 6] = [
    "MANIFEST_BLOB_UNKNOWN",
    "DIGEST_INVALID",
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_UNKNOWN",
    "TOOMANYREQUESTS",
    "UNAVAILABLE",
];

/// Error codes that no retry fixes.
const PERMANENT_CODES: [&str; 9] = [
    "MANIFEST_INVALID",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "SIZE_INVALID",
];

/// Network failures of a registry request (Go's `net`/`net/http`
/// wording) that a later attempt may not meet.
const TRANSIENT_NETWORK: [&str; 9] = [
    "connection reset by peer",
    "broken pipe",
    "unexpected EOF",
    "i/o timeout",
    "TLS handshake timeout",
    "server closed idle connection",
    "http2: server sent GOAWAY",
    "timeout awaiting response headers",
    "use of closed network connection",
];

/// Classifies the daemon's message of a failed solve. Only BuildKit's image
/// exporter push counts (its errors read `failed to push <name>: …`); a
/// failing `RUN`, a frontend error or anything else is [`PushFailure::NotPush`].
pub fn classify(msg: &str) -> PushFailure {
    let msg = msg.trim();
    // Daemons that pass the error through another gRPC hop wrap it.
    let msg = msg
        .strip_prefix("rpc error: code = Unknown desc = ")
        .unwrap_or(msg);
    if !msg.starts_with("failed to push ") {
        return PushFailure::NotPush;
    }
    // Codes win when the daemon includes the registry's body.
    let has_code = |code: &str| {
        msg.match_indices(code).any(|(i, _)| {
            let before = msg[..i].chars().next_back();
            let after = msg[i + code.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            !word(before) && !word(after)
        })
    };
    if PERMANENT_CODES.iter().any(|c| has_code(c)) {
        return PushFailure::Permanent;
    }
    if TRANSIENT_CODES.iter().any(|c| has_code(c)) {
        return PushFailure::Transient;
    }
    if let Some(status) = unexpected_status(msg) {
        return match status.code {
            408 | 429 => PushFailure::Transient,
            501 | 505 => PushFailure::Permanent,
            500..=599 => PushFailure::Transient,
            400 if status.method == "PUT"
                && (status.url.contains("/manifests/") || status.url.contains("/blobs/")) =>
            {
                PushFailure::BadRequest
            }
            // An upload session the registry lost (restart, another replica).
            404 if status.url.contains("/blobs/uploads/") => PushFailure::Transient,
            _ => PushFailure::Permanent,
        };
    }
    if TRANSIENT_NETWORK.iter().any(|n| msg.contains(n)) || msg.ends_with(": EOF") {
        return PushFailure::Transient;
    }
    PushFailure::Permanent
}

/// The parts of containerd's `unexpected status from METHOD request to URL:
/// STATUS` (the last one in the message).
struct Status<'a> {
    method: &'a str,
    url: &'a str,
    code: u16,
}

fn unexpected_status(msg: &str) -> Option<Status<'_>> {
    const MARK: &str = "unexpected status from ";
    let rest = &msg[msg.rfind(MARK)? + MARK.len()..];
    let (method, rest) = rest.split_once(" request to ")?;
    // The URL has no spaces; the status follows the URL's `: `.
    let url_end = rest.find(": ")?;
    let url = &rest[..url_end];
    let status = rest[url_end + 2..].trim_start();
    let code = status.get(..3)?.parse().ok()?;
    Some(Status { method, url, code })
}

/// A one-line reason for progress: the registry's answer without
/// BuildKit's `failed to push NAME: failed commit on ref "…": ` prefix.
pub fn short_reason(msg: &str) -> String {
    let mut s = msg.trim();
    s = s
        .strip_prefix("rpc error: code = Unknown desc = ")
        .unwrap_or(s);
    if let Some(rest) = s.strip_prefix("failed to push ") {
        s = rest.split_once(": ").map_or(rest, |(_, r)| r);
    }
    if let Some(rest) = s.strip_prefix("failed commit on ref ") {
        s = rest.split_once(": ").map_or(rest, |(_, r)| r);
    }
    s.lines().next().unwrap_or(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Messages captured from Docker Engine 26.1.5's BuildKit (v0.13): `mybake
    // build --push` of one node through a proxy in front of the test-bed
    // registry that answered every manifest PUT (the persistent 503, 429
    // and reset: containerd retries those a few times itself first). These
    // are the `message` of the solve's gRPC status, verbatim.
    const BLOB_UNKNOWN_400: &str = "failed to push 127.0.0.1:18801/retrycap/k1: failed commit on ref \"manifest-sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e\": unexpected status from PUT request to http://127.0.0.1:18801/v2/retrycap/k1/manifests/sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e: 400 Bad Request";
    const SERVICE_UNAVAILABLE: &str = "failed to push 127.0.0.1:18813/retrycap/k-503: failed commit on ref \"manifest-sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e\": unexpected status from PUT request to http://127.0.0.1:18813/v2/retrycap/k-503/manifests/sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e: 503 Service Unavailable";
    const RESET: &str = "failed to push 127.0.0.1:18814/retrycap/k-reset: failed commit on ref \"manifest-sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e\": failed to do request: Put \"https://127.0.0.1:18814/v2/retrycap/k-reset/manifests/sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e\": read tcp 127.0.0.1:36316->127.0.0.1:18814: read: connection reset by peer";
    const UNAUTHORIZED: &str = "failed to push 127.0.0.1:18815/retrycap/k-401: failed commit on ref \"manifest-sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e\": unexpected status from PUT request to http://127.0.0.1:18815/v2/retrycap/k-401/manifests/sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e: 401 Unauthorized";
    const NAME_UNKNOWN_404: &str = "failed to push 127.0.0.1:18811/retrycap/k-name_unknown: failed commit on ref \"manifest-sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e\": unexpected status from PUT request to http://127.0.0.1:18811/v2/retrycap/k-name_unknown/manifests/sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e: 404 Not Found";
    // The proxy's body said MANIFEST_INVALID here; the message cannot tell.
    const MANIFEST_INVALID_400: &str = "failed to push 127.0.0.1:18812/retrycap/k-manifest_invalid: failed commit on ref \"manifest-sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e\": unexpected status from PUT request to http://127.0.0.1:18812/v2/retrycap/k-manifest_invalid/manifests/sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e: 400 Bad Request";
    // Through `docker buildx build --push` (tag push), same daemon; 429
    // and a TLS handshake to a plain-HTTP port.
    const TOO_MANY: &str = r#"failed to push 127.0.0.1:18762/retrycap/429-1796301534:t: failed commit on ref "manifest-sha256:72a232b19ca9f126c84c1f01726f7770818b94fc6679feb4e37b3a8b2895a164": unexpected status from PUT request to http://127.0.0.1:18762/v2/retrycap/429-1796301534/manifests/t: 429 Too Many Requests"#;
    const TLS_TIMEOUT: &str = r#"failed to push 127.0.0.1:18731/retrycap/bu:t: failed to do request: Head "https://127.0.0.1:18731/v2/retrycap/bu/blobs/sha256:98d0c58a3f6cc834e3cfb431788f3b903c48f063338c43372b0124cd4e921421": net/http: TLS handshake timeout"#;
    const RUN_FAILED: &str =
        r#"process "/bin/sh -c exit 3" did not complete successfully: exit code: 3"#;

    #[test]
    fn shared_blob_race_is_retried_once() {
        assert_eq!(classify(BLOB_UNKNOWN_400), PushFailure::BadRequest);
        assert!(transient_push_error(BLOB_UNKNOWN_400));
        // Same words for a manifest the registry rejects: retried once too.
        assert_eq!(classify(MANIFEST_INVALID_400), PushFailure::BadRequest);
        // With a daemon that includes distribution's body, the code decides.
        let with_body = format!(
            "{BLOB_UNKNOWN_400}: {}",
            r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:98d0"}]}"#
        );
        assert_eq!(classify(&with_body), PushFailure::Transient);
        let digest = format!(
            "{BLOB_UNKNOWN_400}: {}",
            r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#
        );
        assert_eq!(classify(&digest), PushFailure::Transient);
        let invalid = format!(
            "{BLOB_UNKNOWN_400}: {}",
            r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}"#
        );
        assert_eq!(classify(&invalid), PushFailure::Permanent);
    }

    #[test]
    fn server_errors_and_dropped_connections_are_transient() {
        for m in [SERVICE_UNAVAILABLE, TOO_MANY, RESET, TLS_TIMEOUT] {
            assert_eq!(classify(m), PushFailure::Transient, "{m}");
        }
        let eof = r#"failed to push r/a: failed commit on ref "layer-sha256:ab": failed to do request: Put "http://r/v2/a/blobs/uploads/x?digest=sha256%3Aab": EOF"#;
        assert_eq!(classify(eof), PushFailure::Transient);
        let wrapped = format!("rpc error: code = Unknown desc = {SERVICE_UNAVAILABLE}");
        assert_eq!(classify(&wrapped), PushFailure::Transient);
    }

    #[test]
    fn refusals_are_final() {
        for m in [UNAUTHORIZED, NAME_UNKNOWN_404] {
            assert_eq!(classify(m), PushFailure::Permanent, "{m}");
            assert!(!transient_push_error(m));
        }
        let not_implemented =
            SERVICE_UNAVAILABLE.replace("503 Service Unavailable", "501 Not Implemented");
        assert_eq!(classify(&not_implemented), PushFailure::Permanent);
        let no_host = r#"failed to push nope.invalid/a: failed to do request: Head "https://nope.invalid/v2/a/blobs/sha256:ab": dial tcp: lookup nope.invalid: no such host"#;
        assert_eq!(classify(no_host), PushFailure::Permanent);
        // A 400 on a GET is not the race.
        let get = BLOB_UNKNOWN_400.replace("from PUT request", "from GET request");
        assert_eq!(classify(&get), PushFailure::Permanent);
    }

    #[test]
    fn build_failures_are_not_pushes() {
        assert_eq!(classify(RUN_FAILED), PushFailure::NotPush);
        // A RUN step whose output quotes a push error is still a RUN step.
        let quoting = format!(
            r#"process "/bin/sh -c echo '{SERVICE_UNAVAILABLE}'; exit 1" did not complete successfully: exit code: 1"#
        );
        assert_eq!(classify(&quoting), PushFailure::NotPush);
        assert!(!transient_push_error(&quoting));
        assert_eq!(
            classify(
                "failed to solve: dockerfile parse error on line 1: unknown instruction: FROMM"
            ),
            PushFailure::NotPush
        );
        // Pulling a base image is not the export's push.
        let pull = r#"failed to resolve source metadata for localhost:5000/busybox:latest: unexpected status from HEAD request to http://localhost:5000/v2/busybox/manifests/latest: 503 Service Unavailable"#;
        assert_eq!(classify(pull), PushFailure::NotPush);
    }

    #[test]
    fn reason_is_the_registry_answer() {
        assert_eq!(
            short_reason(BLOB_UNKNOWN_400),
            "unexpected status from PUT request to http://127.0.0.1:18801/v2/retrycap/k1/manifests/sha256:fa2ec9609ab5d957eec8c92e9a55b497753962872eca8706f857966580aaf50e: 400 Bad Request"
        );
        assert_eq!(short_reason(RUN_FAILED), RUN_FAILED);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        for (attempt, base) in [(1u32, 500u64), (2, 1000), (3, 2000)] {
            let d = backoff(attempt);
            let base = Duration::from_millis(base);
            assert!(d >= base && d <= base + base / 4, "{attempt}: {d:?}");
        }
        assert!(backoff(30) <= Duration::from_secs(10));
    }
}
