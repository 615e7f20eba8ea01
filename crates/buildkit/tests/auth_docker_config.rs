//! The Auth service end to end: the user's Docker configuration found
//! through `DOCKER_CONFIG`, a credential helper found on `PATH`, served
//! over gRPC on a loopback port and queried with the generated client.
//!
//! One test only: it changes process-wide environment variables.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use mybake_buildkit::auth::AuthService;
use mybake_buildkit::proto::moby::filesync::v1::auth_client::AuthClient;
use mybake_buildkit::proto::moby::filesync::v1::{
    CredentialsRequest, FetchTokenRequest, GetTokenAuthorityRequest, VerifyTokenAuthorityRequest,
};
use tokio_stream::wrappers::TcpListenerStream;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const HELPER: &str = r#"#!/bin/sh
[ "$1" = "get" ] || exit 2
read -r server
case "$server" in
  https://index.docker.io/v1/) printf '{"ServerURL":"%s","Username":"hubuser","Secret":"hubpass"}\n' "$server" ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#;

#[tokio::test]
async fn credentials_from_docker_config() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin)?;
    let helper = bin.join("docker-credential-mybaketest");
    std::fs::write(&helper, HELPER)?;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755))?;

    let config_dir = tmp.path().join("docker");
    std::fs::create_dir(&config_dir)?;
    let auth = base64::engine::general_purpose::STANDARD.encode("reguser:regpass");
    std::fs::write(
        config_dir.join("config.json"),
        format!(
            r#"{{
  "auths": {{
    "https://index.docker.io/v1/": {{}},
    "localhost:5000": {{"auth": "{auth}"}}
  }},
  "credHelpers": {{"registry-1.docker.io": "unused", "https://index.docker.io/v1/": "mybaketest", "ghcr.io": "mybaketest"}},
  "credsStore": ""
}}"#
        ),
    )?;

    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin.clone()];
    dirs.extend(std::env::split_paths(&path));
    std::env::set_var("PATH", std::env::join_paths(dirs)?);
    std::env::set_var("DOCKER_CONFIG", &config_dir);
    std::env::remove_var("DOCKER_AUTH_CONFIG");

    let service = AuthService::from_env()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = AuthClient::connect(format!("http://{addr}")).await?;

    let creds = |host: &str| CredentialsRequest {
        host: host.to_owned(),
    };
    let hub = client
        .credentials(creds("registry-1.docker.io"))
        .await?
        .into_inner();
    assert_eq!(
        (hub.username.as_str(), hub.secret.as_str()),
        ("hubuser", "hubpass")
    );
    let local = client
        .credentials(creds("localhost:5000"))
        .await?
        .into_inner();
    assert_eq!(
        (local.username.as_str(), local.secret.as_str()),
        ("reguser", "regpass")
    );
    // The helper has nothing: anonymous.
    let ghcr = client.credentials(creds("ghcr.io")).await?.into_inner();
    assert!(ghcr.username.is_empty() && ghcr.secret.is_empty());
    // Not configured at all: anonymous.
    let other = client.credentials(creds("quay.io")).await?.into_inner();
    assert!(other.username.is_empty() && other.secret.is_empty());

    // Token methods are left to BuildKit.
    let code = client
        .fetch_token(FetchTokenRequest::default())
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(code, Some(tonic::Code::Unimplemented));
    let code = client
        .get_token_authority(GetTokenAuthorityRequest::default())
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(code, Some(tonic::Code::Unimplemented));
    let code = client
        .verify_token_authority(VerifyTokenAuthorityRequest::default())
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(code, Some(tonic::Code::Unimplemented));
    Ok(())
}
