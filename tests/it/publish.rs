//! The publish stage and `index create` / `index inspect` against the test
//! bed's registry (distribution 2.8 on 127.0.0.1:5000, with
//! `localhost:5000/busybox:latest` for linux/amd64 and linux/arm64; see
//! scripts/testbed/setup.sh). These tests fail, not skip, when the registry
//! is not up.
//!
//! The two single-platform "build results" are busybox's two platform
//! manifests, copied by digest into `mybake-test/publish-src` with the
//! publish stage's own client (no BuildKit involved).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mybake::publish::copy::{ensure_children, Child, ContentCache};
use mybake::publish::index::{
    Descriptor, ManifestDoc, Platform, ATTESTATION_MANIFEST, OCI_INDEX, OCI_MANIFEST,
    REFERENCE_DIGEST, REFERENCE_TYPE,
};
use mybake::publish::registry::at_digest;
use mybake::publish::{
    create, inspect, metadata_json, parse_reference, publish, CreateRequest, PlatformResult,
    PublishError, PublishEvent, PublishOptions, PublishPlan, Reference, RegistryClient,
    RegistryError, RegistryOptions, RetryPolicy, TargetPublish,
};
use mybake_buildkit::auth::AuthService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::common::proxy;

const REGISTRY: &str = "localhost:5000";
const UPSTREAM: &str = "127.0.0.1:5000";
const SRC: &str = "localhost:5000/mybake-test/publish-src";

/// Panics (the test fails) unless the registry answers `GET /v2/` with 200.
async fn require_registry() {
    let fail = |why: String| -> ! {
        panic!(
            "the test bed registry at {UPSTREAM} is not usable ({why}); \
             run scripts/testbed/setup.sh"
        )
    };
    let mut s = match TcpStream::connect(UPSTREAM).await {
        Ok(s) => s,
        Err(e) => fail(e.to_string()),
    };
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nConnection: close\r\n\r\n")
        .await
        .unwrap_or_else(|e| fail(e.to_string()));
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    if !answer.starts_with("HTTP/1.1 200") {
        fail(format!(
            "answered {:?}",
            answer.lines().next().unwrap_or_default()
        ));
    }
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

fn options() -> PublishOptions {
    PublishOptions {
        auth: Some(AuthService::anonymous()),
        retry: RetryPolicy {
            attempts: 5,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
        },
        request_timeout: Duration::from_secs(20),
        ..PublishOptions::default()
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(
        RegistryOptions {
            auth: Some(AuthService::anonymous()),
            ..RegistryOptions::default()
        },
        None,
    )
    .expect("client")
}

fn reference(text: &str) -> Reference {
    parse_reference(text).expect("reference")
}

/// A result descriptor as a solve returns it (no platform, no annotations).
fn descriptor(e: &Descriptor) -> Descriptor {
    Descriptor {
        annotations: BTreeMap::new(),
        ..e.with_platform(None)
    }
}

/// The test-bed image's two platform manifests, copied by digest into
/// `repo` (idempotent). Returns (amd64, arm64).
async fn seed(client: &RegistryClient, repo: &str) -> (Descriptor, Descriptor) {
    let busybox = reference(&format!("{REGISTRY}/busybox:latest"));
    let list = client
        .get_manifest(&busybox)
        .await
        .expect("localhost:5000/busybox:latest (run scripts/testbed/setup.sh)");
    let doc = ManifestDoc::parse(&list.bytes).expect("busybox index");
    let find = |p: &str| {
        let want = Platform::parse(p).unwrap();
        doc.manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|x| x.matches(&want)))
            .cloned()
            .unwrap_or_else(|| panic!("busybox has no {p} manifest"))
    };
    let (amd, arm) = (find("linux/amd64"), find("linux/arm64"));
    let children = [amd.clone(), arm.clone()].map(|entry| Child {
        entry,
        source: busybox.clone(),
    });
    ensure_children(client, &ContentCache::new(), &children, &reference(repo), 4)
        .await
        .expect("seeding the test repository");
    (amd, arm)
}

