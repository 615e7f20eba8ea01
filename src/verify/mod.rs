//! `mybake verify`: rebuild the requested targets without cache and compare
//! each platform's image with what is published under the target's first
//! tag (or, when nothing is published there, with a second rebuild).
//!
//! The rebuilds are pushed by digest to the target's repository (never
//! tagged: nothing published changes). Image manifests are compared, not
//! attestations (provenance records build times). On a difference, the
//! first differing layer is named and both layers are read (gzip or
//! uncompressed tar) to name the first differing file; when every layer is
//! the same, the image config differs.

use std::collections::HashMap;

use petgraph::graph::NodeIndex;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::attrs::A;
use crate::exec::{self, Event, ExecOptions};
use crate::plan::Plan;
use crate::publish::index::{is_index_media_type, ManifestDoc};
use crate::publish::registry::{at_digest, parse_reference, Reference};
use crate::publish::{PublishOptions, RegistryClient};
use crate::report::reporter::Reporter;
use crate::resolve::Resolved;

/// Largest layer read to compare files.
const MAX_LAYER: i64 = 2 << 30;
/// Largest image config read to name a difference.
const MAX_CONFIG: i64 = 16 << 20;

/// The first path (`config.Labels.x`, `history[2].created`) where two JSON
/// values differ, in document order; `None` when they are equal. (The
/// configs come from `serde_json::from_slice`, whose parser refuses nesting
/// deeper than 128, which bounds the recursion of `==` here.)
fn first_json_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    root: &str,
) -> Option<String> {
    use serde_json::Value;
    // (left, right, path); `None`: the key is missing on that side.
    let mut stack = vec![(Some(a), Some(b), root.to_owned())];
    while let Some((a, b, path)) = stack.pop() {
        let (Some(a), Some(b)) = (a, b) else {
            return Some(path);
        };
        if a == b {
            continue;
        }
        let join = |k: &str| {
            if path.is_empty() {
                k.to_owned()
            } else {
                format!("{path}.{k}")
            }
        };
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys.into_iter().rev() {
                    stack.push((x.get(k), y.get(k), join(k)));
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate().rev() {
                    stack.push((Some(va), Some(vb), format!("{path}[{i}]")));
                }
            }
            _ => return Some(if path.is_empty() { ".".into() } else { path }),
        }
    }
    None
}

/// One target and platform compared.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Comparison {
    pub target: String,
    pub platform: String,
    /// `published` (under the first tag) or `rebuild` (a second rebuild).
    pub against: String,
    pub identical: bool,
    /// The image manifest compared against.
    pub expected: String,
    /// The rebuild's image manifest.
    pub rebuilt: String,
    /// The first differing layer (0-based) and its two digests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerDiff>,
    /// The first differing file in that layer (`/path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What else differs (`config`, `layer count`), or why files could not
    /// be compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LayerDiff {
    pub index: usize,
    pub expected: Option<String>,
    pub rebuilt: Option<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyReport {
    pub comparisons: Vec<Comparison>,
    /// Builds or registry reads that failed.
    pub errors: Vec<String>,
    /// Nothing could be built because the build file or the command line
    /// is wrong (a target with no `tags` to push its rebuild to, an unknown
    /// builder): exit 2, as `build` gives.
    #[serde(skip)]
    pub invalid: bool,
}

impl VerifyReport {
    pub fn identical(&self) -> bool {
        self.errors.is_empty() && self.comparisons.iter().all(|c| c.identical)
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.comparisons {
            if c.identical {
                out.push_str(&format!(
                    "{} {}: identical {} ({})\n",
                    c.target,
                    c.platform,
                    c.rebuilt,
                    if c.against == "published" {
                        "as published"
                    } else {
                        "in two rebuilds"
                    }
                ));
                continue;
            }
            out.push_str(&format!(
                "{} {}: different ({} {} vs rebuilt {})\n",
                c.target, c.platform, c.against, c.expected, c.rebuilt
            ));
            if let Some(l) = &c.layer {
                out.push_str(&format!(
                    "  first differing layer: #{} ({} vs {})\n",
                    l.index,
                    l.expected.as_deref().unwrap_or("none"),
                    l.rebuilt.as_deref().unwrap_or("none")
                ));
            }
            if let Some(f) = &c.file {
                out.push_str(&format!("  first differing file: {f}\n"));
            }
            if let Some(n) = &c.note {
                out.push_str(&format!("  {n}\n"));
            }
        }
        for e in &self.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        out
    }

