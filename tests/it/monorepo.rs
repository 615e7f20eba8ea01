//! The monorepo example built and pushed end to end against the real test
//! bed (Docker Engine's BuildKit, the registry on 127.0.0.1:5000): every
//! tag is an OCI index of exactly its target's platforms, every platform
//! image runs and says which architecture built its base, a dependency that
//! was not requested is pushed by digest but never tagged, a second tag in
//! another repository names the same index, the peer tool reads the
//! indexes, and a second run with no change pushes byte-identical indexes.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::testbed::*;
use common::Output;
use serde_json::Value;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/monorepo")
}

/// Runs without bake's default provenance attestation: its timestamps and
/// invocation id make every push a new index, and this test checks that a
/// rebuild with no change publishes the same indexes byte for byte.
fn mybake(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_mybake"))
        .env("MYBAKE_NO_DEFAULT_ATTESTATIONS", "1")
        .arg("-C")
        .arg(example())
        .args(args)
        .output()
        .expect("run mybake");
    Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `GET /v2/<repo>/manifests/<tag>` with the OCI Accept header → (digest, body).
fn by_tag(repo: &str, tag: &str) -> (String, Value) {
    let (code, body) = http_get(
        &format!("/v2/{}/manifests/{tag}", api_name(repo)),
        Some(OCI_ACCEPT),
    );
    assert_eq!(
        code,
        200,
        "{repo}:{tag}: {}",
        String::from_utf8_lossy(&body)
    );
    let digest = mybake::publish::index::sha256_digest(&body);
    (
        digest,
        serde_json::from_slice(&body).expect("manifest is JSON"),
    )
}

fn platforms_of(index: &Value) -> Vec<String> {
    index_images(index).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn monorepo_example_publishes_one_index_per_target() {
    testbed();
    let ns = unique_repo("mono");
    let mirror = format!("{ns}/mirror/svc-api:dev");
    let build_args = [
        "--var",
        &format!("REGISTRY={ns}"),
        "build",
        "--push",
        "--progress",
        "plain",
        "--set",
        &format!("svc-api.tags+={mirror}"),
    ];
    let o = mybake(&build_args);
    assert_eq!(o.code, 0, "build failed:\n{}\n{}", o.stdout, o.stderr);
    let repo = |t: &str| format!("{ns}/monorepo/{t}");
    let mut cleanup = StoreCleanup::default();
    cleanup.0.push(format!("{ns}/mirror/svc-api"));

    let both = ["linux/amd64", "linux/arm64"];
    let expected: [(&str, &[&str]); 4] = [
        ("lib-greet", &both),
        ("svc-api", &both),
        ("svc-worker", &both),
        ("tools", &["linux/amd64"]),
    ];
    let mut digests = Vec::new();
    for (target, platforms) in expected {
        let r = repo(target);
        cleanup.0.push(r.clone());
        let (digest, index) = by_tag(&r, "dev");
        assert_eq!(index["mediaType"], INDEX, "{target}: {index}");
        assert_eq!(
            platforms_of(&index),
            platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "{target}: the index lists exactly the target's platforms, in order"
        );
        digests.push((target, digest));
    }

    // `base` is only a dependency: pushed by digest for its dependents,
    // never tagged.
    cleanup.0.push(repo("base"));
    assert_no_tags(&repo("base"), "base is not requested");

    // The second tag, in another repository, is the same index.
    let (mirror_digest, _) = by_tag(&format!("{ns}/mirror/svc-api"), "dev");
    let api_digest = &digests.iter().find(|(t, _)| *t == "svc-api").unwrap().1;
    assert_eq!(
        &mirror_digest, api_digest,
        "both tags of svc-api name one index"
    );

    // Every platform image runs and was built on its own architecture.
    for (target, platforms) in expected {
        for p in platforms {
            let arch = if p.ends_with("arm64") {
                "aarch64"
            } else {
                "x86_64"
            };
            let out = cleanup.run(p, &format!("{}:dev", repo(target)), None, &[]);
            let want = match target {
                "svc-api" => "hello from the API",
                "svc-worker" => "hello from",
                "tools" => "tools OK",
                _ => "",
            };
            if target == "lib-greet" {
                // No CMD of its own: check the file the library adds.
                let out = cleanup.run(
                    p,
                    &format!("{}:dev", repo(target)),
                    Some("cat"),
                    &["/opt/monorepo/arch"],
                );
                assert_eq!(out.trim(), format!("base built on {arch}"), "{target} {p}");
                continue;
            }
            assert!(
                out.contains(want) && out.contains(&format!("base built on {arch}")),
                "{target} on {p} printed {out:?}"
            );
        }
    }

    // The peer tool reads the index.
    let o = cmd(
        "docker",
        &[
            "buildx",
            "imagetools",
            "inspect",
            "--raw",
            &format!("{}:dev", repo("svc-api")),
        ],
    );
    assert_eq!(o.code, 0, "imagetools inspect: {}", o.stderr);
    let raw: Value = serde_json::from_str(&o.stdout).expect("imagetools --raw is JSON");
    assert_eq!(platforms_of(&raw), both);

    // No change, no provenance: the same indexes, byte for byte.
    let o = mybake(&build_args);
    assert_eq!(
        o.code, 0,
        "second build failed:\n{}\n{}",
        o.stdout, o.stderr
    );
    for (target, digest) in &digests {
        let (again, _) = by_tag(&repo(target), "dev");
        assert_eq!(
            &again, digest,
            "{target}: a rebuild with no change moved the tag"
        );
    }
}
