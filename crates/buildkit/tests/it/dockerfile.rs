//! Dockerfile builds against the real daemon, with the build context and
//! the Dockerfile served by the session's FileSync service.

use crate::common;

use std::path::Path;

use common::*;
use mybake_buildkit::filesync::{FileSyncService, LocalDir};
use mybake_buildkit::session::{AttachMode, Session};
use mybake_buildkit::{Endpoint, Error, Exporter, SolveRequest, SolveResponse, StatusEvent};

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).expect("write test file");
}

/// Builds `dir` with the dockerfile frontend for `platforms`, pushing by
/// digest to `localhost:5000/{repo}`.
async fn build(
    endpoint: &Endpoint,
    mode: AttachMode,
    dir: &Path,
    platforms: &str,
    repo: &str,
) -> (Result<SolveResponse, Error>, Vec<StatusEvent>) {
    let client = connect(endpoint).await;
    let filesync = FileSyncService::new([
        ("context", LocalDir::open(dir).expect("context dir")),
        ("dockerfile", LocalDir::open(dir).expect("dockerfile dir")),
    ]);
    let session = Session::builder()
        .name("mybake-test")
        .add_service(filesync.into_server())
        .build()
        .attach_with(&client, mode)
        .await
        .expect("attach session");
    let (tx, events) = collect_status();
    let result = client
        .solve(
            SolveRequest {
                frontend: "dockerfile.v0".into(),
                frontend_attrs: [
                    ("filename".to_owned(), "Dockerfile".to_owned()),
                    ("platform".to_owned(), platforms.to_owned()),
                    // Unique per build so that the RUN step really runs.
                    (
                        "build-arg:GREETING".to_owned(),
                        format!("hello from mybake {}", mybake_buildkit::session::new_id()),
                    ),
                ]
                .into_iter()
                .collect(),
                exporters: vec![Exporter::new("image")
                    .attr("name", format!("localhost:5000/{repo}"))
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
    session.close().await.expect("session close");
    (result, events)
}

fn context_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "Dockerfile",
        "FROM localhost:5000/busybox:latest\n\
         ARG GREETING\n\
         COPY hello.txt /hello.txt\n\
         COPY sub/ /sub/\n\
         RUN cat /hello.txt /sub/nested.txt && echo \"$GREETING\" && test ! -e /sub/ignored.log && uname -m\n",
    );
    write(dir.path(), "hello.txt", "hello.txt content\n");
    write(dir.path(), ".dockerignore", "**/*.log\n");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    write(&dir.path().join("sub"), "nested.txt", "nested content\n");
    write(&dir.path().join("sub"), "ignored.log", "must not be sent\n");
    dir
}

fn logs(events: &[StatusEvent]) -> String {
    let bytes: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            StatusEvent::Log { data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn dockerfile_build(endpoint: Endpoint, mode: AttachMode, platforms: &str) {
    let dir = context_dir();
    let repo = "mybake-test/dockerfile";
    let (result, events) = build(&endpoint, mode, dir.path(), platforms, repo).await;
    let response = result.unwrap_or_else(|e| panic!("{endpoint} {mode:?}: {e}\n{events:#?}"));
    println!(
        "{endpoint} {mode:?} {platforms}: {:#?}",
        response.exporter_response
    );
    let digest = response.image_digest().expect("containerimage.digest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    let descriptor = response
        .image_descriptor()
        .expect("containerimage.descriptor")
        .expect("valid descriptor");
    assert_eq!(descriptor.digest, digest);
    if platforms.contains(',') {
        // Docker media types unless oci-mediatypes=true (busybox is Docker).
        assert!(
            [
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json"
            ]
            .contains(&descriptor.media_type.as_str()),
            "{descriptor:?}"
        );
    }
    assert_eq!(manifest_status(repo, digest).await, 200);
    let logs = logs(&events);
    assert!(logs.contains("hello.txt content"), "{logs}");
    assert!(logs.contains("nested content"), "{logs}");
    assert!(logs.contains("hello from mybake"), "{logs}");
    for machine in platforms.split(',').map(|p| {
        if p.ends_with("arm64") {
            "aarch64"
        } else {
            "x86_64"
        }
    }) {
        assert!(logs.contains(machine), "{machine} missing in {logs}");
    }
}

#[tokio::test]
async fn docker_dockerfile_build_session_upgrade() {
    dockerfile_build(docker(), AttachMode::Auto, "linux/amd64").await;
}

#[tokio::test]
async fn splice_dockerfile_build_control_session() {
    dockerfile_build(splice(), AttachMode::Auto, "linux/amd64").await;
}

#[tokio::test]
async fn docker_dockerfile_multi_platform() {
    let platforms = if arm64_emulation() {
        "linux/amd64,linux/arm64"
    } else {
        "linux/amd64"
    };
    dockerfile_build(docker(), AttachMode::Auto, platforms).await;
}

#[tokio::test]
async fn dockerfile_parse_error_is_kept_verbatim() {
    for endpoint in [docker(), splice()] {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "Dockerfile",
            "FROMM localhost:5000/busybox:latest\n",
        );
        let (result, _) = build(
            &endpoint,
            AttachMode::Auto,
            dir.path(),
            "linux/amd64",
            "mybake-test/never",
        )
        .await;
        let err = result.expect_err("parse error");
        println!("{endpoint}: {err}");
        assert!(matches!(err, Error::Solve { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("solve failed: "), "{message}");
        assert!(message.contains("unknown instruction: FROMM"), "{message}");
    }
}

/// A 24 MiB context (many chunks, several HTTP/2 flow-control windows)
/// through both session transports.
#[tokio::test]
async fn large_context_transfers_through_both_session_transports() {
    for (endpoint, mode) in [
        (docker(), AttachMode::DockerUpgrade),
        (splice(), AttachMode::ControlSession),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        // Pseudo-random bytes so that nothing compresses them away.
        let mut state = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x2545_f491_4f6c_dd1d, |d| d.as_nanos() as u64)
            | 1;
        let data: Vec<u8> = (0..24 * 1024 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        std::fs::write(dir.path().join("big.bin"), &data).expect("write big file");
        for i in 0..200 {
            write(
                dir.path(),
                &format!("small-{i:03}.txt"),
                &format!("file {i}\n"),
            );
        }
        write(
            dir.path(),
            "Dockerfile",
            "FROM localhost:5000/busybox:latest\nARG GREETING\nCOPY . /ctx/\nRUN wc -c < /ctx/big.bin && ls /ctx | wc -l && echo \"$GREETING\"\n",
        );
        let started = std::time::Instant::now();
        let (result, events) = build(
            &endpoint,
            mode,
            dir.path(),
            "linux/amd64",
            "mybake-test/big",
        )
        .await;
        result.unwrap_or_else(|e| panic!("{endpoint} {mode:?}: {e}"));
        let logs = logs(&events);
        println!("{endpoint} {mode:?}: built in {:?}", started.elapsed());
        for event in &events {
            if let StatusEvent::VertexCompleted { name, duration, .. } = event {
                println!("  {name}: {duration:?}");
            }
        }
        assert!(logs.contains(&data.len().to_string()), "{logs}");
        assert!(logs.contains("202"), "{logs}");
    }
}
