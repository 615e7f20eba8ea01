//! Stage 4 — `exec`: run the plan's build nodes as BuildKit solves.
//!
//! Entry point: [`run`]. Output: [`ExecOutcome`] — each build node's result
//! (exporter response, pushed descriptor) or failure. The executor emits
//! [`Event`]s and never prints.
//!
//! Each build node starts as soon as the build nodes it needs have
//! finished (per platform), at most `jobs` at a time; a need on the same
//! builder node counts as finished once it has handed over its result as
//! LLB ([`NodeMode::gateway`], [`LlbInput`]), before its export. A node
//! whose target is published, or whose result another node consumes and
//! that has tags, is exported with `push=true,push-by-digest=true` to its
//! first tag's repository: no tag is written here, and dependents on other
//! builder nodes use the result as `repo@digest`. The first failure cancels
//! the run unless `keep_going`.
//!
//! [`run`] connects to the builder nodes, assigns each build node to one
//! and ranks them; [`schedule`] decides what starts when, on a
//! [`schedule::Solver`] — here one that solves on BuildKit.

pub mod builders;
pub mod event;
pub mod priority;
pub mod request;
pub mod retry;
pub mod schedule;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::future::BoxFuture;
use petgraph::graph::NodeIndex;
use tokio::sync::mpsc;

use crate::oci::Descriptor;
pub use event::Event;
use mybake_buildkit::{CancellationToken, Client, Endpoint, StatusEvent};
use request::{PushTo, RequestOptions};

use crate::attrs::A;
use crate::plan::Plan;
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
    /// `SOURCE_DATE_EPOCH` of every solve (see [`crate::repro`]).
    pub source_date_epoch: Option<u64>,
    /// `--locked`: the pins of `mybake.lock`.
    pub pins: Option<Arc<crate::lock::Pins>>,
    /// The run's attestation settings (`--provenance`, `--sbom`).
    pub attest: crate::build::attest::AttestRun,
    /// Build nodes found unchanged (`build::skip`): not solved; each is
    /// reported `Skipped` with reason `unchanged` and given this result.
    pub unchanged: HashMap<NodeIndex, NodeResult>,
    /// `MYBAKE_TARGET_INPUTS=registry`: every `target:` result goes
    /// through the registry, none as LLB ([`NodeMode::gateway`]).
    pub registry_inputs: bool,
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
    /// Solves of its push: more than 1 when a transient registry answer
    /// made it export again (see [`retry`]).
    pub push_attempts: u32,
    /// The BuildKit ref of the solve that produced the result (bake's
    /// `buildx.build.ref` is `BUILDER/NODE/REF`).
    pub solve_ref: String,
    /// The result as LLB, for dependents on the same builder node (a
    /// gateway build, see [`NodeMode::gateway`]).
    pub input: Option<Arc<LlbInput>>,
}

/// A build node's result as LLB: what a dependent on the same builder node
/// gets as its `target:` context (a frontend input), without the result
/// going through a registry, as bake does. The LLB's local sources name
/// the node's session, which is kept open until every node that needs this
/// one has ended ([`LlbInput::release`], called by the scheduler): when
/// BuildKit has the steps cached (it has: they were just built) the
/// session is not read again, and when it has not, it is there.
#[derive(Debug)]
pub struct LlbInput {
    pub input: mybake_buildkit::FrontendInput,
    session: std::sync::Mutex<Option<Arc<mybake_buildkit::session::SessionHandle>>>,
    released: std::sync::atomic::AtomicBool,
}

