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

pub mod builders;
pub mod event;
pub mod preflight;
pub mod priority;
pub mod request;

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use petgraph::graph::NodeIndex;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use event::Event;
use mybake_buildkit::{CancellationToken, Client, Descriptor, Endpoint, StatusEvent};
use request::{PushTo, RequestOptions};

use crate::attrs::A;
use crate::plan::{NodeKind, Plan};
use crate::resolve::Resolved;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Builder nodes (see [`builders::select`]); empty = local Docker.
    pub nodes: Vec<builders::NodeSpec>,
    /// Cap on concurrent solves across all nodes (`-j`).
    pub jobs: Option<usize>,
    /// Publish requested targets to the registry (`--push` or `output "registry"`).
    pub push: bool,
    pub keep_going: bool,
    pub no_cache: bool,
    pub pull: bool,
    /// `--history`: record every solve in the builder's build history.
    pub history: bool,
    /// Registries to reach over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    /// `$SSH_AUTH_SOCK` for `ssh "default"`.
    pub ssh_auth_sock: Option<std::path::PathBuf>,
    /// `--load`: requested targets also get `output "docker"`.
    pub load: bool,
    /// File exports (`local`, `tar`, `oci`, `docker`) per requested
    /// target name, with their staging directories; the publish phase
    /// moves or loads what they received (`publish::outputs`).
    pub files: HashMap<String, Vec<request::FileExport>>,
}

/// One successful build node.
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub exporter_response: HashMap<String, String>,
    pub descriptor: Option<Descriptor>,
    /// `repo@digest` when pushed by digest.
    pub reference: Option<String>,
    pub duration: std::time::Duration,
    pub steps: usize,
    pub cached_steps: usize,
    /// Builder node that ran it.
    pub builder: String,
}

#[derive(Debug, Default)]
pub struct ExecOutcome {
    pub results: HashMap<NodeIndex, NodeResult>,
    /// Failed nodes and their errors, in the order they failed.
    pub failures: Vec<(NodeIndex, String)>,
    /// Nodes not run (a dependency failed, or the run was cancelled).
    pub skipped: Vec<NodeIndex>,
    /// Nodes whose solve was cancelled after another node failed.
    pub cancelled: Vec<NodeIndex>,
}

