//! Cold builds after `docker builder prune -af`, as issue 13 asks: two
//! cold builds of `examples/monorepo` with one `SOURCE_DATE_EPOCH`, into
//! two repositories, give identical index digests, and another epoch gives
//! other digests. Without `--no-cache`, so the dependencies are handed to
//! their dependents as LLB (the default path), where the `it` binary's
//! reproducibility test, which must not prune, covers the registry path.
//!
//! A test binary of its own: cargo runs test binaries one after another,
//! so emptying the daemon's build cache here cannot pull it from under
//! another test. Its one test runs the builds in sequence.

#[path = "it/common/mod.rs"]
mod common;

use common::monorepo::{cold_build, Cold, ColdBuild, TARGETS};
use common::testbed::*;

const ATTESTATIONS_OFF: (&str, &str) = ("MYBAKE_NO_DEFAULT_ATTESTATIONS", "1");

/// The base's `RUN` step ran (it was not served from the cache), and no
/// dependent read base or lib back from the registry.
fn assert_cold_and_in_memory(b: &ColdBuild, ns: &str) {
    let err = &b.out.stderr;
    let base_run = |state: &str| {
        err.lines().any(|l| {
            l.starts_with("[base@linux/amd64]") && l.contains(state) && l.contains("RUN mkdir")
        })
    };
    assert!(base_run("DONE"), "base's RUN step ran:\n{err}");
    assert!(!base_run("CACHED"), "base's RUN step was cached:\n{err}");
    assert!(
        !err.lines().any(|l| l.contains("load metadata for")
            && l.contains(&format!("{ns}/monorepo/"))
            && l.contains("@sha256:")),
        "a dependent read a dependency from the registry:\n{err}"
    );
}

#[test]
fn cold_builds_after_a_prune_are_reproducible() {
    testbed();
    let (a, b, c) = (
        unique_repo("cold13-a"),
        unique_repo("cold13-b"),
        unique_repo("cold13-c"),
    );
    let one = cold_build(
        &a,
        &["--source-date-epoch", "1700000000"],
        &[ATTESTATIONS_OFF],
        Cold::Pruned,
    );
    assert_cold_and_in_memory(&one, &a);
    let two = cold_build(
        &b,
        &[],
        &[("SOURCE_DATE_EPOCH", "1700000000"), ATTESTATIONS_OFF],
        Cold::Pruned,
    );
    assert_cold_and_in_memory(&two, &b);
    for t in TARGETS {
        let digest = one.digests[t].split(' ').next().unwrap_or_default();
        assert!(digest.starts_with("sha256:"), "{t}: {}", one.digests[t]);
    }
    assert_eq!(
        one.digests, two.digests,
        "same sources and epoch, different digests"
    );
    let three = cold_build(
        &c,
        &["--source-date-epoch", "1700000999"],
        &[ATTESTATIONS_OFF],
        Cold::Pruned,
    );
    assert_cold_and_in_memory(&three, &c);
    for t in TARGETS {
        assert_ne!(
            one.digests[t], three.digests[t],
            "{t}: another epoch gave the same index digest"
        );
    }
}