impl LlbInput {
    pub fn new(
        input: mybake_buildkit::FrontendInput,
        session: Option<Arc<mybake_buildkit::session::SessionHandle>>,
    ) -> LlbInput {
        LlbInput {
            input,
            session: std::sync::Mutex::new(session),
            released: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// No dependent will read it any more: its session closes (when the
    /// node's own solve has ended too).
    pub fn release(&self) {
        self.released
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut s) = self.session.lock() {
            s.take();
        }
    }

    pub fn is_released(&self) -> bool {
        self.released.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How a build node is solved and where its result goes.
#[derive(Debug, Clone, Default)]
pub struct NodeMode {
    /// Pushed by digest: it is published, or a dependent on another
    /// builder node (or one that cannot take LLB) reads it from the registry.
    pub push: Option<PushTo>,
    /// Solved as a gateway build that hands its result's LLB to the
    /// dependents on its builder node as soon as it is built, before its
    /// export ([`NodeResult::input`]).
    pub gateway: bool,
}

/// `MYBAKE_TARGET_INPUTS=registry`: pass every `target:` result through
/// the registry, as before gateway builds (a way out should a builder
/// mishandle frontend inputs).
pub const TARGET_INPUTS_ENV: &str = "MYBAKE_TARGET_INPUTS";

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
    /// The build file asks for what it does not give the means to: a
    /// target pushed (or passed through a registry) without `tags`. Like
    /// any invalid build file, exit 2.
    #[error("{0}")]
    Config(String),
}

/// Why a solve did not produce a result.
#[derive(Debug)]
pub enum NodeError {
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

/// Whether a solve of target `t` ignores the build cache for any step
/// (`--no-cache`, `no-cache`, `no-cache-filter`). Its LLB then marks those
/// steps to be run again, and a dependent solving that LLB after the
/// node's own solve ended would run them once more: such a result goes
/// through the registry.
fn ignores_cache(t: &crate::resolve::Target, opts: &ExecOptions) -> bool {
    opts.no_cache || t.bool(A::NoCache) == Some(true) || !t.list(A::NoCacheFilter).is_empty()
}

/// How node `n` is solved: a gateway build when a dependent on the same
/// builder node can take its LLB, pushed by digest when it is published or
/// a dependent reads it from the registry.
fn node_mode(
    r: &Resolved,
    plan: &Plan,
    n: NodeIndex,
    assigned: &HashMap<NodeIndex, usize>,
    opts: &ExecOptions,
) -> Result<NodeMode, ExecError> {
    let node = plan.node(n);
    let t = &r.targets[node.target];
    let registry_output = t.spec.pushes();
    let dependents: Vec<NodeIndex> = plan
        .graph
        .neighbors_directed(n, petgraph::Direction::Incoming)
        .filter(|&d| plan.node(d).is_build())
        .collect();
    let llb_ok = !opts.registry_inputs && !ignores_cache(t, opts);
    let here = |d: &NodeIndex| assigned.get(d) == assigned.get(&n);
    let gateway = llb_ok && dependents.iter().any(here);
    // Pushed for a dependent that reads the registry, and, when it has a
    // tag, for the others too, after it handed them its LLB: its pushed
    // result is what a later run that skips it (`build::skip`) passes on.
    // Without a tag, a result only passed as LLB stays in the builder.
    let via_registry = dependents.iter().any(|d| !(gateway && here(d)));
    let consumed = via_registry || (!dependents.is_empty() && !t.list(A::Tags).is_empty());
    let published = node.publish && (opts.push || registry_output);
    if !(published || consumed) {
        return Ok(NodeMode {
            push: None,
            gateway,
        });
    }
    let Some(tag) = t.list(A::Tags).first() else {
        let why = if !consumed {
            "is pushed"
        } else if ignores_cache(t, opts) {
            "is used through `target:` by another target, and with the build cache off \
             (`--no-cache`, `no-cache`, `no-cache-filter`) its result is passed by digest \
             through a registry"
        } else if llb_ok {
            "is used through `target:` by a target built on another builder node, and its \
             result is passed there by digest through a registry"
        } else {
            "is used through `target:` by another target, and with MYBAKE_TARGET_INPUTS=registry \
             its result is passed by digest through a registry"
        };
        return Err(ExecError::Config(format!(
            "target `{}` {why}, but it has no `tags` naming a repository",
            t.name.v
        )));
    };
    let repository = request::repository_of(&tag.v);
    let insecure = request::is_insecure(
        &request::registry_of(&repository),
        &opts.insecure_registries,
    );
    Ok(NodeMode {
        push: Some(PushTo {
            repository,
            insecure,
        }),
        gateway,
    })
}

/// Run every build node of `plan`.
pub async fn run(
    r: &Resolved,
    plan: &Plan,
    opts: &ExecOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    // Output types are checked at resolve (`resolve::spec`).
    // Nothing to solve: no builder is needed.
    if plan
        .graph
        .node_indices()
        .filter(|&n| plan.node(n).is_build())
        .all(|n| opts.unchanged.contains_key(&n))
    {
        let mut outcome = ExecOutcome::default();
        for &n in &plan.order {
            if let Some(res) = opts.unchanged.get(&n) {
                let _ = events.send(unchanged_event(plan, n));
                outcome.results.insert(n, res.clone());
            }
        }
        return Ok(outcome);
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
        if opts.source_date_epoch.is_some() {
            crate::repro::check_builder(&label, version.as_deref())
                .map_err(ExecError::Unsupported)?;
        }
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
        .filter(|&n| plan.node(n).is_build())
        .collect();
    let platforms: Vec<String> = build_nodes
        .iter()
        .map(|&n| plan.node(n).platform().unwrap_or_default().to_string())
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
    let mut modes = HashMap::new();
    for &n in &build_nodes {
        modes.insert(n, node_mode(r, plan, n, &assigned, opts)?);
    }
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
        let p = plan.node(n).platform().unwrap_or_default();
        if platform_supported(p, &native[assigned[&n]]) {
            priority::NATIVE_WEIGHT
        } else {
            priority::EMULATED_WEIGHT
        }
    });
    let req_opts = RequestOptions {
        no_cache: opts.no_cache,
        history: opts.history,
        pull: opts.pull,
        ssh_auth_sock: opts.ssh_auth_sock.clone(),
        files: opts.files.clone(),
        source_date_epoch: opts.source_date_epoch,
        pins: opts.pins.clone(),
        attest: opts.attest.clone(),
    };
    let limits = schedule::Limits {
        jobs: opts.jobs,
        per_builder: nodes.iter().map(|n| n.jobs).collect(),
    };
    let solver = BuildKitSolver {
        r,
        plan,
        modes,
        clients,
        builders: nodes.iter().map(|n| n.name.clone()).collect(),
        req_opts,
        events: events.clone(),
        unchanged: &opts.unchanged,
    };
    let sched = schedule::Scheduler::new(plan, assigned, rank, &limits, opts.keep_going);
    Ok(schedule::drive(sched, &solver, &events, &cancel).await)
}

/// The [`schedule::Solver`] of a real run: each node is solved on its
/// builder node's BuildKit client, in a task of its own.
struct BuildKitSolver<'a> {
    r: &'a Resolved,
    plan: &'a Plan,
    modes: HashMap<NodeIndex, NodeMode>,
    clients: Vec<Arc<Client>>,
    /// Builder node names, by index.
    builders: Vec<String>,
    req_opts: RequestOptions,
    events: mpsc::UnboundedSender<Event>,
    unchanged: &'a HashMap<NodeIndex, NodeResult>,
}

/// The event of a node not solved because it is unchanged.
fn unchanged_event(plan: &Plan, n: NodeIndex) -> Event {
    Event::Skipped {
        node: plan.node(n).id.clone(),
        reason: "unchanged".into(),
    }
}

impl schedule::Solver for BuildKitSolver<'_> {
    fn solve(
        &self,
        job: schedule::Job,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<NodeResult, NodeError>> {
        if let Some(res) = self.unchanged.get(&job.node) {
            let _ = self.events.send(unchanged_event(self.plan, job.node));
            let res = res.clone();
            return Box::pin(async move { Ok(res) });
        }
        let node = self.plan.node(job.node);
        let t = self.r.targets[node.target].clone();
        let mut deps: HashMap<String, request::DepResult> = HashMap::new();
        for (d, res) in &job.deps {
            let dep_target = &self.plan.node(*d).target_name;
            // Its LLB when it was built on this builder node, else its
            // pushed image.
            let dep = match (&res.input, &res.reference) {
                (Some(l), _) if job.same_builder(*d) => request::DepResult::Llb(l.clone()),
                (_, Some(reference)) => request::DepResult::Image(reference.clone()),
                _ => continue,
            };
            for (ctx, name) in &t.deps {
                if &name.v == dep_target {
                    deps.insert(ctx.clone(), dep.clone());
                }
            }
        }
        let platform = node.platform().unwrap_or_default().to_string();
        let mode = self.modes[&job.node].clone();
        let early = job.early.clone();
        let n = job.node;
        let id = node.id.clone();
        let events = self.events.clone();
        let client = self.clients[job.builder].clone();
        let builder_name = self.builders[job.builder].clone();
        let req_opts = self.req_opts.clone();
        let task = AbortOnDrop(tokio::spawn(async move {
            let node = NodeSolve {
                client: &client,
                builder: &builder_name,
                t: &t,
                platform: &platform,
                deps: &deps,
                id: &id,
                events: &events,
                gateway: mode.gateway.then_some((n, &early)),
            };
            solve_node(&node, mode.push.as_ref(), &req_opts, cancel).await
        }));
        Box::pin(async move {
            match task.await {
                Ok(v) => v,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        })
    }
}

/// A spawned solve, aborted if the run stops waiting for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Does a builder platform list cover `p` (`linux/arm/v7` ~ `linux/arm`)?
/// Whether a builder that reports `supported` builds `p`: the same
/// platform after normalisation ([`crate::plan::same_platform`], the
/// plan's rule), or the same os/arch where one side names no variant (a
/// builder reporting `linux/arm64` builds `linux/arm64/v8`).
fn platform_supported(p: &str, supported: &[String]) -> bool {
    supported.iter().any(|s| {
        crate::plan::same_platform(s, p)
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
    /// Context name → a dependency's result.
    deps: &'a HashMap<String, request::DepResult>,
    /// `target@platform`.
    id: &'a str,
    events: &'a mpsc::UnboundedSender<Event>,
    /// A gateway build: the node, and where its LLB goes once built.
    gateway: Option<(NodeIndex, &'a schedule::EarlySender)>,
}

async fn solve_node(
    node: &NodeSolve<'_>,
    push: Option<&PushTo>,
    opts: &RequestOptions,
    cancel: CancellationToken,
) -> Result<NodeResult, NodeError> {
    let (t, id, events) = (node.t, node.id, node.events);
    let mut run = NodeRun {
        started: Instant::now(),
        started_sent: false,
        tally: StepTally::default(),
    };
    // BuildKit merges the responses of a solve's exporters, so with the
    // push exporter and the `oci` exporter in one solve
    // `containerimage.descriptor` may be either's, and they differ when
    // attestations are on (each export gets its own provenance). The OCI
    // archive then comes from a second solve of the same (cached) build.
    let files = opts.files.get(&t.name.v);
    let oci = |e: &&request::FileExport| e.kind == request::FileExportKind::Oci;
    let result = if push.is_none() || !files.is_some_and(|f| f.iter().any(|e| oci(&e))) {
        solve_pushing(node, push, opts, &cancel, &mut run).await
    } else {
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
        match solve_pushing(node, push, &split(false), &cancel, &mut run).await {
            Ok(first) => {
                let plain = NodeSolve {
                    gateway: None,
                    ..*node
                };
                solve_once(&plain, None, &split(true), &cancel, &mut run)
                    .await
                    .map(|_| first)
                    .map_err(|e| node_failure(node, &run, e))
            }
            Err(e) => Err(e),
        }
    };
    let first = result?;
    let duration = run.started.elapsed();
    let (steps, cached_steps) = run.tally.counts();
    let _ = events.send(Event::Finished {
        node: id.into(),
        at: SystemTime::now(),
        duration,
        digest: first.descriptor.as_ref().map(|d| d.digest.clone()),
        reference: first.reference.clone(),
        cached_steps,
        steps,
        push_attempts: first.push_attempts,
    });
    Ok(NodeResult {
        duration,
        steps,
        cached_steps,
        ..first
    })
}

/// The state of one node across its solves.
struct NodeRun {
    started: Instant,
    /// `Started` was sent (before the first solve's request went out).
    started_sent: bool,
    tally: StepTally,
}

/// The node's steps over all its solves. A retry finds the steps the
/// first solve built cached and runs its own export step (a new vertex
/// each solve): a step counts once, as the first solve that reported a
/// step of that name saw it.
#[derive(Default)]
struct StepTally {
    steps: HashSet<String>,
    cached: HashSet<String>,
    /// Names of the steps recorded so far, and of the earlier solves'.
    names: HashSet<String>,
    earlier: HashSet<String>,
}

impl StepTally {
    /// (steps, cached steps).
    fn counts(&self) -> (usize, usize) {
        (self.steps.len(), self.cached.len())
    }

    /// A new solve of the node starts.
    fn next_solve(&mut self) {
        self.earlier.clone_from(&self.names);
    }

    fn record(&mut self, e: &StatusEvent) {
        let (digest, name, cached) = match e {
            StatusEvent::VertexCompleted { digest, name, .. } => (digest, name, false),
            StatusEvent::VertexCached { digest, name } => (digest, name, true),
            _ => return,
        };
        let name = if name.is_empty() { digest } else { name };
        if self.earlier.contains(name) {
            return;
        }
        self.names.insert(name.clone());
        self.steps.insert(digest.clone());
        if cached {
            self.cached.insert(digest.clone());
        }
    }
}

/// How one solve of a node ended without a result.
enum SolveFailure {
    /// Before the request was sent (request, session): the message names the node.
    Setup(String),
    Cancelled,
    /// The daemon failed the solve.
    Solve {
        /// `node (builder b): error`.
        message: String,
        /// The daemon's message alone.
        daemon: String,
        /// Steps the daemon reported as failed.
        failed_steps: Vec<String>,
    },
}

/// The events and error for a node that ends with `e`.
fn node_failure(node: &NodeSolve<'_>, run: &NodeRun, e: SolveFailure) -> NodeError {
    match e {
        SolveFailure::Cancelled => {
            let _ = node.events.send(Event::Cancelled {
                node: node.id.into(),
                at: SystemTime::now(),
                duration: run.started.elapsed(),
            });
            NodeError::Cancelled
        }
        SolveFailure::Setup(msg) | SolveFailure::Solve { message: msg, .. } => {
            if run.started_sent {
                let _ = node.events.send(Event::Failed {
                    node: node.id.into(),
                    at: SystemTime::now(),
                    error: msg.clone(),
                });
            }
            NodeError::Failed(msg)
        }
    }
}

/// [`solve_once`], solved again while its push fails with a transient
/// registry answer (see [`retry`]): at most [`retry::PUSH_ATTEMPTS`] solves,
/// with a growing pause between them that the run's cancellation cuts
/// short. Only a failure of the push itself counts: a failed build step
/// fails the node at once.
async fn solve_pushing(
    node: &NodeSolve<'_>,
    push: Option<&PushTo>,
    opts: &RequestOptions,
    cancel: &CancellationToken,
    run: &mut NodeRun,
) -> Result<NodeResult, NodeError> {
    let max = if push.is_some() {
        retry::PUSH_ATTEMPTS
    } else {
        1
    };
    let mut attempt = 1;
    let mut bad_requests = 0;
    loop {
        let e = match solve_once(node, push, opts, cancel, run).await {
            Ok(mut res) => {
                res.push_attempts = attempt;
                return Ok(res);
            }
            Err(e) => e,
        };
        let SolveFailure::Solve {
            message,
            daemon,
            failed_steps,
        } = e
        else {
            return Err(node_failure(node, run, e));
        };
        // The export's own step is `exporting to image`; any other failed
        // step means the build itself failed.
        let kind = if failed_steps.iter().all(|s| s.starts_with("exporting")) {
            retry::classify(&daemon)
        } else {
            retry::PushFailure::NotPush
        };
        if kind == retry::PushFailure::BadRequest {
            bad_requests += 1;
        }
        // A bare 400 again after a re-export is the registry's final word.
        let again = kind.retryable() && bad_requests < 2 && attempt < max;
        if !again || cancel.is_cancelled() {
            let message = if attempt > 1 {
                format!("{message} (after {attempt} push attempts)")
            } else {
                message
            };
            return Err(node_failure(
                node,
                run,
                SolveFailure::Solve {
                    message,
                    daemon,
                    failed_steps,
                },
            ));
        }
        let delay = retry::backoff(attempt);
        attempt += 1;
        let _ = node.events.send(Event::Retrying {
            node: node.id.into(),
            attempt,
            max,
            reason: retry::short_reason(&daemon),
            delay,
        });
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(node_failure(node, run, SolveFailure::Cancelled)),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One solve of a node. Sends `Started` before the node's first request
/// and the solve's progress; the caller reports how the node ends.
async fn solve_once(
    node: &NodeSolve<'_>,
    push: Option<&PushTo>,
    opts: &RequestOptions,
    cancel: &CancellationToken,
    run: &mut NodeRun,
) -> Result<NodeResult, SolveFailure> {
    let NodeSolve {
        client,
        builder,
        t,
        platform,
        deps,
        id,
        events,
        gateway,
    } = *node;
    let nr = request::build(t, platform, deps, push, opts)
        .map_err(|e| SolveFailure::Setup(format!("{id}: {e}")))?;
    let session = nr
        .session()
        .map_err(|e| SolveFailure::Setup(format!("{id}: {e}")))?;
    let handle = session
        .attach(client)
        .await
        .map_err(|e| SolveFailure::Setup(format!("{id}: session: {e}")))?;
    let mut req = nr.request.clone();
    req.session_id = handle.id().to_owned();
    if req.reference.is_empty() {
        req.reference = mybake_buildkit::session::new_id();
    }
    let solve_ref = req.reference.clone();
    if !run.started_sent {
        run.started_sent = true;
        run.started = Instant::now();
        let _ = events.send(Event::Started {
            node: id.into(),
            builder: builder.into(),
            at: SystemTime::now(),
        });
    }
    let (stx, mut srx) = mpsc::channel::<StatusEvent>(256);
    let ev = events.clone();
    let node_id = id.to_string();
    let mut tally = std::mem::take(&mut run.tally);
    tally.next_solve();
    let forward = tokio::spawn(async move {
        let mut failed = Vec::new();
        while let Some(e) = srx.recv().await {
            tally.record(&e);
            if let StatusEvent::VertexError { name, .. } = &e {
                failed.push(name.clone());
            }
            let _ = ev.send(Event::Status {
                node: node_id.clone(),
                event: e,
            });
        }
        (tally, failed)
    });
    let mut input = None;
    let mut handle = Some(handle);
    let res = match gateway {
        None => {
            client
                .solve_with_cancel(req, Some(stx), cancel.clone())
                .await
        }
        Some((n, early)) => {
            // The LLB goes to the dependents the moment it is built; the
            // session stays open as long as they may read it.
            let session = Arc::new(handle.take().expect("the session is attached"));
            let (itx, irx) = tokio::sync::oneshot::channel();
            let solve = client.solve_gateway(req, Some(stx), Some(itx), cancel.clone());
            let hand_over = async {
                let Ok(built) = irx.await else { return None };
                let llb = Arc::new(LlbInput::new(built, Some(session.clone())));
                let _ = early.send((
                    n,
                    NodeResult {
                        exporter_response: HashMap::new(),
                        descriptor: None,
                        reference: None,
                        duration: run.started.elapsed(),
                        steps: 0,
                        cached_steps: 0,
                        builder: builder.to_string(),
                        push_attempts: 0,
                        solve_ref: solve_ref.clone(),
                        input: Some(llb.clone()),
                    },
                ));
                Some(llb)
            };
            let (res, llb) = tokio::join!(solve, hand_over);
            input = llb;
            res
        }
    };
    let failed_steps = match forward.await {
        Ok((tally, failed)) => {
            run.tally = tally;
            failed
        }
        Err(_) => Vec::new(),
    };
    if let Some(handle) = handle {
        let _ = handle.close().await;
    }
    drop(nr);
    match res {
        Ok(resp) => {
            let descriptor = match resp.image_descriptor() {
                // BuildKit's wire descriptor → the one OCI descriptor.
                Some(Ok(d)) => Some(Descriptor::from(&d)),
                Some(Err(e)) => {
                    let message = format!("{id}: {e}");
                    return Err(SolveFailure::Solve {
                        daemon: message.clone(),
                        message,
                        failed_steps: Vec::new(),
                    });
                }
                None => resp.image_digest().map(|d| Descriptor {
                    media_type: String::new(),
                    digest: d.to_string(),
                    size: 0,
                    annotations: Default::default(),
                    platform: None,
                    artifact_type: None,
                }),
            };
            let reference = match (push, &descriptor) {
                (Some(p), Some(d)) => Some(format!("{}@{}", p.repository, d.digest)),
                (Some(_), None) => {
                    let message =
                        format!("{id}: the builder returned no image digest for the pushed result");
                    return Err(SolveFailure::Solve {
                        daemon: message.clone(),
                        message,
                        failed_steps: Vec::new(),
                    });
                }
                _ => None,
            };
            let (steps, cached_steps) = run.tally.counts();
            Ok(NodeResult {
                exporter_response: resp.exporter_response,
                descriptor,
                reference,
                duration: run.started.elapsed(),
                steps,
                cached_steps,
                builder: builder.to_string(),
                push_attempts: 1,
                solve_ref,
                input,
            })
        }
        Err(e) if e.is_cancelled() => Err(SolveFailure::Cancelled),
        Err(e) => {
            let daemon = match &e {
                mybake_buildkit::Error::Solve { message, .. } => message.clone(),
                other => other.to_string(),
            };
            Err(SolveFailure::Solve {
                message: format!("{id} (builder {builder}): {e}"),
                daemon,
                failed_steps,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_count_as_their_first_solve_saw_them() {
        let done = |d: &str, n: &str| StatusEvent::VertexCompleted {
            digest: d.into(),
            name: n.into(),
            duration: None,
        };
        let cached = |d: &str, n: &str| StatusEvent::VertexCached {
            digest: d.into(),
            name: n.into(),
        };
        let mut t = StepTally::default();
        t.next_solve();
        // First solve: FROM reported done then cached, RUN built, the
        // export failed.
        for e in [
            done("from", "[1/2] FROM"),
            cached("from", "[1/2] FROM"),
            done("run", "[2/2] RUN"),
            done("x1", "exporting to image"),
        ] {
            t.record(&e);
        }
        assert_eq!(t.counts(), (3, 1));
        // The retry finds RUN cached and exports under a new vertex.
        t.next_solve();
        for e in [
            done("from", "[1/2] FROM"),
            cached("run", "[2/2] RUN"),
            done("x2", "exporting to image"),
        ] {
            t.record(&e);
        }
        assert_eq!(t.counts(), (3, 1));
        // The OCI solve of a split node adds its own export.
        t.next_solve();
        t.record(&done("x3", "exporting to oci image format"));
        assert_eq!(t.counts(), (4, 1));
    }

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
