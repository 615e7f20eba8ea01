//! The session's FileSend service: BuildKit streams export results back to
//! the client with `/moby.filesync.v1.FileSend/DiffCopy` (the daemon is the
//! gRPC client, as for every session call).
//!
//! One method carries two protocols, told apart by the exporter that calls
//! it (buildkit v0.13 `session/filesync/filesync.go`):
//!
//! * the `local` exporter (`filesync.CopyToCaller`) sends a tree with
//!   fsutil's DiffCopy, the daemon being the fsutil *sender* and the client
//!   the receiver ([`receive`]), messages are fsutil `Packet`s;
//! * the `tar`, `oci` and `docker` exporters (`filesync.CopyFileWriter`)
//!   write one byte stream as `BytesMessage`s, close their side and wait
//!   for the client to end the call.
//!
//! Each call carries the index of the exporter in the solve's `Exporters`
//! list in the gRPC metadata `buildkit-attachable-exporter-id` (0 when
//! missing, as with a single pre-v0.13 exporter), and a file stream the
//! exporter's response as `exporter-md-<key>` values (not used here: the
//! solve's response carries the same). The client maps exporter ids to a
//! [`Target`]: a directory (fsutil) or a file (bytes). A file target must
//! not exist yet (`AlreadyExists` otherwise, as the Go client answers when
//! its writer function returns none); the call ends with OK once the
//! daemon closed its side and everything is written and synced.
//!
//! Because the two message types differ on the wire, the service decodes
//! raw frames itself ([`FileSendServer`]) and picks the protobuf type from
//! the target.

pub mod receive;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::Packet;
use bollard_buildkit_proto::moby::filesync::v1::BytesMessage;
use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::metadata::MetadataMap;
use tonic::{Status, Streaming};

pub use receive::{DirReceiver, ReceiveError};

/// gRPC service name of FileSend.
pub const SERVICE_NAME: &str = "moby.filesync.v1.FileSend";
/// Full method name of `DiffCopy`.
pub const DIFF_COPY_METHOD: &str = "/moby.filesync.v1.FileSend/DiffCopy";
/// Metadata key carrying the exporter's index in the solve request.
pub const KEY_EXPORTER_ID: &str = "buildkit-attachable-exporter-id";
/// Prefix of the metadata keys carrying the exporter response (file
/// streams only).
pub const KEY_EXPORTER_META_PREFIX: &str = "exporter-md-";
/// Largest message accepted (the daemon splits byte streams at 3 MiB).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Where one exporter's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A directory tree (`local` exporter), received into this existing
    /// directory.
    Dir(PathBuf),
    /// A byte stream (`tar`, `oci`, `docker` exporters), written to this
    /// file, which must not exist yet.
    File(PathBuf),
}

/// The FileSend service: exporter id → [`Target`]. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FileSendService {
    targets: Arc<HashMap<u32, Target>>,
}

impl FileSendService {
    /// A service for `targets` (exporter index in the solve request →
    /// target).
    pub fn new(targets: impl IntoIterator<Item = (u32, Target)>) -> Self {
        FileSendService {
            targets: Arc::new(targets.into_iter().collect()),
        }
    }

    /// The tower service for the session's gRPC server.
    pub fn into_server(self) -> FileSendServer {
        FileSendServer { service: self }
    }

    /// The target of a call, from its metadata.
    fn target(&self, md: &MetadataMap) -> Result<Target, Status> {
        let id = exporter_id(md);
        self.targets
            .get(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("exporter {id} not found")))
    }

    async fn diff_copy(
        &self,
        request: tonic::Request<Streaming<Bytes>>,
    ) -> Result<tonic::Response<ReceiverStream<Result<Bytes, Status>>>, Status> {
        let target = self.target(request.metadata())?;
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        match target {
            Target::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            Status::already_exists("target already exists")
                        } else {
                            Status::internal(format!("{}: {e}", path.display()))
                        }
                    })?;
                tokio::spawn(async move {
                    if let Err(status) = receive_file(file, inbound).await {
                        let _ = tx.send(Err(status)).await;
                    }
                });
            }
            Target::Dir(path) => {
                std::fs::create_dir_all(&path)
                    .map_err(|e| Status::internal(format!("{}: {e}", path.display())))?;
                tokio::spawn(async move {
                    if let Err(status) = receive_dir(DirReceiver::new(path), inbound, &tx).await {
                        let err = Packet {
                            r#type: PacketType::PacketErr as i32,
                            data: status.message().as_bytes().to_vec(),
                            ..Packet::default()
                        };
                        let _ = tx.send(Ok(err.encode_to_vec().into())).await;
                        let _ = tx.send(Err(status)).await;
                    }
                });
            }
        }
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

