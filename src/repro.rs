//! Reproducible builds: `SOURCE_DATE_EPOCH` (`--source-date-epoch N|git`)
//! and the pins of `mybake.lock` (`--locked`), applied to each solve
//! request in one place ([`apply`]).

use std::path::Path;

use mybake_buildkit::SolveRequest;

use crate::lock::Pins;
use crate::resolve::Target;

/// The epoch of a run: `--source-date-epoch` (a number of seconds, or
/// `git`: the commit time of HEAD of the repository holding `dir`), else
/// `$SOURCE_DATE_EPOCH`, else none.
pub fn epoch(flag: Option<&str>, env: Option<&str>, dir: &Path) -> Result<Option<u64>, String> {
    match (flag, env) {
        (Some(f), _) => parse_epoch(f, dir, "--source-date-epoch").map(Some),
        (None, Some(e)) if !e.is_empty() => parse_epoch(e, dir, "SOURCE_DATE_EPOCH").map(Some),
        _ => Ok(None),
    }
}

fn parse_epoch(text: &str, dir: &Path, what: &str) -> Result<u64, String> {
    if text == "git" {
        return git_epoch(dir).map_err(|e| format!("{what} git: {e}"));
    }
    text.parse::<u64>().map_err(|_| {
        format!("{what} {text}: expected a number of seconds since 1970-01-01 UTC, or `git`")
    })
}

/// The committer time of HEAD of the git repository holding `dir`.
pub fn git_epoch(dir: &Path) -> Result<u64, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct", "HEAD"])
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} is not in a git repository with a commit ({})",
            dir.display(),
            err.trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .map_err(|_| format!("unexpected `git log` output `{}`", text.trim()))
}

/// The oldest BuildKit that rewrites layer timestamps to the epoch
/// (`rewrite-timestamp`).
pub const MIN_BUILDKIT: (u64, u64) = (0, 13);

/// Whether a BuildKit version string (`v0.13.2`, `0.13.0-rc1`) is at least
/// [`MIN_BUILDKIT`]; `None` when it cannot be read (Docker Engine's
/// embedded BuildKit reports `v0.0.0+unknown`).
pub fn supports_epoch(version: &str) -> Option<bool> {
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split(['.', '-', '+']);
    let major: u64 = parts.next()?.parse().ok()?;
    let minor: u64 = parts.next()?.parse().ok()?;
    if (major, minor) == (0, 0) {
        return None;
    }
    Some((major, minor) >= MIN_BUILDKIT)
}

/// Fails with a clear message when builder `label` runs a BuildKit older
/// than [`MIN_BUILDKIT`] (an unknown version is let through).
pub fn check_builder(label: &str, version: Option<&str>) -> Result<(), String> {
    match version {
        Some(v) if supports_epoch(v) == Some(false) => Err(format!(
            "builder {label} runs BuildKit {v}, which cannot rewrite layer timestamps to SOURCE_DATE_EPOCH \
             (needs BuildKit v{}.{} or later); unset SOURCE_DATE_EPOCH / --source-date-epoch or use a newer builder",
            MIN_BUILDKIT.0, MIN_BUILDKIT.1
        )),
        _ => Ok(()),
    }
}

/// Adds the epoch and the lock's pins to a solve request of `t`.
/// - epoch: the build arg `SOURCE_DATE_EPOCH` (unless the target sets it)
///   and, on image and OCI exporters, `source-date-epoch` with
///   `rewrite-timestamp=true`;
/// - pins: each external image of the target as a named context
///   `context:NAME=docker-image://REF@DIGEST` (as buildx passes them), the
///   `docker-image://` contexts rewritten to their digests, and a pinned
///   `# syntax=` frontend as the `BUILDKIT_SYNTAX` build arg.
pub fn apply(t: &Target, req: &mut SolveRequest, epoch: Option<u64>, pins: Option<&Pins>) {
    if let Some(e) = epoch {
        req.frontend_attrs
            .entry("build-arg:SOURCE_DATE_EPOCH".into())
            .or_insert_with(|| e.to_string());
        for ex in &mut req.exporters {
            if ex.kind == "image" || ex.kind == "oci" || ex.kind == "docker" {
                ex.attrs.insert("source-date-epoch".into(), e.to_string());
                ex.attrs.insert("rewrite-timestamp".into(), "true".into());
            }
        }
    }
    if let Some(pins) = pins {
        for (key, value) in pins.frontend_attrs(t) {
            req.frontend_attrs.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs() {
        let d = Path::new("/");
        assert_eq!(epoch(None, None, d), Ok(None));
        assert_eq!(epoch(None, Some(""), d), Ok(None));
        assert_eq!(epoch(None, Some("42"), d), Ok(Some(42)));
        assert_eq!(epoch(Some("7"), Some("42"), d), Ok(Some(7)));
        let e = epoch(Some("yesterday"), None, d).unwrap_err();
        assert!(e.contains("--source-date-epoch yesterday"), "{e}");
        let e = epoch(None, Some("-1"), d).unwrap_err();
        assert!(e.contains("SOURCE_DATE_EPOCH -1"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = epoch(Some("git"), None, dir.path()).unwrap_err();
        assert!(e.contains("not in a git repository"), "{e}");
    }

    #[test]
    fn versions() {
        assert_eq!(supports_epoch("v0.13.2"), Some(true));
        assert_eq!(supports_epoch("v0.12.5"), Some(false));
        assert_eq!(supports_epoch("0.14.0-rc1"), Some(true));
        assert_eq!(supports_epoch("v1.0.0"), Some(true));
        assert_eq!(supports_epoch("unknown"), None);
        assert_eq!(supports_epoch("v0.0.0+unknown"), None);
        assert!(check_builder("docker", Some("v0.13.2")).is_ok());
        assert!(check_builder("docker", None).is_ok());
        let e = check_builder("old", Some("v0.12.5")).unwrap_err();
        assert!(
            e.contains("old runs BuildKit v0.12.5") && e.contains("v0.13"),
            "{e}"
        );
    }
}
