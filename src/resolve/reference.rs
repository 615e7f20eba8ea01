//! Image references, checked before anything is built: every `tags` entry,
//! every registry `cache-from`/`cache-to` `ref=` and every
//! `docker-image://` context must be a reference the registry side will
//! accept, or the run stops here (exit 2) instead of failing at publish.
//!
//! The parser is [`crate::oci::reference`] (re-exported here).

use super::interp::inner_span;
use super::{Target, Variables};
use crate::attrs::A;
use crate::diag::{Diag, Diagnostics};
use crate::par;
use crate::source::{Sources, Sp};
use crate::value::Value;

pub use crate::oci::reference::*;

/// Where a reference is used, which decides whether a digest is allowed.
#[derive(Debug, Clone, Copy)]
enum Use<'a> {
    Tag,
    CacheFrom,
    CacheTo,
    Context(&'a str),
    /// A `type=registry` cache value (of this attribute) without `ref=`.
    NoRef(A, &'a str),
}

impl Use<'_> {
    fn describe(&self, text: &str) -> String {
        match self {
            Use::Tag => format!("tag `{text}`"),
            Use::CacheFrom => format!("cache-from ref `{text}`"),
            Use::CacheTo => format!("cache-to ref `{text}`"),
            Use::Context(name) => format!("context `{name}` image `{text}`"),
            Use::NoRef(a, value) => format!("{} `{value}`", a.def().name),
        }
    }

    /// `text` as a reference used here: a digest names content that
    /// exists, so it is read from (`cache-from`, contexts), never written
    /// to (tags, `cache-to`).
    fn check(&self, text: &str) -> Result<(), Invalid> {
        if let Use::NoRef(_, value) = self {
            return Err(Invalid::new(
                "a registry cache needs `ref=`".into(),
                0..value.len(),
                "no `ref=`",
            )
            .help("e.g. `type=registry,ref=localhost:5000/cache:app`"));
        }
        let r = parse(text)?;
        if r.digest.is_some() && matches!(self, Use::Tag | Use::CacheTo) {
            let at = text.find('@').unwrap_or(0);
            return Err(Invalid::new(
                "names a digest, which cannot be pushed to".into(),
                at..text.len(),
                "a digest",
            )
            .help("write `name[:tag]`; a digest is only for images that are read"));
        }
        Ok(())
    }
}

/// A reference that is not valid where it is used: the literal it comes
/// from, its offset there, the message, the problem.
type Problem<'a> = (&'a Sp<String>, usize, String, Invalid);

/// Fewer targets than this are checked in one part.
const TARGETS_PER_PART_MIN: usize = 512;

/// The references of `targets` (abstract ones left out) that are not valid.
fn scan(targets: &[Target]) -> Vec<Problem<'_>> {
    let mut problems = Vec::new();
    let mut one = |lit, offset: usize, text: &str, u: Use| {
        if let Err(p) = u.check(text) {
            let message = format!("{}: {}", u.describe(text), p.message);
            problems.push((lit, offset, message, p));
        }
    };
    for t in targets.iter().filter(|t| !t.is_abstract) {
        for tag in t.list(A::Tags) {
            one(tag, 0, &tag.v, Use::Tag);
        }
        for (a, u) in [(A::CacheFrom, Use::CacheFrom), (A::CacheTo, Use::CacheTo)] {
            for entry in t.list(a) {
                match cache_refs(&entry.v) {
                    None => {}
                    Some(refs) if refs.is_empty() => one(entry, 0, "", Use::NoRef(a, &entry.v)),
                    Some(refs) => {
                        for (offset, r) in refs {
                            one(entry, offset, &r, u);
                        }
                    }
                }
            }
        }
        if let Some(Value::Map(m)) = t.get(A::Contexts) {
            for (name, e) in m {
                if let Some(r) = e.value.v.strip_prefix(DOCKER_IMAGE) {
                    one(&e.value, DOCKER_IMAGE.len(), r, Use::Context(name));
                }
            }
        }
    }
    problems
}

/// Check every reference of every concrete target but abstract ones
/// (their values are checked in the targets that inherit them). `diags`
/// holds what the run reported so far: a value that a reported problem may
/// have emptied or left uninterpolated is not reported again (it would only
/// echo that problem).
pub(super) fn check(
    targets: &[Target],
    variables: &Variables,
    sources: &Sources,
    diags: &mut Diagnostics,
) {
    // Targets in parts at once (a reference is cheap to check, but there
    // are a few per target and thousands of targets).
    let parts = par::ranges(targets.len(), par::parts(), TARGETS_PER_PART_MIN);
    let problems: Vec<Problem> = par::map(parts, |range| scan(&targets[range]))
        .into_iter()
        .flatten()
        .collect();
    if problems.is_empty() {
        return;
    }
    let failed: Vec<&str> = variables
        .list
        .iter()
        .filter(|v| v.failed)
        .map(|v| v.name.v.as_str())
        .collect();
    let had_errors = !diags.is_empty();
    for (lit, offset, message, problem) in problems {
        if had_errors && lit.v.contains("${") {
            continue;
        }
        if !failed.is_empty() {
            let src = sources.snippet(lit.span);
            if src.contains('$') && failed.iter().any(|n| src.contains(n)) {
                continue;
            }
        }
        let span = inner_span(
            sources,
            lit,
            offset + problem.at.start,
            problem.at.end - problem.at.start,
        );
        diags.push(
            Diag::new("mybake::resolve::bad-reference", message)
                .label(span, problem.label)
                .help_opt(problem.help),
        );
    }
}

