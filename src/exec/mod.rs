//! Stage 4 — `exec`: run the plan's build nodes as BuildKit solves.
//!
//! Entry point: [`run`]. Output: [`ExecOutcome`] — each build node's result
//! (exporter response, pushed descriptor) or failure. The executor emits
//! [`Event`]s and never prints.
//!
//! Each build node starts as soon as the build nodes it needs have finished
//! (per platform), at most `jobs` at a time. A node whose target is
//! published, or whose result another node consumes, is exported with
//! `push=true,push-by-digest=true` to its first tag's repository: no tag is
//! written here, and dependents use the result as `repo@digest` (so it
//! works across builders too). The first failure cancels the run unless
//! `keep_going`.

pub mod event;
pub mod preflight;
pub mod request;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use petgraph::graph::NodeIndex;
use tokio::sync::{mpsc, watch, Semaphore};

pub use event::Event;
use mybake_buildkit::{CancellationToken, Client, Descriptor, Endpoint, StatusEvent};
use request::{PushTo, RequestOptions};

use crate::attrs::A;
use crate::plan::{NodeKind, Plan};
use crate::resolve::Resolved;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Builder endpoint: `docker`, `unix:///…`, `tcp://…`.
    pub builder: String,
    pub jobs: Option<usize>,
    /// Publish requested targets to the registry (`--push` or `output "registry"`).
    pub push: bool,
    pub keep_going: bool,
    pub no_cache: bool,
    pub pull: bool,
    /// Registries to reach over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
}

/// One successful build node.
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub exporter_response: HashMap<String, String>,
    pub descriptor: Option<Descriptor>,
    /// `repo@digest` when pushed by digest.
    pub reference: Option<String>,
}

#[derive(Debug, Default)]
pub struct ExecOutcome {
    pub results: HashMap<NodeIndex, NodeResult>,
    /// Failed nodes and their errors, in the order they failed.
    pub failures: Vec<(NodeIndex, String)>,
    /// Nodes not run (a dependency failed, or the run was cancelled).
    pub skipped: Vec<NodeIndex>,
}

/// Problems before any build starts.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("builder {endpoint}: {reason}")]
    Builder { endpoint: String, reason: String },
    #[error("builder {endpoint} cannot build {platforms} (it supports: {supported})")]
    Platforms { endpoint: String, platforms: String, supported: String },
    #[error("{0}")]
    Unsupported(String),
}

/// A node's result as its dependents see it: `None` until it finishes.
type Shared = Option<Result<Arc<NodeResult>, ()>>;
type Slot = watch::Receiver<Shared>;

/// Whether node `n`'s result is pushed by digest, and where.
fn push_target(r: &Resolved, plan: &Plan, n: NodeIndex, opts: &ExecOptions) -> Result<Option<PushTo>, ExecError> {
    let node = plan.node(n);
    let t = &r.targets[node.target];
    let registry_output = t.objects(A::Output).iter().any(|o| matches!(o.get("type").map(|s| s.v.as_str()), Some("registry") | Some("image")));
    let consumed = plan.graph.neighbors_directed(n, petgraph::Direction::Incoming).any(|d| plan.node(d).kind == NodeKind::Build);
    let published = node.publish && (opts.push || registry_output);
    if !(published || consumed) {
        return Ok(None);
    }
    let Some(tag) = t.list(A::Tags).first() else {
        let why = if consumed { "is used through `target:` by another target, and its result is passed by digest through a registry" } else { "is pushed" };
        return Err(ExecError::Unsupported(format!("target `{}` {why}, but it has no `tags` naming a repository", t.name.v)));
    };
    let repository = request::repository_of(&tag.v);
    let insecure = request::is_insecure(request::registry_of(&repository), &opts.insecure_registries);
    Ok(Some(PushTo { repository, insecure }))
}

