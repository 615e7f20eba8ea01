//! Tests against the real daemon: Docker Engine 26 (embedded BuildKit v0.13,
//! containerd image store) through the Engine API, and the same BuildKit
//! through the gRPC splice socket as if it were a standalone buildkitd.
//! They fail when the daemon, the splice or the registry are missing.

use crate::common;

use std::time::Duration;

use common::*;
use mybake_buildkit::proto::moby::buildkit::v1::{BuildHistoryRecord, BuildHistoryRequest};
use mybake_buildkit::session::{AttachMode, Session};
use mybake_buildkit::{
    CancellationToken, Client, Endpoint, Error, Exporter, SolveRequest, StatusEvent,
};

async fn check_workers(endpoint: Endpoint) {
    let client = connect(&endpoint).await;
    let workers = client.list_workers().await.expect("ListWorkers");
    assert!(!workers.is_empty(), "no workers");
    let platforms: Vec<&str> = workers
        .iter()
        .flat_map(|w| w.platforms.iter().map(String::as_str))
        .collect();
    println!("{endpoint}: workers {workers:#?}");
    assert!(platforms.contains(&"linux/amd64"), "{platforms:?}");
    if arm64_emulation() {
        assert!(platforms.contains(&"linux/arm64"), "{platforms:?}");
    }
    assert!(workers.iter().all(|w| !w.id.is_empty()));
}

#[tokio::test]
async fn docker_list_workers() {
    check_workers(docker()).await;
}

#[tokio::test]
async fn splice_list_workers() {
    check_workers(splice()).await;
}

#[tokio::test]
async fn docker_and_splice_info() {
    for endpoint in [docker(), splice()] {
        let client = connect(&endpoint).await;
        let version = client.info().await.expect("Info");
        println!("{endpoint}: BuildKit {version:?}");
        let version = version.expect("Info reports a version on BuildKit v0.13");
        assert!(version.version.starts_with('v'), "{version:?}");
    }
}

#[tokio::test]
async fn docker_versioned_api_path() {
    let Endpoint::Docker(mut docker) = docker() else {
        unreachable!()
    };
    docker.api_version = Some("1.44".into());
    let client = connect(&Endpoint::Docker(docker)).await;
    assert!(!client.list_workers().await.expect("ListWorkers").is_empty());
}

