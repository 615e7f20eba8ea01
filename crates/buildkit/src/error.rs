//! The crate's error type.

use std::fmt::Write as _;

/// Everything that can go wrong while talking to BuildKit.
///
/// Messages coming from the daemon (Dockerfile parse errors, failing `RUN`
/// steps, registry errors, ...) are kept verbatim in [`Error::Solve`] and
/// [`Error::Rpc`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint string could not be parsed.
    #[error("invalid BuildKit endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The string as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The socket or TCP connection could not be opened, or the HTTP
    /// exchange before the upgrade failed.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// Human readable address, e.g. `unix:///var/run/docker.sock`.
        target: String,
        /// Why, including the OS error.
        reason: String,
    },

    /// Docker Engine answered the `POST /grpc` or `POST /session` upgrade
    /// with something other than `101 Switching Protocols`.
    #[error("daemon at {target} refused upgrade of {path}: {status}{}", fmt_detail(.message))]
    UpgradeRefused {
        /// Human readable address of the daemon.
        target: String,
        /// Request path, e.g. `/grpc`.
        path: String,
        /// The HTTP status the daemon answered with.
        status: http::StatusCode,
        /// The daemon's error message (from its JSON body), if any.
        message: String,
    },

    /// TLS material could not be loaded or the TLS handshake failed.
    #[error("TLS error for {target}: {reason}")]
    Tls {
        /// Human readable address (or the file that failed to load).
        target: String,
        /// What went wrong.
        reason: String,
    },

    /// A Control API call other than `Solve` failed.
    #[error("{call} failed: {message}")]
    Rpc {
        /// The RPC, e.g. `ListWorkers`.
        call: &'static str,
        /// gRPC status code returned by the daemon.
        code: tonic::Code,
        /// The daemon's message, verbatim.
        message: String,
    },

    /// The `Solve` call failed; `message` is the daemon's message verbatim
    /// (e.g. `dockerfile parse error on line 1: unknown instruction: FROMM`).
    #[error("solve failed: {message}")]
    Solve {
        /// gRPC status code returned by the daemon.
        code: tonic::Code,
        /// The daemon's message, verbatim.
        message: String,
    },

    /// The client session could not be attached or broke down.
    #[error("session error: {0}")]
    Session(String),

    /// The operation was cancelled by the caller.
    #[error("build cancelled")]
    Cancelled,

    /// A Docker Engine API call (not BuildKit's) failed.
    #[error("{call}: {message}")]
    Engine {
        /// The call, e.g. `POST /images/load`.
        call: String,
        /// The Engine's message.
        message: String,
    },
}

fn fmt_detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl Error {
    /// Converts a gRPC status of a non-`Solve` call.
    pub(crate) fn rpc(call: &'static str, status: tonic::Status) -> Self {
        Error::Rpc {
            call,
            code: status.code(),
            message: status_message(&status),
        }
    }

    /// Converts the gRPC status of a failed `Solve`. (A cancellation by the
    /// caller never gets here: the call is dropped and [`Error::Cancelled`]
    /// is returned locally, so a `Cancelled` code from the daemon stays a
    /// solve failure with its message.)
    pub(crate) fn solve(status: tonic::Status) -> Self {
        Error::Solve {
            code: status.code(),
            message: status_message(&status),
        }
    }

    /// `cannot connect to {target}: {reason}` from any error, with its
    /// whole `source()` chain in the reason.
    pub(crate) fn connect(
        target: impl Into<String>,
        err: &(dyn std::error::Error + 'static),
    ) -> Self {
        Error::Connect {
            target: target.into(),
            reason: error_chain(err),
        }
    }

    /// The gRPC status code, for [`Error::Rpc`] and [`Error::Solve`].
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc { code, .. } | Error::Solve { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the error is a cancellation requested by the caller.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }
}

/// The message of a gRPC status; when the daemon sent none, a description of
/// the code (transport failures have an empty message but a source).
fn status_message(status: &tonic::Status) -> String {
    if !status.message().is_empty() {
        return status.message().to_owned();
    }
    let mut out = format!("{:?}", status.code());
    if let Some(source) = std::error::Error::source(status) {
        let _ = write!(out, ": {}", error_chain(source));
    }
    out
}

/// Renders an error and all its sources as `a: b: c`, skipping a source
/// whose text is already contained in the previous one.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(source) = current {
        let text = source.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = source.source();
    }
    out
}

/// [`error_chain`] of a failed TLS connection, with a hint when the peer
/// answered without TLS (rustls calls that `InvalidContentType`).
pub(crate) fn tls_error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error_chain(err);
    if out.contains("InvalidContentType") {
        out.push_str(
            " (the endpoint did not answer with TLS: if it is a plain port, \
             drop ca=, cert= and key=)",
        );
    }
    out
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_error_keeps_daemon_message() {
        let status =
            tonic::Status::unknown("dockerfile parse error on line 1: unknown instruction: FROMM");
        let err = Error::solve(status);
        assert_eq!(
            err.to_string(),
            "solve failed: dockerfile parse error on line 1: unknown instruction: FROMM"
        );
        assert_eq!(err.grpc_code(), Some(tonic::Code::Unknown));
    }

    #[test]
    fn daemon_side_cancellation_keeps_its_message() {
        let err = Error::solve(tonic::Status::cancelled("context canceled"));
        assert!(!err.is_cancelled());
        assert_eq!(err.to_string(), "solve failed: context canceled");
        assert!(Error::Cancelled.is_cancelled());
    }

    #[test]
    fn upgrade_refused_message() {
        let err = Error::UpgradeRefused {
            target: "unix:///var/run/docker.sock".into(),
            path: "/grpc".into(),
            status: http::StatusCode::NOT_FOUND,
            message: "page not found".into(),
        };
        assert_eq!(
            err.to_string(),
            "daemon at unix:///var/run/docker.sock refused upgrade of /grpc: 404 Not Found: page not found"
        );
    }

    #[test]
    fn chain_skips_repeated_text() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = Error::connect("unix:///x.sock", &inner);
        assert_eq!(
            err.to_string(),
            "cannot connect to unix:///x.sock: No such file"
        );
    }
}