    pub fn json(&self) -> String {
        let v = serde_json::json!({
            "identical": self.identical(),
            "targets": self.comparisons,
            "errors": self.errors,
        });
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }
}

/// Settings of a verify run.
#[derive(Debug, Clone, Default)]
pub struct VerifySettings {
    pub builder: String,
    pub insecure_registries: Vec<String>,
    pub ssh_auth_sock: Option<std::path::PathBuf>,
    pub env: HashMap<String, String>,
    /// The epoch the release was built with (see [`crate::repro`]).
    pub source_date_epoch: Option<u64>,
    /// `--locked`: the pins of `mybake.lock`.
    pub pins: Option<std::sync::Arc<crate::lock::Pins>>,
}

/// Rebuilds the plan's published targets without cache and compares.
pub fn run(
    r: &Resolved,
    plan: &Plan,
    s: &VerifySettings,
    reporter: Box<dyn Reporter>,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let nodes = match exec::builders::select(&s.builder, &r.cwd, &s.env) {
        Ok(n) => n,
        Err(e) => {
            report.errors.push(e.to_string());
            report.invalid = true;
            return report;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    let opts = ExecOptions {
        nodes,
        push: true,
        no_cache: true,
        insecure_registries: s.insecure_registries.clone(),
        ssh_auth_sock: s.ssh_auth_sock.clone(),
        source_date_epoch: s.source_date_epoch,
        pins: s.pins.clone(),
        ..Default::default()
    };
    let popts = PublishOptions {
        insecure_registries: s.insecure_registries.clone(),
        ..Default::default()
    };
    rt.block_on(async {
        let client = match popts.client(None) {
            Ok(c) => c,
            Err(e) => {
                report.errors.push(e.to_string());
                return report;
            }
        };
        let mut reporter = reporter;
        let first = match rebuild(r, plan, &opts, &mut reporter).await {
            Ok(o) => o,
            Err((e, invalid)) => {
                report.errors.push(e);
                report.invalid = invalid;
                return report;
            }
        };
        // What is published under each target's first tag.
        let mut second: Option<HashMap<NodeIndex, String>> = None;
        for m in plan
            .graph
            .node_indices()
            .filter(|&m| plan.node(m).is_merge() && plan.node(m).publish)
        {
            let t = &r.targets[plan.node(m).target];
            let Some(tag) = t.list(A::Tags).first() else {
                continue;
            };
            let Ok(tag_ref) = parse_reference(&tag.v) else {
                continue;
            };
            let published = client.get_manifest(&tag_ref).await.ok();
            for n in plan.needs(m) {
                let platform = plan.node(n).platform().unwrap_or_default().to_owned();
                let Some(rebuilt) = first.get(&n).cloned() else {
                    continue;
                };
                let expected = match &published {
                    Some(p) => image_for(&client, &tag_ref, &p.digest, &platform)
                        .await
                        .map(|d| ("published", d)),
                    None => None,
                };
                let (against, expected) = match expected {
                    Some(e) => e,
                    None => {
                        if second.is_none() {
                            // A build that records the time (to the second,
                            // as `date` does) must not look reproducible
                            // because both rebuilds ran within one second:
                            // the second one starts in a later second than
                            // the first one ended.
                            tokio::time::sleep(until_next_second()).await;
                            match rebuild(r, plan, &opts, &mut reporter).await {
                                Ok(o) => second = Some(o),
                                Err((e, invalid)) => {
                                    report.errors.push(e);
                                    report.invalid = invalid;
                                    return report;
                                }
                            }
                        }
                        match second.as_ref().and_then(|s| s.get(&n)) {
                            Some(d) => ("rebuild", d.clone()),
                            None => continue,
                        }
                    }
                };
                let c = compare(
                    &client, &tag_ref, &t.name.v, &platform, against, &expected, &rebuilt,
                )
                .await;
                report.comparisons.push(c);
            }
        }
        report
            .comparisons
            .sort_by(|a, b| (&a.target, &a.platform).cmp(&(&b.target, &b.platform)));
        report
    })
}

/// The time left until the wall clock's next whole second.
fn until_next_second() -> std::time::Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    std::time::Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos()))
}

