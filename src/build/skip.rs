//! Skipping unchanged targets on `build --push`.
//!
//! Every published target's index carries its input key (annotation
//! [`KEY_ANNOTATION`], see [`super::inputs`]). Before anything builds, the
//! index under each published target's first tag is read (all targets at
//! once); when its key is this run's, the target's build nodes are not
//! solved: their results are the index's image manifests, and only the
//! target's tags that do not point to that index yet are written
//! ([`write_missing_tags`]).
//!
//! A dependency that is not published itself (built only for its
//! dependents) is not solved when every dependent is unchanged; when one is
//! not, the dependency's result of an earlier run with the same key
//! (recorded under the cache directory, `results/`, and still in the
//! registry) is used, else it is built.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::oci::Descriptor;
use futures::StreamExt;
use petgraph::graph::NodeIndex;
use petgraph::Direction;

use super::inputs::{self, InputKeys, KeyContext};
use crate::attrs::A;
use crate::exec::NodeResult;
use crate::plan::Plan;
use crate::publish::copy::{ensure_children, Child, ContentCache};
use crate::publish::index::{is_index_media_type, ManifestDoc};
use crate::publish::registry::{at_digest, parse_reference, FetchedManifest};
use crate::publish::{PublishEvent, PublishOptions, RegistryClient};
use crate::resolve::Resolved;

/// The index annotation that records a target's input key.
pub const KEY_ANNOTATION: &str = "dev.mybake.input-key";

/// Registry requests in flight at once.
const CONCURRENCY: usize = 32;

/// An unchanged published target.
#[derive(Debug, Clone)]
pub struct UnchangedTarget {
    pub name: String,
    pub tags: Vec<String>,
    /// Its index, as read under the first tag.
    pub index: FetchedManifest,
}

/// What the check found.
#[derive(Debug, Default)]
pub struct SkipPlan {
    /// Input keys of the build nodes.
    pub keys: InputKeys,
    /// Published target name → its key (to record on its index).
    pub target_keys: HashMap<String, String>,
    /// Build nodes not to solve, with the result to use.
    pub unchanged: HashMap<NodeIndex, NodeResult>,
    /// Published targets found unchanged.
    pub targets: Vec<UnchangedTarget>,
    /// The cache directory, when it may be used (not inside a context).
    pub cache_dir: Option<PathBuf>,
}

/// Whether target `t` is published to a registry by this run (exec's rule).
fn registry_published(r: &Resolved, plan: &Plan, m: NodeIndex, push: bool) -> bool {
    let node = plan.node(m);
    let t = &r.targets[node.target];
    let registry_output = t.objects(A::Output).iter().any(|o| {
        matches!(
            o.get("type").map(|s| s.v.as_str()),
            Some("registry") | Some("image")
        )
    });
    node.publish && (push || registry_output) && !t.list(A::Tags).is_empty()
}

/// Options of [`check`].
pub struct CheckOptions<'a> {
    pub push: bool,
    /// `--rebuild` or `--no-cache`: compute keys (to record them), skip
    /// nothing.
    pub force: bool,
    /// Targets with file outputs (always built).
    pub file_targets: &'a HashSet<String>,
    pub cache_dir: Option<PathBuf>,
    pub publish: PublishOptions,
    /// See [`KeyContext::run_inputs`].
    pub run_inputs: Vec<(String, String)>,
    /// `--locked`: the pins, which reach each target's solves.
    pub pins: Option<std::sync::Arc<crate::lock::Pins>>,
}

