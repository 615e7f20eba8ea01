//! Docker Engine API calls besides BuildKit's: loading an image archive
//! into the Engine's image store (`POST /images/load`).
//!
//! With the containerd image store (Engine 24+), the Engine imports an OCI
//! image layout archive whole: every platform of a multi-platform index,
//! named by the `io.containerd.image.name` annotation of each `index.json`
//! entry (checked on Engine 26.1.5).

use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, Request};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;

use crate::endpoint::DockerEndpoint;
use crate::error::{error_chain, Error, Result};
use crate::transport::docker::DockerTransport;

/// Largest answer read from `POST /images/load`.
const MAX_ANSWER: usize = 1024 * 1024;
/// Size of the chunks the archive is sent in.
const CHUNK: usize = 256 * 1024;

/// Loads the image archive at `archive` (a Docker or OCI layout tarball)
/// into the Engine at `endpoint`. Returns the Engine's messages (`Loaded
/// image: NAME`, ...); an error the Engine reports in its JSON stream is an
/// [`Error::Engine`].
pub async fn load_image(endpoint: &DockerEndpoint, archive: &Path) -> Result<Vec<String>> {
    let transport = DockerTransport::new(endpoint)?;
    let target = transport.target().to_owned();
    let path = transport.path("/images/load");
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|e| Error::Engine {
            call: "POST /images/load".into(),
            message: format!("{}: {e}", archive.display()),
        })?;
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let body = StreamBody::new(chunks.boxed());
    let io = transport.dial().await?;
    let connect_err = |what: &str, e: &hyper::Error| Error::Connect {
        target: target.clone(),
        reason: format!("{what}: {}", error_chain(e)),
    };
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| connect_err("HTTP handshake failed", &e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{path}?quiet=1"))
        .header(HOST, "docker")
        .header(
            USER_AGENT,
            concat!("mybake-buildkit/", env!("CARGO_PKG_VERSION")),
        )
        .header(CONTENT_TYPE, "application/x-tar")
        .body(body)
        .map_err(|e| Error::Engine {
            call: "POST /images/load".into(),
            message: e.to_string(),
        })?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| connect_err(&format!("POST {path} failed"), &e))?;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| Error::Engine {
            call: "POST /images/load".into(),
            message: format!("reading the answer: {e}"),
        })?;
    parse_load_answer(status, &body)
}

/// The messages of a `POST /images/load` answer (a JSON object per line),
/// or the error it reports.
pub fn parse_load_answer(status: http::StatusCode, body: &[u8]) -> Result<Vec<String>> {
    let text = String::from_utf8_lossy(body);
    let fail = |message: String| Error::Engine {
        call: "POST /images/load".into(),
        message,
    };
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        return Err(fail(format!("{status}: {msg}")));
    }
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| fail(format!("unexpected answer {line:?}: {e}")))?;
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            return Err(fail(e.to_owned()));
        }
        if let Some(s) = v.get("stream").and_then(|s| s.as_str()) {
            out.push(s.trim_end().to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let ok = parse_load_answer(
            http::StatusCode::OK,
            b"{\"stream\":\"Loaded image: r/a:1\\n\"}\n{\"stream\":\"Loaded image: r/a:2\\n\"}\n",
        )
        .unwrap();
        assert_eq!(ok, ["Loaded image: r/a:1", "Loaded image: r/a:2"]);
        let err = parse_load_answer(
            http::StatusCode::OK,
            b"{\"errorDetail\":{\"message\":\"bad\"},\"error\":\"bad\"}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
        let err = parse_load_answer(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            b"{\"message\":\"no space\"}",
        )
        .unwrap_err();
        assert!(err.to_string().contains("no space"), "{err}");
    }
}