/// One rebuild of the plan: build node → its image manifest digest; on an
/// error, whether nothing could start because the set-up is invalid.
async fn rebuild(
    r: &Resolved,
    plan: &Plan,
    opts: &ExecOptions,
    reporter: &mut Box<dyn Reporter>,
) -> Result<HashMap<NodeIndex, String>, (String, bool)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let cancel = mybake_buildkit::CancellationToken::new();
    let run = exec::run(r, plan, opts, tx, cancel);
    let drain = async {
        let mut seen = Vec::new();
        while let Some(e) = rx.recv().await {
            seen.push(e);
        }
        seen
    };
    let (outcome, events) = tokio::join!(run, drain);
    for e in &events {
        reporter.exec(e);
    }
    reporter.exec_done();
    // A target with no repository is an invalid build file (2), as for
    // `build`; a builder that cannot be reached or cannot build a platform
    // is a failure (1).
    let outcome = outcome.map_err(|e| {
        let invalid = matches!(e, exec::ExecError::Config(_));
        (e.to_string(), invalid)
    })?;
    if let Some((_, e)) = outcome.failures.first() {
        return Err((e.clone(), false));
    }
    let client = PublishOptions::default()
        .client(None)
        .map_err(|e| (e.to_string(), false))?;
    let mut out = HashMap::new();
    for (n, res) in outcome.results {
        let (Some(d), Some(reference)) = (&res.descriptor, &res.reference) else {
            continue;
        };
        let platform = plan.node(n).platform().unwrap_or_default();
        let repo = parse_reference(reference).map_err(|e| (e.to_string(), false))?;
        let image = if is_index_media_type(&d.media_type) {
            image_for(&client, &repo, &d.digest, platform)
                .await
                .ok_or_else(|| {
                    let e = format!(
                        "{}: no image for {platform} in {}",
                        plan.node(n).id,
                        d.digest
                    );
                    (e, false)
                })?
        } else {
            d.digest.clone()
        };
        out.insert(n, image);
    }
    Ok(out)
}

/// The image manifest for `platform` of manifest `digest` in `repo` (the
/// digest itself when it is an image manifest).
async fn image_for(
    client: &RegistryClient,
    repo: &Reference,
    digest: &str,
    platform: &str,
) -> Option<String> {
    let m = client.get_manifest(&at_digest(repo, digest)).await.ok()?;
    if !is_index_media_type(&m.media_type) {
        return Some(m.digest);
    }
    let doc = ManifestDoc::parse(&m.bytes).ok()?;
    let images: Vec<_> = doc
        .manifests
        .iter()
        .filter(|e| !e.is_attestation())
        .collect();
    images
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| crate::plan::same_platform(&p.to_string(), platform))
        })
        .or(if images.len() == 1 {
            images.first()
        } else {
            None
        })
        .map(|e| e.digest.clone())
}

