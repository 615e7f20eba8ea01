//! `tcp://` endpoints, plain and TLS (mutual), against the real daemon.
//!
//! Neither buildkitd nor the Engine listen on TCP in the test bed, so each
//! test runs a small forwarder: TCP (optionally terminating TLS with
//! certificates made by the `openssl` CLI) to the splice socket (the
//! Engine's BuildKit as a buildkitd) or to the Docker socket.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use mybake_buildkit::session::Session;
use mybake_buildkit::{
    Client, DockerEndpoint, DockerHost, Endpoint, Error, SolveRequest, TlsConfig,
};
use tokio::net::{TcpListener, UnixStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

const SPLICE_SOCKET: &str = "/run/mybake-buildkitd.sock";
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// CA, server (localhost / 127.0.0.1) and client certificates.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("the openssl CLI is needed for the TLS tests");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            let key = format!("{ca}.key");
            let pem = format!("{ca}.pem");
            let subject = format!("/CN=mybake test {ca}");
            args.extend([
                "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject,
            ]);
            openssl(&args);
        }
        for (name, ext) in [
            (
                "server",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(dir.path().join(format!("{name}.ext")), ext).expect("ext file");
            let mut args = vec!["req"];
            args.extend(ec);
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let subject = format!("/CN={name}");
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
            openssl(&args);
            let pem = format!("{name}.pem");
            let ext = format!("{name}.ext");
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ]);
        }
        Pki { dir }
    }

    /// TLS server config requiring a client certificate from our CA.
    fn server_config(&self, alpn_h2: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let read = |name: &str| std::fs::read(self.path(name)).expect("read pem");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read("ca.pem")) {
            roots.add(cert.expect("ca pem")).expect("add ca");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let chain: Vec<_> = CertificateDer::pem_slice_iter(&read("server.pem"))
            .collect::<Result<_, _>>()
            .expect("server pem");
        let key = PrivateKeyDer::from_pem_slice(&read("server.key")).expect("server key");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server config");
        if alpn_h2 {
            config.alpn_protocols = vec![b"h2".to_vec()];
        }
        Arc::new(config)
    }

    fn client(&self, ca: &str) -> TlsConfig {
        TlsConfig {
            ca_cert: Some(self.path(ca)),
            client_cert: Some(self.path("client.pem")),
            client_key: Some(self.path("client.key")),
            server_name: None,
        }
    }
}

/// Accepts TCP connections on 127.0.0.1 (terminating TLS if `tls`) and
/// splices each to the unix socket `target`.
async fn forwarder(target: &'static str, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut upstream) = UnixStream::connect(Path::new(target)).await else {
                    return;
                };
                match acceptor {
                    None => {
                        let mut tcp = tcp;
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
                    }
                    Some(acceptor) => {
                        if let Ok(mut tls) = acceptor.accept(tcp).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// ListWorkers plus a small LLB solve with a session (Control.Session).
async fn exercise(endpoint: Endpoint) {
    let client = Client::connect(&endpoint)
        .await
        .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    let workers = client.list_workers().await.expect("ListWorkers");
    assert!(workers
        .iter()
        .any(|w| w.platforms.iter().any(|p| p == "linux/amd64")));
    let session = Session::builder()
        .build()
        .attach(&client)
        .await
        .expect("session");
    let definition = Llb::default()
        .image(BUSYBOX, "linux/amd64")
        .run(&["true"], "linux/amd64", true)
        .definition();
    client
        .solve(
            SolveRequest {
                definition: Some(definition),
                session_id: session.id().to_owned(),
                ..SolveRequest::default()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{endpoint}: solve: {e}"));
    session.close().await.expect("close");
}

#[tokio::test]
async fn tcp_plain_buildkitd() {
    let addr = forwarder(SPLICE_SOCKET, None).await;
    exercise(Endpoint::parse(&format!("tcp://{addr}")).expect("endpoint")).await;
}

#[tokio::test]
async fn tcp_mutual_tls_buildkitd() {
    let pki = Pki::new();
    let addr = forwarder(SPLICE_SOCKET, Some(pki.server_config(true))).await;
    let s = format!(
        "tcp://localhost:{}?ca={}&cert={}&key={}",
        addr.port(),
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display()
    );
    exercise(Endpoint::parse(&s).expect("endpoint")).await;
    // The IP address is in the certificate too.
    exercise(
        Endpoint::parse(&format!("tcp://{addr}"))
            .expect("endpoint")
            .with_tls(pki.client("ca.pem")),
    )
    .await;
}

#[tokio::test]
async fn tcp_tls_wrong_ca_is_a_tls_error() {
    let pki = Pki::new();
    let addr = forwarder(SPLICE_SOCKET, Some(pki.server_config(true))).await;
    let endpoint = Endpoint::parse(&format!("tcp://{addr}"))
        .expect("endpoint")
        .with_tls(pki.client("other-ca.pem"));
    let err = Client::connect(&endpoint)
        .await
        .expect_err("untrusted server");
    println!("{err}");
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn docker_over_tcp_plain_and_tls() {
    let plain = forwarder(DOCKER_SOCKET, None).await;
    let endpoint = Endpoint::parse(&format!("docker://tcp://{plain}")).expect("endpoint");
    exercise(endpoint).await;

    let pki = Pki::new();
    let tls = forwarder(DOCKER_SOCKET, Some(pki.server_config(false))).await;
    // As configured by DOCKER_HOST + DOCKER_TLS_VERIFY + DOCKER_CERT_PATH.
    for (from, to) in [("client.pem", "cert.pem"), ("client.key", "key.pem")] {
        std::fs::copy(pki.path(from), pki.path(to)).expect("copy");
    }
    let cert_path = pki.dir.path().to_string_lossy().into_owned();
    let host = format!("tcp://localhost:{}", tls.port());
    let endpoint = Endpoint::parse_with_env("docker", |name| match name {
        "DOCKER_HOST" => Some(host.clone()),
        "DOCKER_TLS_VERIFY" => Some("1".into()),
        "DOCKER_CERT_PATH" => Some(cert_path.clone()),
        _ => None,
    })
    .expect("endpoint");
    assert!(matches!(
        &endpoint,
        Endpoint::Docker(DockerEndpoint {
            host: DockerHost::Tcp { tls: Some(_), .. },
            ..
        })
    ));
    exercise(endpoint).await;
}
