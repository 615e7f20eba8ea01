//! Reproducible releases against the real test bed: `SOURCE_DATE_EPOCH`
//! gives identical index digests for two cold builds (and different ones
//! for another epoch); `mybake lock` pins a base image, `build --locked`
//! keeps building from the pin after the tag moved, `lock --update` picks
//! up the new digest, and a missing or stale lock fails with exit 2.

use crate::common;

use std::path::{Path, PathBuf};

use common::monorepo::{cold_build, mybake_in, Cold, TARGETS};
use common::testbed::*;
use common::Test;

#[test]
fn same_epoch_gives_identical_digests_and_another_epoch_does_not() {
    testbed();
    let one = cold_build(
        &unique_repo("epoch13-a"),
        &["--source-date-epoch", "1700000000"],
        &[],
        Cold::NoCache,
    )
    .digests;
    // Same epoch from the environment, another repository, cold again.
    let two = cold_build(
        &unique_repo("epoch13-b"),
        &[],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
        Cold::NoCache,
    )
    .digests;
    assert_eq!(one, two, "same sources and epoch, different digests");
    let three = cold_build(
        &unique_repo("epoch13-c"),
        &["--source-date-epoch", "1700000999"],
        &[],
        Cold::NoCache,
    )
    .digests;
    for t in TARGETS {
        assert!(!one[t].trim().is_empty());
        assert_ne!(
            one[t], three[t],
            "{t}: another epoch gave the same index digest"
        );
    }
}

#[test]
fn invalid_epochs_are_refused_before_building() {
    let t = Test::new().kdl("target \"app\" {\n    dockerfile-inline \"FROM scratch\"\n}\n");
    let o = t
        .args(&["build", "app", "--source-date-epoch", "soon"])
        .expect(2);
    assert!(
        o.stderr.contains("--source-date-epoch soon"),
        "{}",
        o.stderr
    );
    let t = Test::new()
        .kdl("target \"app\" {\n    dockerfile-inline \"FROM scratch\"\n}\n")
        .args(&["build", "app", "--source-date-epoch", "git"]);
    let o = t.expect(2);
    assert!(o.stderr.contains("not in a git repository"), "{}", o.stderr);
    let o = Test::new()
        .kdl("target \"app\" {\n    dockerfile-inline \"FROM scratch\"\n}\n")
        .env("SOURCE_DATE_EPOCH", "x")
        .args(&["build", "app"])
        .expect(2);
    assert!(o.stderr.contains("SOURCE_DATE_EPOCH x"), "{}", o.stderr);
}

/// The content of `base-version` in what `app` exported to `out/`.
fn seen_version(dir: &Path) -> String {
    fn find(p: &Path) -> Option<PathBuf> {
        for e in std::fs::read_dir(p).ok()?.flatten() {
            let path = e.path();
            if path.file_name().is_some_and(|n| n == "base-version") {
                return Some(path);
            }
            if path.is_dir() && !path.is_symlink() {
                if let Some(f) = find(&path) {
                    return Some(f);
                }
            }
        }
        None
    }
    let f = find(&dir.join("out")).expect("out/**/base-version exported");
    std::fs::read_to_string(f).expect("read").trim().to_string()
}

