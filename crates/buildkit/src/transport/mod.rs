//! Byte-stream transports to the daemon and the gRPC channel built on them.
//!
//! * [`docker`]: Docker Engine API socket; every connection is upgraded with
//!   `POST /grpc` (Control API) or `POST /session` (client session).
//! * [`unix`]: a standalone buildkitd on a unix socket (h2c).
//! * [`tcp`]: a standalone buildkitd over TCP, plain h2c or TLS.

pub(crate) mod docker;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod unix;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Uri};

use crate::error::Result;

/// Timeout for establishing a connection (socket + upgrade).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A bidirectional byte stream (tokio flavour).
pub(crate) trait Io:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub(crate) type BoxIo = Box<dyn Io>;

/// Builds an HTTP/2 (prior knowledge) gRPC channel whose first connection is
/// `first` (already established, so that connection errors surface as typed
/// [`crate::Error`]s) and whose later connections (after the daemon closed
/// one) come from `dial`.
///
/// `uri` (e.g. `http://docker`) only names the `:authority`; it is never resolved.
pub(crate) async fn channel_with<R, F, Fut>(
    uri: &'static str,
    first: R,
    dial: F,
) -> std::result::Result<Channel, tonic::transport::Error>
where
    R: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R>> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Some(first)));
    let connector = tower::service_fn(move |_uri: Uri| {
        let pre = slot.lock().ok().and_then(|mut guard| guard.take());
        let dial = dial.clone();
        async move {
            match pre {
                Some(io) => Ok(io),
                None => dial().await,
            }
        }
    });
    tonic::transport::Endpoint::from_static(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(connector)
        .await
}
