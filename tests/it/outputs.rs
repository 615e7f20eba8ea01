//! File outputs and `--load` against the real test bed
//! (scripts/testbed/README.md): Docker Engine's BuildKit or the same
//! BuildKit as a plain buildkitd socket, qemu for linux/arm64 and the
//! multi-arch `localhost:5000/busybox:latest`. These tests fail, never
//! skip, when the test bed is down.
//!
//! * `oci` (tarball and `tar=false` directory): a valid OCI layout whose
//!   index has exactly the target's platforms, attestations kept, every
//!   blob present with the right digest.
//! * `--load`: a two-platform image in the Engine, runnable per platform,
//!   built on a builder that is not the Engine's API (`unix://` socket).
//! * `local` / `tar`: the filesystem, per-platform directories with two
//!   platforms, none with one.
//! * A failed run leaves every destination as it was and creates none.
//! * Outputs never destroy data: `local dest="."` in a project keeps every
//!   file of it (`.git` included) and adds the result's; a destination
//!   holding user files keeps them; a conflict writes nothing; a directory
//!   where a file output goes is refused before anything is built; a
//!   killed run's staging is removed by the next run.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::testbed::*;
use common::Test;
use mybake::publish::index::{sha256_digest, ManifestDoc, Platform, OCI_INDEX};
use serde_json::Value;

/// `<name>-<nonce>`: unique per call and run.
fn unique(name: &str) -> String {
    format!("{name}-{}", nonce())
}

fn run_build(t: &Test, args: &[&str], code: i32) -> common::Output {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    let o = Test::run_in(t, &all);
    assert_eq!(
        o.code, code,
        "mybake {all:?}\nstdout:\n{}\nstderr:\n{}",
        o.stdout, o.stderr
    );
    o
}

trait RunIn {
    fn run_in(&self, args: &[&str]) -> common::Output;
}

impl RunIn for Test {
    fn run_in(&self, args: &[&str]) -> common::Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mybake"));
        c.args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("NO_COLOR", "1");
        let out = c.output().expect("run mybake");
        common::Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Extracts a tarball into a new temporary directory.
fn untar(archive: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    a.unpack(d.path()).unwrap();
    d
}

/// The names and contents of the regular files of a tarball.
fn tar_files(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            out.insert(p, v);
        }
    }
    out
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let p = layout.join("blobs/sha256").join(hex);
    let bytes = fs::read(&p).unwrap_or_else(|e| panic!("blob {digest} missing: {e}"));
    assert_eq!(sha256_digest(&bytes), digest, "blob content digest");
    bytes
}

