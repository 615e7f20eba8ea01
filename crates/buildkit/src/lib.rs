//! Native BuildKit client for mybake.
//!
//! * [`Endpoint`]: where BuildKit is (`docker`, `unix:///path`,
//!   `tcp://host:port` with optional TLS).
//! * [`Client`]: Control API (`ListWorkers`, `Info`, `Solve` + `Status`)
//!   over Docker Engine's `/grpc` upgrade or straight to a buildkitd.
//! * [`session`]: the client-side session the daemon calls back into
//!   (Health built in; FileSync, Auth, Secrets plug in as tonic services).
//! * [`status`]: typed progress events.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mybake_buildkit::Error> {
//! use mybake_buildkit::{Client, Endpoint, Exporter, SolveRequest, session::Session};
//!
//! let client = Client::connect(&Endpoint::parse("docker")?).await?;
//! let session = Session::builder().build().attach(&client).await?;
//! let (tx, mut rx) = tokio::sync::mpsc::channel(64);
//! tokio::spawn(async move { while let Some(event) = rx.recv().await { println!("{event:?}") } });
//! let response = client
//!     .solve(
//!         SolveRequest {
//!             frontend: "dockerfile.v0".into(),
//!             exporters: vec![Exporter::new("image").attr("name", "localhost:5000/app").attr("push", "true")],
//!             session_id: session.id().to_owned(),
//!             ..SolveRequest::default()
//!         },
//!         Some(tx),
//!     )
//!     .await?;
//! println!("{:?}", response.image_digest());
//! session.close().await?;
//! # Ok(()) }
//! ```
//!
//! Ownership while under construction: `filesync/`, `secrets.rs`, `auth.rs`
//! implement the session services; everything else is transport, Control
//! API and session plumbing.

pub mod auth;
pub mod filesend;
pub mod filesync;
pub mod secrets;
pub mod ssh;

mod control;
mod endpoint;
pub mod engine;
mod error;
pub mod gateway;
pub mod session;
mod solve;
pub mod status;
mod transport;

pub use control::{format_platform, BuildkitVersion, Client, Worker, LABEL_SNAPSHOTTER};
pub use endpoint::{DockerEndpoint, DockerHost, Endpoint, TlsConfig, DEFAULT_DOCKER_SOCKET};
pub use error::{Error, Result};
pub use gateway::FrontendInput;
pub use solve::{
    CacheEntry, Descriptor, Exporter, SolveRequest, SolveResponse, EXPORTER_IMAGE_CONFIG_DIGEST,
    EXPORTER_IMAGE_DESCRIPTOR, EXPORTER_IMAGE_DIGEST, EXPORTER_IMAGE_NAME,
};
pub use status::{LogStream, StatusEvent};
pub use tokio_util::sync::CancellationToken;

/// The generated BuildKit protobuf and tonic types.
pub use bollard_buildkit_proto as proto;
