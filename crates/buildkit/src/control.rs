//! [`Client`]: a connection to the BuildKit Control API.

use std::collections::BTreeMap;
use std::sync::Arc;

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{InfoRequest, ListWorkersRequest};
use bollard_buildkit_proto::pb;
use tonic::transport::Channel;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::transport::docker::DockerTransport;
use crate::transport::{tcp, unix};

/// Largest gRPC message sent or accepted on the Control API (LLB
/// definitions and status batches can be large; BuildKit's own client
/// allows 16 MiB).
pub(crate) const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Worker label naming the worker's snapshotter. Docker Engine with the
/// containerd image store reports a containerd snapshotter (`overlayfs`
/// here); only that store supports the `image` exporter's push and
/// multi-platform results.
pub const LABEL_SNAPSHOTTER: &str = "org.mobyproject.buildkit.worker.snapshotter";

/// How the client reaches the daemon; sessions need to know.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    /// Docker Engine API upgrades (`/grpc`, `/session`).
    Docker(Arc<DockerTransport>),
    /// Plain gRPC to a standalone buildkitd.
    Grpc,
}

/// A connected BuildKit Control API client. Cheap to clone; clones share
/// the HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct Client {
    control: ControlClient<Channel>,
    /// The connection, for the LLB bridge of gateway builds.
    channel: Channel,
    transport: Transport,
    target: String,
}

/// A BuildKit worker as reported by `ListWorkers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// Worker id.
    pub id: String,
    /// Platforms the worker can build for, as `os/arch[/variant]`, without
    /// duplicates (native first, then the ones emulation provides).
    pub platforms: Vec<String>,
    /// Worker labels (`org.mobyproject.buildkit.worker.*`).
    pub labels: BTreeMap<String, String>,
}

impl Worker {
    /// The value of a label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// BuildKit version information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildkitVersion {
    /// Package, e.g. `github.com/moby/buildkit` or `github.com/docker/docker`.
    pub package: String,
    /// Version, e.g. `v0.13.1`.
    pub version: String,
    /// VCS revision.
    pub revision: String,
}

/// Formats a platform as `os/arch[/variant]`.
pub fn format_platform(platform: &pb::Platform) -> String {
    let mut out = format!("{}/{}", platform.os, platform.architecture);
    if !platform.variant.is_empty() {
        out.push('/');
        out.push_str(&platform.variant);
    }
    out
}

/// Keeps the first occurrence of each string (Docker Engine lists its
/// native platform twice).
fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

impl Client {
    /// Connects to `endpoint`. For Docker this performs the `POST /grpc`
    /// upgrade right away, so a missing socket or a refusing daemon is
    /// reported here.
    pub async fn connect(endpoint: &Endpoint) -> Result<Self> {
        let (channel, transport, target) = match endpoint {
            Endpoint::Docker(docker) => {
                let docker = Arc::new(DockerTransport::new(docker)?);
                let channel = docker.control_channel().await?;
                let target = docker.target().to_owned();
                (channel, Transport::Docker(docker), target)
            }
            Endpoint::Unix(path) => (
                unix::control_channel(path).await?,
                Transport::Grpc,
                unix::target(path),
            ),
            Endpoint::Tcp { host, port, tls } => (
                tcp::control_channel(host, *port, tls.as_ref()).await?,
                Transport::Grpc,
                tcp::target(host, *port),
            ),
        };
        let control = ControlClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Ok(Client {
            control,
            channel,
            transport,
            target,
        })
    }

    /// Human readable address of the daemon (`unix:///var/run/docker.sock`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// True when connected through Docker Engine.
    pub fn is_docker(&self) -> bool {
        matches!(self.transport, Transport::Docker(_))
    }

    /// The generated Control API client, for calls this crate does not wrap.
    pub fn control(&self) -> ControlClient<Channel> {
        self.control.clone()
    }

    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The daemon's workers with their platforms and labels.
    pub async fn list_workers(&self) -> Result<Vec<Worker>> {
        let response = self
            .control()
            .list_workers(ListWorkersRequest::default())
            .await
            .map_err(|s| Error::rpc("ListWorkers", s))?;
        Ok(response
            .into_inner()
            .record
            .into_iter()
            .map(|record| Worker {
                id: record.id,
                platforms: dedup(record.platforms.iter().map(format_platform)),
                labels: record.labels.into_iter().collect(),
            })
            .collect())
    }

    /// The BuildKit version. Uses `Control.Info` (BuildKit v0.11+) and falls
    /// back to the version some daemons put in `ListWorkers`; `None` when
    /// the daemon reports neither.
    pub async fn info(&self) -> Result<Option<BuildkitVersion>> {
        match self.control().info(InfoRequest::default()).await {
            Ok(response) => {
                if let Some(v) = response.into_inner().buildkit_version {
                    return Ok(Some(BuildkitVersion {
                        package: v.package,
                        version: v.version,
                        revision: v.revision,
                    }));
                }
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {}
            Err(status) => return Err(Error::rpc("Info", status)),
        }
        let response = self
            .control()
            .list_workers(ListWorkersRequest::default())
            .await
            .map_err(|s| Error::rpc("ListWorkers", s))?;
        Ok(response
            .into_inner()
            .record
            .into_iter()
            .find_map(|r| r.buildkit_version)
            .filter(|v| !v.version.is_empty())
            .map(|v| BuildkitVersion {
                package: v.package,
                version: v.version,
                revision: v.revision,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_strings() {
        let p = pb::Platform {
            architecture: "arm".into(),
            os: "linux".into(),
            variant: "v7".into(),
            ..pb::Platform::default()
        };
        assert_eq!(format_platform(&p), "linux/arm/v7");
        let p = pb::Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..pb::Platform::default()
        };
        assert_eq!(format_platform(&p), "linux/amd64");
    }

    #[tokio::test]
    async fn connect_to_missing_socket_fails_clearly() {
        let err = Client::connect(&Endpoint::Unix("/nonexistent/buildkitd.sock".into()))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot connect to unix:///nonexistent/buildkitd.sock: No such file"),
            "{err}"
        );
    }
}