/// Checks an OCI layout: `oci-layout`, `index.json` with one named entry
/// for `name`, the merged index with exactly `platforms` (in order) plus
/// one attestation per platform, and every blob it references. Returns
/// the index digest.
fn check_layout(layout: &Path, name: &str, platforms: &[&str]) -> String {
    let oci_layout: Value =
        serde_json::from_slice(&fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    let root = &entries[0];
    assert_eq!(root["mediaType"], OCI_INDEX);
    assert_eq!(root["annotations"]["io.containerd.image.name"], name);
    assert_eq!(
        root["annotations"]["org.opencontainers.image.ref.name"],
        name.rsplit(':').next().unwrap()
    );
    let digest = root["digest"].as_str().unwrap().to_string();
    let bytes = blob(layout, &digest);
    assert_eq!(bytes.len() as u64, root["size"].as_u64().unwrap());
    let merged = ManifestDoc::parse(&bytes).unwrap();
    let images: Vec<_> = merged
        .manifests
        .iter()
        .filter(|m| !m.is_attestation())
        .collect();
    let got: Vec<String> = images
        .iter()
        .map(|m| m.platform.as_ref().unwrap().to_string())
        .collect();
    let want: Vec<String> = platforms
        .iter()
        .map(|p| Platform::parse(p).unwrap().to_string())
        .collect();
    assert_eq!(got, want, "platforms of the merged index");
    let attestations: Vec<_> = merged
        .manifests
        .iter()
        .filter(|m| m.is_attestation())
        .collect();
    assert_eq!(attestations.len(), platforms.len(), "attestations kept");
    for a in &attestations {
        let subject = a.attestation_subject().unwrap();
        assert!(images.iter().any(|m| m.digest == subject), "{subject}");
    }
    let mut referenced = 1;
    for m in &merged.manifests {
        let bytes = blob(layout, &m.digest);
        assert_eq!(bytes.len() as i64, m.size);
        let doc = ManifestDoc::parse(&bytes).unwrap();
        let config = doc.config.as_ref().expect("an image manifest");
        assert_eq!(blob(layout, &config.digest).len() as i64, config.size);
        for l in &doc.layers {
            assert_eq!(blob(layout, &l.digest).len() as i64, l.size);
        }
        referenced += 2 + doc.layers.len();
    }
    let stored = fs::read_dir(layout.join("blobs/sha256")).unwrap().count();
    assert!(
        stored <= referenced,
        "{stored} blobs stored, {referenced} referenced"
    );
    digest
}

#[test]
fn oci_layout_tarball_and_directory() {
    splice();
    let repo = unique_repo("oci");
    let tag = format!("{repo}:v1");
    // Pushed too: one solve per platform with the push exporter and the
    // oci exporter, and the same merged index in the registry and the
    // layouts.
    let t = Test::new()
        .kdl(&format!(
            "target \"img\" {{\n    platforms \"linux/amd64\" \"linux/arm64\"\n    tags \"{tag}\" \"{repo}:v2\"\n    attest \"provenance\" mode=\"min\"\n    annotation \"index:org.opencontainers.image.description\" \"oci test\"\n    output \"registry\"\n    output \"oci\" dest=\"dist/img.tar\"\n    output \"oci\" dest=\"dist/layout\" tar=false\n}}\n"
        ))
        .file(
            "Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN uname -m > /arch\n"),
        );
    run_build(&t, &["img", "--metadata-file", "meta.json"], 0);
    let both = ["linux/amd64", "linux/arm64"];
    let unpacked = untar(&t.path().join("dist/img.tar"));
    let d1 = check_layout(unpacked.path(), &tag, &both);
    let d2 = check_layout(&t.path().join("dist/layout"), &tag, &both);
    assert_eq!(d1, d2, "the same merged index in both layouts");
    // The image's own file, per platform.
    let idx = ManifestDoc::parse(&blob(unpacked.path(), &d1)).unwrap();
    let mut arches = Vec::new();
    for m in idx.manifests.iter().filter(|m| !m.is_attestation()) {
        let doc = ManifestDoc::parse(&blob(unpacked.path(), &m.digest)).unwrap();
        let top = doc.layers.last().unwrap();
        let layer = unpacked
            .path()
            .join("blobs/sha256")
            .join(top.digest.strip_prefix("sha256:").unwrap());
        let gz = flate_files(&layer);
        arches.push(String::from_utf8_lossy(&gz["arch"]).trim().to_string());
    }
    assert_eq!(arches, ["x86_64", "aarch64"]);
    let meta: Value = serde_json::from_slice(&fs::read(t.path().join("meta.json")).unwrap())
        .expect("metadata JSON");
    let outs = meta["img"]["mybake.outputs"].as_array().expect("outputs");
    assert_eq!(outs.len(), 2, "{meta}");
    assert!(outs.iter().all(|o| o["type"] == "oci" && o["digest"] == d1));
    // The pushed index has the same image manifests; its attestation
    // manifests come from the push export's own provenance (a second
    // export of the same solve result), so only those may differ.
    let pushed: Vec<Value> = meta["img"]["mybake.platforms"]
        .as_array()
        .expect("pushed platforms")
        .clone();
    let images: Vec<&str> = idx
        .manifests
        .iter()
        .filter(|m| !m.is_attestation())
        .map(|m| m.digest.as_str())
        .collect();
    let pushed: Vec<&str> = pushed
        .iter()
        .map(|p| p["digest"].as_str().unwrap())
        .collect();
    assert_eq!(images, pushed, "the same image manifests as pushed");
    assert_eq!(
        idx.annotations["org.opencontainers.image.description"],
        "oci test"
    );
    // No staging left beside the destinations.
    let mut left: Vec<String> = fs::read_dir(t.path().join("dist"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["img.tar", "layout"]);
}

/// The files of a layer blob (gzip tar, as BuildKit compresses by
/// default), read with the system `tar`.
fn flate_files(layer: &Path) -> BTreeMap<String, Vec<u8>> {
    let d = tempfile::tempdir().unwrap();
    let plain = d.path().join("layer.tar");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' > '{}'",
            layer.display(),
            plain.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar_files(&plain)
}

#[test]
fn load_two_platforms_from_a_buildkitd_socket() {
    splice();
    let name = unique("load");
    let tag = format!("localhost:5000/mybake-it/{name}:dev");
    let t = Test::new()
        .kdl(&format!(
            "target \"app\" {{\n    platforms \"linux/amd64\" \"linux/arm64\"\n    tags \"{tag}\"\n}}\n"
        ))
        .file(
            "Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN echo {name} > /name\n"),
        );
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["image", "rm", "-f", &self.0])
                .output();
        }
    }
    let _cleanup = Cleanup(tag.clone());
    let o = run_build(&t, &["app", "--load", "--builder", SOCK], 0);
    assert!(o.stderr.contains("loaded"), "{}", o.stderr);
    let inspect = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &tag])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    for (platform, arch) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let out = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--pull",
                "never",
                "--platform",
                platform,
                &tag,
                "sh",
                "-c",
                "uname -m; cat /name",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker run {platform}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{arch}\n{name}\n")
        );
    }
}

