//! Standalone buildkitd on a unix socket: plain h2c on the socket.

use std::path::Path;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::Channel;

use crate::error::{error_chain, Error, Result};

/// Opens the socket, with `cannot connect to unix://PATH: reason` on failure.
pub(crate) async fn dial(path: &Path) -> Result<UnixStream> {
    match tokio::time::timeout(super::CONNECT_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(Error::connect(target(path), &e)),
        Err(_) => Err(Error::Connect {
            target: target(path),
            reason: "timed out".into(),
        }),
    }
}

/// `unix:///path`.
pub(crate) fn target(path: &Path) -> String {
    format!("unix://{}", path.display())
}

/// A Control API channel to the buildkitd at `path`.
pub(crate) async fn control_channel(path: &Path) -> Result<Channel> {
    let first = TokioIo::new(dial(path).await?);
    let owned = path.to_owned();
    let dial_again = move || {
        let path = owned.clone();
        async move { Ok(TokioIo::new(dial(&path).await?)) }
    };
    super::channel_with("http://localhost", first, dial_again)
        .await
        .map_err(|e| Error::Connect {
            target: target(path),
            reason: error_chain(&e),
        })
}
