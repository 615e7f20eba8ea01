//! Gateway builds against the real daemon, through Docker's `/grpc` and
//! the buildkitd look-alike splice: the frontend's result comes back as LLB
//! before the export, a second solve builds on it as a frontend input, and
//! a failing frontend fails the build with its own error.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use mybake_buildkit::filesync::{FileSyncService, LocalDir};
use mybake_buildkit::session::{new_id, Session, SessionHandle};
use mybake_buildkit::{
    CancellationToken, Client, Endpoint, Error, Exporter, FrontendInput, SolveRequest,
};

fn dir_with(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write Dockerfile");
    dir
}

async fn session(client: &Client, dir: &Path) -> SessionHandle {
    let filesync = FileSyncService::new([
        ("context", LocalDir::open(dir).expect("context dir")),
        ("dockerfile", LocalDir::open(dir).expect("dockerfile dir")),
    ]);
    Session::builder()
        .name("mybake-test")
        .add_service(filesync.into_server())
        .build()
        .attach(client)
        .await
        .expect("attach session")
}

fn request(session: &SessionHandle, repo: &str) -> SolveRequest {
    SolveRequest {
        frontend: "dockerfile.v0".into(),
        frontend_attrs: [
            ("filename".to_owned(), "Dockerfile".to_owned()),
            ("platform".to_owned(), "linux/amd64".to_owned()),
        ]
        .into_iter()
        .collect(),
        exporters: vec![Exporter::new("image")
            .attr("name", format!("localhost:5000/{repo}"))
            .attr("push", "true")
            .attr("push-by-digest", "true")
            .attr("registry.insecure", "true")
            .attr("store", "false")],
        session_id: session.id().to_owned(),
        ..SolveRequest::default()
    }
}

async fn llb_then_dependent(endpoint: Endpoint) {
    let client = connect(&endpoint).await;
    let nonce = new_id();
    let base = dir_with(&format!(
        "FROM {BUSYBOX}\nENV FROM_BASE=yes\nRUN echo '{nonce}' > /base.txt\n"
    ));
    let base_session = session(&client, base.path()).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<FrontendInput>();
    let response = client
        .solve_gateway(
            request(&base_session, "mybake-test/gateway-base"),
            None,
            Some(tx),
            CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{endpoint}: gateway build: {e}"));
    // The export of the gateway build happened: it was pushed.
    let digest = response.image_digest().expect("containerimage.digest");
    assert_eq!(
        manifest_status("mybake-test/gateway-base", digest).await,
        200
    );
    let input = rx.await.expect("the LLB was handed over");
    assert!(!input.definition.def.is_empty());
    let config: serde_json::Value =
        serde_json::from_slice(input.image_config.as_deref().expect("an image config"))
            .expect("JSON config");
    assert!(
        config["config"]["Env"]
            .to_string()
            .contains("FROM_BASE=yes"),
        "{config}"
    );

    // A second solve builds on it: files and image config.
    let app = dir_with("FROM base\nRUN test \"$FROM_BASE\" = yes && cat /base.txt\n");
    let app_session = session(&client, app.path()).await;
    let mut req = request(&app_session, "mybake-test/gateway-app");
    let mut inputs = HashMap::new();
    input.bind("base", &mut req.frontend_attrs, &mut inputs);
    req.frontend_inputs = inputs;
    let (stx, events) = collect_status();
    let result = client.solve(req, Some(stx)).await;
    let events = events.await.expect("status task");
    let response = result.unwrap_or_else(|e| panic!("{endpoint}: dependent: {e}\n{events:#?}"));
    assert!(response.image_digest().is_some());
    let logs: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            mybake_buildkit::StatusEvent::Log { data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        String::from_utf8_lossy(&logs).contains(&nonce),
        "the dependent read base's file: {}",
        String::from_utf8_lossy(&logs)
    );
    app_session.close().await.expect("close");
    base_session.close().await.expect("close");
}

#[tokio::test]
async fn docker_gateway_build_hands_over_llb() {
    llb_then_dependent(docker()).await;
}

#[tokio::test]
async fn splice_gateway_build_hands_over_llb() {
    llb_then_dependent(splice()).await;
}

/// A failing step fails the gateway build with the step's error, and no
/// LLB is handed over.
#[tokio::test]
async fn gateway_build_fails_with_the_frontend_error() {
    for endpoint in [docker(), splice()] {
        let client = connect(&endpoint).await;
        let dir = dir_with(&format!("FROM {BUSYBOX}\nRUN echo {} && false\n", new_id()));
        let s = session(&client, dir.path()).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<FrontendInput>();
        let err = client
            .solve_gateway(
                request(&s, "mybake-test/never"),
                None,
                Some(tx),
                CancellationToken::new(),
            )
            .await
            .expect_err("RUN false fails");
        assert!(matches!(err, Error::Solve { .. }), "{endpoint}: {err:?}");
        assert!(
            err.to_string().contains("did not complete successfully"),
            "{endpoint}: {err}"
        );
        assert!(rx.await.is_err(), "{endpoint}: no LLB for a failed build");
        s.close().await.expect("close");
    }
}
