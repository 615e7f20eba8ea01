//! Input keys: one hash per build node of everything its result is made
//! from, so that `build --push` can tell that a target is unchanged (see
//! [`super::skip`]).
//!
//! A build node's key covers: mybake's version; its platform; the target's
//! attributes that reach the solve (args, labels, annotations, stage,
//! secrets' ids and sources, ssh, network, attestations, no-cache-filter,
//! named contexts; not tags, outputs, caches, `description`); the Dockerfile
//! text; the context files actually sent (the same walk and `.dockerignore`
//! rules as the sender, `<Dockerfile>.dockerignore` first); directory named
//! contexts likewise; the digests of its external base images (each
//! `FROM` that is neither an earlier stage nor a named context, and every
//! `docker-image://` context) as the registry has them now; and the keys of
//! its `target:` dependencies for the same platform.
//!
//! A node whose key cannot be computed (a base that cannot be resolved, a
//! remote context, an unreadable file) has none, and is always built.
//!
//! File contents are hashed once per (size, mtime, ctime, inode, mode):
//! the hashes of each context directory are kept in a small JSON file in
//! the user's cache directory (`$MYBAKE_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/mybake`, else `~/.cache/mybake`), `inputs/` — never in
//! a build context (a cache directory inside one is not used). A file changed within the last 2 seconds is hashed
//! again next time (its mtime may not have moved yet).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use mybake_buildkit::filesync::{parse_ignore_file, FilterOptions, Walker};
use petgraph::graph::NodeIndex;
use sha2::{Digest, Sha256};

use crate::attrs::{A, ATTRS};
use crate::plan::Plan;
use crate::resolve::{Resolved, Target};
use crate::value::Value;

/// Attributes that do not change what a solve produces.
const NOT_INPUTS: &[A] = &[
    A::Description,
    A::Tags,
    A::Output,
    A::CacheFrom,
    A::CacheTo,
    A::NoCache,
    A::Pull,
    // The node's own platform is hashed instead.
    A::Platforms,
];

/// The keys of a run.
#[derive(Debug, Clone, Default)]
pub struct InputKeys {
    /// Build node → key (`None`: cannot be known; always built).
    pub nodes: HashMap<NodeIndex, Option<String>>,
}

impl InputKeys {
    /// A target's key: its build nodes' keys, by platform (`None` when
    /// any is unknown).
    pub fn target_key(&self, plan: &Plan, merge: NodeIndex) -> Option<String> {
        let mut parts: Vec<(String, String)> = Vec::new();
        for n in plan.needs(merge) {
            let key = self.nodes.get(&n).cloned().flatten()?;
            parts.push((plan.node(n).platform().unwrap_or_default().to_owned(), key));
        }
        parts.sort();
        let mut h = Hasher::new("target");
        for (p, k) in parts {
            h.field(&p, k.as_bytes());
        }
        Some(h.finish())
    }
}

/// A length-prefixed field hasher (no two field lists hash alike).
struct Hasher(Sha256);