async fn compare(
    client: &RegistryClient,
    repo: &Reference,
    target: &str,
    platform: &str,
    against: &str,
    expected: &str,
    rebuilt: &str,
) -> Comparison {
    let mut c = Comparison {
        target: target.to_owned(),
        platform: platform.to_owned(),
        against: against.to_owned(),
        identical: expected == rebuilt,
        expected: expected.to_owned(),
        rebuilt: rebuilt.to_owned(),
        layer: None,
        file: None,
        note: None,
    };
    if c.identical {
        return c;
    }
    let read = |d: String| async move {
        let m = client
            .get_manifest(&at_digest(repo, &d))
            .await
            .map_err(|e| e.to_string())?;
        ManifestDoc::parse(&m.bytes)
    };
    let (a, b) = match (
        read(expected.to_owned()).await,
        read(rebuilt.to_owned()).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            c.note = Some(format!("could not read the manifests: {e}"));
            return c;
        }
    };
    let n = a.layers.len().max(b.layers.len());
    let Some(i) =
        (0..n).find(|&i| a.layers.get(i).map(|l| &l.digest) != b.layers.get(i).map(|l| &l.digest))
    else {
        // Name what differs in the config (e.g. `moby.buildkit.cache.v0`,
        // the inline cache's layer times).
        let config = |m: &ManifestDoc| {
            let r = m.config.clone();
            async move {
                let r = r?;
                let bytes = client
                    .get_blob(repo, &r.digest, r.size, MAX_CONFIG)
                    .await
                    .ok()?;
                serde_json::from_slice::<serde_json::Value>(&bytes).ok()
            }
        };
        let path = match (config(&a).await, config(&b).await) {
            (Some(x), Some(y)) => first_json_difference(&x, &y, ""),
            _ => None,
        };
        c.note = Some(match path {
            Some(p) => format!("every layer is the same; the image config differs at `{p}`"),
            None => "every layer is the same; the image config differs".into(),
        });
        return c;
    };
    let (la, lb) = (a.layers.get(i), b.layers.get(i));
    c.layer = Some(LayerDiff {
        index: i,
        expected: la.map(|l| l.digest.clone()),
        rebuilt: lb.map(|l| l.digest.clone()),
    });
    let entries = |l: Option<&crate::publish::index::BlobRef>| {
        let l = l.cloned();
        async move {
            match l {
                None => Ok(Vec::new()),
                Some(l) => {
                    let bytes = client
                        .get_blob(repo, &l.digest, l.size, MAX_LAYER)
                        .await
                        .map_err(|e| e.to_string())?;
                    tokio::task::block_in_place(|| tar_entries(&bytes))
                }
            }
        }
    };
    match (entries(la).await, entries(lb).await) {
        (Ok(ea), Ok(eb)) => c.file = first_difference(&ea, &eb),
        (Err(e), _) | (_, Err(e)) => c.note = Some(format!("could not compare files: {e}")),
    }
    c
}

/// One tar entry: its path and what is compared of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    pub path: String,
    /// A directory (a differing directory is named only when no file
    /// differs: a `RUN` step changes the mtime of the directories it
    /// touches, `/dev` among them).
    pub dir: bool,
    /// Type, mode, owner, mtime, link target, size and content hash.
    pub summary: String,
}

/// The entries of a layer blob (gzip-compressed or plain tar).
pub fn tar_entries(blob: &[u8]) -> Result<Vec<TarEntry>, String> {
    use sha2::Digest;
    use std::io::Read;
    let reader: Box<dyn Read + '_> = if blob.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(blob))
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err("zstd layers are not compared file by file".into());
    } else {
        Box::new(blob)
    };
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for e in archive.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let path = e.path().map_err(|e| e.to_string())?;
        let path = format!(
            "/{}",
            path.to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
        );
        let h = e.header().clone();
        let link = e
            .link_name()
            .ok()
            .flatten()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut content = Vec::new();
        e.read_to_end(&mut content).map_err(|e| e.to_string())?;
        let sum = sha2::Sha256::digest(&content);
        out.push(TarEntry {
            path,
            dir: h.entry_type().is_dir(),
            summary: format!(
                "{:?} {:o} {}:{} {} {link} {} {}",
                h.entry_type(),
                h.mode().unwrap_or(0),
                h.uid().unwrap_or(0),
                h.gid().unwrap_or(0),
                h.mtime().unwrap_or(0),
                content.len(),
                sum.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        });
    }
    Ok(out)
}