#[test]
fn local_and_tar_outputs_with_platform_directories() {
    splice();
    let t = Test::new()
        .kdl(
            "target \"multi\" {\n    platforms \"linux/amd64\" \"linux/arm64\"\n    output \"local\" dest=\"out/multi\"\n    output \"tar\" dest=\"out/multi.tar\"\n}\ntarget \"single\" {\n    platforms \"linux/arm64\"\n    output \"local\" dest=\"out/single\"\n    output \"tar\" dest=\"out/single.tar\"\n}\ngroup \"default\" { targets \"multi\" \"single\"; }\n",
        )
        .file(
            "Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN uname -m > /arch && mkdir -p /deep/er && echo x > /deep/er/f && chmod 0555 /deep\n"),
        );
    run_build(&t, &[], 0);
    let out = t.path().join("out");
    let read = |p: &str| fs::read_to_string(out.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("multi/linux_amd64/arch"), "x86_64\n");
    assert_eq!(read("multi/linux_arm64/arch"), "aarch64\n");
    assert_eq!(read("multi/linux_arm64/deep/er/f"), "x\n");
    let mut top: Vec<String> = fs::read_dir(out.join("multi"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["linux_amd64", "linux_arm64"]);
    // busybox's applets: symlinks or hard links, received as such.
    let sh = out.join("multi/linux_amd64/bin/sh");
    assert!(fs::symlink_metadata(&sh).is_ok(), "bin/sh");
    assert_eq!(read("single/arch"), "aarch64\n");
    assert!(!out.join("single/linux_arm64").exists());

    let files = tar_files(&out.join("multi.tar"));
    assert_eq!(files["linux_amd64/arch"], b"x86_64\n");
    assert_eq!(files["linux_arm64/arch"], b"aarch64\n");
    assert!(files
        .keys()
        .all(|k| k.starts_with("linux_amd64/") || k.starts_with("linux_arm64/")));
    let files = tar_files(&out.join("single.tar"));
    assert_eq!(files["arch"], b"aarch64\n");
    assert!(!files.keys().any(|k| k.starts_with("linux_")));
    let mut left: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["multi", "multi.tar", "single", "single.tar"]);
    // A second run replaces what is there.
    fs::write(out.join("multi.tar"), "stale").unwrap();
    run_build(&t, &[], 0);
    assert_eq!(
        tar_files(&out.join("multi.tar"))["linux_arm64/arch"],
        b"aarch64\n"
    );
}

fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), b"/".to_vec()));
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn failed_run_leaves_destinations_untouched() {
    splice();
    let t = Test::new()
        .kdl(
            "target \"good\" {\n    platforms \"linux/amd64\"\n    output \"local\" dest=\"out/good\"\n    output \"tar\" dest=\"out/good.tar\"\n    output \"oci\" dest=\"out/new-oci.tar\"\n}\ntarget \"bad\" {\n    platforms \"linux/amd64\"\n    dockerfile \"Dockerfile.bad\"\n    output \"local\" dest=\"fresh/dir/bad\"\n}\ngroup \"default\" { targets \"good\" \"bad\"; }\n",
        )
        .file("Dockerfile", &format!("FROM {BUSYBOX}\nRUN echo new > /new\n"))
        .file(
            "Dockerfile.bad",
            &format!("FROM {BUSYBOX}\nRUN echo failing on purpose; exit 3\n"),
        )
        .file("out/good/old.txt", "old\n")
        .file("out/good.tar", "old tar\n");
    let before = listing(&t.path().join("out"));
    let o = run_build(&t, &["--keep-going"], 1);
    assert!(o.stderr.contains("bad@linux/amd64"), "{}", o.stderr);
    assert_eq!(listing(&t.path().join("out")), before, "out/ changed");
    assert!(!t.path().join("fresh").exists(), "fresh/ was created");
    // --publish per-target writes the complete target, and only it.
    run_build(&t, &["--keep-going", "--publish", "per-target"], 1);
    assert_eq!(
        fs::read_to_string(t.path().join("out/good/new")).unwrap(),
        "new\n"
    );
    // `local` merges into the directory: the user's file stays.
    assert_eq!(
        fs::read_to_string(t.path().join("out/good/old.txt")).unwrap(),
        "old\n"
    );
    assert_eq!(tar_files(&t.path().join("out/good.tar"))["new"], b"new\n");
    assert!(t.path().join("out/new-oci.tar").is_file());
    assert!(!t.path().join("fresh").exists(), "fresh/ was created");
}

