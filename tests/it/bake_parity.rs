//! mybake next to `docker buildx bake` on the same daemon and registry
//! (the real test bed, see `build.rs`): `--progress plain` prints each step
//! once, pushed images carry bake's default provenance attestation (read by
//! `docker buildx imagetools inspect` as bake's), `--provenance`/`--sbom`
//! override it, OCI outputs and `--load` keep it, and `--metadata-file`
//! holds every key bake writes for the same run.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use crate::common::testbed::*;
use crate::common::{Output, Test};

const DOCKERFILE: &str = "FROM localhost:5000/busybox:latest\nARG N\nRUN echo $N > /n\n";

/// A directory with a Dockerfile and the same target `app` as mybake.kdl
/// and docker-bake.hcl: `platforms`, tag `repo:1` (mybake) and `bake_repo:1`
/// (bake), `N` a fresh value (a cold `RUN`).
fn project(platforms: &[&str], repo: &str, bake_repo: &str) -> Test {
    let n = nonce();
    let kdl_platforms: Vec<String> = platforms.iter().map(|p| format!("{p:?}")).collect();
    let hcl_platforms: Vec<String> = platforms.iter().map(|p| format!("{p:?}")).collect();
    Test::new()
        .file("Dockerfile", DOCKERFILE)
        .kdl(&format!(
            "target \"app\" {{\n    platforms {}\n    arg \"N\" \"{n}\"\n    tags \"{repo}:1\"\n}}\n",
            kdl_platforms.join(" ")
        ))
        .file(
            "docker-bake.hcl",
            &format!(
                "target \"app\" {{\n  platforms = [{}]\n  args = {{ N = \"{n}\" }}\n  tags = [\"{bake_repo}:1\"]\n}}\n",
                hcl_platforms.join(", ")
            ),
        )
}

