//! End to end against the real daemon (Docker Engine's BuildKit, with the
//! registry at 127.0.0.1:5000 holding `busybox`): a Dockerfile build whose
//! context, Dockerfile and `.dockerignore` come through this crate's
//! FileSync sender and whose secret comes through the Secrets service. The
//! checks run inside the build (a failing `test` fails the solve), so
//! BuildKit's own receiver validates order, modes, links and contents.
//!
//! Like the other daemon tests, this fails (does not skip) when the daemon
//! or the registry are missing.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use mybake_buildkit::auth::AuthService;
use mybake_buildkit::filesync::{FileSyncService, LocalDir};
use mybake_buildkit::secrets::{SecretSource, SecretsService};
use mybake_buildkit::session::Session;
use mybake_buildkit::{Client, Endpoint, Exporter, SolveRequest, StatusEvent};
use tokio::sync::mpsc;

const BIG_SIZE: usize = 50 * 1024 * 1024;

fn big_content() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..BIG_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn write(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, content)
}

const DOCKERIGNORE: &str = "\
# comments and negations, as docker reads them
node_modules
!node_modules/keep
**/*.log
/secret.env
";

fn dockerfile(big_sha: &str) -> String {
    format!(
        r#"FROM localhost:5000/busybox:latest
COPY . /ctx
RUN --mount=type=secret,id=tok,required=true set -e; cd /ctx; \
    test "$(cat /run/secrets/tok)" = "s3cr3t-value"; \
    test ! -e Dockerfile; test -f .dockerignore; \
    test "$(cat app/main.rs)" = "fn main() {{}}"; \
    test "$(cat app/sub/deep/file.txt)" = "deep"; \
    test "$(cat app-b)" = "sorts after app/"; \
    test -x bin/run.sh; test "$(stat -c %a bin/run.sh)" = 755; \
    test "$(stat -c %a bin/data.txt)" = 600; \
    test -L link; test "$(readlink link)" = app/main.rs; \
    test -L dirlink; test "$(readlink dirlink)" = app; \
    test -d empty; test -z "$(ls -A empty)"; \
    test -f hard; \
    test ! -e node_modules/pkg; test "$(cat node_modules/keep/keep.js)" = "kept"; \
    test ! -e logs/a.log; test -f logs/b.txt; \
    test ! -e secret.env; \
    test "$(wc -c < big.bin)" -eq {BIG_SIZE}; \
    echo "{big_sha}  big.bin" | sha256sum -c -; \
    echo filesync-e2e-ok
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_build_through_filesync_and_secrets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let big = big_content();
    let files: &[(&str, &[u8])] = &[
        ("app/main.rs", b"fn main() {}"),
        ("app/sub/deep/file.txt", b"deep"),
        ("app-b", b"sorts after app/"),
        ("bin/run.sh", b"#!/bin/sh\necho hi\n"),
        ("bin/data.txt", b"private"),
        ("node_modules/pkg/index.js", b"excluded"),
        ("node_modules/keep/keep.js", b"kept"),
        ("logs/a.log", b"excluded"),
        ("logs/b.txt", b"kept"),
        ("secret.env", b"excluded"),
        (".dockerignore", DOCKERIGNORE.as_bytes()),
    ];
    for (path, content) in files {
        write(&root.join(path), content).expect("write");
    }
    // The Dockerfile lives in its own directory, behind a symlink (which
    // BuildKit resolves with `followpaths`).
    let dockerfile_dir = tempfile::tempdir().expect("tempdir");
    write(
        &dockerfile_dir.path().join("real/build.Dockerfile"),
        dockerfile(&sha256_hex(&big)).as_bytes(),
    )
    .expect("write");
    symlink(
        "real/build.Dockerfile",
        dockerfile_dir.path().join("Dockerfile"),
    )
    .expect("symlink");
    write(&root.join("big.bin"), &big).expect("write");
    std::fs::set_permissions(
        root.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::set_permissions(
        root.join("bin/data.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::create_dir(root.join("empty")).expect("mkdir");
    symlink("app/main.rs", root.join("link")).expect("symlink");
    symlink("app", root.join("dirlink")).expect("symlink");
    std::fs::hard_link(root.join("app-b"), root.join("hard")).expect("hardlink");

    let secret_dir = tempfile::tempdir().expect("tempdir");
    let secret = secret_dir.path().join("tok");
    std::fs::write(&secret, b"s3cr3t-value").expect("secret file");
    let secrets = SecretsService::new([("tok".to_owned(), SecretSource::File(secret.clone()))])
        .expect("secrets");
    let filesync = FileSyncService::new([
        ("context", LocalDir::open(root).expect("context dir")),
        (
            "dockerfile",
            LocalDir::open(dockerfile_dir.path()).expect("dockerfile dir"),
        ),
    ]);

    let endpoint = Endpoint::parse("docker").expect("docker endpoint");
    let client = Client::connect(&endpoint)
        .await
        .unwrap_or_else(|e| panic!("the test daemon must be running ({endpoint}): {e}"));
    let session = Session::builder()
        .name("mybake-filesync-e2e")
        .add_service(filesync.into_server())
        .add_service(secrets.into_server())
        .add_service(AuthService::anonymous().into_server())
        .build()
        .attach(&client)
        .await
        .expect("attach session");

    let (tx, mut rx) = mpsc::channel::<StatusEvent>(256);
    let events = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let result = client
        .solve(
            SolveRequest {
                frontend: "dockerfile.v0".into(),
                frontend_attrs: [("no-cache".to_owned(), String::new())]
                    .into_iter()
                    .collect(),
                exporters: vec![Exporter::new("image")
                    .attr("name", "localhost:5000/mybake-test/filesync")
                    .attr("push", "true")
                    .attr("push-by-digest", "true")
                    .attr("registry.insecure", "true")],
                session_id: session.id().to_owned(),
                ..SolveRequest::default()
            },
            Some(tx),
        )
        .await;
    let events = events.await.expect("status task");
    let logs: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            StatusEvent::Log { data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let logs = String::from_utf8_lossy(&logs);
    let response = result.unwrap_or_else(|e| panic!("solve failed: {e}\nlogs:\n{logs}"));
    assert!(logs.contains("filesync-e2e-ok"), "logs: {logs}");
    assert!(
        !logs.contains("s3cr3t-value"),
        "the secret leaked into the logs"
    );
    assert!(
        response.image_digest().is_some(),
        "{:?}",
        response.exporter_response
    );
    session.close().await.expect("session close");
}