/// Computes the run's input keys and finds what need not be built.
pub async fn check(r: &Resolved, plan: &Plan, o: &CheckOptions<'_>) -> SkipPlan {
    let published: Vec<NodeIndex> = plan
        .graph
        .node_indices()
        .filter(|&m| plan.node(m).is_merge() && registry_published(r, plan, m, o.push))
        .collect();
    let mut out = SkipPlan::default();
    if published.is_empty() {
        return out;
    }
    let Ok(client) = o.publish.client(None) else {
        return out;
    };
    // The cache is never written into a build context (it would be sent,
    // and change the context it describes): inside one, it is not used.
    let cache_dir = o.cache_dir.clone().filter(|c| {
        !plan.graph.node_weights().filter(|n| n.is_build()).any(|n| {
            let t = &r.targets[n.target];
            c.starts_with(t.context_dir())
                || inputs::named_context_dirs(t)
                    .iter()
                    .any(|d| c.starts_with(d))
        })
    });
    // Base images of every target built, resolved at once.
    let targets = plan.built_targets();
    let images: Vec<String> = tokio::task::block_in_place(|| {
        crate::par::map(targets, |i| inputs::external_images(&r.targets[i]))
    })
    .into_iter()
    .flatten()
    .flatten()
    .collect::<HashSet<_>>()
    .into_iter()
    .collect();
    let bases: HashMap<String, Option<String>> =
        futures::stream::iter(images.into_iter().map(|img| {
            let client = client.clone();
            async move {
                let d = match parse_reference(&img) {
                    Ok(rf) => client
                        .head_manifest(&rf)
                        .await
                        .ok()
                        .flatten()
                        .map(|h| h.digest)
                        .filter(|d| !d.is_empty()),
                    Err(_) => None,
                };
                (img, d)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let pinned = o
        .pins
        .clone()
        .map(|p| move |t: &crate::resolve::Target| p.frontend_attrs(t));
    let cx = KeyContext {
        bases: &bases,
        cache_dir: cache_dir.clone(),
        run_inputs: o.run_inputs.clone(),
        target_inputs: pinned.as_ref().map(|f| f as &inputs::TargetInputs),
    };
    out.keys = tokio::task::block_in_place(|| inputs::compute(r, plan, &cx));
    out.cache_dir = cache_dir.clone();
    for &m in &published {
        if let Some(k) = out.keys.target_key(plan, m) {
            out.target_keys.insert(plan.node(m).target_name.clone(), k);
        }
    }
    if o.force {
        return out;
    }
    // The published targets' indexes, read at once.
    let wanted: Vec<(NodeIndex, String, String)> = published
        .iter()
        .filter_map(|&m| {
            let t = &r.targets[plan.node(m).target];
            if o.file_targets.contains(&t.name.v) || t.bool(A::NoCache) == Some(true) {
                return None;
            }
            let key = out.target_keys.get(&t.name.v)?.clone();
            Some((m, t.list(A::Tags).first()?.v.clone(), key))
        })
        .collect();
    let found: Vec<(NodeIndex, Option<FetchedManifest>)> =
        futures::stream::iter(wanted.into_iter().map(|(m, tag, key)| {
            let client = client.clone();
            async move {
                let Ok(rf) = parse_reference(&tag) else {
                    return (m, None);
                };
                let fetched = client.get_manifest(&rf).await.ok().filter(|f| {
                    is_index_media_type(&f.media_type)
                        && ManifestDoc::parse(&f.bytes).is_ok_and(|d| {
                            d.annotations.get(KEY_ANNOTATION).map(String::as_str)
                                == Some(key.as_str())
                        })
                });
                (m, fetched)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (m, fetched) in found {
        let Some(index) = fetched else { continue };
        let t = &r.targets[plan.node(m).target];
        let Some(results) = platform_results(plan, m, t, &index) else {
            continue;
        };
        out.unchanged.extend(results);
        out.targets.push(UnchangedTarget {
            name: t.name.v.clone(),
            tags: t.list(A::Tags).iter().map(|s| s.v.clone()).collect(),
            index,
        });
    }
    out.targets.sort_by(|a, b| a.name.cmp(&b.name));
    let published: HashSet<usize> = published.iter().map(|&m| plan.node(m).target).collect();
    dependencies(r, plan, &published, &client, cache_dir.as_deref(), &mut out).await;
    out
}

/// The results of merge node `m`'s build nodes from its published index:
/// the image manifest of each platform (`None` when one is missing).
fn platform_results(
    plan: &Plan,
    m: NodeIndex,
    t: &crate::resolve::Target,
    index: &FetchedManifest,
) -> Option<Vec<(NodeIndex, NodeResult)>> {
    let doc = ManifestDoc::parse(&index.bytes).ok()?;
    let repo = parse_reference(&t.list(A::Tags).first()?.v).ok()?;
    let mut out = Vec::new();
    for n in plan.needs(m) {
        let p = plan.node(n).platform()?;
        let entry = doc.manifests.iter().find(|e| {
            !e.is_attestation()
                && e.platform
                    .as_ref()
                    .is_some_and(|ep| crate::plan::same_platform(&ep.to_string(), p))
        })?;
        out.push((
            n,
            result(
                Some(Descriptor {
                    annotations: Default::default(),
                    platform: None,
                    ..entry.clone()
                }),
                Some(at_digest(&repo, &entry.digest).whole()),
            ),
        ));
    }
    Some(out)
}

fn result(descriptor: Option<Descriptor>, reference: Option<String>) -> NodeResult {
    NodeResult {
        exporter_response: HashMap::new(),
        descriptor,
        reference,
        duration: Duration::ZERO,
        steps: 0,
        cached_steps: 0,
        builder: String::new(),
        push_attempts: 0,
        solve_ref: String::new(),
        input: None,
    }
}

/// Unpublished dependencies: not solved when every dependent is unchanged
/// (an unchanged node is not solved, so it needs no result), or when an
/// earlier run's result for the same key is recorded and still in the
/// registry.
async fn dependencies(
    r: &Resolved,
    plan: &Plan,
    published: &HashSet<usize>,
    client: &RegistryClient,
    cache_dir: Option<&Path>,
    out: &mut SkipPlan,
) {
    let deps: Vec<NodeIndex> = plan
        .order
        .iter()
        .copied()
        .filter(|&n| plan.node(n).is_build() && !out.unchanged.contains_key(&n))
        .filter(|&n| !published.contains(&plan.node(n).target))
        .collect();
    // Dependents before dependencies: the ones some changed dependent
    // needs, as far as known without recorded results.
    let mut covered: HashSet<NodeIndex> = out.unchanged.keys().copied().collect();
    let mut needed = Vec::new();
    for &n in deps.iter().rev() {
        if all_dependents_in(plan, n, &covered) {
            covered.insert(n);
        } else {
            needed.push(n);
        }
    }
    // Their recorded results, checked at once.
    let recorded: HashMap<NodeIndex, String> = match cache_dir {
        Some(dir) => {
            futures::stream::iter(needed.iter().filter_map(|&n| {
                let key = out.keys.nodes.get(&n).cloned().flatten()?;
                let reference = read_record(dir, &key)?;
                // Only a result in the repository this run pushes it to
                // (another project's run may have recorded the same key).
                let tag = r.targets[plan.node(n).target].list(A::Tags).first()?;
                let repo = crate::exec::request::repository_of(&tag.v);
                if reference.split('@').next() != Some(repo.as_str()) {
                    return None;
                }
                let client = client.clone();
                Some(async move {
                    let ok = match parse_reference(&reference) {
                        Ok(rf) => matches!(client.head_manifest(&rf).await, Ok(Some(_))),
                        Err(_) => false,
                    };
                    ok.then_some((n, reference))
                })
            }))
            .buffer_unordered(CONCURRENCY)
            .filter_map(|x| async move { x })
            .collect()
            .await
        }
        None => HashMap::new(),
    };
    let mut covered: HashSet<NodeIndex> = out.unchanged.keys().copied().collect();
    for &n in deps.iter().rev() {
        if all_dependents_in(plan, n, &covered) {
            out.unchanged.insert(n, result(None, None));
        } else if let Some(reference) = recorded.get(&n) {
            out.unchanged
                .insert(n, result(None, Some(reference.clone())));
        } else {
            continue;
        }
        covered.insert(n);
    }
}

/// `n` has dependents (build nodes) and all of them are in `set`.
fn all_dependents_in(plan: &Plan, n: NodeIndex, set: &HashSet<NodeIndex>) -> bool {
    let mut dependents = plan
        .graph
        .neighbors_directed(n, Direction::Incoming)
        .filter(|&d| plan.node(d).is_build())
        .peekable();
    dependents.peek().is_some() && dependents.all(|d| set.contains(&d))
}

fn record_path(dir: &Path, key: &str) -> PathBuf {
    dir.join("results").join(key.trim_start_matches("sha256:"))
}

fn read_record(dir: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(record_path(dir, key)).ok()?;
    let line = text.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// Records the results of the nodes built by this run under their keys.
pub fn record(dir: &Path, keys: &InputKeys, results: &HashMap<NodeIndex, NodeResult>) {
    for (n, res) in results {
        let (Some(Some(key)), Some(reference)) = (keys.nodes.get(n), &res.reference) else {
            continue;
        };
        let path = record_path(dir, key);
        if read_record(dir, key).as_deref() == Some(reference.as_str()) {
            continue;
        }
        // A cache: a failed write only costs a rebuild.
        let _ = crate::files::write_atomic(
            &path,
            ".mybake-result-",
            format!("{reference}\n").as_bytes(),
        );
    }
}

/// The `--metadata-file` entry of an unchanged target: the keys a
/// published target gets ([`crate::publish::metadata_json`]).
pub fn metadata_entry(t: &UnchangedTarget) -> serde_json::Value {
    let platforms: Vec<serde_json::Value> = ManifestDoc::parse(&t.index.bytes)
        .map(|d| d.manifests)
        .unwrap_or_default()
        .iter()
        .filter(|e| !e.is_attestation())
        .map(|e| serde_json::to_value(e).unwrap_or(serde_json::Value::Null))
        .collect();
    serde_json::json!({
        "containerimage.descriptor": {
            "mediaType": t.index.media_type,
            "digest": t.index.digest,
            "size": t.index.size(),
        },
        "containerimage.digest": t.index.digest,
        "image.name": t.tags.join(","),
        "mybake.platforms": platforms,
    })
}

/// Makes every tag of the unchanged targets point to their index: tags
/// that already do are left alone. Returns (target, tag, digest) of each
/// tag written, or the first error.
pub async fn write_missing_tags(
    targets: &[UnchangedTarget],
    opts: &PublishOptions,
    events: Option<tokio::sync::mpsc::Sender<PublishEvent>>,
) -> Result<Vec<(String, String, String)>, String> {
    let client = opts.client(None).map_err(|e| e.to_string())?;
    let cache = ContentCache::default();
    let jobs = targets
        .iter()
        .flat_map(|t| t.tags.iter().skip(1).map(move |tag| (t, tag.clone())));
    type Written = Option<(String, String, String)>;
    let results: Vec<Result<Written, String>> = futures::stream::iter(jobs.map(|(t, tag)| {
        let client = client.clone();
        let cache = &cache;
        async move {
            let to = parse_reference(&tag).map_err(|e| e.to_string())?;
            let head = client.head_manifest(&to).await.map_err(|e| e.to_string())?;
            if head.is_some_and(|h| h.digest == t.index.digest) {
                return Ok(None);
            }
            let from = parse_reference(&t.tags[0]).map_err(|e| e.to_string())?;
            let doc = ManifestDoc::parse(&t.index.bytes)?;
            let children: Vec<Child> = doc
                .manifests
                .iter()
                .map(|e| Child {
                    entry: e.clone(),
                    source: from.clone(),
                })
                .collect();
            ensure_children(&client, cache, &children, &to, 8)
                .await
                .map_err(|e| format!("{tag}: {e}"))?;
            client
                .put_manifest(&to, t.index.bytes.clone(), &t.index.media_type)
                .await
                .map_err(|e| format!("{tag}: {e}"))?;
            Ok(Some((t.name.clone(), tag, t.index.digest.clone())))
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect()
    .await;
    let mut written = Vec::new();
    for r in results {
        if let Some(w) = r? {
            if let Some(tx) = &events {
                let _ = tx
                    .send(PublishEvent::TagWritten {
                        target: w.0.clone(),
                        tag: w.1.clone(),
                        digest: w.2.clone(),
                    })
                    .await;
            }
            written.push(w);
        }
    }
    written.sort();
    Ok(written)
}
