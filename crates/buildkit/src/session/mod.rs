//! The client session: a connection on which the *daemon* calls the client
//! (the client is the gRPC server) to read local directories (FileSync),
//! registry credentials (Auth), secrets, ...
//!
//! ```no_run
//! # async fn demo(client: &mybake_buildkit::Client) -> Result<(), mybake_buildkit::Error> {
//! use mybake_buildkit::session::Session;
//!
//! let session = Session::builder()
//!     .name("mybake")
//!     // .add_service(FileSyncServer::new(my_filesync)) ...
//!     .build();
//! let handle = session.attach(client).await?;
//! // ... client.solve(SolveRequest { session_id: handle.id().to_owned(), .. }, ..)
//! handle.close().await;
//! # Ok(()) }
//! ```
//!
//! Two ways to attach, picked from the client's endpoint by
//! [`AttachMode::Auto`]:
//!
//! * Docker Engine: `POST /session` upgraded to h2c with the
//!   `X-Docker-Expose-Session-*` headers; the daemon then speaks HTTP/2 (as
//!   client) on that socket.
//! * Standalone buildkitd: the `Control.Session` bidi stream with the same
//!   values as gRPC metadata, tunnelling the HTTP/2 bytes in
//!   `BytesMessage`s.
//!
//! Every session serves `grpc.health.v1.Health` (always `SERVING`) in
//! addition to the services added with [`SessionBuilder::add_service`]. The
//! daemon only calls methods it was told about, so each service comes with
//! its list of method names ([`SessionService::METHODS`]).

mod health;
mod tunnel;

use std::convert::Infallible;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::control::{Client, Transport};
use crate::error::{error_chain, Error, Result};

pub use health::HealthService;

/// Header (and lower-cased gRPC metadata key) carrying the session id.
pub const HEADER_SESSION_ID: &str = "X-Docker-Expose-Session-Uuid";
/// Header carrying the session name (informational).
pub const HEADER_SESSION_NAME: &str = "X-Docker-Expose-Session-Name";
/// Header carrying the shared key (scopes the daemon's local-dir cache).
pub const HEADER_SESSION_SHARED_KEY: &str = "X-Docker-Expose-Session-Sharedkey";
/// Header repeated once per exposed method (`/pkg.Service/Method`).
pub const HEADER_SESSION_METHOD: &str = "X-Docker-Expose-Session-Grpc-Method";

/// How long [`Session::attach`] waits for the daemon to accept a
/// `Control.Session` stream before carrying on in the background.
const ATTACH_WAIT: Duration = Duration::from_secs(10);

/// A tonic service that can be exposed on a session: its gRPC service name
/// comes from [`NamedService`], its method names from here.
pub trait SessionService: NamedService {
    /// Method names without the service prefix, e.g. `["DiffCopy", "TarStream"]`.
    const METHODS: &'static [&'static str];
}

macro_rules! session_service {
    ($($server:path => [$($method:literal),*];)*) => {
        $(impl<T> SessionService for $server {
            const METHODS: &'static [&'static str] = &[$($method),*];
        })*
    };
}

session_service! {
    bollard_buildkit_proto::health::health_server::HealthServer<T> => ["Check", "List", "Watch"];
    bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer<T> => ["DiffCopy", "TarStream"];
    bollard_buildkit_proto::moby::filesync::v1::file_send_server::FileSendServer<T> => ["DiffCopy"];
    bollard_buildkit_proto::moby::filesync::v1::auth_server::AuthServer<T> => ["Credentials", "FetchToken", "GetTokenAuthority", "VerifyTokenAuthority"];
    bollard_buildkit_proto::moby::filesync::packet::file_sync_server::FileSyncServer<T> => ["DiffCopy", "TarStream"];
    bollard_buildkit_proto::moby::filesync::packet::file_send_server::FileSendServer<T> => ["DiffCopy"];
    bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::SecretsServer<T> => ["GetSecret"];
    bollard_buildkit_proto::moby::sshforward::v1::ssh_server::SshServer<T> => ["CheckAgent", "ForwardAgent"];
}

/// Builds a [`Session`].
#[derive(Debug)]
pub struct SessionBuilder {
    name: String,
    shared_key: String,
    routes: Routes,
    methods: Vec<String>,
}

impl SessionBuilder {
    /// Session name shown by the daemon (default `mybake`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Shared key: BuildKit reuses the previous transfer of a local
    /// directory only between sessions with the same shared key (buildx
    /// uses a stable per-builder-and-directory key). Default empty.
    pub fn shared_key(mut self, key: impl Into<String>) -> Self {
        self.shared_key = key.into();
        self
    }

