//! The session over `Control.Session`: a bidi stream of `BytesMessage`
//! carrying the raw bytes of an HTTP/2 connection (BuildKit's
//! `session/grpchijack`). Here it is adapted into an in-memory byte pipe
//! that the session's HTTP/2 server can use like a socket.

use std::future::Future;

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::BytesMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

/// Size of the in-memory pipe and of each outgoing message (like BuildKit's
/// 32 KiB buffer).
const CHUNK: usize = 32 * 1024;

/// An open tunnel.
pub(crate) struct Tunnel<F> {
    /// Local end of the pipe: bytes written here are sent to the daemon,
    /// bytes the daemon sends can be read here.
    pub io: DuplexStream,
    /// Resolves once the daemon answered the `Control.Session` call (its
    /// response headers arrived) or refused it.
    pub ready: oneshot::Receiver<Result<(), tonic::Status>>,
    /// Moves the bytes; must be polled (spawned) for the tunnel to work.
    /// Completes when either side closes; dropping it tears the tunnel down
    /// and cancels the RPC.
    pub pump: F,
}

/// Prepares `Control.Session` with `metadata` (the
/// `x-docker-expose-session-*` values).
pub(crate) fn open(
    mut control: ControlClient<Channel>,
    metadata: MetadataMap,
) -> Tunnel<impl Future<Output = ()> + Send + 'static> {
    let (local, remote) = tokio::io::duplex(CHUNK * 2);
    let (mut remote_read, mut remote_write) = tokio::io::split(remote);
    let (tx, rx) = mpsc::channel::<BytesMessage>(16);
    let (ready_tx, ready_rx) = oneshot::channel();

    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    *request.metadata_mut() = metadata;

    // Local → daemon: each read becomes one BytesMessage.
    let outbound = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match remote_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let message = BytesMessage {
                        data: buf[..n].to_vec(),
                    };
                    if tx.send(message).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping `tx` half-closes the request stream.
    };

    // Daemon → local.
    let inbound = async move {
        let mut stream = match control.session(request).await {
            Ok(response) => {
                let _ = ready_tx.send(Ok(()));
                response.into_inner()
            }
            Err(status) => {
                let _ = ready_tx.send(Err(status));
                return;
            }
        };
        while let Ok(Some(message)) = stream.message().await {
            if remote_write.write_all(&message.data).await.is_err() {
                break;
            }
        }
        let _ = remote_write.shutdown().await;
    };

    let pump = async move {
        tokio::select! {
            () = outbound => {}
            () = inbound => {}
        }
    };
    Tunnel {
        io: local,
        ready: ready_rx,
        pump,
    }
}