/// Child manifests that share a blob (busybox's amd64 and arm64 images share
/// a layer here) get it mounted into a repository once: one mount per
/// distinct blob. A second concurrent mount rewrites distribution's link
/// file in place, and a manifest PUT checking the blob in between failed
/// with "blob unknown" (seen in `publish_survives_dropped_connections_and_503s`).
#[tokio::test]
async fn shared_blobs_are_placed_once_per_repository() {
    require_registry().await;
    let client = client();
    let (amd, arm) = seed(&client, SRC).await;
    let src = reference(SRC);
    let mut all = Vec::new();
    for m in [&amd, &arm] {
        let fetched = client
            .get_manifest(&at_digest(&src, &m.digest))
            .await
            .expect("manifest");
        let doc = ManifestDoc::parse(&fetched.bytes).expect("image manifest");
        all.extend(doc.blobs().into_iter().map(|b| b.digest));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert!(
        all.len() < total,
        "the test needs children that share a blob: {all:?}"
    );
    let children = [amd, arm].map(|entry| Child {
        entry,
        source: src.clone(),
    });
    let to = reference(&format!(
        "{REGISTRY}/mybake-test/publish-shared-{}",
        unique()
    ));
    let stats = ensure_children(&client, &ContentCache::new(), &children, &to, 4)
        .await
        .expect("copy both children");
    assert_eq!(stats.manifests_copied, 2, "{stats:?}");
    assert_eq!(
        stats.blobs_mounted + stats.blobs_copied + stats.blobs_present,
        all.len(),
        "one placement per distinct blob: {stats:?}"
    );
}

async fn head_digest(client: &RegistryClient, r: &str) -> Option<String> {
    client
        .head_manifest(&reference(r))
        .await
        .expect("HEAD")
        .map(|h| h.digest)
}

fn drain(rx: &mut mpsc::Receiver<PublishEvent>) -> Vec<PublishEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn target(name: &str, tags: &[String], results: &[(&str, &Descriptor)]) -> TargetPublish {
    TargetPublish {
        name: name.into(),
        tags: tags.to_vec(),
        annotations: BTreeMap::new(),
        results: results
            .iter()
            .map(|(p, e)| PlatformResult {
                platform: (*p).into(),
                descriptor: descriptor(e),
            })
            .collect(),
        source: None,
    }
}

#[tokio::test]
async fn index_create_and_inspect() {
    require_registry().await;
    let client = client();
    let (amd, arm) = seed(&client, SRC).await;
    let u = unique();
    let tag = format!("{REGISTRY}/mybake-test/publish-create-{u}:two");
    let sources = vec![
        format!("{SRC}@{}", amd.digest),
        format!("{SRC}@{}", arm.digest),
    ];
    let report = create(
        CreateRequest {
            tags: vec![tag.clone()],
            sources: sources.clone(),
            ..CreateRequest::default()
        },
        &options(),
        None,
    )
    .await
    .expect("index create");
    assert_eq!(report.tags, vec![tag.clone()]);
    assert_eq!(report.media_type, OCI_INDEX);
    let platforms: Vec<&Platform> = report
        .manifests
        .iter()
        .map(|m| m.platform.as_ref().expect("platform"))
        .collect();
    let exact = |arch: &str| Platform {
        architecture: arch.into(),
        os: "linux".into(),
        os_version: None,
        os_features: vec![],
        variant: None,
    };
    assert_eq!(platforms, vec![&exact("amd64"), &exact("arm64")]);
    assert_eq!(
        report
            .manifests
            .iter()
            .map(|m| m.digest.as_str())
            .collect::<Vec<_>>(),
        vec![amd.digest.as_str(), arm.digest.as_str()]
    );

    // What the registry has under the tag is exactly the reported index.
    let got = client
        .get_manifest(&reference(&tag))
        .await
        .expect("GET tag");
    assert_eq!(got.digest, report.digest);
    assert_eq!(got.media_type, OCI_INDEX);
    assert_eq!(std::str::from_utf8(&got.bytes).unwrap(), report.index_json);
    let v: serde_json::Value = serde_json::from_slice(&got.bytes).unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);

    // Dry run: same index, nothing written.
    let dry = create(
        CreateRequest {
            sources: sources.clone(),
            dry_run: true,
            ..CreateRequest::default()
        },
        &options(),
        None,
    )
    .await
    .expect("dry run");
    assert_eq!(
        (dry.digest.as_str(), dry.index_json.as_str()),
        (report.digest.as_str(), report.index_json.as_str())
    );
    assert!(dry.tags.is_empty());

    // An index source is flattened, duplicates dropped, platform filter and
    // annotations applied.
    let filtered = create(
        CreateRequest {
            sources: vec![format!("{REGISTRY}/busybox:latest"), sources[0].clone()],
            platforms: vec!["linux/arm64".into()],
            annotations: BTreeMap::from([
                ("org.opencontainers.image.title".into(), "bb".into()),
                ("manifest-descriptor:d".into(), "x".into()),
            ]),
            dry_run: true,
            ..CreateRequest::default()
        },
        &options(),
        None,
    )
    .await
    .expect("filtered dry run");
    assert_eq!(filtered.manifests.len(), 1);
    assert_eq!(filtered.manifests[0].digest, arm.digest);
    assert_eq!(
        filtered.manifests[0]
            .annotations
            .get("d")
            .map(String::as_str),
        Some("x")
    );
    let v: serde_json::Value = serde_json::from_str(&filtered.index_json).unwrap();
    assert_eq!(v["annotations"]["org.opencontainers.image.title"], "bb");
    let all = create(
        CreateRequest {
            sources: vec![format!("{REGISTRY}/busybox:latest"), sources[0].clone()],
            dry_run: true,
            ..CreateRequest::default()
        },
        &options(),
        None,
    )
    .await
    .expect("dedupe dry run");
    assert_eq!(all.manifests.len(), 2, "{}", all.index_json);

    // Inspect: the tree with platforms, configs and layers.
    let insp = inspect(&tag, &options()).await.expect("inspect");
    assert_eq!(insp.root.digest, report.digest);
    assert_eq!(insp.root.manifests.len(), 2);
    for (node, arch) in insp.root.manifests.iter().zip(["amd64", "arm64"]) {
        assert_eq!(node.platform.as_ref().unwrap().architecture, arch);
        assert!(node.config.is_some() && !node.layers.is_empty(), "{node:?}");
        assert!(node.error.is_none());
    }
    let text = insp.text();
    assert!(
        text.contains(&format!("Digest:    {}", report.digest)),
        "{text}"
    );
    assert!(text.contains("├── linux/amd64  "), "{text}");
    assert!(text.contains("└── linux/arm64  "), "{text}");
    assert!(text.contains("config  sha256:"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&insp.json()).unwrap();
    assert_eq!(json["manifests"][1]["platform"]["architecture"], "arm64");
    // A single manifest: its platform from the config.
    let one = inspect(&sources[1], &options())
        .await
        .expect("inspect manifest");
    assert_eq!(one.root.platform, Some(exact("arm64")));
    assert!(one.text().contains("Platform:  linux/arm64"));

    // Errors name the reference.
    let missing = format!("{REGISTRY}/mybake-test/publish-create-{u}:nope");
    let err = inspect(&missing, &options()).await.unwrap_err();
    assert!(
        matches!(err.registry_error(), Some(RegistryError::NotFound { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains(&missing), "{err}");
}

#[tokio::test]
async fn publish_two_repositories_same_digest_and_reproducible() {
    require_registry().await;
    let client = client();
    let u = unique();
    // As the executor does: results pushed to the first tag's repository.
    let repo_a = format!("{REGISTRY}/mybake-test/publish-a");
    let repo_b = format!("{REGISTRY}/mybake-test/publish-b-{u}");
    let (amd, arm) = seed(&client, &repo_a).await;
    let tags = vec![format!("{repo_a}:dev"), format!("{repo_b}:dev")];
    let mut t = target(
        "app",
        &tags,
        &[("linux/amd64", &amd), ("linux/arm64", &arm)],
    );
    t.annotations = BTreeMap::from([
        (
            "index:org.opencontainers.image.description".into(),
            "the app".into(),
        ),
        // Un-prefixed: BuildKit's (manifests), not the index's.
        ("org.opencontainers.image.title".into(), "app".into()),
    ]);
    let plan = PublishPlan { targets: vec![t] };

    let (tx, mut rx) = mpsc::channel(256);
    let report = publish(plan.clone(), options(), tx).await.expect("publish");
    let events = drain(&mut rx);
    let r = &report.targets[0];
    assert_eq!(r.tags, tags);
    assert_eq!(r.media_type, OCI_INDEX);
    for tag in &tags {
        assert_eq!(
            head_digest(&client, tag).await.as_deref(),
            Some(r.digest.as_str()),
            "{tag}"
        );
    }
    // Children present in the second repository too.
    for m in &r.manifests {
        assert!(client
            .head_manifest(&at_digest(&reference(&repo_b), &m.digest))
            .await
            .unwrap()
            .is_some());
    }
    let index: serde_json::Value = serde_json::from_str(&r.index_json).unwrap();
    assert_eq!(
        index["annotations"]["org.opencontainers.image.description"],
        "the app"
    );
    assert!(index["annotations"]
        .get("org.opencontainers.image.title")
        .is_none());
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
    assert_eq!(index["manifests"][1]["platform"]["architecture"], "arm64");
    let written: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            PublishEvent::TagWritten { tag, .. } => Some(tag.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(written.len(), 2);
    assert!(events
        .iter()
        .any(|e| matches!(e, PublishEvent::IndexBuilt { manifests: 2, .. })));
    let copied_to_b = events.iter().any(|e| {
        matches!(e,
        PublishEvent::RepositoryReady { repository, stats, .. }
            if repository.ends_with(&format!("publish-b-{u}")) && stats.manifests_copied == 2
                && stats.blobs_mounted > 0)
    });
    assert!(copied_to_b, "{events:#?}");

    let meta = metadata_json(&report);
    assert_eq!(meta["app"]["containerimage.digest"], r.digest.as_str());
    assert_eq!(meta["app"]["image.name"], tags.join(","));
    assert_eq!(meta["app"]["mybake.platforms"].as_array().unwrap().len(), 2);

    // Same inputs again: byte-identical index.
    let (tx, _rx) = mpsc::channel(256);
    let again = publish(plan, options(), tx).await.expect("republish");
    assert_eq!(again.targets[0].digest, r.digest);
    assert_eq!(again.targets[0].index_json, r.index_json);
}

/// A per-platform result that is an index (BuildKit with attestations):
/// flattened to the image manifest plus its attestation manifest, which
/// keeps its annotations and is copied along.
#[tokio::test]
async fn attestation_indexes_are_flattened() {
    require_registry().await;
    let client = client();
    let src = format!("{REGISTRY}/mybake-test/publish-att-src");
    let (amd, arm) = seed(&client, &src).await;
    let src_ref = reference(&src);

    // An attestation manifest like BuildKit's.
    let statement = Bytes::from(format!(
        r#"{{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2","subject":[{{"name":"pkg:docker/x","digest":{{"sha256":"{}"}}}}],"predicate":{{}}}}"#,
        amd.digest.trim_start_matches("sha256:")
    ));
    let layer = client
        .push_blob(&src_ref, statement.clone())
        .await
        .expect("layer");
    let config = Bytes::from(format!(
        r#"{{"architecture":"unknown","os":"unknown","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
    ));
    let config_digest = client
        .push_blob(&src_ref, config.clone())
        .await
        .expect("config");
    let att = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.in-toto+json","digest":"{layer}","size":{},"annotations":{{"in-toto.io/predicate-type":"https://slsa.dev/provenance/v0.2"}}}}]}}"#,
        config.len(),
        statement.len()
    ));
    let att_digest = mybake::publish::index::sha256_digest(&att);
    client
        .put_manifest(&at_digest(&src_ref, &att_digest), att.clone(), OCI_MANIFEST)
        .await
        .expect("attestation manifest");
    let att_entry = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: att_digest.clone(),
        size: att.len() as i64,
        annotations: BTreeMap::from([
            (REFERENCE_TYPE.to_owned(), ATTESTATION_MANIFEST.to_owned()),
            (REFERENCE_DIGEST.to_owned(), amd.digest.clone()),
        ]),
        platform: Some(Platform::unknown()),
        artifact_type: None,
    };
    let per_platform =
        mybake::publish::build_index(vec![amd.clone(), att_entry.clone()], BTreeMap::new());
    client
        .put_manifest(
            &at_digest(&src_ref, &per_platform.digest),
            per_platform.bytes.clone(),
            OCI_INDEX,
        )
        .await
        .expect("per-platform index");

    let u = unique();
    let tag = format!("{REGISTRY}/mybake-test/publish-att-{u}:v1");
    let mut t = target("att", std::slice::from_ref(&tag), &[]);
    t.source = Some(src.clone());
    t.results = vec![
        PlatformResult {
            platform: "linux/amd64".into(),
            descriptor: descriptor(&per_platform.descriptor()),
        },
        PlatformResult {
            platform: "linux/arm64".into(),
            descriptor: descriptor(&arm),
        },
    ];
    let (tx, _rx) = mpsc::channel(256);
    let report = publish(PublishPlan { targets: vec![t] }, options(), tx)
        .await
        .expect("publish with attestations");
    let r = &report.targets[0];
    let digests: Vec<&str> = r.manifests.iter().map(|m| m.digest.as_str()).collect();
    assert_eq!(
        digests,
        vec![
            amd.digest.as_str(),
            arm.digest.as_str(),
            att_digest.as_str()
        ]
    );
    assert_eq!(
        r.manifests[0].platform.as_ref().unwrap().to_string(),
        "linux/amd64"
    );
    assert_eq!(r.manifests[2], att_entry);
    assert_eq!(r.platforms().count(), 2);
    // The attestation manifest and its blobs made it to the new repository.
    let got = client
        .get_manifest(&reference(&format!(
            "{REGISTRY}/mybake-test/publish-att-{u}@{att_digest}"
        )))
        .await
        .expect("attestation copied");
    assert_eq!(got.bytes, att);
    assert_eq!(
        head_digest(&client, &tag).await.as_deref(),
        Some(r.digest.as_str())
    );
}

#[tokio::test]
async fn failure_before_tags_leaves_existing_tags_alone() {
    require_registry().await;
    let client = client();
    let (amd, arm) = seed(&client, SRC).await;
    let u = unique();
    let keep = format!("{REGISTRY}/mybake-test/publish-atom-{u}:keep");
    let bad_tag = format!("{REGISTRY}/mybake-test/publish-atom-bad-{u}:x");

    // The pre-existing tag.
    let mut old = target("old", std::slice::from_ref(&keep), &[("linux/amd64", &amd)]);
    old.source = Some(SRC.into());
    let (tx, _rx) = mpsc::channel(256);
    let before = publish(PublishPlan { targets: vec![old] }, options(), tx)
        .await
        .expect("first publish");
    let d0 = before.targets[0].digest.clone();
    assert_eq!(head_digest(&client, &keep).await, Some(d0.clone()));

    // A run whose first target is fine (and would move `keep`) and whose
    // second names a child that does not exist.
    let mut good = target(
        "good",
        std::slice::from_ref(&keep),
        &[("linux/amd64", &amd), ("linux/arm64", &arm)],
    );
    good.source = Some(SRC.into());
    let bogus = Descriptor {
        digest: format!("sha256:{}", "0123456789abcdef".repeat(4)),
        ..arm.clone()
    };
    let mut bad = target(
        "bad",
        std::slice::from_ref(&bad_tag),
        &[("linux/amd64", &amd), ("linux/arm64", &bogus)],
    );
    bad.source = Some(SRC.into());
    let (tx, mut rx) = mpsc::channel(256);
    let err = publish(
        PublishPlan {
            targets: vec![good, bad],
        },
        options(),
        tx,
    )
    .await
    .expect_err("a missing child must fail the run");
    match &err {
        PublishError::Registry {
            target,
            source: RegistryError::NotFound { reference, .. },
        } => {
            assert_eq!(target.as_deref(), Some("bad"));
            assert!(reference.contains(&bogus.digest), "{reference}");
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert!(err.to_string().contains(&bogus.digest), "{err}");
    let events = drain(&mut rx);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, PublishEvent::TagWritten { .. })),
        "{events:#?}"
    );
    assert_eq!(
        head_digest(&client, &keep).await,
        Some(d0),
        "the old tag moved"
    );
    assert_eq!(head_digest(&client, &bad_tag).await, None);
}

/// A seeded split-mix generator: the same faults for the same connection
/// order.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A loopback TCP proxy in front of the registry that forces one request
/// per connection (`Connection: close`), drops every `drop_every`-th
/// connection unanswered and answers `503` to about `per_mille_503`/1000
/// of the others, until `max_faults` faults were injected.
struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fault_proxy(
    upstream: SocketAddr,
    drop_every: usize,
    per_mille_503: u64,
    seed: u64,
    max_faults: usize,
) -> FaultProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().unwrap();
    let faults = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (f, c) = (faults.clone(), connections.clone());
    let task = tokio::spawn(async move {
        let mut rng = SplitMix64(seed);
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                break;
            };
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let budget = f.load(Ordering::SeqCst) < max_faults;
            let roll = rng.next() % 1000;
            if budget && drop_every > 0 && n % drop_every == 0 {
                f.fetch_add(1, Ordering::SeqCst);
                drop(sock);
                continue;
            }
            let answer_503 = budget && roll < per_mille_503;
            if answer_503 {
                f.fetch_add(1, Ordering::SeqCst);
            }
            tokio::spawn(proxy_connection(sock, upstream, answer_503));
        }
    });
    FaultProxy {
        addr,
        faults,
        connections,
        task,
    }
}