/// The first path (in `a`'s order, then `b`'s) whose entry differs or is
/// in one layer only; a file before a directory.
pub fn first_difference(a: &[TarEntry], b: &[TarEntry]) -> Option<String> {
    let bm: HashMap<&str, &str> = b
        .iter()
        .map(|e| (e.path.as_str(), e.summary.as_str()))
        .collect();
    let am: HashMap<&str, &str> = a
        .iter()
        .map(|e| (e.path.as_str(), e.summary.as_str()))
        .collect();
    let differing: Vec<&TarEntry> = a
        .iter()
        .filter(|e| bm.get(e.path.as_str()) != Some(&e.summary.as_str()))
        .chain(b.iter().filter(|e| !am.contains_key(e.path.as_str())))
        .collect();
    differing
        .iter()
        .find(|e| !e.dir)
        .or(differing.first())
        .map(|e| e.path.clone())
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_second_rebuild_waits_for_the_next_second() {
        let d = until_next_second();
        assert!(d > std::time::Duration::ZERO && d <= std::time::Duration::from_secs(1));
    }

    #[test]
    fn names_the_first_differing_config_path() {
        use serde_json::json;
        let a = json!({"config": {"Labels": {"a": "1", "b": "2"}}, "history": [{"created": "x"}, {"created": "y"}]});
        let mut b = a.clone();
        assert_eq!(first_json_difference(&a, &b, ""), None);
        b["history"][1]["created"] = json!("z");
        assert_eq!(
            first_json_difference(&a, &b, "").as_deref(),
            Some("history[1].created")
        );
        b["config"]["Labels"]["b"] = json!("3");
        assert_eq!(
            first_json_difference(&a, &b, "").as_deref(),
            Some("config.Labels.b")
        );
        b["config"]["moby.buildkit.cache.v0"] = json!("c");
        assert_eq!(
            first_json_difference(&a, &b, "").as_deref(),
            Some("config.Labels.b")
        );
        assert_eq!(
            first_json_difference(&json!(1), &json!(2), "").as_deref(),
            Some(".")
        );
    }

    use super::*;

    fn e(path: &str, s: &str) -> TarEntry {
        TarEntry {
            dir: path.ends_with("dir"),
            path: path.into(),
            summary: s.into(),
        }
    }

    #[test]
    fn first_difference_in_order() {
        let a = [e("/a", "1"), e("/f", "x"), e("/g", "y")];
        let b = [e("/a", "1"), e("/f", "z"), e("/g", "w")];
        assert_eq!(first_difference(&a, &b).as_deref(), Some("/f"));
        assert_eq!(first_difference(&a, &a), None);
        let c = [e("/a", "1"), e("/f", "x"), e("/g", "y"), e("/new", "n")];
        assert_eq!(first_difference(&a, &c).as_deref(), Some("/new"));
        let d = [e("/dir", "1"), e("/f", "x")];
        let f = [e("/dir", "2"), e("/f", "y")];
        assert_eq!(first_difference(&d, &f).as_deref(), Some("/f"));
        let g = [e("/dir", "2"), e("/f", "x")];
        assert_eq!(first_difference(&d, &g).as_deref(), Some("/dir"));
    }

    #[test]
    fn tar_entries_of_gzip_and_plain() -> Result<(), Box<dyn std::error::Error>> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("f")?;
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"abc"[..])?;
        let plain = b.into_inner()?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &plain)?;
        let gz = gz.finish()?;
        let p = tar_entries(&plain)?;
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "/f");
        assert_eq!(tar_entries(&gz)?, p);
        Ok(())
    }
}