impl Hasher {
    fn new(kind: &str) -> Hasher {
        let mut h = Hasher(Sha256::new());
        h.field("mybake-input-key", kind.as_bytes());
        h.field("version", env!("CARGO_PKG_VERSION").as_bytes());
        h
    }
    fn field(&mut self, name: &str, value: &[u8]) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
    }
    fn finish(self) -> String {
        format!("sha256:{}", hex(&self.0.finalize()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Dockerfile text of `t` (`None`: unreadable).
pub fn dockerfile_text(t: &Target) -> Option<String> {
    if let Some(text) = t.str(A::DockerfileInline) {
        return Some(text.v.clone());
    }
    std::fs::read_to_string(dockerfile_path(t)).ok()
}

fn dockerfile_path(t: &Target) -> PathBuf {
    let df = t
        .str(A::Dockerfile)
        .map(|s| s.v.clone())
        .unwrap_or_else(|| "Dockerfile".into());
    crate::load::absolute(&t.context_dir(), Path::new(&df))
}

/// The `.dockerignore` patterns the frontend applies to `t`'s context:
/// `<Dockerfile>.dockerignore` next to the Dockerfile, else the context's
/// `.dockerignore`.
fn ignore_patterns(t: &Target) -> Vec<String> {
    let mut candidates = Vec::new();
    if t.str(A::DockerfileInline).is_none() {
        let mut p = dockerfile_path(t).into_os_string();
        p.push(".dockerignore");
        candidates.push(PathBuf::from(p));
    }
    candidates.push(t.context_dir().join(".dockerignore"));
    for c in candidates {
        if let Ok(text) = std::fs::read_to_string(&c) {
            return parse_ignore_file(&text);
        }
    }
    Vec::new()
}

/// The named contexts of `t` and their values.
fn named_contexts(t: &Target) -> Vec<(String, String)> {
    match t.get(A::Contexts) {
        Some(Value::Map(m)) => m
            .iter()
            .map(|(k, e)| (k.clone(), e.value.v.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The directories of `t`'s local named contexts.
pub fn named_context_dirs(t: &Target) -> Vec<PathBuf> {
    named_contexts(t)
        .into_iter()
        .filter(|(_, v)| !v.starts_with("target:") && !v.contains("://"))
        .map(|(_, v)| PathBuf::from(v))
        .collect()
}

/// The external images `t` uses: its Dockerfile's external images
/// ([`crate::dockerfile`]: `FROM`, `COPY --from`, `RUN --mount=from=`,
/// `# syntax=`) that no named context replaces, and its `docker-image://`
/// contexts (`None`: the Dockerfile is unreadable or invalid).
pub fn external_images(t: &Target) -> Option<Vec<String>> {
    let text = dockerfile_text(t)?;
    let contexts = named_contexts(t);
    let args: BTreeMap<String, String> = match t.get(A::Arg) {
        Some(Value::Map(m)) => m
            .iter()
            .map(|(k, e)| (k.clone(), e.value.v.clone()))
            .collect(),
        _ => BTreeMap::new(),
    };
    let stage = t.str(A::Stage).map(|s| s.v.as_str());
    let mut out: Vec<String> = crate::dockerfile::external_images(&text, &args, stage)
        .ok()?
        .into_iter()
        .map(|e| e.image)
        .filter(|img| !contexts.iter().any(|(n, _)| n == img))
        .collect();
    for (_, v) in &contexts {
        if let Some(img) = v.strip_prefix("docker-image://") {
            out.push(img.to_owned());
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// Per-target inputs that are not attributes: (name, value) pairs.
pub type TargetInputs = dyn Fn(&Target) -> Vec<(String, String)> + Sync;

/// Everything the keys need from outside: base image digests (`None`:
/// could not be resolved), the file-hash cache directory.
pub struct KeyContext<'a> {
    /// Image reference → digest.
    pub bases: &'a HashMap<String, Option<String>>,
    /// Where per-context file hashes are kept (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Run-wide inputs that reach every solve but are not target
    /// attributes (`SOURCE_DATE_EPOCH`), as (name, value).
    pub run_inputs: Vec<(String, String)>,
    /// Per-target inputs of the same kind (the `--locked` pins a target's
    /// solves get), as (name, value).
    pub target_inputs: Option<&'a TargetInputs>,
}

/// Computes every build node's key.
pub fn compute(r: &Resolved, plan: &Plan, cx: &KeyContext<'_>) -> InputKeys {
    // Per target (platform-independent): attributes, Dockerfile, contexts,
    // bases. Computed in parallel; the per-platform part follows in plan
    // order (dependencies first).
    let targets = plan.built_targets();
    let parts = crate::par::map(targets.clone(), |i| target_part(&r.targets[i], cx));
    let by_target: HashMap<usize, Option<String>> = targets.into_iter().zip(parts).collect();
    let mut keys = InputKeys::default();
    for &n in &plan.order {
        let node = plan.node(n);
        let Some(platform) = node.platform() else {
            continue;
        };
        let t = &r.targets[node.target];
        let key = (|| {
            let part = by_target.get(&node.target).cloned().flatten()?;
            let mut h = Hasher::new("node");
            h.field("platform", platform.as_bytes());
            h.field("target", part.as_bytes());
            let deps = plan.needs(n);
            for (ctx, dep) in &t.deps {
                let d = deps
                    .iter()
                    .find(|&&d| plan.node(d).is_build() && plan.node(d).target_name == dep.v)?;
                let k = keys.nodes.get(d).cloned().flatten()?;
                h.field(&format!("dep:{ctx}"), k.as_bytes());
            }
            Some(h.finish())
        })();
        keys.nodes.insert(n, key);
    }
    keys
}

/// The platform-independent part of a target's key.
fn target_part(t: &Target, cx: &KeyContext<'_>) -> Option<String> {
    let mut h = Hasher::new("target-part");
    for (k, v) in &cx.run_inputs {
        h.field(&format!("run:{k}"), v.as_bytes());
    }
    if let Some(f) = cx.target_inputs {
        for (k, v) in f(t) {
            h.field(&format!("extra:{k}"), v.as_bytes());
        }
    }
    for (i, def) in ATTRS.iter().enumerate() {
        if NOT_INPUTS.iter().any(|a| a.index() == i) {
            continue;
        }
        let Some(v) = t.attrs.get(i) else { continue };
        // Directory contexts are hashed by content below; their paths
        // are where the files are, not what they are.
        if i == A::Context.index() {
            continue;
        }
        h.field(def.name, canonical(v).as_bytes());
    }
    let text = dockerfile_text(t)?;
    h.field("dockerfile", text.as_bytes());
    let excludes = ignore_patterns(t);
    let ctx = context_hash(&t.context_dir(), excludes, cx.cache_dir.as_deref())?;
    h.field("context", ctx.as_bytes());
    for (name, v) in named_contexts(t) {
        if v.starts_with("target:") {
            continue; // the dependency's key, per platform
        } else if let Some(img) = v.strip_prefix("docker-image://") {
            let d = cx.bases.get(img).cloned().flatten()?;
            h.field(&format!("context:{name}"), d.as_bytes());
        } else if v.contains("://") {
            // A remote context (git, https): its content is not known here.
            return None;
        } else {
            let d = context_hash(Path::new(&v), Vec::new(), cx.cache_dir.as_deref())?;
            h.field(&format!("context:{name}"), d.as_bytes());
        }
    }
    for img in external_images(t)? {
        let d = cx.bases.get(&img).cloned().flatten()?;
        h.field(&format!("base:{img}"), d.as_bytes());
    }
    Some(h.finish())
}

/// A canonical text of an attribute value (no spans; maps by key).
fn canonical(v: &Value) -> String {
    let j = match v {
        Value::Str(s) => serde_json::json!(s.v),
        Value::List(l) => serde_json::json!(l.iter().map(|s| &s.v).collect::<Vec<_>>()),
        Value::Map(m) => {
            let o: BTreeMap<&String, &String> = m.iter().map(|(k, e)| (k, &e.value.v)).collect();
            serde_json::json!(o)
        }
        Value::Objects(os) => serde_json::json!(os
            .iter()
            .map(|o| o
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.v.clone()))
                .collect::<Vec<_>>())
            .collect::<Vec<_>>()),
    };
    j.to_string()
}

/// One file's cached hash.
#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
struct CachedFile {
    size: u64,
    mtime: i64,
    ctime: i64,
    ino: u64,
    mode: u32,
    sha256: String,
}

/// The user cache directory of mybake (see the module docs).
pub fn cache_dir(env: &HashMap<String, String>) -> Option<PathBuf> {
    if let Some(d) = env.get("MYBAKE_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = env.get("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("mybake"));
    }
    env.get("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("mybake"))
}

/// Hash of the files of `root` that a build sends (after `excludes`):
/// paths, modes, owners, link targets and contents.
pub fn context_hash(root: &Path, excludes: Vec<String>, cache: Option<&Path>) -> Option<String> {
    let filter = FilterOptions {
        exclude_patterns: excludes.clone(),
        ..Default::default()
    };
    let walker = Walker::new(root, &filter).ok()?;
    let cache_file = cache.map(|c| {
        let mut h = Sha256::new();
        h.update(root.as_os_str().as_encoded_bytes());
        c.join("inputs")
            .join(format!("{}.json", &hex(&h.finalize())[..32]))
    });
    let old: HashMap<String, CachedFile> = cache_file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut new: HashMap<String, CachedFile> = HashMap::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut h = Hasher::new("context");
    h.field("excludes", excludes.join("\n").as_bytes());
    let mut failed = false;
    let res = walker.walk(|e| {
        let s = &e.stat;
        h.field("path", s.path.as_bytes());
        h.field(
            "meta",
            format!(
                "{}:{}:{}:{}:{}:{}",
                s.mode, s.uid, s.gid, s.linkname, s.devmajor, s.devminor
            )
            .as_bytes(),
        );
        const NOT_REGULAR: u32 = 0xfff0_0000 & !(1 << 23 | 1 << 22 | 1 << 20);
        if s.mode & NOT_REGULAR != 0 {
            return Ok(());
        }
        let Ok(md) = std::fs::symlink_metadata(&e.abs_path) else {
            failed = true;
            return Ok(());
        };
        let probe = CachedFile {
            size: md.size(),
            mtime: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            ino: md.ino(),
            mode: md.mode(),
            sha256: String::new(),
        };
        let cached = old.get(&s.path).filter(|c| {
            CachedFile {
                sha256: String::new(),
                ..(*c).clone()
            } == probe
        });
        let sum = match cached {
            Some(c) => c.sha256.clone(),
            None => match std::fs::read(&e.abs_path) {
                Ok(bytes) => hex(&Sha256::digest(&bytes)),
                Err(_) => {
                    failed = true;
                    return Ok(());
                }
            },
        };
        h.field("content", sum.as_bytes());
        // Racy: changed within the last seconds, its mtime may not move
        // on the next change.
        if md.mtime() < now - 2 && md.ctime() < now - 2 {
            new.insert(
                s.path.clone(),
                CachedFile {
                    sha256: sum,
                    ..probe
                },
            );
        }
        Ok(())
    });
    if res.is_err() || failed {
        return None;
    }
    if let Some(f) = cache_file {
        if new != old {
            // A cache: a failed write only costs hashing again.
            let bytes = serde_json::to_vec(&new).unwrap_or_default();
            let _ = crate::files::write_atomic(&f, ".mybake-inputs-", &bytes);
        }
    }
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_hash_follows_content_and_dockerignore() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let cache = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a.txt"), "a")?;
        std::fs::write(dir.path().join("b.log"), "b")?;
        let h = |ex: Vec<String>| context_hash(dir.path(), ex, Some(cache.path()));
        let first = h(Vec::new());
        assert!(first.is_some());
        assert_eq!(h(Vec::new()), first);
        let ignored = h(vec!["*.log".into()]);
        assert_ne!(ignored, first);
        std::fs::write(dir.path().join("b.log"), "changed")?;
        assert_eq!(h(vec!["*.log".into()]), ignored);
        let changed = h(Vec::new());
        assert_ne!(changed, first);
        std::fs::write(dir.path().join("a.txt"), "b")?;
        assert_ne!(h(Vec::new()), changed);
        Ok(())
    }
}