async fn proxy_connection(mut client: TcpStream, upstream: SocketAddr, answer_503: bool) {
    let step = Duration::from_secs(10);
    let Some(mut head) = proxy::read_head(&mut client, step, proxy::NotHttp::Close).await else {
        return;
    };
    if answer_503 {
        proxy::read_body(&mut client, &mut head, step).await;
        let headers = "Content-Type: text/plain\r\n";
        let body = "service unavailable (injected)";
        proxy::respond(&mut client, "503 Service Unavailable", headers, body).await;
        return;
    }
    let upstream = upstream.to_string();
    proxy::forward(client, &head, &upstream, step, Duration::from_secs(60)).await;
}

fn fault_options() -> PublishOptions {
    PublishOptions {
        retry: RetryPolicy {
            attempts: 10,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
        },
        request_timeout: Duration::from_secs(10),
        concurrency: 4,
        ..options()
    }
}

#[tokio::test]
async fn publish_survives_dropped_connections_and_503s() {
    require_registry().await;
    let direct = client();
    let (amd, arm) = seed(&direct, SRC).await;
    let proxy = fault_proxy(UPSTREAM.parse().unwrap(), 5, 150, 0x5eed, 60).await;
    let via = |path: &str| format!("{}/{path}", proxy.addr);
    let u = unique();
    let tags = vec![
        via(&format!("mybake-test/publish-faults-a-{u}:t")),
        via(&format!("mybake-test/publish-faults-b-{u}:t")),
    ];
    let mut t = target(
        "faulty",
        &tags,
        &[("linux/amd64", &amd), ("linux/arm64", &arm)],
    );
    t.source = Some(via("mybake-test/publish-src"));
    let (tx, mut rx) = mpsc::channel(1024);
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        publish(PublishPlan { targets: vec![t] }, fault_options(), tx),
    )
    .await
    .expect("bounded in time")
    .expect("publish through faults");
    let events = drain(&mut rx);
    let faults = proxy.faults.load(Ordering::SeqCst);
    let retries = events
        .iter()
        .filter(|e| matches!(e, PublishEvent::Retrying { .. }))
        .count();
    eprintln!(
        "fault proxy: {} connections, {faults} faults injected, {retries} retries",
        proxy.connections.load(Ordering::SeqCst)
    );
    assert!(faults > 0, "no fault was injected");
    assert!(retries > 0, "faults ({faults}) but no retry");
    assert!(proxy.connections.load(Ordering::SeqCst) > 10);

    // The index is complete and tagged in both repositories (checked
    // directly, not through the proxy).
    let r = &report.targets[0];
    assert_eq!(r.manifests.len(), 2);
    for repo in ["a", "b"] {
        let tag = format!("{REGISTRY}/mybake-test/publish-faults-{repo}-{u}:t");
        let got = direct.get_manifest(&reference(&tag)).await.expect("tag");
        assert_eq!(got.digest, r.digest);
        let doc = ManifestDoc::parse(&got.bytes).unwrap();
        assert_eq!(doc.manifests.len(), 2);
        for m in &doc.manifests {
            let child = direct
                .get_manifest(&reference(&format!(
                    "{REGISTRY}/mybake-test/publish-faults-{repo}-{u}@{}",
                    m.digest
                )))
                .await
                .expect("child present");
            let child = ManifestDoc::parse(&child.bytes).unwrap();
            for blob in child.blobs() {
                let repo_ref =
                    reference(&format!("{REGISTRY}/mybake-test/publish-faults-{repo}-{u}"));
                assert!(direct.blob_exists(&repo_ref, &blob.digest).await.unwrap());
            }
        }
    }
}

