//! `mybake.lock`: the digests of every external image a build uses.
//!
//! [`collect`] finds the images (each Dockerfile's external `FROM`,
//! `COPY --from=IMAGE`, `RUN --mount=from=IMAGE`, `# syntax=`, through
//! [`crate::dockerfile`], and every `docker-image://` context); [`resolve`]
//! asks the registry for their index digest and each platform's manifest
//! digest; [`LockFile`] reads and writes the file (KDL, sorted, written
//! atomically); [`Pins`] turns a lock into what each solve request gets
//! (`build --locked`, applied by [`crate::repro::apply`]).
//!
//! ```kdl
//! version 1
//! image "localhost:5000/busybox:latest" digest="sha256:…" {
//!     platform "linux/amd64" digest="sha256:…"
//!     platform "linux/arm64" digest="sha256:…"
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::attrs::A;
use crate::convert::kdl_out::q;
use crate::diag::Diag;
use crate::dockerfile::{self, ImageKind};
use crate::resolve::{Resolved, Target};
use crate::source::Span;
use crate::value::Value;

/// The lock file's name, next to the first build file.
pub const FILE_NAME: &str = "mybake.lock";

/// The format version written and read.
pub const VERSION: u32 = 1;

/// One pinned image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The digest the reference resolved to (an index, or a manifest for a
    /// single-platform image).
    pub digest: String,
    /// Platform (`os/arch[/variant]`) → image manifest digest, sorted.
    pub platforms: BTreeMap<String, String>,
}

/// The lock file: normalized reference → pin, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockFile {
    pub images: BTreeMap<String, Pin>,
}

#[derive(knuffel::Decode, Debug)]
struct DocVersion {
    #[knuffel(argument)]
    version: u32,
}

#[derive(knuffel::Decode, Debug)]
struct DocPlatform {
    #[knuffel(argument)]
    platform: String,
    #[knuffel(property)]
    digest: String,
}

#[derive(knuffel::Decode, Debug)]
struct DocImage {
    #[knuffel(argument)]
    reference: String,
    #[knuffel(property)]
    digest: String,
    #[knuffel(children(name = "platform"))]
    platforms: Vec<DocPlatform>,
}