    /// Exposes a generated tonic server (e.g.
    /// `FileSyncServer::new(service)`) with its known method list.
    pub fn add_service<S>(self, service: S) -> Self
    where
        S: SessionService
            + tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.add_service_with_methods(service, S::METHODS)
    }

    /// Exposes any tonic service, announcing `methods` (names without the
    /// service prefix) to the daemon.
    pub fn add_service_with_methods<S>(mut self, service: S, methods: &[&str]) -> Self
    where
        S: NamedService
            + tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        for method in methods {
            let url = method_url(S::NAME, method);
            if !self.methods.contains(&url) {
                self.methods.push(url);
            }
        }
        self.routes = self.routes.add_service(service);
        self
    }

    /// Finishes the session (with a fresh random id).
    pub fn build(self) -> Session {
        Session {
            id: new_id(),
            name: self.name,
            shared_key: self.shared_key,
            routes: self.routes.prepare(),
            methods: self.methods,
        }
    }
}

/// A session ready to be attached to a daemon.
#[derive(Debug)]
pub struct Session {
    id: String,
    name: String,
    shared_key: String,
    routes: Routes,
    methods: Vec<String>,
}

/// How to attach a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// `POST /session` for Docker endpoints, `Control.Session` otherwise.
    #[default]
    Auto,
    /// Docker Engine API `POST /session` upgrade (Docker endpoints only).
    DockerUpgrade,
    /// `Control.Session` bidi stream (any endpoint, including Docker's
    /// `/grpc`).
    ControlSession,
}

impl Session {
    /// A builder with the health service already added.
    pub fn builder() -> SessionBuilder {
        SessionBuilder {
            name: "mybake".to_owned(),
            shared_key: String::new(),
            routes: Routes::default(),
            methods: Vec::new(),
        }
        .add_service(HealthService::server())
    }

    /// The session id, to pass as `SolveRequest::session_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The full method names announced to the daemon
    /// (`/grpc.health.v1.Health/Check`, ...).
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// The `X-Docker-Expose-Session-*` values, in order, repeated names for
    /// the methods.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (HEADER_SESSION_ID, self.id.clone()),
            (HEADER_SESSION_NAME, self.name.clone()),
            (HEADER_SESSION_SHARED_KEY, self.shared_key.clone()),
        ];
        headers.extend(
            self.methods
                .iter()
                .map(|m| (HEADER_SESSION_METHOD, m.clone())),
        );
        headers
    }

    /// Attaches the session to the daemon behind `client` and serves it in
    /// the background until the returned handle is closed or dropped.
    pub async fn attach(self, client: &Client) -> Result<SessionHandle> {
        self.attach_with(client, AttachMode::Auto).await
    }

    /// Like [`Session::attach`] with an explicit [`AttachMode`].
    pub async fn attach_with(self, client: &Client, mode: AttachMode) -> Result<SessionHandle> {
        let use_upgrade = match (mode, client.transport()) {
            (AttachMode::Auto, Transport::Docker(_)) | (AttachMode::DockerUpgrade, _) => true,
            (AttachMode::Auto, Transport::Grpc) | (AttachMode::ControlSession, _) => false,
        };
        if use_upgrade {
            self.attach_docker(client).await
        } else {
            self.attach_control(client).await
        }
    }

    async fn attach_docker(self, client: &Client) -> Result<SessionHandle> {
        let Transport::Docker(docker) = client.transport() else {
            return Err(Error::Session(
                "the POST /session upgrade needs a Docker Engine endpoint".into(),
            ));
        };
        let mut headers = Vec::new();
        for (name, value) in self.headers() {
            let value = HeaderValue::from_str(&value)
                .map_err(|_| Error::Session(format!("invalid value for {name}: {value:?}")))?;
            headers.push((HeaderName::from_static(lower(name)), value));
        }
        let upgraded = docker.upgrade("/session", &headers).await?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve_h2(upgraded, self.routes, cancel.clone()));
        Ok(SessionHandle {
            id: self.id,
            cancel,
            task: Some(task),
        })
    }

    async fn attach_control(self, client: &Client) -> Result<SessionHandle> {
        let mut metadata = MetadataMap::new();
        for (name, value) in self.headers() {
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|_| Error::Session(format!("invalid value for {name}: {value:?}")))?;
            metadata.append(lower(name), value);
        }
        let tunnel = tunnel::open(client.control(), metadata);
        let cancel = CancellationToken::new();
        let pump = tunnel.pump;
        let server = serve_h2(TokioIo::new(tunnel.io), self.routes, cancel.clone());
        let task = tokio::spawn(async move {
            tokio::select! {
                // The server ends when the pipe closes (daemon gone) or on
                // cancellation; the pump ends when either side closes.
                result = server => result,
                () = pump => Ok(()),
            }
        });
        let handle = SessionHandle {
            id: self.id,
            cancel,
            task: Some(task),
        };
        match tokio::time::timeout(ATTACH_WAIT, tunnel.ready).await {
            Ok(Ok(Ok(()))) | Err(_) => Ok(handle),
            Ok(Ok(Err(status))) => Err(Error::Session(format!(
                "daemon refused Control.Session: {}",
                if status.message().is_empty() {
                    format!("{:?}", status.code())
                } else {
                    status.message().to_owned()
                }
            ))),
            Ok(Err(_)) => Err(Error::Session(
                "Control.Session ended before the daemon answered".into(),
            )),
        }
    }
}