#[test]
fn locked_builds_keep_the_pinned_base_after_its_tag_moves() {
    testbed();
    let base = unique_repo("epoch13-base");
    let kdl = format!(
        r#"variable "V" default="one"
target "seed" {{
    platforms "linux/amd64"
    arg "V" "${{V}}"
    dockerfile-inline "FROM {BUSYBOX}\nARG V\nRUN echo $V > /base-version\n"
    tags "{base}:1"
}}
target "app" {{
    platforms "linux/amd64"
    dockerfile "Dockerfile"
    output "local" dest="out"
}}
"#
    );
    let t = Test::new()
        .kdl(&kdl)
        .file("Dockerfile", &format!("FROM {base}:1\nCOPY Dockerfile /\n"));
    let dir = t.path().to_path_buf();
    let run = |args: &[&str]| mybake_in(&dir, args, &[]);
    let ok = |args: &[&str]| {
        let o = run(args);
        assert_eq!(o.code, 0, "{args:?}:\n{}\n{}", o.stdout, o.stderr);
        o
    };
    // The base tag, first version.
    ok(&["build", "seed", "--push", "--progress", "quiet"]);
    let d1 = tag_digest(&format!("{base}:1"));
    // --locked without a lock file: exit 2, nothing built.
    let o = run(&["build", "app", "--locked"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("mybake.lock does not exist"),
        "{}",
        o.stderr
    );
    assert!(!dir.join("out").exists());
    // Lock: the pin is the tag's current digest, with its platform.
    ok(&["lock", "app"]);
    let lock = std::fs::read_to_string(dir.join("mybake.lock")).expect("lock written");
    assert!(
        lock.contains(&format!("image \"{base}:1\" digest=\"{d1}\"")),
        "{lock}"
    );
    assert!(lock.contains("platform \"linux/amd64\""), "{lock}");
    // Locking again changes nothing.
    let o = ok(&["lock", "app"]);
    assert!(o.stderr.contains("up to date"), "{}", o.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("mybake.lock")).unwrap(),
        lock
    );
    // Move the tag: a different image under the same tag.
    ok(&[
        "--var",
        "V=two",
        "build",
        "seed",
        "--push",
        "--progress",
        "quiet",
    ]);
    let d2 = tag_digest(&format!("{base}:1"));
    assert_ne!(d1, d2, "the tag did not move");
    // --locked still builds from the pinned digest...
    ok(&["build", "app", "--locked", "--progress", "quiet"]);
    assert_eq!(seen_version(&dir), "one");
    // ... while an unlocked build follows the tag.
    ok(&["build", "app", "--progress", "quiet"]);
    assert_eq!(seen_version(&dir), "two");
    // --update of an image the build does not use: exit 2, lock unchanged.
    let o = run(&["lock", "app", "--update", "localhost:5000/not-used:1"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("not used by the build"), "{}", o.stderr);
    // lock --update IMAGE picks up the new digest.
    let o = ok(&["lock", "app", "--update", &format!("{base}:1")]);
    assert!(o.stderr.contains("updated"), "{}", o.stderr);
    let lock2 = std::fs::read_to_string(dir.join("mybake.lock")).unwrap();
    assert!(lock2.contains(&d2) && !lock2.contains(&d1), "{lock2}");
    ok(&["build", "app", "--locked", "--progress", "quiet"]);
    assert_eq!(seen_version(&dir), "two");
    // A stale lock: the Dockerfile now also uses an image the lock lacks.
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {base}:1\nCOPY --from={BUSYBOX} /bin/busybox /bb\n"),
    )
    .unwrap();
    let o = run(&["build", "app", "--locked"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("stale")
            && o.stderr.contains(BUSYBOX)
            && o.stderr.contains("Dockerfile:2"),
        "{}",
        o.stderr
    );
    // lock adds it, keeping the existing pin.
    let o = ok(&["lock", "app"]);
    assert!(
        o.stderr.contains(&format!("locked {BUSYBOX}")),
        "{}",
        o.stderr
    );
    let lock3 = std::fs::read_to_string(dir.join("mybake.lock")).unwrap();
    assert!(lock3.contains(&d2) && lock3.contains(BUSYBOX), "{lock3}");
    ok(&["build", "app", "--locked", "--progress", "quiet"]);
}

#[test]
fn lock_pins_docker_image_contexts_and_ignores_stage_and_context_names() {
    testbed();
    let t = Test::new()
        .kdl(&format!(
            r#"target "base" {{
    dockerfile-inline "FROM scratch\nCOPY mybake.kdl /\n"
}}
target "app" {{
    contexts {{
        base "target:base"
        toolbox "docker-image://{BUSYBOX}"
    }}
    dockerfile-inline "FROM {BUSYBOX} AS b\nFROM base\nCOPY --from=toolbox /bin/busybox /bb\nCOPY --from=b /bin/sh /sh\n"
}}
"#
        ))
        .args(&["lock", "app"]);
    t.expect(0);
    let lock = std::fs::read_to_string(t.path().join("mybake.lock")).unwrap();
    let images: Vec<&str> = lock.lines().filter(|l| l.starts_with("image ")).collect();
    assert_eq!(images.len(), 1, "{lock}");
    assert!(
        images[0].starts_with(&format!("image \"{BUSYBOX}\"")),
        "{lock}"
    );
    assert!(lock.contains("platform \"linux/arm64\""), "{lock}");
    // An invalid Dockerfile is a located error, exit 2, nothing written.
    let t = Test::new()
        .kdl("target \"app\" {\n    dockerfile-inline \"RUN true\\nFROM\\n\"\n}\n")
        .args(&["lock", "app"]);
    let o = t.expect(2);
    assert!(o.stderr.contains("dockerfile-inline:1"), "{}", o.stderr);
    assert!(!t.path().join("mybake.lock").exists());
}

#[test]
fn committed_release_lock_is_in_the_written_form() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/release/mybake.lock");
    let text = std::fs::read_to_string(&path).expect("examples/release/mybake.lock");
    let lock = mybake::lock::LockFile::parse("mybake.lock", &text).expect("parses");
    assert!(lock.images.contains_key(BUSYBOX), "{text}");
    assert_eq!(lock.to_kdl(), text, "not in the form `mybake lock` writes");
}
