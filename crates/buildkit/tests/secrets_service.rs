//! The Secrets service over gRPC on a loopback port, queried with the
//! generated client as BuildKit would.

use std::collections::HashMap;

use mybake_buildkit::proto::moby::buildkit::secrets::v1::secrets_client::SecretsClient;
use mybake_buildkit::proto::moby::buildkit::secrets::v1::GetSecretRequest;
use mybake_buildkit::secrets::{SecretSource, SecretsService};
use tokio_stream::wrappers::TcpListenerStream;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test]
async fn get_secret_over_grpc() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("npmrc");
    std::fs::write(&file, b"//registry.npmjs.org/:_authToken=abc")?;
    std::env::set_var("MYBAKE_SECRETS_TEST_TOKEN", "from-env");

    let service = SecretsService::new([
        ("npmrc".to_owned(), SecretSource::File(file)),
        (
            "token".to_owned(),
            SecretSource::Env("MYBAKE_SECRETS_TEST_TOKEN".into()),
        ),
    ])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = SecretsClient::connect(format!("http://{addr}")).await?;
    let req = |id: &str| GetSecretRequest {
        id: id.to_owned(),
        annotations: HashMap::new(),
    };

    let npmrc = client.get_secret(req("npmrc")).await?.into_inner().data;
    assert_eq!(npmrc, b"//registry.npmjs.org/:_authToken=abc");
    let token = client.get_secret(req("token")).await?.into_inner().data;
    assert_eq!(token, b"from-env");
    let missing = client.get_secret(req("nope")).await.err().map(|s| s.code());
    assert_eq!(missing, Some(tonic::Code::NotFound));
    Ok(())
}