/// The exporter id of a call (0 when missing or not a number, as Go's
/// chooser).
pub fn exporter_id(md: &MetadataMap) -> u32 {
    md.get(KEY_EXPORTER_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes every `BytesMessage` to `file` until the daemon closes its side.
async fn receive_file(
    mut file: std::fs::File,
    mut inbound: Streaming<Bytes>,
) -> Result<(), Status> {
    while let Some(frame) = inbound.next().await {
        let frame = frame?;
        let msg = BytesMessage::decode(frame)
            .map_err(|e| Status::invalid_argument(format!("invalid BytesMessage: {e}")))?;
        file.write_all(&msg.data)
            .map_err(|e| Status::internal(format!("writing the output: {e}")))?;
    }
    file.sync_all()
        .map_err(|e| Status::internal(format!("writing the output: {e}")))?;
    Ok(())
}

/// Runs the fsutil receiver until the sender's FIN.
async fn receive_dir(
    mut r: DirReceiver,
    mut inbound: Streaming<Bytes>,
    tx: &mpsc::Sender<Result<Bytes, Status>>,
) -> Result<(), Status> {
    while let Some(frame) = inbound.next().await {
        let p = Packet::decode(frame?)
            .map_err(|e| Status::invalid_argument(format!("invalid packet: {e}")))?;
        let out = r.handle(p).map_err(|e| match e {
            ReceiveError::Io { .. } => Status::internal(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        })?;
        for p in out {
            tx.send(Ok(p.encode_to_vec().into()))
                .await
                .map_err(|_| Status::cancelled("client gone"))?;
        }
        if r.is_finished() {
            return Ok(());
        }
    }
    Err(Status::aborted(
        "the sender ended the transfer before it was complete",
    ))
}

/// The tower service routing `/moby.filesync.v1.FileSend/DiffCopy` to a
/// [`FileSendService`], with frames decoded by the service itself.
#[derive(Debug, Clone)]
pub struct FileSendServer {
    service: FileSendService,
}

impl tonic::server::NamedService for FileSendServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl crate::session::SessionService for FileSendServer {
    const METHODS: &'static [&'static str] = &["DiffCopy"];
}

/// A codec that hands over message bytes undecoded.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

struct DiffCopySvc(FileSendService);

impl tonic::server::StreamingService<Bytes> for DiffCopySvc {
    type Response = Bytes;
    type ResponseStream = ReceiverStream<Result<Bytes, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.diff_copy(request).await })
    }
}

impl<B> tower::Service<http::Request<B>> for FileSendServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == DIFF_COPY_METHOD {
            let svc = DiffCopySvc(self.service.clone());
            return Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(RawCodec)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                Ok(grpc.streaming(svc, req).await)
            });
        }
        Box::pin(async move {
            let mut response = http::Response::new(tonic::body::Body::default());
            let headers = response.headers_mut();
            headers.insert(
                tonic::Status::GRPC_STATUS,
                (tonic::Code::Unimplemented as i32).into(),
            );
            headers.insert(
                http::header::CONTENT_TYPE,
                tonic::metadata::GRPC_CONTENT_TYPE,
            );
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn exporter_ids() {
        let mut md = MetadataMap::new();
        assert_eq!(exporter_id(&md), 0);
        md.insert(KEY_EXPORTER_ID, MetadataValue::from_static("2"));
        assert_eq!(exporter_id(&md), 2);
        md.insert(KEY_EXPORTER_ID, MetadataValue::from_static("x"));
        assert_eq!(exporter_id(&md), 0);
    }

    #[test]
    fn names() {
        assert_eq!(
            bollard_buildkit_proto::moby::filesync::v1::file_send_server::SERVICE_NAME,
            SERVICE_NAME
        );
        assert_eq!(
            crate::session::method_url(SERVICE_NAME, "DiffCopy"),
            DIFF_COPY_METHOD
        );
    }

    #[test]
    fn unknown_exporter_is_not_found() {
        let svc = FileSendService::new([(1, Target::File("/nonexistent/x".into()))]);
        let err = svc.target(&MetadataMap::new()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let mut md = MetadataMap::new();
        md.insert(KEY_EXPORTER_ID, MetadataValue::from_static("1"));
        assert_eq!(
            svc.target(&md).unwrap(),
            Target::File("/nonexistent/x".into())
        );
    }
}