#[derive(knuffel::Decode, Debug)]
struct Doc {
    #[knuffel(child)]
    version: DocVersion,
    #[knuffel(children(name = "image"))]
    images: Vec<DocImage>,
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl LockFile {
    /// Parses the text of a lock file; `name` is used in messages.
    pub fn parse(name: &str, text: &str) -> Result<LockFile, String> {
        let doc: Doc = knuffel::parse(name, text).map_err(|e| {
            let report = miette::Report::new(e);
            format!("{name}: invalid lock file: {report:?}")
        })?;
        if doc.version.version != VERSION {
            return Err(format!(
                "{name}: lock file version {} (this mybake reads version {VERSION}); run `mybake lock --update`",
                doc.version.version
            ));
        }
        let mut images = BTreeMap::new();
        for i in doc.images {
            let bad = |d: &str| format!("{name}: image `{}`: invalid digest `{d}`", i.reference);
            if !valid_digest(&i.digest) {
                return Err(bad(&i.digest));
            }
            let mut platforms = BTreeMap::new();
            for p in &i.platforms {
                if !valid_digest(&p.digest) {
                    return Err(bad(&p.digest));
                }
                platforms.insert(p.platform.clone(), p.digest.clone());
            }
            let key = normalize(&i.reference)
                .ok_or_else(|| format!("{name}: invalid image reference `{}`", i.reference))?;
            if images
                .insert(
                    key,
                    Pin {
                        digest: i.digest.clone(),
                        platforms,
                    },
                )
                .is_some()
            {
                return Err(format!("{name}: image `{}` is listed twice", i.reference));
            }
        }
        Ok(LockFile { images })
    }

    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<LockFile>, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => LockFile::parse(&path.display().to_string(), &t).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The file's text: stable (sorted) order.
    pub fn to_kdl(&self) -> String {
        let mut s = String::from(
            "// Written by `mybake lock`; commit it. `mybake build --locked` builds from\n\
             // these digests; `mybake lock --update [IMAGE...]` refreshes them.\n",
        );
        s.push_str(&format!("version {VERSION}\n"));
        for (r, p) in &self.images {
            s.push_str(&format!("image {} digest={}", q(r), q(&p.digest)));
            if p.platforms.is_empty() {
                s.push('\n');
                continue;
            }
            s.push_str(" {\n");
            for (plat, d) in &p.platforms {
                s.push_str(&format!("    platform {} digest={}\n", q(plat), q(d)));
            }
            s.push_str("}\n");
        }
        s
    }

    /// Writes atomically: a temporary file in the same directory, renamed.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        crate::files::write_atomic(path, ".mybake.lock.", self.to_kdl().as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A reference in full form: `docker.io/library/busybox:latest`,
/// `localhost:5000/app:1`, `r/app@sha256:…` (a tag is added only when there
/// is neither tag nor digest). `None` when it is not a reference (by the
/// one reference parser, [`crate::oci::reference`]).
pub fn normalize(reference: &str) -> Option<String> {
    let r = crate::oci::reference::parse(reference.trim()).ok()?;
    let mut out = r.normalized_name();
    match (r.tag, r.digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        _ => {}
    }
    if let Some(d) = r.digest {
        out.push('@');
        out.push_str(d);
    }
    Some(out)
}

/// The name BuildKit's Dockerfile frontend looks a `FROM` image up by
/// among the named contexts: the familiar form without `:latest`
/// (`docker.io/library/busybox:latest` → `busybox`).
pub fn familiar(normalized: &str) -> String {
    let s = normalized.strip_prefix("docker.io/").unwrap_or(normalized);
    let s = s
        .strip_prefix("library/")
        .filter(|r| !r.contains('/'))
        .unwrap_or(s);
    s.strip_suffix(":latest").unwrap_or(s).to_string()
}

/// Where a build uses an external image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub target: String,
    pub kind: UseKind,
    /// Where: `Dockerfile:3`, `contexts.toolbox`.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UseKind {
    /// `FROM`, `COPY --from`, `RUN --mount=from=`: pinned as the named
    /// context of [`familiar`] name.
    Dockerfile,
    /// `# syntax=`: pinned through `BUILDKIT_SYNTAX`.
    Syntax,
    /// A `docker-image://` context of this name.
    Context(String),
}

/// Normalized reference → where it is used, sorted.
pub type Uses = BTreeMap<String, Vec<Use>>;

/// The external images of `targets` (indexes into `r.targets`) and where
/// each is used. Errors (an unreadable or invalid Dockerfile, an invalid
/// reference) are all returned, each naming its target and pointing at the
/// attribute in the build file.
pub fn collect(r: &Resolved, targets: &[usize]) -> Result<Uses, Vec<Diag>> {
    let mut uses: Uses = BTreeMap::new();
    let mut errors = Vec::new();
    for &i in targets {
        let t = &r.targets[i];
        match target_uses(t, &r.local_platform) {
            Ok(list) => {
                for (reference, u) in list {
                    let v = uses.entry(reference).or_default();
                    if !v.contains(&u) {
                        v.push(u);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(uses)
    } else {
        Err(errors)
    }
}

/// Where in the build file `t`'s Dockerfile is set (the target's name when
/// nowhere).
fn dockerfile_span(t: &Target) -> Span {
    t.str(A::DockerfileInline)
        .or_else(|| t.str(A::Dockerfile))
        .map(|s| s.span)
        .filter(|s| !s.is_none())
        .unwrap_or(t.name.span)
}

fn located(t: &Target, span: Span, message: String) -> Diag {
    let span = if span.is_none() { t.name.span } else { span };
    Diag::new("mybake::lock::image", message).label(span, "this Dockerfile")
}

/// The Dockerfile of `t`: (text, display name).
fn dockerfile_text(t: &Target) -> Result<(String, String), Diag> {
    if let Some(text) = t.str(A::DockerfileInline) {
        return Ok((text.v.clone(), "dockerfile-inline".into()));
    }
    let df = t
        .str(A::Dockerfile)
        .map(|s| s.v.clone())
        .unwrap_or_else(|| "Dockerfile".into());
    let path: PathBuf = crate::load::absolute(&t.context_dir(), Path::new(&df));
    std::fs::read_to_string(&path)
        .map(|text| (text, path.display().to_string()))
        .map_err(|e| {
            located(
                t,
                dockerfile_span(t),
                format!("target `{}`: {}: {e}", t.name.v, path.display()),
            )
        })
}

/// The external images one target uses, for all its platforms.
fn target_uses(t: &Target, build_platform: &str) -> Result<Vec<(String, Use)>, Diag> {
    let name = &t.name.v;
    let mut out = Vec::new();
    let mut context_names: BTreeSet<String> = BTreeSet::new();
    if let Some(Value::Map(m)) = t.get(A::Contexts) {
        for (ctx, e) in m {
            context_names.insert(ctx.to_string());
            if let Some(image) = e.value.v.strip_prefix("docker-image://") {
                let n = normalize(image).ok_or_else(|| {
                    located(
                        t,
                        e.value.span,
                        format!(
                            "target `{name}`: contexts.{ctx}: invalid image reference `{image}`"
                        ),
                    )
                })?;
                if !n.contains('@') {
                    out.push((
                        n,
                        Use {
                            target: name.clone(),
                            kind: UseKind::Context(ctx.to_string()),
                            at: format!("contexts.{ctx}"),
                        },
                    ));
                }
            }
        }
    }
    let (text, file) = dockerfile_text(t)?;
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    if let Some(Value::Map(m)) = t.get(A::Arg) {
        for (k, e) in m {
            args.insert(k.to_string(), e.value.v.clone());
        }
    }
    let stage = t.str(A::Stage).map(|s| s.v.as_str());
    let mut platforms: Vec<&str> = t.platforms().iter().map(|p| p.v.as_str()).collect();
    if platforms.is_empty() {
        platforms.push(build_platform);
    }
    for p in platforms {
        let mut a = args.clone();
        let (os, rest) = p.split_once('/').unwrap_or((p, ""));
        let (arch, variant) = rest.split_once('/').unwrap_or((rest, ""));
        for (k, v) in [
            ("TARGETPLATFORM", p),
            ("TARGETOS", os),
            ("TARGETARCH", arch),
            ("TARGETVARIANT", variant),
            ("BUILDPLATFORM", build_platform),
        ] {
            a.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
        let images = dockerfile::external_images(&text, &a, stage).map_err(|e| {
            located(
                t,
                dockerfile_span(t),
                format!("target `{name}`: {file}:{}: {}", e.line, e.message),
            )
        })?;
        for img in images {
            let n = normalize(&img.image).ok_or_else(|| {
                located(
                    t,
                    dockerfile_span(t),
                    format!(
                        "target `{name}`: {file}:{}: invalid image reference `{}`",
                        img.line, img.image
                    ),
                )
            })?;
            // A name the target's `contexts` defines is not an image.
            if img.kind != ImageKind::Syntax
                && (context_names.contains(&img.image) || context_names.contains(&familiar(&n)))
            {
                continue;
            }
            if n.contains('@') {
                continue; // already pinned by digest
            }
            let kind = if img.kind == ImageKind::Syntax {
                UseKind::Syntax
            } else {
                UseKind::Dockerfile
            };
            let u = Use {
                target: name.clone(),
                kind,
                at: format!("{file}:{}", img.line),
            };
            if !out.iter().any(|(r, x)| *r == n && *x == u) {
                out.push((n, u));
            }
        }
    }
    Ok(out)
}

/// Images of `uses` the lock has no pin for, as messages.
pub fn missing(lock: &LockFile, uses: &Uses) -> Vec<String> {
    uses.iter()
        .filter(|(r, _)| !lock.images.contains_key(*r))
        .map(|(r, u)| {
            let at: Vec<String> = u
                .iter()
                .map(|u| format!("target `{}` at {}", u.target, u.at))
                .collect();
            format!("{r} (used by {})", at.join(", "))
        })
        .collect()
}

/// What `--locked` adds to each target's requests: target name → frontend
/// attributes.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    targets: HashMap<String, Vec<(String, String)>>,
}

impl Pins {
    /// The pins of `uses` from `lock` (every use must be in the lock: see
    /// [`missing`]).
    pub fn new(lock: &LockFile, uses: &Uses) -> Pins {
        let mut targets: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (r, list) in uses {
            let Some(pin) = lock.images.get(r) else {
                continue;
            };
            let pinned = format!("{r}@{}", pin.digest);
            for u in list {
                let (k, v) = match &u.kind {
                    UseKind::Dockerfile => (
                        format!("context:{}", familiar(r)),
                        format!("docker-image://{pinned}"),
                    ),
                    UseKind::Context(c) => {
                        (format!("context:{c}"), format!("docker-image://{pinned}"))
                    }
                    UseKind::Syntax => ("build-arg:BUILDKIT_SYNTAX".into(), pinned.clone()),
                };
                let e = targets.entry(u.target.clone()).or_default();
                if !e.iter().any(|(x, _)| *x == k) {
                    e.push((k, v));
                }
            }
        }
        for v in targets.values_mut() {
            v.sort();
        }
        Pins { targets }
    }

    /// Frontend attributes for the requests of `t`.
    pub fn frontend_attrs(&self, t: &Target) -> Vec<(String, String)> {
        self.targets.get(&t.name.v).cloned().unwrap_or_default()
    }
}

/// Resolves `reference` (normalized) to its pin through the registry.
pub async fn resolve(
    client: &crate::publish::registry::RegistryClient,
    reference: &str,
) -> Result<Pin, String> {
    use crate::publish::registry::{at_digest, parse_reference};
    let r = parse_reference(reference).map_err(|e| e.to_string())?;
    let m = client.get_manifest(&r).await.map_err(|e| e.to_string())?;
    #[derive(serde::Deserialize)]
    struct Plat {
        os: String,
        architecture: String,
        #[serde(default)]
        variant: String,
    }
    #[derive(serde::Deserialize)]
    struct Desc {
        digest: String,
        #[serde(default)]
        size: i64,
        platform: Option<Plat>,
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        manifests: Option<Vec<Desc>>,
        config: Option<Desc>,
    }
    let doc: Doc = serde_json::from_slice(&m.bytes)
        .map_err(|e| format!("{reference}: invalid manifest: {e}"))?;
    let fmt = |p: &Plat| {
        let mut s = format!("{}/{}", p.os, p.architecture);
        if !p.variant.is_empty() {
            s.push('/');
            s.push_str(&p.variant);
        }
        s
    };
    let mut platforms = BTreeMap::new();
    if let Some(list) = doc.manifests {
        for d in list {
            if let Some(p) = &d.platform {
                if p.os == "unknown" {
                    continue; // attestation manifests
                }
                platforms.entry(fmt(p)).or_insert(d.digest);
            }
        }
    } else if let Some(c) = doc.config {
        let blob = client
            .get_blob(&at_digest(&r, &m.digest), &c.digest, c.size, 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let p: Plat = serde_json::from_slice(&blob)
            .map_err(|e| format!("{reference}: invalid image config: {e}"))?;
        platforms.insert(fmt(&p), m.digest.clone());
    }
    Ok(Pin {
        digest: m.digest,
        platforms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_references() {
        let n = |s| normalize(s).unwrap();
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("docker.io/busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(n("user/app"), "docker.io/user/app:latest");
        assert_eq!(n("localhost:5000/busybox"), "localhost:5000/busybox:latest");
        assert_eq!(n("r.io/a/b:1@sha256:abababababababababababababababababababababababababababababababab"), "r.io/a/b:1@sha256:abababababababababababababababababababababababababababababababab");
        assert_eq!(
            n("r.io/a/b@sha256:abababababababababababababababababababababababababababababababab"),
            "r.io/a/b@sha256:abababababababababababababababababababababababababababababababab"
        );
        assert_eq!(normalize("Busybox"), None);
        assert_eq!(normalize("a b"), None);
        assert_eq!(familiar(&n("busybox")), "busybox");
        assert_eq!(familiar(&n("busybox:1.36")), "busybox:1.36");
        assert_eq!(familiar(&n("user/app")), "user/app");
        assert_eq!(
            familiar(&n("localhost:5000/busybox:latest")),
            "localhost:5000/busybox"
        );
    }

    #[test]
    fn lock_file_round_trip_is_stable() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let mut lock = LockFile::default();
        lock.images.insert(
            "localhost:5000/z:1".into(),
            Pin {
                digest: d('a'),
                platforms: [
                    ("linux/arm64".to_string(), d('b')),
                    ("linux/amd64".to_string(), d('c')),
                ]
                .into_iter()
                .collect(),
            },
        );
        lock.images.insert(
            "docker.io/library/alpine:3".into(),
            Pin {
                digest: d('d'),
                platforms: BTreeMap::new(),
            },
        );
        let text = lock.to_kdl();
        assert!(text.find("alpine").unwrap() < text.find("localhost:5000/z").unwrap());
        assert!(text.find("linux/amd64").unwrap() < text.find("linux/arm64").unwrap());
        let back = LockFile::parse("mybake.lock", &text).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.to_kdl(), text);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        assert_eq!(LockFile::read(&p).unwrap(), None);
        lock.write(&p).unwrap();
        assert_eq!(LockFile::read(&p).unwrap(), Some(lock));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn invalid_lock_files() {
        let e = LockFile::parse("l", "version 2\n").unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let e = LockFile::parse("l", "version 1\nimage \"a\" digest=\"md5:x\"\n").unwrap_err();
        assert!(e.contains("invalid digest"), "{e}");
        let e = LockFile::parse("l", "image \"a\" digest=\"x\"\n").unwrap_err();
        assert!(e.contains("invalid lock file"), "{e}");
    }
}