#[tokio::test]
async fn unreachable_registry_fails_clearly_and_writes_nothing() {
    require_registry().await;
    let direct = client();
    let (amd, arm) = seed(&direct, SRC).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = fault_proxy(closed, 0, 0, 1, 0).await;
    let u = unique();
    let path = format!("mybake-test/publish-unreachable-{u}:t");
    let tag = format!("{}/{path}", proxy.addr);
    let mut t = target(
        "down",
        std::slice::from_ref(&tag),
        &[("linux/amd64", &amd), ("linux/arm64", &arm)],
    );
    t.source = Some(format!("{}/mybake-test/publish-src", proxy.addr));
    let opts = PublishOptions {
        retry: RetryPolicy {
            attempts: 3,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        ..options()
    };
    let (tx, mut rx) = mpsc::channel(256);
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        publish(PublishPlan { targets: vec![t] }, opts, tx),
    )
    .await
    .expect("bounded in time")
    .expect_err("nothing answers");
    assert!(started.elapsed() < Duration::from_secs(30));
    match &err {
        PublishError::Registry {
            source:
                RegistryError::Unreachable {
                    reference,
                    attempts,
                    ..
                },
            ..
        } => {
            assert_eq!(*attempts, 3);
            assert!(
                reference.starts_with(&proxy.addr.to_string()),
                "{reference}"
            );
        }
        other => panic!("unexpected error: {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("target \"down\": ") && text.contains("unreachable after 3 attempt(s)"),
        "{text}"
    );
    let events = drain(&mut rx);
    assert!(!events
        .iter()
        .any(|e| matches!(e, PublishEvent::TagWritten { .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, PublishEvent::Retrying { .. })));
    assert_eq!(
        head_digest(&direct, &format!("{REGISTRY}/{path}")).await,
        None
    );
}

/// A publish whose cancellation token is cancelled (SIGINT/SIGTERM in
/// `build`) sends no further request: it fails as interrupted, lists every
/// tag as not written, and writes none.
#[tokio::test]
async fn cancelled_publish_writes_no_tag() {
    require_registry().await;
    let direct = client();
    let (amd, arm) = seed(&direct, SRC).await;
    let u = unique();
    let tags = vec![
        format!("{REGISTRY}/mybake-test/publish-cancelled-{u}:a"),
        format!("{REGISTRY}/mybake-test/publish-cancelled-{u}:b"),
    ];
    let mut t = target(
        "cancelled",
        &tags,
        &[("linux/amd64", &amd), ("linux/arm64", &arm)],
    );
    t.source = Some(SRC.into());
    let opts = options();
    opts.cancel.cancel();
    let (tx, mut rx) = mpsc::channel(256);
    let err = publish(PublishPlan { targets: vec![t] }, opts, tx)
        .await
        .expect_err("cancelled");
    match &err {
        PublishError::Interrupted {
            written,
            in_flight,
            not_written,
        } => {
            assert!(written.is_empty() && in_flight.is_empty(), "{err:?}");
            assert_eq!(not_written, &tags);
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert!(err.written().is_empty());
    assert!(!drain(&mut rx)
        .iter()
        .any(|e| matches!(e, PublishEvent::TagWritten { .. })));
    for tag in &tags {
        assert_eq!(head_digest(&direct, tag).await, None, "{tag}");
    }
}
