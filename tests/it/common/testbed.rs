//! The real test bed that the daemon tests share (scripts/testbed/): Docker
//! Engine's BuildKit, the same BuildKit as a plain buildkitd socket, the
//! registry on 127.0.0.1:5000 and the multi-arch busybox base. These
//! helpers never skip: when something is down they fail, saying what.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::Value;

use super::Output;

pub const BUSYBOX: &str = "localhost:5000/busybox:latest";
pub const REGISTRY: &str = "http://127.0.0.1:5000";
pub const SOCK_PATH: &str = "/run/mybake-buildkitd.sock";
pub const SOCK: &str = "unix:///run/mybake-buildkitd.sock";
pub const OCI_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Fail (never skip) when the Docker daemon, the registry or the base
/// image is missing.
pub fn testbed() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let info = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .expect("run `docker` (is the docker CLI installed?)");
        assert!(
            info.status.success(),
            "the Docker daemon is not reachable (scripts/testbed/setup.sh): {}",
            String::from_utf8_lossy(&info.stderr)
        );
        let (code, _) = http_get("/v2/", None);
        assert_eq!(
            code, 200,
            "the registry at {REGISTRY} is not up (scripts/testbed/setup.sh)"
        );
        let (code, body) = http_get("/v2/busybox/manifests/latest", Some(OCI_ACCEPT));
        assert_eq!(
            code,
            200,
            "{BUSYBOX} is missing from the registry (scripts/testbed/setup.sh): {}",
            String::from_utf8_lossy(&body)
        );
    });
}

/// The test bed plus the standalone-buildkitd socket.
pub fn splice() {
    testbed();
    assert!(
        Path::new(SOCK_PATH).exists(),
        "{SOCK_PATH} is missing: start it with scripts/testbed/setup.sh"
    );
}

/// Unique per call, process and run.
pub fn nonce() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// `localhost:5000/mybake-it/<name>-<nonce>`: unique per call and run.
pub fn unique_repo(name: &str) -> String {
    format!("localhost:5000/mybake-it/{name}-{}", nonce())
}

/// `localhost:5000/a/b` → `a/b` (the registry API's name).
pub fn api_name(repo: &str) -> &str {
    repo.strip_prefix("localhost:5000/")
        .unwrap_or_else(|| panic!("{repo} is not on localhost:5000"))
}

// ---------------------------------------------------------------- commands

pub fn cmd(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run docker, expect success, return stdout.
pub fn docker(args: &[&str]) -> String {
    let o = cmd("docker", args);
    assert_eq!(
        o.code,
        0,
        "docker {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        o.stdout,
        o.stderr
    );
    o.stdout
}

/// Runs images with `docker run`; when the test ends, removes every image
/// record of the test's repositories from the Docker image store (the
/// images it pulled, and the `<repo>` record that Docker's BuildKit may
/// leave for a push by digest). Those records have no tag, so the docker
/// CLI cannot remove them by name; hence `ctr`.
#[derive(Default)]
pub struct StoreCleanup(pub Vec<String>);

impl StoreCleanup {
    pub fn new(repos: &[&str]) -> StoreCleanup {
        StoreCleanup(repos.iter().map(|r| r.to_string()).collect())
    }

    /// `docker run --rm --platform P [--entrypoint E] REF ARGS...` → stdout.
    pub fn run(
        &mut self,
        platform: &str,
        reference: &str,
        entrypoint: Option<&str>,
        args: &[&str],
    ) -> String {
        let mut a = vec!["run", "--rm", "--platform", platform];
        if let Some(e) = entrypoint {
            a.extend(["--entrypoint", e]);
        }
        a.push(reference);
        a.extend(args);
        let repo = reference.split('@').next().unwrap_or(reference);
        let repo = match repo.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r,
            _ => repo,
        };
        if !self.0.iter().any(|r| r == repo) {
            self.0.push(repo.to_string());
        }
        docker(&a)
    }
}

/// Image records in the Docker (containerd) image store for `repo`.
pub fn store_records(repo: &str) -> Vec<String> {
    let o = cmd("ctr", &["-n", "moby", "images", "ls", "-q"]);
    o.stdout
        .lines()
        .filter(|n| {
            *n == repo || n.starts_with(&format!("{repo}@")) || n.starts_with(&format!("{repo}:"))
        })
        .map(str::to_string)
        .collect()
}