/// Pulls busybox, runs a step, exports the result with the image exporter
/// (push by digest), checks the digest in the response and in the registry.
async fn push_by_digest(endpoint: Endpoint, mode: AttachMode, platform: &str, repo: &str) {
    let client = connect(&endpoint).await;
    let session = Session::builder()
        .name("mybake-test")
        .build()
        .attach_with(&client, mode)
        .await
        .expect("attach session");
    let marker = format!("{endpoint} {mode:?} {platform}");
    let definition = Llb::default()
        .image(BUSYBOX, platform)
        .run(
            &[
                "sh",
                "-c",
                &format!("echo '{marker}' > /marker && uname -m"),
            ],
            platform,
            true,
        )
        .definition();
    let (tx, events) = collect_status();
    let response = client
        .solve(
            SolveRequest {
                definition: Some(definition),
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
        .await
        .unwrap_or_else(|e| panic!("{marker}: solve: {e}"));
    let events = events.await.expect("status task");
    println!("{marker}: response {:#?}", response.exporter_response);
    let digest = response
        .image_digest()
        .expect("containerimage.digest")
        .to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    if let Some(descriptor) = response.image_descriptor() {
        let descriptor = descriptor.expect("valid descriptor");
        assert_eq!(descriptor.digest, digest);
    }
    assert_eq!(
        manifest_status(repo, &digest).await,
        200,
        "{repo}@{digest} not in the registry"
    );

    // Status: the exec step ran and printed the machine name.
    let started = events
        .iter()
        .any(|e| matches!(e, StatusEvent::VertexStarted { name, .. } if name.contains("uname -m")));
    let completed = events.iter().any(
        |e| matches!(e, StatusEvent::VertexCompleted { name, .. } if name.contains("uname -m")),
    );
    let logs: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            StatusEvent::Log { data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let logs = String::from_utf8_lossy(&logs);
    let machine = if platform.ends_with("arm64") {
        "aarch64"
    } else {
        "x86_64"
    };
    assert!(started && completed, "{marker}: events {events:#?}");
    assert!(logs.contains(machine), "{marker}: logs {logs:?}");
    println!("{marker}: {} status events, digest {digest}", events.len());

    assert!(!session.is_finished(), "session ended early");
    session.close().await.expect("session close");
}

#[tokio::test]
async fn docker_llb_push_by_digest_session_upgrade() {
    push_by_digest(docker(), AttachMode::Auto, "linux/amd64", "mybake-test/llb").await;
}

#[tokio::test]
async fn docker_llb_push_by_digest_control_session() {
    push_by_digest(
        docker(),
        AttachMode::ControlSession,
        "linux/amd64",
        "mybake-test/llb",
    )
    .await;
}

#[tokio::test]
async fn splice_llb_push_by_digest() {
    push_by_digest(splice(), AttachMode::Auto, "linux/amd64", "mybake-test/llb").await;
}

#[tokio::test]
async fn splice_llb_push_by_digest_arm64() {
    if !arm64_emulation() {
        // Nothing to test without emulation; ListWorkers checks it too.
        return;
    }
    push_by_digest(splice(), AttachMode::Auto, "linux/arm64", "mybake-test/llb").await;
}

#[tokio::test]
async fn solve_failure_keeps_daemon_message() {
    for endpoint in [docker(), splice()] {
        let client = connect(&endpoint).await;
        let definition = Llb::default()
            .image(BUSYBOX, "linux/amd64")
            .run(
                &["sh", "-c", "echo failing-step >&2; exit 3"],
                "linux/amd64",
                true,
            )
            .definition();
        let (tx, events) = collect_status();
        let err = client
            .solve(
                SolveRequest {
                    definition: Some(definition),
                    ..SolveRequest::default()
                },
                Some(tx),
            )
            .await
            .expect_err("the step fails");
        println!("{endpoint}: {err}");
        assert!(matches!(err, Error::Solve { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("solve failed: "), "{message}");
        assert!(message.contains("exit code: 3"), "{message}");
        let events = events.await.expect("status task");
        assert!(
            events.iter().any(|e| matches!(e, StatusEvent::VertexError { error, .. } if error.contains("exit code: 3"))),
            "{events:#?}"
        );
    }
}

#[tokio::test]
async fn cancelling_a_solve_returns_promptly() {
    for endpoint in [docker(), splice()] {
        let client = connect(&endpoint).await;
        let definition = Llb::default()
            .image(BUSYBOX, "linux/amd64")
            .run(
                &["sh", "-c", "echo step-running; sleep 120"],
                "linux/amd64",
                true,
            )
            .definition();
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let cancel = CancellationToken::new();
        let reference = format!("mybake-cancel-{}", mybake_buildkit::session::new_id());
        let solve = {
            let client = client.clone();
            let cancel = cancel.clone();
            let reference = reference.clone();
            tokio::spawn(async move {
                client
                    .solve_with_cancel(
                        SolveRequest {
                            reference,
                            definition: Some(definition),
                            ..SolveRequest::default()
                        },
                        Some(tx),
                        cancel,
                    )
                    .await
            })
        };
        // Wait until the step's process runs (its first output arrived).
        let wait = async {
            while let Some(event) = rx.recv().await {
                if matches!(&event, StatusEvent::Log { data, .. } if data.starts_with(b"step-running"))
                {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("sleep step started");
        let cancelled_at = std::time::Instant::now();
        cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), solve)
            .await
            .expect("solve returns after cancel")
            .expect("join");
        assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
        assert!(cancelled_at.elapsed() < Duration::from_secs(5));
        // The daemon ends the build as cancelled (build history, v0.11+).
        let (error, took) =
            tokio::time::timeout(Duration::from_secs(20), finished_build(&client, &reference))
                .await
                .expect("build recorded as finished soon after cancel");
        println!("{endpoint}: cancelled build recorded after {took}s with error {error:?}");
        // A cancel that lands before the solver started may be recorded
        // without an error; either way the 120 s step did not run out.
        assert!(error.is_empty() || error.contains("cancel"), "{error}");
        assert!(took < 60, "build ran {took}s");
        // The daemon stops the step too: the connection is still usable
        // and a new quick solve succeeds.
        let quick = Llb::default()
            .image(BUSYBOX, "linux/amd64")
            .run(&["true"], "linux/amd64", true)
            .definition();
        client
            .solve(
                SolveRequest {
                    definition: Some(quick),
                    ..SolveRequest::default()
                },
                None,
            )
            .await
            .expect("solve after cancel");
    }
}

/// `internal: true` keeps a solve out of the build history; the default
/// records it, finished, by the time `Solve` returns.
#[tokio::test]
async fn internal_solves_stay_out_of_build_history() {
    for endpoint in [docker(), splice()] {
        let client = connect(&endpoint).await;
        let mut refs = Vec::new();
        for internal in [false, true] {
            let definition = Llb::default()
                .image(BUSYBOX, "linux/amd64")
                .run(&["true"], "linux/amd64", true)
                .definition();
            let reference = format!(
                "mybake-history-{internal}-{}",
                mybake_buildkit::session::new_id()
            );
            client
                .solve(
                    SolveRequest {
                        reference: reference.clone(),
                        definition: Some(definition),
                        internal,
                        ..SolveRequest::default()
                    },
                    None,
                )
                .await
                .expect("solve");
            refs.push(reference);
        }
        let recorded = history_records(&client, &refs[0]).await;
        assert_eq!(
            recorded, 1,
            "{endpoint}: the default solve is in the history"
        );
        let hidden = history_records(&client, &refs[1]).await;
        assert_eq!(hidden, 0, "{endpoint}: the internal solve is not");
    }
}

/// The finished build-history records of `reference` now.
async fn finished_records(client: &Client, reference: &str) -> Vec<BuildHistoryRecord> {
    let mut stream = client
        .control()
        .listen_build_history(BuildHistoryRequest {
            r#ref: reference.to_owned(),
            early_exit: true,
            ..BuildHistoryRequest::default()
        })
        .await
        .expect("ListenBuildHistory")
        .into_inner();
    let mut out = Vec::new();
    while let Ok(Some(event)) = stream.message().await {
        if let Some(r) = event.record {
            if r.r#ref == reference && r.completed_at.is_some() {
                out.push(r);
            }
        }
    }
    out
}

/// How many finished build-history records `reference` has now.
async fn history_records(client: &Client, reference: &str) -> usize {
    finished_records(client, reference).await.len()
}

/// Waits until the build history shows `reference` as finished and
/// returns its error message and how long it ran (seconds).
async fn finished_build(client: &Client, reference: &str) -> (String, i64) {
    loop {
        for record in finished_records(client, reference).await {
            if let (Some(created), Some(completed)) = (record.created_at, record.completed_at) {
                let took = completed.seconds - created.seconds;
                return (record.error.map(|e| e.message).unwrap_or_default(), took);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// BuildKit health-checks the session every 5 s and drops it after two
/// failures; after 12 s it must still be attached.
async fn session_survives(endpoint: Endpoint, mode: AttachMode) {
    let client: Client = connect(&endpoint).await;
    let session = Session::builder()
        .build()
        .attach_with(&client, mode)
        .await
        .expect("attach");
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        !session.is_finished(),
        "{endpoint} {mode:?}: session dropped"
    );
    session.close().await.expect("close");
}

#[tokio::test]
async fn docker_session_upgrade_survives_health_checks() {
    session_survives(docker(), AttachMode::DockerUpgrade).await;
}

#[tokio::test]
async fn splice_control_session_survives_health_checks() {
    session_survives(splice(), AttachMode::ControlSession).await;
}