const DOCKER_IMAGE: &str = "docker-image://";

/// The registry references of one `cache-from`/`cache-to` value, with their
/// offsets in it ([`super::cache::CacheSpec`], the parser the solve request
/// uses too). `None`: not a registry cache; empty: a registry cache without
/// `ref=`.
fn cache_refs(v: &str) -> Option<Vec<(usize, String)>> {
    let spec = super::cache::CacheSpec::parse(v);
    spec.registry_refs()
        .map(|refs| refs.into_iter().map(|a| (a.at, a.value.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_values() {
        let refs = |v| cache_refs(v);
        let one = |at: usize, r: &str| Some(vec![(at, r.to_string())]);
        assert_eq!(refs("user/app:cache"), one(0, "user/app:cache"));
        assert_eq!(refs("type=registry,ref=r/c:1,mode=max"), one(18, "r/c:1"));
        assert_eq!(refs("ref= r/c , type = registry"), one(5, "r/c"));
        assert_eq!(refs("type=registry,mode=max"), Some(vec![]));
        assert_eq!(refs("type=inline"), None);
        assert_eq!(refs("type=local,src=/tmp/C D"), None);
        assert_eq!(refs("type=gha,ref=Not Checked"), None);
    }

    fn messages(text: &str, sets: &[&str], vars: &[(&str, &str)]) -> Vec<String> {
        match super::super::tests::run(text, sets, vars) {
            Ok(_) => Vec::new(),
            Err(d) => d.items.into_iter().map(|d| d.message).collect(),
        }
    }

    #[test]
    fn every_place_is_checked_all_at_once() {
        let m = messages(
            r#"
target "a" {
    tags "ok/a:1" "Foo/bar:1" "x:tag with space"
    cache-from "type=registry,ref=Cache/a" "user/app cache" "type=local,src=/x"
    cache-to "type=registry,mode=max" "type=registry,ref=r/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    contexts { base "docker-image://alpine:" ; ok "docker-image://alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; dir "./x y" }
}
"#,
            &[],
            &[],
        );
        let want = [
            "tag `Foo/bar:1`: repository name must be lowercase: `Foo/bar`",
            "tag `x:tag with space`: invalid tag `tag with space`: a space is not allowed",
            "cache-from ref `Cache/a`: repository name must be lowercase: `Cache/a`",
            "cache-from ref `user/app cache`: invalid repository name `user/app cache`: a space is not allowed",
            "cache-to `type=registry,mode=max`: a registry cache needs `ref=`",
            "cache-to ref `r/c@sha256:",
            "context `base` image `alpine:`: empty tag after `:`",
        ];
        for w in want {
            assert!(m.iter().any(|m| m.starts_with(w)), "{w:?} not in {m:#?}");
        }
        assert_eq!(m.len(), want.len(), "{m:#?}");
    }

    #[test]
    fn set_values_are_checked() {
        let m = messages("target \"a\" {\n}\n", &["a.tags=Up:1"], &[]);
        assert_eq!(m, ["tag `Up:1`: repository name must be lowercase: `Up`"]);
    }

    #[test]
    fn abstract_targets_are_checked_where_inherited() {
        // `_base`'s own tag would be `r/_base` (not a repository name), but
        // `_base` is never built as such.
        let ok = "target \"_base\" {\n tags \"r/${MYBAKE_TARGET}:1\"\n}\ntarget \"app\" {\n inherits \"_base\"\n}\n";
        assert!(messages(ok, &[], &[]).is_empty());
        let bad = "target \"_base\" {\n tags \"r/${MYBAKE_TARGET}:1\"\n}\ntarget \"App\" {\n inherits \"_base\"\n}\ntarget \"Web\" {\n inherits \"_base\"\n}\n";
        assert_eq!(
            messages(bad, &[], &[]),
            [
                "tag `r/App:1`: repository name must be lowercase: `r/App`",
                "tag `r/Web:1`: repository name must be lowercase: `r/Web`"
            ]
        );
    }

    #[test]
    fn earlier_problems_are_not_echoed() {
        // A rejected variable interpolates to nothing: `r/a:` is its echo.
        let m = messages(
            "variable \"N\" type=\"int\" default=1\ntarget \"a\" {\n tags \"r/a:${N}\" \"Bad\"\n contexts { c \"docker-image://${NOPE}\"; }\n}\n",
            &[],
            &[("N", "x")],
        );
        assert_eq!(m.len(), 3, "{m:#?}");
        assert!(m[0].contains("is not an integer"), "{m:#?}");
        assert!(
            m.iter().any(|m| m.contains("unknown variable `NOPE`")),
            "{m:#?}"
        );
        assert!(m.iter().any(|m| m.starts_with("tag `Bad`")), "{m:#?}");
        // Without the earlier problem the same value is reported.
        let m = messages(
            "target \"a\" {\n tags \"r/a:${N}\"\n}\nvariable \"N\" default=\"\"\n",
            &[],
            &[],
        );
        assert_eq!(m, ["tag `r/a:`: empty tag after `:`"]);
    }
}