/// Every entry below `dir` except mybake's staging (there is none after a
/// run; checked separately): path and contents, `/` for a directory,
/// `-> target` for a symlink.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let ty = e.file_type().unwrap();
            if ty.is_symlink() {
                out.push((rel, format!("-> {}", fs::read_link(&p).unwrap().display())));
            } else if ty.is_dir() {
                out.push((rel, "/".into()));
                stack.push(p);
            } else {
                out.push((
                    rel,
                    String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Names in `dir` (not below) that look like mybake staging or lock files.
fn staging_left(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".mybake-"))
        .collect()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("run git");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The bake habit `output "local" dest="."`: export binaries into the
/// project. Every file of the project stays, `.git` included; the result's
/// files are added, a same-path file is replaced; twice in a row.
#[test]
fn local_dest_dot_keeps_the_project() {
    testbed();
    let t = Test::new()
        .kdl(
            "target \"bin\" {\n    platforms \"linux/amd64\"\n    output \"local\" dest=\".\"\n}\ngroup \"default\" { targets \"bin\"; }\n",
        )
        .file(
            "Dockerfile",
            &format!(
                "FROM {BUSYBOX} AS build\nCOPY src/app.sh /out/bin/app\nRUN echo tool > /out/bin/tool && echo {} > /out/bin/nonce\nFROM scratch\nCOPY --from=build /out/ /\n",
                nonce()
            ),
        )
        .file("src/app.sh", "#!/bin/sh\necho app v1\n")
        .file("bin/app", "the old app, replaced by the export\n")
        .file("bin/keep-me", "a user's binary\n")
        .file("README.md", "# project\n")
        .file(".dockerignore", "bin/\n");
    git(t.path(), &["init", "-q"]);
    git(t.path(), &["add", "-A"]);
    git(t.path(), &["commit", "-q", "-m", "init"]);
    let head = git(t.path(), &["rev-parse", "HEAD"]);
    let before = tree(t.path());
    run_build(&t, &[], 0);
    let after = tree(t.path());
    for (path, content) in &before {
        let now = after.iter().find(|(p, _)| p == path);
        if path == "bin/app" {
            assert_eq!(now.unwrap().1, "#!/bin/sh\necho app v1\n");
        } else {
            assert_eq!(
                now,
                Some(&(path.clone(), content.clone())),
                "{path} changed or vanished"
            );
        }
    }
    assert_eq!(
        fs::read_to_string(t.path().join("bin/tool")).unwrap(),
        "tool\n"
    );
    assert!(t.path().join("bin/nonce").is_file());
    assert_eq!(
        after.len(),
        before.len() + 2,
        "only bin/tool and bin/nonce are new: {after:?}"
    );
    assert_eq!(staging_left(t.path()), Vec::<String>::new());
    assert_eq!(git(t.path(), &["rev-parse", "HEAD"]), head);
    git(t.path(), &["fsck", "--no-progress"]);
    // Again, after a change: the same files are replaced, nothing else moves.
    fs::write(t.path().join("src/app.sh"), "#!/bin/sh\necho app v2\n").unwrap();
    run_build(&t, &[], 0);
    assert_eq!(
        fs::read_to_string(t.path().join("bin/app")).unwrap(),
        "#!/bin/sh\necho app v2\n"
    );
    assert_eq!(
        fs::read_to_string(t.path().join("bin/keep-me")).unwrap(),
        "a user's binary\n"
    );
    assert_eq!(tree(t.path()).len(), after.len());
    assert_eq!(staging_left(t.path()), Vec::<String>::new());
    git(t.path(), &["fsck", "--no-progress"]);
}

/// A destination directory holding the user's files keeps them; where the
/// result has a file and the user a directory, nothing is written at all
/// (exit 1) and the directory is untouched.
#[test]
fn local_dest_keeps_user_files_and_a_conflict_writes_nothing() {
    testbed();
    let kdl = "target \"x\" {\n    platforms \"linux/amd64\"\n    output \"local\" dest=\"dist\"\n    output \"tar\" dest=\"dist.tar\"\n}\ngroup \"default\" { targets \"x\"; }\n";
    let t = Test::new()
        .kdl(kdl)
        .file(
            "Dockerfile",
            &format!(
                "FROM {BUSYBOX} AS build\nRUN mkdir -p /out/etc && echo {} > /out/etc/conf && echo data > /out/data\nFROM scratch\nCOPY --from=build /out/ /\n",
                nonce()
            ),
        )
        .file("dist/notes.txt", "the user's notes\n")
        .file("dist/etc/local.conf", "the user's config\n")
        .file("dist/etc/conf", "replaced\n")
        .file("dist.tar", "an old tarball\n");
    run_build(&t, &[], 0);
    let dist = t.path().join("dist");
    assert_eq!(
        fs::read_to_string(dist.join("notes.txt")).unwrap(),
        "the user's notes\n"
    );
    assert_eq!(
        fs::read_to_string(dist.join("etc/local.conf")).unwrap(),
        "the user's config\n"
    );
    assert_ne!(
        fs::read_to_string(dist.join("etc/conf")).unwrap(),
        "replaced\n"
    );
    assert_eq!(fs::read_to_string(dist.join("data")).unwrap(), "data\n");
    assert_eq!(tar_files(&t.path().join("dist.tar"))["data"], b"data\n");
    assert!(staging_left(&dist).is_empty() && staging_left(t.path()).is_empty());

    // The user turns `data` into a directory of their own.
    fs::remove_file(dist.join("data")).unwrap();
    fs::create_dir(dist.join("data")).unwrap();
    fs::write(dist.join("data/precious"), "precious\n").unwrap();
    let tar_before = fs::read(t.path().join("dist.tar")).unwrap();
    let before = tree(&dist);
    let o = run_build(&t, &["--no-cache"], 1);
    assert!(
        o.stderr
            .contains("is a directory where the result has a file")
            && o.stderr.contains("nothing was written"),
        "{}",
        o.stderr
    );
    assert_eq!(tree(&dist), before, "dist/ changed");
    // The failing output stops the placement: the tar (placed after it) is
    // as it was, and no staging is left anywhere.
    assert_eq!(fs::read(t.path().join("dist.tar")).unwrap(), tar_before);
    assert!(staging_left(&dist).is_empty() && staging_left(t.path()).is_empty());
}

/// A directory where a file output goes, a file where `local` goes, and a
/// non-layout directory for `oci tar=false`: all reported at once, located,
/// exit 2, before any builder is contacted (the builder named here does
/// not exist); nothing changes on disk.
#[test]
fn destinations_that_would_lose_data_are_refused_before_building() {
    let t = Test::new()
        .kdl(
            "target \"a\" {\n    output \"oci\" dest=\"images\"\n    output \"tar\" dest=\"rootfs\"\n}\ntarget \"b\" {\n    output \"oci\" tar=false dest=\"project\"\n    output \"local\" dest=\"notes.txt\"\n}\ngroup \"default\" { targets \"a\" \"b\"; }\n",
        )
        .file("Dockerfile", "FROM scratch\n")
        .file("images/keep.tar", "an image\n")
        .file("rootfs/etc/passwd", "root\n")
        .file("project/src/main.rs", "fn main() {}\n")
        .file("notes.txt", "notes\n");
    let before = tree(t.path());
    let o = Test::run_in(
        &t,
        &["build", "--builder", "unix:///nonexistent/mybake-test.sock"],
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    for (want, line) in [
        ("images is a directory", 2),
        ("rootfs is a directory", 3),
        ("not an OCI layout", 6),
        ("notes.txt exists", 7),
    ] {
        assert!(o.stderr.contains(want), "{want}:\n{}", o.stderr);
        assert!(
            o.stderr.contains(&format!("mybake.kdl:{line}:")),
            "line {line}:\n{}",
            o.stderr
        );
    }
    assert!(
        !o.stderr.contains("nonexistent"),
        "contacted the builder:\n{}",
        o.stderr
    );
    assert_eq!(tree(t.path()), before);
}

/// A run killed with SIGKILL leaves its staging behind; the next run that
/// writes there removes it (and nothing else), and a live run's staging is
/// never touched.
#[test]
fn a_killed_runs_staging_is_removed_by_the_next_run() {
    testbed();
    let t = Test::new()
        .kdl(
            "target \"x\" {\n    platforms \"linux/amd64\"\n    output \"tar\" dest=\"out/x.tar\"\n    output \"local\" dest=\"out/x\"\n}\ngroup \"default\" { targets \"x\"; }\n",
        )
        .file(
            "Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN echo {} > /n && sleep 60\n", nonce()),
        )
        .file("out/x/user-file", "mine\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mybake"))
        .args(["build", "--progress", "plain"])
        .current_dir(t.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", t.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = t.path().join("out");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while staging_left(&out).len() < 2 || staging_left(&out.join("x")).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no staging appeared");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(staging_left(&out).len(), 2, "{:?}", staging_left(&out));
    assert_eq!(staging_left(&out.join("x")).len(), 2);
    fs::write(
        t.path().join("Dockerfile"),
        format!("FROM {BUSYBOX}\nRUN echo {} > /n\n", nonce()),
    )
    .unwrap();
    run_build(&t, &[], 0);
    assert_eq!(staging_left(&out), Vec::<String>::new());
    assert_eq!(staging_left(&out.join("x")), Vec::<String>::new());
    assert_eq!(
        fs::read_to_string(out.join("x/user-file")).unwrap(),
        "mine\n"
    );
    assert!(out.join("x/n").is_file() && out.join("x.tar").is_file());
}

/// Issue 11 (messages): a secret `src` that exists but is not a regular
/// file is reported as such, not as missing.
#[test]
fn secret_src_that_is_not_a_file_says_what_it_is() {
    let t = Test::new()
        .kdl("target \"x\" {\n    secret id=\"a\" src=\"/dev/zero\"\n    secret id=\"b\" src=\"sub\"\n    secret id=\"c\" src=\"missing\"\n}\ngroup \"default\" { targets \"x\"; }\n")
        .file("Dockerfile", "FROM scratch\n")
        .file("sub/f", "x");
    let o = Test::run_in(
        &t,
        &["build", "--builder", "unix:///nonexistent/mybake-test.sock"],
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("/dev/zero is a character device, not a regular file"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("sub is a directory"), "{}", o.stderr);
    assert!(o.stderr.contains("missing does not exist"), "{}", o.stderr);
    assert!(
        !o.stderr.contains("/dev/zero does not exist"),
        "{}",
        o.stderr
    );
}

/// SIGTERM and SIGINT during the builds: exit 143 / 130, every
/// destination as it was, and no staging left behind (the run cleans up
/// on its way out; only SIGKILL leaves staging for the next run).
#[test]
fn sigterm_and_sigint_leave_no_staging() {
    testbed();
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let t = Test::new()
            .kdl(
                "target \"x\" {\n    platforms \"linux/amd64\"\n    output \"tar\" dest=\"out/x.tar\"\n    output \"local\" dest=\"out/x\"\n}\ngroup \"default\" { targets \"x\"; }\n",
            )
            .file(
                "Dockerfile",
                &format!("FROM {BUSYBOX}\nRUN echo {} > /n && sleep 60\n", nonce()),
            )
            .file("out/x/user-file", "mine\n")
            .file("out/x.tar", "old\n");
        let out = t.path().join("out");
        let before = tree(&out);
        let child = Command::new(env!("CARGO_BIN_EXE_mybake"))
            .args(["build", "--progress", "plain"])
            .current_dir(t.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", t.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while staging_left(&out).len() < 2 || staging_left(&out.join("x")).len() < 2 {
            assert!(std::time::Instant::now() < deadline, "no staging appeared");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // Let the solve start (the staging exists before the builder is
        // contacted).
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "signal {sig}:\n{stderr}");
        assert_eq!(staging_left(&out), Vec::<String>::new(), "signal {sig}");
        assert_eq!(
            staging_left(&out.join("x")),
            Vec::<String>::new(),
            "signal {sig}"
        );
        assert_eq!(tree(&out), before, "signal {sig}: out/ changed");
    }
}
