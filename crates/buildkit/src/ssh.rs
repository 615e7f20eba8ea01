//! Session SSH agent forwarding (`moby.sshforward.v1.SSH`): BuildKit asks
//! whether an agent id exists (`CheckAgent`) and, for each connection a
//! `RUN --mount=type=ssh` step makes, opens `ForwardAgent`, a byte stream
//! this service splices to the agent's unix socket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;

use bollard_buildkit_proto::moby::sshforward::v1::ssh_server::{Ssh, SshServer};
use bollard_buildkit_proto::moby::sshforward::v1::{
    BytesMessage, CheckAgentRequest, CheckAgentResponse,
};
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The id BuildKit uses when a step names none.
pub const DEFAULT_ID: &str = "default";

/// Agents by id → socket path.
#[derive(Debug, Clone, Default)]
pub struct SshService {
    agents: HashMap<String, PathBuf>,
}

impl SshService {
    pub fn new(agents: impl IntoIterator<Item = (String, PathBuf)>) -> Self {
        SshService {
            agents: agents.into_iter().collect(),
        }
    }

    pub fn into_server(self) -> SshServer<Self> {
        SshServer::new(self)
    }

    fn socket(&self, id: &str) -> Result<&PathBuf, Status> {
        let id = if id.is_empty() { DEFAULT_ID } else { id };
        self.agents
            .get(id)
            .ok_or_else(|| Status::not_found(format!("no SSH agent with id {id:?} was forwarded")))
    }
}

#[tonic::async_trait]
impl Ssh for SshService {
    async fn check_agent(
        &self,
        request: Request<CheckAgentRequest>,
    ) -> Result<Response<CheckAgentResponse>, Status> {
        let path = self.socket(&request.get_ref().id)?;
        UnixStream::connect(path)
            .await
            .map_err(|e| Status::unavailable(format!("SSH agent {}: {e}", path.display())))?;
        Ok(Response::new(CheckAgentResponse {}))
    }

    type ForwardAgentStream =
        Pin<Box<dyn Stream<Item = Result<BytesMessage, Status>> + Send + 'static>>;

    async fn forward_agent(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::ForwardAgentStream>, Status> {
        let id = request
            .metadata()
            .get("id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(DEFAULT_ID)
            .to_string();
        let path = self.socket(&id)?.clone();
        let sock = UnixStream::connect(&path)
            .await
            .map_err(|e| Status::unavailable(format!("SSH agent {}: {e}", path.display())))?;
        let (mut rd, mut wr) = sock.into_split();
        let mut incoming = request.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(m)) = incoming.message().await {
                if wr.write_all(&m.data).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let (tx, rx) = mpsc::channel::<Result<BytesMessage, Status>>(16);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .send(Ok(BytesMessage {
                                data: buf[..n].to_vec(),
                            }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_id_is_not_found() {
        let s = SshService::new([("default".to_string(), PathBuf::from("/nonexistent.sock"))]);
        let e = s
            .check_agent(Request::new(CheckAgentRequest { id: "other".into() }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = s
            .check_agent(Request::new(CheckAgentRequest { id: String::new() }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn check_agent_connects_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let _l = tokio::net::UnixListener::bind(&path).unwrap();
        let s = SshService::new([("default".to_string(), path)]);
        s.check_agent(Request::new(CheckAgentRequest {
            id: "default".into(),
        }))
        .await
        .unwrap();
    }
}