/// A running session. Dropping it stops the session (without waiting).
#[derive(Debug)]
pub struct SessionHandle {
    id: String,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<()>>>,
}

impl SessionHandle {
    /// The session id, to pass as `SolveRequest::session_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// True once the session stopped (daemon closed it, or it failed).
    pub fn is_finished(&self) -> bool {
        match &self.task {
            Some(task) => task.is_finished(),
            None => true,
        }
    }

    /// Stops serving and waits (at most a few seconds) for the connection
    /// to close. Returns the error that ended the session early, if any.
    pub async fn close(mut self) -> Result<()> {
        self.cancel.cancel();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(Error::Session(format!("session task failed: {join}"))),
            Err(_) => Ok(()),
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Serves HTTP/2 (server side) with `routes` on one connection until it
/// closes or `cancel` fires.
async fn serve_h2<I>(io: I, routes: Routes, cancel: CancellationToken) -> Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let routes = routes.clone();
            tower::ServiceExt::oneshot(routes, request)
        });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result.map_err(|e| {
            Error::Session(format!("session connection failed: {}", error_chain(&e)))
        }),
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            // In-flight calls get a moment to finish; then the connection
            // is dropped (closed).
            let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
            Ok(())
        }
    }
}

/// `/service/method`, as BuildKit's `session.MethodURL`.
pub fn method_url(service: &str, method: &str) -> String {
    format!("/{service}/{method}")
}

/// Lower-cases a header name constant (gRPC metadata keys must be lower
/// case; HTTP/1.1 header names are case-insensitive).
fn lower(name: &'static str) -> &'static str {
    match name {
        HEADER_SESSION_ID => "x-docker-expose-session-uuid",
        HEADER_SESSION_NAME => "x-docker-expose-session-name",
        HEADER_SESSION_SHARED_KEY => "x-docker-expose-session-sharedkey",
        _ => "x-docker-expose-session-grpc-method",
    }
}

/// A random 25-character base-36 id, like BuildKit's `identity.NewID`.
pub fn new_id() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..25)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_announces_health_and_added_services() {
        use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{
            Secrets, SecretsServer,
        };
        use bollard_buildkit_proto::moby::buildkit::secrets::v1::{
            GetSecretRequest, GetSecretResponse,
        };

        struct NoSecrets;
        #[tonic::async_trait]
        impl Secrets for NoSecrets {
            async fn get_secret(
                &self,
                _request: tonic::Request<GetSecretRequest>,
            ) -> Result<tonic::Response<GetSecretResponse>, tonic::Status> {
                Err(tonic::Status::not_found("no secrets"))
            }
        }

        let session = Session::builder()
            .name("test")
            .shared_key("key")
            .add_service(SecretsServer::new(NoSecrets))
            .build();
        assert_eq!(
            session.methods(),
            [
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/List",
                "/grpc.health.v1.Health/Watch",
                "/moby.buildkit.secrets.v1.Secrets/GetSecret",
            ]
        );
        let headers = session.headers();
        assert_eq!(headers[0], (HEADER_SESSION_ID, session.id().to_owned()));
        assert_eq!(headers[1], (HEADER_SESSION_NAME, "test".to_owned()));
        assert_eq!(headers[2], (HEADER_SESSION_SHARED_KEY, "key".to_owned()));
        assert_eq!(headers.len(), 7);
        assert!(headers[3..]
            .iter()
            .all(|(n, _)| *n == HEADER_SESSION_METHOD));
    }

    #[test]
    fn ids_are_unique_base36() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 25);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
    }

    #[test]
    fn lower_names() {
        for name in [
            HEADER_SESSION_ID,
            HEADER_SESSION_NAME,
            HEADER_SESSION_SHARED_KEY,
            HEADER_SESSION_METHOD,
        ] {
            assert_eq!(lower(name), name.to_ascii_lowercase());
        }
    }
}