impl Drop for StoreCleanup {
    fn drop(&mut self) {
        for r in &self.0 {
            let names = store_records(r);
            if !names.is_empty() {
                let mut a = vec!["-n", "moby", "images", "rm"];
                a.extend(names.iter().map(String::as_str));
                let _ = Command::new("ctr").args(&a).output();
            }
        }
    }
}

// ---------------------------------------------------------------- registry

/// GET `REGISTRY + path` with curl → (HTTP status, body).
pub fn http_get(path: &str, accept: Option<&str>) -> (u16, Vec<u8>) {
    let body = tempfile::NamedTempFile::new().expect("temp file");
    let url = format!("{REGISTRY}{path}");
    let out = body.path().to_string_lossy().into_owned();
    let mut args = vec!["-sS", "-o", out.as_str(), "-w", "%{http_code}"];
    let header;
    if let Some(a) = accept {
        header = format!("Accept: {a}");
        args.extend(["-H", header.as_str()]);
    }
    args.push(&url);
    let o = cmd("curl", &args);
    assert_eq!(o.code, 0, "curl {url}: {}", o.stderr);
    (
        o.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl {url}: status {:?}", o.stdout)),
        std::fs::read(body.path()).expect("read body"),
    )
}

/// GET that must answer 200 with JSON.
pub fn http_json(path: &str, accept: Option<&str>) -> Value {
    let (code, body) = http_get(path, accept);
    assert_eq!(code, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
}

/// The manifest that `reference` (`repo@sha256:…`) names.
pub fn manifest(reference: &str) -> Value {
    let (repo, digest) = reference
        .split_once('@')
        .unwrap_or_else(|| panic!("{reference} is not by digest"));
    http_json(
        &format!("/v2/{}/manifests/{digest}", api_name(repo)),
        Some(OCI_ACCEPT),
    )
}

pub fn blob(repo: &str, digest: &str) -> Vec<u8> {
    let (code, body) = http_get(&format!("/v2/{}/blobs/{digest}", api_name(repo)), None);
    assert_eq!(
        code,
        200,
        "blob {repo}@{digest}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// The tags of `repo` (none when the registry does not know it).
pub fn tags(repo: &str) -> Vec<String> {
    let (code, body) = http_get(&format!("/v2/{}/tags/list", api_name(repo)), None);
    let text = String::from_utf8_lossy(&body);
    match code {
        404 => {
            assert!(
                text.contains("NAME_UNKNOWN"),
                "tags/list of {repo}: 404 without NAME_UNKNOWN: {text}"
            );
            Vec::new()
        }
        200 => {
            let v: Value = serde_json::from_slice(&body).expect("tags/list JSON");
            v["tags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => panic!("tags/list of {repo}: HTTP {code}: {text}"),
    }
}

/// No tag was written to `repo` (`ctx` says why there should be none).
pub fn assert_no_tags(repo: &str, ctx: &str) {
    let t = tags(repo);
    assert!(t.is_empty(), "{repo} must have no tag ({ctx}), has {t:?}");
}

/// The platform images of an index (registry or `mybake index inspect`
/// JSON): `(os/architecture, digest)` in index order, attestation entries
/// (`unknown/unknown`) left out.
pub fn index_images(index: &Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index (no manifests): {index}"))
        .iter()
        .filter(|m| m["platform"]["os"] != "unknown")
        .map(|m| {
            (
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap_or(""),
                    m["platform"]["architecture"].as_str().unwrap_or("")
                ),
                m["digest"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The digest of what the tag `reference` (`repo:tag`) points at.
pub fn tag_digest(reference: &str) -> String {
    let (repo, tag) = reference.rsplit_once(':').expect("tag");
    let (code, body) = http_get(
        &format!("/v2/{}/manifests/{tag}", api_name(repo)),
        Some(OCI_ACCEPT),
    );
    assert_eq!(code, 200, "{reference}");
    mybake::publish::index::sha256_digest(&body)
}