/// Run every build node of `plan`.
pub async fn run(r: &Resolved, plan: &Plan, opts: &ExecOptions, events: mpsc::UnboundedSender<Event>, cancel: CancellationToken) -> Result<ExecOutcome, ExecError> {
    let builder = if opts.builder.is_empty() { "docker" } else { &opts.builder };
    let endpoint = Endpoint::parse(builder).map_err(|e| ExecError::Builder { endpoint: builder.into(), reason: e.to_string() })?;
    // Validate outputs before connecting.
    for t in plan.graph.node_weights().filter(|n| n.kind == NodeKind::Build).map(|n| &r.targets[n.target]) {
        for o in t.objects(A::Output) {
            let ty = o.get("type").map(|s| s.v.as_str()).unwrap_or("");
            if !matches!(ty, "registry" | "image" | "cacheonly") {
                return Err(ExecError::Unsupported(format!("target `{}`: output `{ty}` is not supported by this version yet (registry and cacheonly are)", t.name.v)));
            }
        }
    }
    let mut pushes = HashMap::new();
    for n in plan.graph.node_indices().filter(|&n| plan.node(n).kind == NodeKind::Build) {
        pushes.insert(n, push_target(r, plan, n, opts)?);
    }
    let client = Client::connect(&endpoint).await.map_err(|e| ExecError::Builder { endpoint: builder.into(), reason: e.to_string() })?;
    let workers = client.list_workers().await.map_err(|e| ExecError::Builder { endpoint: builder.into(), reason: e.to_string() })?;
    let mut supported: Vec<String> = workers.iter().flat_map(|w| w.platforms.iter().cloned()).collect();
    supported.dedup();
    let version = client.info().await.ok().flatten().map(|v| v.version);
    let _ = events.send(Event::Builder { endpoint: builder.into(), version, platforms: supported.clone() });
    let mut missing: Vec<String> = plan.graph.node_weights().filter_map(|n| n.platform.clone()).filter(|p| !platform_supported(p, &supported)).collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        return Err(ExecError::Platforms { endpoint: builder.into(), platforms: missing.join(", "), supported: supported.join(", ") });
    }

    let jobs = opts.jobs.unwrap_or(8).max(1);
    let sem = Arc::new(Semaphore::new(jobs));
    let client = Arc::new(client);
    let mut senders: HashMap<NodeIndex, watch::Sender<Shared>> = HashMap::new();
    let mut slots: HashMap<NodeIndex, Slot> = HashMap::new();
    for &n in &plan.order {
        let (tx, rx) = watch::channel(None);
        senders.insert(n, tx);
        slots.insert(n, rx);
    }
    let req_opts = RequestOptions { no_cache: opts.no_cache, pull: opts.pull };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(NodeIndex, Result<Arc<NodeResult>, Option<String>>)>();
    let mut tasks = tokio::task::JoinSet::new();
    let mut builds = 0usize;
    for &n in &plan.order {
        let node = plan.node(n).clone();
        if node.kind != NodeKind::Build {
            continue;
        }
        builds += 1;
        let needs: Vec<(NodeIndex, Slot)> = plan.needs(n).into_iter().map(|d| (d, slots[&d].clone())).collect();
        let t = r.targets[node.target].clone();
        let platform = node.platform.clone().unwrap_or_default();
        let push = pushes[&n].clone();
        let id = node.id.clone();
        let events = events.clone();
        let cancel = cancel.clone();
        let sem = sem.clone();
        let client = client.clone();
        let tx = senders.remove(&n).expect("one sender per node");
        let done = done_tx.clone();
        let names: HashMap<NodeIndex, String> = needs.iter().map(|(d, _)| (*d, plan.node(*d).target_name.clone())).collect();
        let req_opts = req_opts.clone();
        let _ = events.send(Event::Queued { node: id.clone() });
        tasks.spawn(async move {
            // Wait for what this node needs.
            let mut deps: HashMap<String, String> = HashMap::new();
            for (d, mut rx) in needs {
                let res = tokio::select! {
                    _ = cancel.cancelled() => None,
                    r = rx.wait_for(Option::is_some) => r.ok().and_then(|v| v.clone()),
                };
                match res {
                    Some(Ok(result)) => {
                        let dep_target = &names[&d];
                        for (ctx, dep) in &t.deps {
                            if &dep.v == dep_target {
                                if let Some(reference) = &result.reference {
                                    deps.insert(ctx.clone(), reference.clone());
                                }
                            }
                        }
                    }
                    _ => {
                        let reason = if cancel.is_cancelled() { "run cancelled".to_string() } else { format!("{} failed", names[&d]) };
                        let _ = events.send(Event::Skipped { node: id.clone(), reason });
                        let _ = tx.send(Some(Err(())));
                        let _ = done.send((n, Err(None)));
                        return;
                    }
                }
            }
            let permit = tokio::select! {
                _ = cancel.cancelled() => None,
                p = sem.acquire_owned() => p.ok(),
            };
            let Some(_permit) = permit else {
                let _ = events.send(Event::Skipped { node: id.clone(), reason: "run cancelled".into() });
                let _ = tx.send(Some(Err(())));
                let _ = done.send((n, Err(None)));
                return;
            };
            let result = solve_node(&client, &t, &platform, &deps, push.as_ref(), &req_opts, &id, &events, cancel.clone()).await;
            match result {
                Ok(res) => {
                    let res = Arc::new(res);
                    let _ = tx.send(Some(Ok(res.clone())));
                    let _ = done.send((n, Ok(res)));
                }
                Err(e) => {
                    let _ = tx.send(Some(Err(())));
                    let _ = done.send((n, Err(Some(e))));
                }
            }
        });
    }
    drop(done_tx);
    let mut out = ExecOutcome::default();
    let mut seen = 0usize;
    while seen < builds {
        let Some((n, res)) = done_rx.recv().await else { break };
        seen += 1;
        match res {
            Ok(r) => {
                out.results.insert(n, (*r).clone());
            }
            Err(Some(e)) => {
                out.failures.push((n, e));
                if !opts.keep_going {
                    cancel.cancel();
                }
            }
            Err(None) => out.skipped.push(n),
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(out)
}

/// Does a builder platform list cover `p` (`linux/arm/v7` ~ `linux/arm`)?
fn platform_supported(p: &str, supported: &[String]) -> bool {
    supported.iter().any(|s| s == p || (p.matches('/').count() == 1 && s.starts_with(&format!("{p}/"))) || (s.matches('/').count() == 1 && p.starts_with(&format!("{s}/"))))
}

#[allow(clippy::too_many_arguments)]
async fn solve_node(
    client: &Client,
    t: &crate::resolve::Target,
    platform: &str,
    deps: &HashMap<String, String>,
    push: Option<&PushTo>,
    opts: &RequestOptions,
    id: &str,
    events: &mpsc::UnboundedSender<Event>,
    cancel: CancellationToken,
) -> Result<NodeResult, String> {
    let nr = request::build(t, platform, deps, push, opts).map_err(|e| format!("{id}: {e}"))?;
    let session = nr.session().map_err(|e| format!("{id}: {e}"))?;
    let handle = session.attach(client).await.map_err(|e| format!("{id}: session: {e}"))?;
    let mut req = nr.request.clone();
    req.session_id = handle.id().to_owned();
    let started = Instant::now();
    let _ = events.send(Event::Started { node: id.into(), at: SystemTime::now() });
    let (stx, mut srx) = mpsc::channel::<StatusEvent>(256);
    let ev = events.clone();
    let node = id.to_string();
    let forward = tokio::spawn(async move {
        let (mut steps, mut cached) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        while let Some(e) = srx.recv().await {
            match &e {
                StatusEvent::VertexCompleted { digest, .. } => {
                    steps.insert(digest.clone());
                }
                StatusEvent::VertexCached { digest, .. } => {
                    steps.insert(digest.clone());
                    cached.insert(digest.clone());
                }
                _ => {}
            }
            let _ = ev.send(Event::Status { node: node.clone(), event: e });
        }
        (steps.len(), cached.len())
    });
    let res = client.solve_with_cancel(req, Some(stx), cancel).await;
    let (steps, cached_steps) = forward.await.unwrap_or((0, 0));
    let _ = handle.close().await;
    drop(nr);
    match res {
        Ok(resp) => {
            let descriptor = match resp.image_descriptor() {
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => return Err(format!("{id}: {e}")),
                None => resp.image_digest().map(|d| Descriptor { media_type: String::new(), digest: d.to_string(), size: 0, annotations: Default::default() }),
            };
            let reference = match (push, &descriptor) {
                (Some(p), Some(d)) => Some(format!("{}@{}", p.repository, d.digest)),
                (Some(_), None) => return Err(format!("{id}: the builder returned no image digest for the pushed result")),
                _ => None,
            };
            let _ = events.send(Event::Finished { node: id.into(), at: SystemTime::now(), duration: started.elapsed(), digest: descriptor.as_ref().map(|d| d.digest.clone()), reference: reference.clone(), cached_steps, steps });
            Ok(NodeResult { exporter_response: resp.exporter_response, descriptor, reference })
        }
        Err(e) => {
            let msg = if e.is_cancelled() { format!("{id}: cancelled") } else { format!("{id}: {e}") };
            let _ = events.send(Event::Failed { node: id.into(), at: SystemTime::now(), error: msg.clone() });
            Err(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_matching() {
        let s = vec!["linux/amd64".to_string(), "linux/arm64".to_string(), "linux/arm/v7".to_string()];
        assert!(platform_supported("linux/amd64", &s));
        assert!(platform_supported("linux/arm/v7", &s));
        assert!(platform_supported("linux/arm", &s));
        assert!(!platform_supported("linux/riscv64", &s));
    }
}
