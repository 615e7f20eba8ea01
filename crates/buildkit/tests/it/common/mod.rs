//! Helpers for the tests against the real daemon (Docker Engine with the
//! containerd store, the registry at 127.0.0.1:5000, and the gRPC splice
//! socket that makes the Engine's BuildKit look like a buildkitd).
//!
//! Nothing here skips: a missing daemon makes the tests fail.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use mybake_buildkit::proto::pb;
use mybake_buildkit::{Client, Endpoint, StatusEvent};
use prost::Message;
use tokio::sync::mpsc;

/// Multi-arch busybox in the local registry.
pub const BUSYBOX: &str = "localhost:5000/busybox:latest";
/// Registry address for manifest checks.
pub const REGISTRY: &str = "127.0.0.1:5000";

/// Docker Engine (from `DOCKER_HOST`, default `/var/run/docker.sock`).
pub fn docker() -> Endpoint {
    Endpoint::parse("docker").expect("docker endpoint")
}

/// The splice socket (standalone-buildkitd look-alike), from
/// `BUILDKIT_HOST` or `unix:///run/mybake-buildkitd.sock`.
pub fn splice() -> Endpoint {
    let addr = std::env::var("BUILDKIT_HOST")
        .unwrap_or_else(|_| "unix:///run/mybake-buildkitd.sock".to_owned());
    Endpoint::parse(&addr).expect("BUILDKIT_HOST endpoint")
}

pub async fn connect(endpoint: &Endpoint) -> Client {
    match Client::connect(endpoint).await {
        Ok(client) => client,
        Err(e) => panic!("the test daemon must be running ({endpoint}): {e}"),
    }
}

/// True when qemu-aarch64 binfmt emulation is registered.
pub fn arm64_emulation() -> bool {
    std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
}

pub fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn platform(p: &str) -> pb::Platform {
    let mut parts = p.split('/');
    pb::Platform {
        os: parts.next().unwrap_or_default().to_owned(),
        architecture: parts.next().unwrap_or_default().to_owned(),
        variant: parts.next().unwrap_or_default().to_owned(),
        ..pb::Platform::default()
    }
}

/// A tiny LLB builder: a chain of ops, the last one being the result.
#[derive(Default)]
pub struct Llb {
    ops: Vec<Vec<u8>>,
    metadata: BTreeMap<String, pb::OpMetadata>,
    last: Option<String>,
}

impl Llb {
    fn push(&mut self, op: pb::Op, ignore_cache: bool) -> String {
        let bytes = op.encode_to_vec();
        let digest = sha256(&bytes);
        if ignore_cache {
            self.metadata.insert(
                digest.clone(),
                pb::OpMetadata {
                    ignore_cache: true,
                    ..pb::OpMetadata::default()
                },
            );
        }
        self.ops.push(bytes);
        self.last = Some(digest.clone());
        digest
    }

    /// `docker-image://{image}` for `platform` (`linux/amd64`).
    pub fn image(mut self, image: &str, platform_str: &str) -> Self {
        let op = pb::Op {
            platform: Some(platform(platform_str)),
            op: Some(pb::op::Op::Source(pb::SourceOp {
                identifier: format!("docker-image://{image}"),
                attrs: BTreeMap::new(),
            })),
            ..pb::Op::default()
        };
        self.push(op, false);
        self
    }

    /// Runs `args` on top of the previous op's rootfs.
    pub fn run(mut self, args: &[&str], platform_str: &str, ignore_cache: bool) -> Self {
        let input = self.last.clone().expect("run needs a base");
        let op = pb::Op {
            inputs: vec![pb::Input {
                digest: input,
                index: 0,
            }],
            platform: Some(platform(platform_str)),
            op: Some(pb::op::Op::Exec(pb::ExecOp {
                meta: Some(pb::Meta {
                    args: args.iter().map(|s| (*s).to_owned()).collect(),
                    env: vec![
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                    ],
                    cwd: "/".into(),
                    ..pb::Meta::default()
                }),
                mounts: vec![pb::Mount {
                    input: 0,
                    dest: "/".into(),
                    output: 0,
                    ..pb::Mount::default()
                }],
                ..pb::ExecOp::default()
            })),
            ..pb::Op::default()
        };
        self.push(op, ignore_cache);
        self
    }

    /// The definition, terminated by the result op.
    pub fn definition(mut self) -> pb::Definition {
        let last = self.last.clone().expect("empty LLB");
        let terminal = pb::Op {
            inputs: vec![pb::Input {
                digest: last,
                index: 0,
            }],
            ..pb::Op::default()
        };
        self.push(terminal, false);
        pb::Definition {
            def: self.ops,
            metadata: self.metadata,
            source: None,
        }
    }
}

/// Collects status events in the background.
pub fn collect_status() -> (
    mpsc::Sender<StatusEvent>,
    tokio::task::JoinHandle<Vec<StatusEvent>>,
) {
    let (tx, mut rx) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    });
    (tx, task)
}

/// HTTP status of `GET /v2/{repo}/manifests/{reference}` on the registry.
pub async fn manifest_status(repo: &str, reference: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(REGISTRY)
        .await
        .expect("registry at 127.0.0.1:5000 must be running");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .expect("registry handshake");
    tokio::spawn(conn);
    let request = http::Request::get(format!("/v2/{repo}/manifests/{reference}"))
        .header("host", REGISTRY)
        .header(
            "accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .body(Empty::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("registry timeout")
        .expect("registry request");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}