/// `docker buildx bake -f docker-bake.hcl ARGS` in the project. bake is
/// the reference here, not the tool under test: a failed run is tried once
/// more (bake's own exports can hit Docker's image-store race, see
/// `build.rs`), and both errors are shown if that fails too.
fn bake(t: &Test, args: &[&str]) -> Output {
    let once = || {
        let out = Command::new("docker")
            .args([
                "buildx",
                "bake",
                "-f",
                "docker-bake.hcl",
                "--progress",
                "quiet",
            ])
            .args(args)
            .current_dir(t.path())
            .output()
            .expect("run docker buildx bake");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let first = once();
    if first.code == 0 {
        return first;
    }
    let o = once();
    assert_eq!(
        o.code, 0,
        "bake {args:?}: {}\n(first attempt: {})",
        o.stderr, first.stderr
    );
    o
}

fn read_json(t: &Test, name: &str) -> Value {
    let text =
        std::fs::read_to_string(t.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"))
}

/// The keys of `doc[target]`; bake's must all be in mybake's.
fn keys(doc: &Value, target: &str) -> BTreeSet<String> {
    doc[target]
        .as_object()
        .unwrap_or_else(|| panic!("no {target} in {doc:#}"))
        .keys()
        .cloned()
        .collect()
}

fn assert_bake_keys(mybake: &Value, bake: &Value, what: &str) {
    let (m, b) = (keys(mybake, "app"), keys(bake, "app"));
    let missing: Vec<&String> = b.difference(&m).collect();
    assert!(
        missing.is_empty(),
        "{what}: bake writes {missing:?}, mybake does not\nmybake: {mybake:#}\nbake: {bake:#}"
    );
    // Beyond bake's keys, only mybake's own.
    let extra: Vec<&String> = m
        .difference(&b)
        .filter(|k| !k.starts_with("mybake.") && *k != "buildx.build.provenance")
        .collect();
    assert!(extra.is_empty(), "{what}: unexpected keys {extra:?}");
    let descriptor = &mybake["app"]["containerimage.descriptor"];
    assert_eq!(
        descriptor["digest"], mybake["app"]["containerimage.digest"],
        "{what}: {mybake:#}"
    );
    assert!(descriptor["size"].as_u64().unwrap_or(0) > 0, "{mybake:#}");
    assert!(
        mybake["app"]["buildx.build.ref"]
            .as_str()
            .is_some_and(|r| r.split('/').count() == 3 && r.len() > 20),
        "{what}: {mybake:#}"
    );
}

/// `(image platforms, attestation subjects)` of an index document: every
/// attestation is `unknown/unknown` and describes one of the images.
fn attestations(index: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut images = BTreeMap::new();
    let mut subjects = BTreeSet::new();
    for m in index["manifests"].as_array().expect("an index") {
        let a = &m["annotations"];
        if a["vnd.docker.reference.type"] == "attestation-manifest" {
            assert_eq!(m["platform"]["os"], "unknown", "{index:#}");
            assert_eq!(m["platform"]["architecture"], "unknown", "{index:#}");
            subjects.insert(
                a["vnd.docker.reference.digest"]
                    .as_str()
                    .expect("subject")
                    .to_string(),
            );
        } else {
            images.insert(
                m["digest"].as_str().expect("digest").to_string(),
                format!("{}/{}", m["platform"]["os"], m["platform"]["architecture"])
                    .replace('"', ""),
            );
        }
    }
    for s in &subjects {
        assert!(
            images.contains_key(s),
            "attestation for {s}, not an image of {index:#}"
        );
    }
    let subject_platforms = subjects.iter().map(|s| images[s].clone()).collect();
    (images.into_values().collect(), subject_platforms)
}

/// The manifest or index tagged `repo:tag`.
fn by_tag(repo: &str, tag: &str) -> Value {
    http_json(
        &format!("/v2/{}/manifests/{tag}", api_name(repo)),
        Some(OCI_ACCEPT),
    )
}

/// `docker buildx imagetools inspect --format '{{json .Provenance}}'`:
/// platform → SLSA predicate.
fn provenance(reference: &str) -> Value {
    let out = docker(&[
        "buildx",
        "imagetools",
        "inspect",
        "--format",
        "{{json .Provenance}}",
        reference,
    ]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn plain_progress_prints_each_step_once() {
    testbed();
    let t = project(&["linux/amd64", "linux/arm64"], "unused", "unused").args(&[
        "build",
        "app",
        "--progress",
        "plain",
    ]);
    let out = t.expect(0);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in out.stderr.lines() {
        if line.contains("] DONE ") || line.contains("] CACHED ") || line.contains("] ERROR") {
            // `[node] DONE 0.1s NAME`: the node and the step name.
            let (node, rest) = line.split_once("] ").expect("[node]");
            let name = rest.split_once(' ').map_or(rest, |(_, n)| n);
            let name = if rest.starts_with("DONE ") {
                name.split_once(' ')
                    .map_or(name, |(t, n)| if t.ends_with('s') { n } else { name })
            } else {
                name
            };
            *seen.entry(format!("{node}] {name}")).or_default() += 1;
        }
    }
    let def = "load build definition from Dockerfile";
    for node in ["[app@linux/amd64", "[app@linux/arm64"] {
        let key = format!("{node}] [internal] {def}");
        assert_eq!(seen.get(key.as_str()), Some(&1), "{key}\n{}", out.stderr);
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "repeated: {repeated:?}\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("RUN echo"), "{}", out.stderr);
}

#[test]
fn pushed_index_carries_provenance_like_bake() {
    testbed();
    let (repo, bake_repo) = (
        unique_repo("cli15-attest"),
        unique_repo("cli15-attest-bake"),
    );
    let t = project(&["linux/amd64", "linux/arm64"], &repo, &bake_repo).args(&[
        "build",
        "app",
        "--push",
        "--progress",
        "quiet",
        "--metadata-file",
        "mybake-meta.json",
    ]);
    t.expect(0);
    // bake's push through Docker's BuildKit also records the tag in the
    // Docker image store.
    let _cleanup = Rmi(vec![format!("{bake_repo}:1")]);
    bake(&t, &["app", "--push", "--metadata-file", "bake-meta.json"]);
    let (m, b) = (
        read_json(&t, "mybake-meta.json"),
        read_json(&t, "bake-meta.json"),
    );
    assert_bake_keys(&m, &b, "--push");
    // The tag is the index of the metadata, with both images and one
    // attestation per image, as bake's.
    let index = by_tag(&repo, "1");
    let digest = m["app"]["containerimage.digest"].as_str().unwrap();
    assert_eq!(
        manifest(&format!("{repo}@{digest}")),
        index,
        "the tag is the metadata's index"
    );
    let both: BTreeSet<String> = ["linux/amd64", "linux/arm64"].map(String::from).into();
    assert_eq!(attestations(&index), (both.clone(), both.clone()));
    assert_eq!(attestations(&by_tag(&bake_repo, "1")), (both.clone(), both));
    assert_eq!(index_images(&index).len(), 2);
    // imagetools reads mybake's provenance as bake's: the same platforms,
    // the same SLSA fields (min mode: no buildConfig).
    let (pm, pb) = (
        provenance(&format!("{repo}:1")),
        provenance(&format!("{bake_repo}:1")),
    );
    let platforms = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(platforms(&pm), platforms(&pb), "{pm:#}\n{pb:#}");
    for p in ["linux/amd64", "linux/arm64"] {
        let (sm, sb) = (&pm[p]["SLSA"], &pb[p]["SLSA"]);
        assert_eq!(sm["buildType"], sb["buildType"]);
        let fields = |v: &Value| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<BTreeSet<_>>())
        };
        assert_eq!(fields(sm), fields(sb), "{p}: {sm:#}\n{sb:#}");
        assert!(sm["buildConfig"].is_null(), "mode=min: {sm:#}");
        // The build platform (the daemon's), for both tools.
        assert_eq!(
            sm["invocation"]["environment"],
            sb["invocation"]["environment"]
        );
    }
    // mybake's per-platform push results are the images with their
    // attestation (BuildKit's per-platform index).
    for (p, r) in m["app"]["mybake.results"].as_object().unwrap() {
        let d = r["descriptor"]["digest"].as_str().unwrap();
        let sub = manifest(&format!("{repo}@{d}"));
        let one: BTreeSet<String> = [p.clone()].into();
        assert_eq!(attestations(&sub), (one.clone(), one), "{p}: {sub:#}");
    }
}

#[test]
fn provenance_flags_and_the_environment_override_the_default() {
    testbed();
    let (off, env_off, max) = (
        unique_repo("cli15-prov-off"),
        unique_repo("cli15-prov-env"),
        unique_repo("cli15-prov-max"),
    );
    let none = BTreeSet::new();
    let amd: BTreeSet<String> = ["linux/amd64".to_string()].into();
    let push = |repo: &str, extra: &[&str], env: Option<(&str, &str)>| {
        let mut t = project(&["linux/amd64"], repo, "unused").args(&[
            "build",
            "app",
            "--push",
            "--progress",
            "quiet",
        ]);
        t = t.args(extra);
        if let Some((k, v)) = env {
            t = t.env(k, v);
        }
        t.expect(0);
        by_tag(repo, "1")
    };
    assert_eq!(
        attestations(&push(&off, &["--provenance", "false"], None)),
        (amd.clone(), none.clone())
    );
    assert_eq!(
        attestations(&push(
            &env_off,
            &[],
            Some(("MYBAKE_NO_DEFAULT_ATTESTATIONS", "1"))
        )),
        (amd.clone(), none)
    );
    assert_eq!(
        attestations(&push(&max, &["--provenance", "mode=max"], None)),
        (amd.clone(), amd)
    );
    // One platform: imagetools gives the predicate itself, not a map.
    let slsa = &provenance(&format!("{max}:1"))["SLSA"];
    assert!(slsa["buildConfig"].is_object(), "mode=max: {slsa:#}");
    // A value bake would not take: exit 2, nothing built.
    let bad = project(&["linux/amd64"], &unique_repo("cli15-prov-bad"), "unused")
        .args(&["build", "app", "--push", "--provenance", "maybe"])
        .expect(2);
    assert!(
        bad.stderr.contains("--provenance \"maybe\""),
        "{}",
        bad.stderr
    );
}

#[test]
fn oci_output_and_load_keep_attestations_and_bakes_metadata_keys() {
    testbed();
    let name = format!("cli15-load-{}", nonce());
    let bake_name = format!("{name}-bake");
    let t = project(&["linux/amd64", "linux/arm64"], &name, &bake_name);
    // OCI layout archive, both tools.
    let oci = t.path().join("mybake.oci.tar");
    let out = t.path().to_path_buf();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_mybake"))
            .args(args)
            .current_dir(&out)
            .env("NO_COLOR", "1")
            .output()
            .expect("mybake");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "build",
        "app",
        "--progress",
        "quiet",
        "--set",
        &format!("app.output=type=oci,dest={}", oci.display()),
        "--metadata-file",
        "m-oci.json",
    ]);
    bake(
        &t,
        &[
            "app",
            "--set",
            "app.output=type=oci,dest=bake.oci.tar",
            "--metadata-file",
            "b-oci.json",
        ],
    );
    let (m, b) = (read_json(&t, "m-oci.json"), read_json(&t, "b-oci.json"));
    assert_bake_keys(&m, &b, "oci");
    let dir = tempfile::tempdir().unwrap();
    let x = cmd(
        "tar",
        &[
            "-xf",
            &oci.to_string_lossy(),
            "-C",
            &dir.path().to_string_lossy(),
        ],
    );
    assert_eq!(x.code, 0, "{}", x.stderr);
    let top: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let root = top["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(m["app"]["containerimage.digest"], root, "{m:#}");
    let blob = |d: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(dir.path().join("blobs/sha256").join(&d[7..])).unwrap(),
        )
        .unwrap()
    };
    let both: BTreeSet<String> = ["linux/amd64", "linux/arm64"].map(String::from).into();
    assert_eq!(attestations(&blob(root)), (both.clone(), both));
    // --load (one platform: the classic store cannot hold two; the
    // containerd store keeps the attestation with the image).
    let tag = format!("{name}:load");
    let bake_tag = format!("{bake_name}:load");
    let _cleanup = Rmi(vec![tag.clone(), bake_tag.clone()]);
    run(&[
        "build",
        "app",
        "--load",
        "--progress",
        "quiet",
        "--set",
        "app.platforms=linux/amd64",
        "--set",
        &format!("app.tags={tag}"),
        "--metadata-file",
        "m-load.json",
    ]);
    bake(
        &t,
        &[
            "app",
            "--load",
            "--set",
            "app.platform=linux/amd64",
            "--set",
            &format!("app.tags={bake_tag}"),
            "--metadata-file",
            "b-load.json",
        ],
    );
    let (m, b) = (read_json(&t, "m-load.json"), read_json(&t, "b-load.json"));
    assert_bake_keys(&m, &b, "--load");
    assert_eq!(
        m["app"]["image.name"],
        format!("docker.io/library/{tag}"),
        "{m:#}"
    );
    // Docker lists the loaded image under the metadata's digest.
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    assert_eq!(
        id.trim(),
        m["app"]["containerimage.digest"].as_str().unwrap()
    );
    // `docker save` (containerd store): the loaded index keeps the
    // attestation of its image.
    let saved = tempfile::tempdir().unwrap();
    let archive = saved.path().join("saved.tar");
    docker(&["save", &tag, "-o", &archive.to_string_lossy()]);
    let x = cmd(
        "tar",
        &[
            "-xf",
            &archive.to_string_lossy(),
            "-C",
            &saved.path().to_string_lossy(),
        ],
    );
    assert_eq!(x.code, 0, "{}", x.stderr);
    let top: Value =
        serde_json::from_slice(&std::fs::read(saved.path().join("index.json")).unwrap()).unwrap();
    let root = top["manifests"][0]["digest"].as_str().unwrap();
    let loaded: Value = serde_json::from_slice(
        &std::fs::read(saved.path().join("blobs/sha256").join(&root[7..])).unwrap(),
    )
    .unwrap();
    let amd: BTreeSet<String> = ["linux/amd64".to_string()].into();
    assert_eq!(attestations(&loaded), (amd.clone(), amd), "{loaded:#}");
}

/// Removes the images loaded by a test.
struct Rmi(Vec<String>);

impl Drop for Rmi {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = cmd("docker", &["rmi", "-f", t]);
        }
    }
}