/// Problems before any build starts.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("builder {endpoint}: {reason}")]
    Builder { endpoint: String, reason: String },
    #[error("builder {endpoint} cannot build {platforms} (it supports: {supported})")]
    Platforms {
        endpoint: String,
        platforms: String,
        supported: String,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// Why a solve did not produce a result.
#[derive(Debug)]
enum NodeError {
    /// The run was cancelled (another node failed, or Ctrl-C) while it ran.
    Cancelled,
    /// The message names the node (and the builder, for solve errors).
    Failed(String),
}

impl From<String> for NodeError {
    fn from(e: String) -> Self {
        NodeError::Failed(e)
    }
}

/// Whether node `n`'s result is pushed by digest, and where.
fn push_target(
    r: &Resolved,
    plan: &Plan,
    n: NodeIndex,
    opts: &ExecOptions,
) -> Result<Option<PushTo>, ExecError> {
    let node = plan.node(n);
    let t = &r.targets[node.target];
    let registry_output = t.objects(A::Output).iter().any(|o| {
        matches!(
            o.get("type").map(|s| s.v.as_str()),
            Some("registry") | Some("image")
        )
    });
    let consumed = plan
        .graph
        .neighbors_directed(n, petgraph::Direction::Incoming)
        .any(|d| plan.node(d).kind == NodeKind::Build);
    let published = node.publish && (opts.push || registry_output);
    if !(published || consumed) {
        return Ok(None);
    }
    let Some(tag) = t.list(A::Tags).first() else {
        let why = if consumed {
            "is used through `target:` by another target, and its result is passed by digest through a registry"
        } else {
            "is pushed"
        };
        return Err(ExecError::Unsupported(format!(
            "target `{}` {why}, but it has no `tags` naming a repository",
            t.name.v
        )));
    };
    let repository = request::repository_of(&tag.v);
    let insecure =
        request::is_insecure(request::registry_of(&repository), &opts.insecure_registries);
    Ok(Some(PushTo {
        repository,
        insecure,
    }))
}

/// Run every build node of `plan`.
pub async fn run(
    r: &Resolved,
    plan: &Plan,
    opts: &ExecOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    // Validate outputs before connecting.
    for t in plan
        .graph
        .node_weights()
        .filter(|n| n.kind == NodeKind::Build)
        .map(|n| &r.targets[n.target])
    {
        for o in t.objects(A::Output) {
            let ty = o.get("type").map(|s| s.v.as_str()).unwrap_or("");
            if !matches!(
                ty,
                "registry" | "image" | "cacheonly" | "docker" | "oci" | "local" | "tar"
            ) {
                return Err(ExecError::Unsupported(format!("target `{}`: output `{ty}` is not supported (registry, docker, oci, local, tar and cacheonly are)", t.name.v)));
            }
        }
    }
    let mut pushes = HashMap::new();
    for n in plan
        .graph
        .node_indices()
        .filter(|&n| plan.node(n).kind == NodeKind::Build)
    {
        pushes.insert(n, push_target(r, plan, n, opts)?);
    }
    let nodes: Vec<builders::NodeSpec> = if opts.nodes.is_empty() {
        vec![builders::NodeSpec {
            name: "docker".into(),
            endpoint: "docker".into(),
            native: Vec::new(),
            jobs: builders::DEFAULT_NODE_JOBS,
        }]
    } else {
        opts.nodes.clone()
    };
    let mut clients = Vec::new();
    let mut supported_by = Vec::new();
    for spec in &nodes {
        let label = if spec.name == spec.endpoint {
            spec.endpoint.clone()
        } else {
            format!("{} ({})", spec.name, spec.endpoint)
        };
        let fail = |reason: String| ExecError::Builder {
            endpoint: label.clone(),
            reason,
        };
        let endpoint = Endpoint::parse(&spec.endpoint).map_err(|e| fail(e.to_string()))?;
        let client = Client::connect(&endpoint)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let workers = client
            .list_workers()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut supported: Vec<String> = Vec::new();
        for p in workers.iter().flat_map(|w| w.platforms.iter()) {
            if !supported.contains(p) {
                supported.push(p.clone());
            }
        }
        let version = client.info().await.ok().flatten().map(|v| v.version);
        let _ = events.send(Event::Builder {
            endpoint: label.clone(),
            version,
            platforms: supported.clone(),
        });
        clients.push(Arc::new(client));
        supported_by.push(supported);
    }
    let build_nodes: Vec<NodeIndex> = plan
        .order
        .iter()
        .copied()
        .filter(|&n| plan.node(n).kind == NodeKind::Build)
        .collect();
    let platforms: Vec<String> = build_nodes
        .iter()
        .map(|&n| plan.node(n).platform.clone().unwrap_or_default())
        .collect();
    let Ok(assignment) = builders::assign(&platforms, &nodes, &supported_by, platform_supported)
    else {
        let mut missing: Vec<String> = platforms
            .iter()
            .filter(|p| !supported_by.iter().any(|s| platform_supported(p, s)))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        let mut all: Vec<String> = Vec::new();
        for p in supported_by.concat() {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        return Err(ExecError::Platforms {
            endpoint: names.join(", "),
            platforms: missing.join(", "),
            supported: all.join(", "),
        });
    };
    let assigned: HashMap<NodeIndex, usize> = build_nodes.iter().copied().zip(assignment).collect();
    let native: Vec<Vec<String>> = nodes
        .iter()
        .zip(&supported_by)
        .map(|(spec, supported)| {
            if spec.native.is_empty() {
                supported.first().cloned().into_iter().collect()
            } else {
                spec.native.clone()
            }
        })
        .collect();
    let rank = priority::ranks(plan, |n| {
        let p = plan.node(n).platform.as_deref().unwrap_or_default();
        if platform_supported(p, &native[assigned[&n]]) {
            priority::NATIVE_WEIGHT
        } else {
            priority::EMULATED_WEIGHT
        }
    });
    let position: HashMap<NodeIndex, usize> = plan
        .order
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i))
        .collect();
    let req_opts = RequestOptions {
        no_cache: opts.no_cache,
        history: opts.history,
        pull: opts.pull,
        ssh_auth_sock: opts.ssh_auth_sock.clone(),
        files: opts.files.clone(),
    };

    // The run state lives in this task alone. Solves run as spawned tasks
    // and report back through the JoinSet; a node is dispatched the moment
    // the build nodes it needs have finished and both its builder node and
    // the run (`-j`) have a free slot. Among ready nodes, the highest rank
    // (longest remaining chain, see `priority`) goes first.
    let global_cap = opts.jobs.map_or(usize::MAX, |j| j.max(1));
    let caps: Vec<usize> = nodes.iter().map(|n| n.jobs.max(1)).collect();
    let mut running = vec![0usize; nodes.len()];
    let mut running_total = 0usize;
    type ReadyEntry = (u64, std::cmp::Reverse<usize>, NodeIndex);
    let mut ready: Vec<BinaryHeap<ReadyEntry>> = vec![BinaryHeap::new(); nodes.len()];
    let mut waiting: HashMap<NodeIndex, usize> = HashMap::new();
    for &n in &build_nodes {
        let _ = events.send(Event::Queued {
            node: plan.node(n).id.clone(),
        });
        let needs = plan.needs(n).len();
        if needs == 0 {
            ready[assigned[&n]].push((rank[&n], std::cmp::Reverse(position[&n]), n));
        } else {
            waiting.insert(n, needs);
        }
    }
    let mut results: HashMap<NodeIndex, Arc<NodeResult>> = HashMap::new();
    let mut ended: HashSet<NodeIndex> = HashSet::new();
    let mut out = ExecOutcome::default();
    let mut tasks: JoinSet<(NodeIndex, Result<NodeResult, NodeError>)> = JoinSet::new();
    loop {
        while !cancel.is_cancelled() && running_total < global_cap {
            let best = (0..nodes.len())
                .filter(|&b| running[b] < caps[b])
                .filter_map(|b| ready[b].peek().map(|e| (*e, b)))
                .max();
            let Some((_, b)) = best else { break };
            let (_, _, n) = ready[b].pop().expect("peeked");
            running[b] += 1;
            running_total += 1;
            let node = plan.node(n);
            let t = r.targets[node.target].clone();
            let mut deps: HashMap<String, String> = HashMap::new();
            for d in plan.needs(n) {
                let dep_target = &plan.node(d).target_name;
                let Some(reference) = results.get(&d).and_then(|res| res.reference.clone()) else {
                    continue;
                };
                for (ctx, dep) in &t.deps {
                    if &dep.v == dep_target {
                        deps.insert(ctx.clone(), reference.clone());
                    }
                }
            }
            let platform = node.platform.clone().unwrap_or_default();
            let push = pushes[&n].clone();
            let id = node.id.clone();
            let events = events.clone();
            let cancel = cancel.clone();
            let client = clients[b].clone();
            let builder_name = nodes[b].name.clone();
            let req_opts = req_opts.clone();
            tasks.spawn(async move {
                let node = NodeSolve {
                    client: &client,
                    builder: &builder_name,
                    t: &t,
                    platform: &platform,
                    deps: &deps,
                    id: &id,
                    events: &events,
                };
                let res = solve_node(&node, push.as_ref(), &req_opts, cancel).await;
                (n, res)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (n, res) = match joined {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let b = assigned[&n];
        running[b] -= 1;
        running_total -= 1;
        ended.insert(n);
        match res {
            Ok(result) => {
                let result = Arc::new(result);
                out.results.insert(n, (*result).clone());
                results.insert(n, result);
                for d in plan
                    .graph
                    .neighbors_directed(n, petgraph::Direction::Incoming)
                {
                    if let Some(w) = waiting.get_mut(&d) {
                        *w -= 1;
                        if *w == 0 {
                            waiting.remove(&d);
                            ready[assigned[&d]].push((
                                rank[&d],
                                std::cmp::Reverse(position[&d]),
                                d,
                            ));
                        }
                    }
                }
            }
            Err(NodeError::Cancelled) => out.cancelled.push(n),
            Err(NodeError::Failed(e)) => {
                out.failures.push((n, e));
                // Everything that needs this node, directly or not, will not run.
                let failed = plan.node(n).target_name.clone();
                let mut stack = vec![n];
                while let Some(x) = stack.pop() {
                    for d in plan
                        .graph
                        .neighbors_directed(x, petgraph::Direction::Incoming)
                    {
                        if waiting.remove(&d).is_some() {
                            ended.insert(d);
                            out.skipped.push(d);
                            let _ = events.send(Event::Skipped {
                                node: plan.node(d).id.clone(),
                                reason: format!("{failed} failed"),
                            });
                            stack.push(d);
                        }
                    }
                }
                if !opts.keep_going {
                    cancel.cancel();
                }
            }
        }
    }
    // What never started: the run was cancelled (fail-fast or Ctrl-C).
    for &n in &build_nodes {
        if !ended.contains(&n) {
            out.skipped.push(n);
            let _ = events.send(Event::Skipped {
                node: plan.node(n).id.clone(),
                reason: "run cancelled".into(),
            });
        }
    }
    Ok(out)
}

/// Does a builder platform list cover `p` (`linux/arm/v7` ~ `linux/arm`)?
fn platform_supported(p: &str, supported: &[String]) -> bool {
    supported.iter().any(|s| {
        s == p
            || (p.matches('/').count() == 1 && s.starts_with(&format!("{p}/")))
            || (s.matches('/').count() == 1 && p.starts_with(&format!("{s}/")))
    })
}

/// What every solve of one build node shares.
struct NodeSolve<'a> {
    client: &'a Client,
    builder: &'a str,
    t: &'a crate::resolve::Target,
    platform: &'a str,
    /// Context name → image reference of a dependency's result.
    deps: &'a HashMap<String, String>,
    /// `target@platform`.
    id: &'a str,
    events: &'a mpsc::UnboundedSender<Event>,
}

async fn solve_node(
    node: &NodeSolve<'_>,
    push: Option<&PushTo>,
    opts: &RequestOptions,
    cancel: CancellationToken,
) -> Result<NodeResult, NodeError> {
    let (t, id, events) = (node.t, node.id, node.events);
    // BuildKit merges the responses of a solve's exporters, so with the
    // push exporter and the `oci` exporter in one solve
    // `containerimage.descriptor` may be either's, and they differ when
    // attestations are on (each export gets its own provenance). The OCI
    // archive then comes from a second solve of the same (cached) build.
    let files = opts.files.get(&t.name.v);
    let oci = |e: &&request::FileExport| e.kind == request::FileExportKind::Oci;
    if push.is_none() || !files.is_some_and(|f| f.iter().any(|e| oci(&e))) {
        return solve_once(node, push, opts, cancel, true, true).await;
    }
    let split = |keep_oci: bool| {
        let mut o = opts.clone();
        let list: Vec<request::FileExport> = files
            .into_iter()
            .flatten()
            .filter(|e| oci(e) == keep_oci)
            .cloned()
            .collect();
        o.files.insert(t.name.v.clone(), list);
        o
    };
    let first = solve_once(node, push, &split(false), cancel.clone(), true, false).await?;
    let second = solve_once(node, None, &split(true), cancel, false, false).await?;
    let duration = first.duration + second.duration;
    let _ = events.send(Event::Finished {
        node: id.into(),
        at: SystemTime::now(),
        duration,
        digest: first.descriptor.as_ref().map(|d| d.digest.clone()),
        reference: first.reference.clone(),
        cached_steps: first.cached_steps,
        steps: first.steps,
    });
    Ok(NodeResult { duration, ..first })
}

/// One solve of a node; `started`/`finished` say whether to emit those
/// events (a node solved twice reports one of each).
async fn solve_once(
    node: &NodeSolve<'_>,
    push: Option<&PushTo>,
    opts: &RequestOptions,
    cancel: CancellationToken,
    started_event: bool,
    finished_event: bool,
) -> Result<NodeResult, NodeError> {
    let NodeSolve {
        client,
        builder,
        t,
        platform,
        deps,
        id,
        events,
    } = *node;
    let nr = request::build(t, platform, deps, push, opts).map_err(|e| format!("{id}: {e}"))?;
    let session = nr.session().map_err(|e| format!("{id}: {e}"))?;
    let handle = session
        .attach(client)
        .await
        .map_err(|e| format!("{id}: session: {e}"))?;
    let mut req = nr.request.clone();
    req.session_id = handle.id().to_owned();
    let started = Instant::now();
    if started_event {
        let _ = events.send(Event::Started {
            node: id.into(),
            builder: builder.into(),
            at: SystemTime::now(),
        });
    }
    let (stx, mut srx) = mpsc::channel::<StatusEvent>(256);
    let ev = events.clone();
    let node = id.to_string();
    let forward = tokio::spawn(async move {
        let (mut steps, mut cached) = (
            std::collections::HashSet::new(),
            std::collections::HashSet::new(),
        );
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
            let _ = ev.send(Event::Status {
                node: node.clone(),
                event: e,
            });
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
                Some(Err(e)) => return Err(format!("{id}: {e}").into()),
                None => resp.image_digest().map(|d| Descriptor {
                    media_type: String::new(),
                    digest: d.to_string(),
                    size: 0,
                    annotations: Default::default(),
                }),
            };
            let reference = match (push, &descriptor) {
                (Some(p), Some(d)) => Some(format!("{}@{}", p.repository, d.digest)),
                (Some(_), None) => {
                    return Err(format!(
                        "{id}: the builder returned no image digest for the pushed result"
                    )
                    .into())
                }
                _ => None,
            };
            if finished_event {
                let _ = events.send(Event::Finished {
                    node: id.into(),
                    at: SystemTime::now(),
                    duration: started.elapsed(),
                    digest: descriptor.as_ref().map(|d| d.digest.clone()),
                    reference: reference.clone(),
                    cached_steps,
                    steps,
                });
            }
            Ok(NodeResult {
                exporter_response: resp.exporter_response,
                descriptor,
                reference,
                duration: started.elapsed(),
                steps,
                cached_steps,
                builder: builder.to_string(),
            })
        }
        Err(e) if e.is_cancelled() => {
            let _ = events.send(Event::Cancelled {
                node: id.into(),
                at: SystemTime::now(),
                duration: started.elapsed(),
            });
            Err(NodeError::Cancelled)
        }
        Err(e) => {
            let msg = format!("{id} (builder {builder}): {e}");
            let _ = events.send(Event::Failed {
                node: id.into(),
                at: SystemTime::now(),
                error: msg.clone(),
            });
            Err(NodeError::Failed(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_matching() {
        let s = vec![
            "linux/amd64".to_string(),
            "linux/arm64".to_string(),
            "linux/arm/v7".to_string(),
        ];
        assert!(platform_supported("linux/amd64", &s));
        assert!(platform_supported("linux/arm/v7", &s));
        assert!(platform_supported("linux/arm", &s));
        assert!(!platform_supported("linux/riscv64", &s));
    }
}
