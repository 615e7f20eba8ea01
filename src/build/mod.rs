//! Stage — `build`: one run of `mybake build` after planning. Owns the
//! file-output staging, the builds (`exec`), the publish (indexes, tags),
//! the placement of file outputs, the metadata file and signal handling,
//! and returns a typed [`BuildReport`]. It prints nothing: events go to a
//! [`Reporter`] as they come, and `report` renders the report.

pub mod attest;
pub mod inputs;
mod interrupt;
pub mod preflight;
pub mod skip;
mod targets;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::exec::{self, Event, ExecOptions};
use crate::plan::Plan;
use crate::publish::outputs::{self, CommitReport, FileOutput};
use crate::publish::{PublishError, PublishEvent, PublishReport};
use crate::report::reporter::Reporter;
use crate::resolve::Resolved;
use mybake_buildkit::CancellationToken;

pub use interrupt::Signal;

/// Everything a run needs beyond the resolved targets and the plan.
#[derive(Debug, Clone, Default)]
pub struct BuildSettings {
    /// Builder name (`--builder`, `MYBAKE_BUILDER`, `docker`).
    pub builder: String,
    pub push: bool,
    pub load: bool,
    pub jobs: Option<usize>,
    pub keep_going: bool,
    pub no_cache: bool,
    /// `--rebuild`: build targets even when they are unchanged.
    pub rebuild: bool,
    pub pull: bool,
    pub history: bool,
    /// `--publish per-target`: publish every complete target even when
    /// other builds failed.
    pub per_target: bool,
    pub metadata_file: Option<PathBuf>,
    pub insecure_registries: Vec<String>,
    pub ssh_auth_sock: Option<PathBuf>,
    /// The environment (builder endpoints, the Docker endpoint).
    pub env: HashMap<String, String>,
    /// `SOURCE_DATE_EPOCH` / `--source-date-epoch` (see [`crate::repro`]).
    pub source_date_epoch: Option<u64>,
    /// `--locked`: the pins of `mybake.lock`.
    pub pins: Option<std::sync::Arc<crate::lock::Pins>>,
    /// `--provenance`, `--sbom`, `MYBAKE_NO_DEFAULT_ATTESTATIONS`.
    pub attest: attest::AttestRun,
}

/// One build node's line of the summary.
#[derive(Debug, Clone)]
pub struct NodeReport {
    pub id: String,
    pub state: NodeState,
}

#[derive(Debug, Clone)]
pub enum NodeState {
    Built {
        builder: String,
        duration: Duration,
        cached_steps: usize,
        steps: usize,
        /// `repo@digest` when pushed by digest.
        reference: Option<String>,
        /// The result's digest, when it has a descriptor.
        digest: Option<String>,
        /// Solves of its push (more than 1 after retries).
        push_attempts: u32,
    },
    /// The first line of its error.
    Failed(String),
    Cancelled,
    Skipped,
    /// Not built: the registry already holds its result from the same
    /// inputs (`skipped: unchanged`).
    Unchanged {
        /// `repo@digest` of its image manifest, when published.
        reference: Option<String>,
    },
}

/// The builds of a run that got through exec.
#[derive(Debug, Clone, Default)]
pub struct Builds {
    /// Every build node, in plan order.
    pub nodes: Vec<NodeReport>,
    /// Failed nodes, cancelled nodes, nodes not started.
    pub failures: usize,
    pub cancelled: usize,
    pub skipped: usize,
}

impl Builds {
    /// Some build did not succeed.
    pub fn failed(&self) -> bool {
        self.failures > 0 || self.cancelled > 0 || self.skipped > 0
    }
}

/// Where exec was when a signal stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStop {
    /// Every build had ended.
    AfterBuilds,
    /// The executor did not return within the grace period.
    Abandoned,
    /// Builds were cancelled.
    Cancelled,
}

/// Why a run ended where it did.
#[derive(Debug)]
pub enum Stop {
    /// Everything the run was allowed to do was done (builds may have
    /// failed: see [`Builds::failed`]).
    Done,
    /// The builder could not be selected (an invalid invocation).
    Builder(String),
    /// A target's file outputs are invalid; nothing was built.
    Outputs(String),
    Runtime(String),
    Signals(String),
    /// The staging of file outputs could not be created.
    Staging(String),
    /// The executor failed before building.
    Exec(String),
    /// The build file asks for what it does not give the means to (a
    /// pushed target without tags); nothing was built.
    Config(String),
    Interrupted(ExecStop),
    /// Preparing file outputs failed; nothing was written or published.
    Prepare(String),
    InterruptedBeforePublish,
    Publish(PublishError),
    InterruptedAfterTags,
    InterruptedLoading,
    /// Writing file outputs failed.
    Commit(String),
    Metadata {
        path: PathBuf,
        error: String,
    },
    InterruptedAtEnd,
}

/// The outcome class of a run, for its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Ok,
    Failed,
    Invalid,
    Interrupted(Signal),
}

/// What a run did.
#[derive(Debug)]
pub struct BuildReport {
    /// The builds, when exec returned.
    pub builds: Option<Builds>,
    /// The published targets (index digests, tags written).
    pub published: Option<PublishReport>,
    /// The file outputs placed.
    pub written: Option<CommitReport>,
    /// The metadata document written to `--metadata-file`.
    pub metadata: Option<serde_json::Value>,
    pub stop: Stop,
    /// The signal received, as of where the run stopped.
    pub signal: Option<Signal>,
}

impl BuildReport {
    fn stopped(stop: Stop) -> BuildReport {
        BuildReport {
            builds: None,
            published: None,
            written: None,
            metadata: None,
            stop,
            signal: None,
        }
    }

    pub fn class(&self) -> Class {
        let signal = |s: Option<Signal>| Class::Interrupted(s.unwrap_or(Signal::Int));
        match &self.stop {
            Stop::Done if self.builds.as_ref().is_some_and(Builds::failed) => Class::Failed,
            Stop::Done => Class::Ok,
            Stop::Builder(_) | Stop::Config(_) => Class::Invalid,
            Stop::Outputs(_)
            | Stop::Runtime(_)
            | Stop::Signals(_)
            | Stop::Staging(_)
            | Stop::Exec(_)
            | Stop::Prepare(_)
            | Stop::Commit(_)
            | Stop::Metadata { .. } => Class::Failed,
            Stop::Publish(_) => self.signal.map_or(Class::Failed, Class::Interrupted),
            Stop::Interrupted(_)
            | Stop::InterruptedBeforePublish
            | Stop::InterruptedAfterTags
            | Stop::InterruptedLoading
            | Stop::InterruptedAtEnd => signal(self.signal),
        }
    }
}

/// After a signal, how long a phase may take to stop on its own before it
/// is dropped.
const EXEC_GRACE: Duration = Duration::from_millis(1000);
/// How long leftover tasks may hold up the exit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(300);

/// Runs the builds of `plan`, then publishes and writes what they allow;
/// exec and publish events go to `reporter` as they come.
pub fn run(
    r: &Resolved,
    plan: &Plan,
    s: &BuildSettings,
    reporter: Box<dyn Reporter>,
) -> BuildReport {
    let nodes = match exec::builders::select(&s.builder, &r.cwd, &s.env) {
        Ok(n) => n,
        Err(e) => return BuildReport::stopped(Stop::Builder(e.to_string())),
    };
    // File outputs (`local`, `tar`, `oci`, `docker`/--load) of the
    // requested targets: staged next to their destinations while the
    // builds run, placed only in the publish phase.
    let mut file_targets: Vec<(String, Vec<FileOutput>)> = Vec::new();
    for m in plan
        .graph
        .node_indices()
        .filter(|&n| plan.node(n).is_merge())
    {
        let t = &r.targets[plan.node(m).target];
        match outputs::target_outputs(t, s.load) {
            Ok(o) if o.is_empty() => {}
            Ok(o) => file_targets.push((t.name.v.clone(), o)),
            Err(e) => return BuildReport::stopped(Stop::Outputs(e.to_string())),
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return BuildReport::stopped(Stop::Runtime(e.to_string())),
    };
    // SIGINT/SIGTERM from here on cancel the run instead of ending the
    // process, so that the staging below is always removed (on drop, when
    // this function returns).
    let interrupt = {
        let _rt = rt.enter();
        match interrupt::Interrupt::install(CancellationToken::new()) {
            Ok(i) => i,
            Err(e) => return BuildReport::stopped(Stop::Signals(e.to_string())),
        }
    };
    let (staging, files) = match outputs::Staging::create(&file_targets) {
        Ok(s) => s,
        Err(e) => return BuildReport::stopped(Stop::Staging(e.to_string())),
    };
    let mut opts = ExecOptions {
        nodes,
        load: s.load,
        files,
        jobs: s.jobs,
        push: s.push,
        keep_going: s.keep_going,
        no_cache: s.no_cache,
        pull: s.pull,
        history: s.history,
        insecure_registries: s.insecure_registries.clone(),
        ssh_auth_sock: s.ssh_auth_sock.clone(),
        source_date_epoch: s.source_date_epoch,
        pins: s.pins.clone(),
        attest: s.attest.clone(),
        unchanged: Default::default(),
        registry_inputs: s.env.get(exec::TARGET_INPUTS_ENV).map(String::as_str) == Some("registry"),
    };
    let cache_dir = inputs::cache_dir(&s.env);
    let report = rt.block_on(async {
        let mut rep = BuildReport::stopped(Stop::Done);
        // Input keys; targets the registry already holds from the same
        // inputs are not built (unless --rebuild or --no-cache).
        let file_names: std::collections::HashSet<String> =
            file_targets.iter().map(|(n, _)| n.clone()).collect();
        let check = skip::CheckOptions {
            push: s.push,
            force: s.rebuild || s.no_cache,
            file_targets: &file_names,
            cache_dir: cache_dir.clone(),
            // Run-wide solve inputs that are not target attributes: the
            // epoch (`--source-date-epoch` or the environment) and the
            // run's attestation settings.
            run_inputs: run_inputs(s),
            pins: s.pins.clone(),
            publish: crate::publish::PublishOptions {
                insecure_registries: s.insecure_registries.clone(),
                cancel: interrupt.token().clone(),
                ..Default::default()
            },
        };
        let skipped = skip::check(r, plan, &check).await;
        opts.unchanged = skipped.unchanged.clone();
        let opts = &opts;
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let mut reporter = reporter;
        let printer = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                reporter.exec(&e);
            }
            reporter.exec_done();
            reporter
        });
        let cancel = interrupt.token().clone();
        // On a signal the executor cancels its solves and returns; if it
        // has not within the grace period (a hung connect), it is dropped.
        let outcome = tokio::select! {
            o = exec::run(r, plan, opts, tx, cancel.clone()) => Some(o),
            _ = async {
                cancel.cancelled().await;
                tokio::time::sleep(EXEC_GRACE).await;
            } => None,
        };
        let mut reporter = if interrupt.signal().is_some() {
            tokio::time::timeout(EXEC_GRACE, printer)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            printer.await.ok()
        };
        if let Some(sig) = interrupt.signal() {
            rep.signal = Some(sig);
            rep.stop = Stop::Interrupted(match &outcome {
                Some(Ok(o)) if o.cancelled.is_empty() && o.skipped.is_empty() => {
                    ExecStop::AfterBuilds
                }
                None => ExecStop::Abandoned,
                _ => ExecStop::Cancelled,
            });
            return rep;
        }
        let outcome = match outcome {
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                rep.stop = match e {
                    exec::ExecError::Config(e) => Stop::Config(e),
                    e => Stop::Exec(e.to_string()),
                };
                return rep;
            }
            None => unreachable!("dropped only after a signal"),
        };
        if let Some(dir) = &skipped.cache_dir {
            let built: HashMap<_, _> = outcome
                .results
                .iter()
                .filter(|(n, _)| !skipped.unchanged.contains_key(n))
                .map(|(n, res)| (*n, res.clone()))
                .collect();
            tokio::task::block_in_place(|| skip::record(dir, &skipped.keys, &built));
        }
        let builds = builds(plan, &outcome, &skipped.unchanged);
        let results = results_metadata(plan, &outcome, &s.builder);
        let failed = builds.failed();
        rep.builds = Some(builds);
        // Publish: merge each target's per-platform results into an index
        // and write its tags. `all` publishes only when every build of the
        // run succeeded; `per-target` publishes every complete target.
        let allowed = s.per_target || !failed;
        let mut targets = targets::publish_targets(r, plan, &outcome, allowed);
        targets.retain(|t| !skipped.targets.iter().any(|u| u.name == t.name));
        for t in &mut targets {
            if let Some(k) = skipped.target_keys.get(&t.name) {
                t.annotations
                    .insert(format!("index:{}", skip::KEY_ANNOTATION), k.clone());
            }
        }
        // File outputs: build the final artifacts in staging before any
        // tag is written; place them after the registry publish.
        let file_plan = targets::file_outputs(r, plan, &outcome, allowed, &file_targets);
        let ready = if file_plan.is_empty() {
            Vec::new()
        } else {
            let prepared = {
                let staging = &staging;
                tokio::task::block_in_place(|| outputs::prepare(&file_plan, staging))
            };
            match prepared {
                Ok(r) => r,
                Err(e) => {
                    rep.stop = Stop::Prepare(e);
                    return rep;
                }
            }
        };
        if let Some(sig) = interrupt.signal() {
            rep.signal = Some(sig);
            rep.stop = Stop::InterruptedBeforePublish;
            return rep;
        }
        if !targets.is_empty() {
            let all_tags: Vec<String> = targets.iter().flat_map(|t| t.tags.clone()).collect();
            let opts = crate::publish::PublishOptions {
                insecure_registries: s.insecure_registries.clone(),
                cancel: interrupt.token().clone(),
                ..Default::default()
            };
            let (ptx, mut prx) = mpsc::channel::<PublishEvent>(64);
            // The tags confirmed written, as they come: what the summary
            // reports if the publish has to be dropped after a signal.
            let tagged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let seen = tagged.clone();
            let mut held = reporter.take();
            let printer = tokio::spawn(async move {
                while let Some(e) = prx.recv().await {
                    if let PublishEvent::TagWritten { tag, .. } = &e {
                        if let Ok(mut t) = seen.lock() {
                            t.push(tag.clone());
                        }
                    }
                    if let Some(r) = held.as_mut() {
                        r.publish(&e);
                    }
                }
                held
            });
            let cancel = interrupt.token().clone();
            // The publish stops on its own on a signal; the grace period
            // only bounds a step that does not (a credential helper).
            let res = tokio::select! {
                r = crate::publish::publish(crate::publish::PublishPlan { targets }, opts, ptx) => r,
                _ = async {
                    cancel.cancelled().await;
                    tokio::time::sleep(EXEC_GRACE).await;
                } => {
                    let written: Vec<String> = tagged.lock().map(|t| t.clone()).unwrap_or_default();
                    let not_written = all_tags.iter().filter(|t| !written.contains(t)).cloned().collect();
                    Err(PublishError::Interrupted {
                        written,
                        in_flight: Vec::new(),
                        not_written,
                    })
                }
            };
            reporter = if interrupt.signal().is_some() {
                tokio::time::timeout(EXEC_GRACE, printer)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
            } else {
                printer.await.ok().flatten()
            };
            match res {
                Ok(p) => rep.published = Some(p),
                Err(e) => {
                    rep.signal = interrupt.signal();
                    rep.stop = Stop::Publish(e);
                    return rep;
                }
            }
            if let Some(sig) = interrupt.signal() {
                rep.signal = Some(sig);
                rep.stop = Stop::InterruptedAfterTags;
                return rep;
            }
        }
        if allowed && !skipped.targets.is_empty() {
            let opts = crate::publish::PublishOptions {
                insecure_registries: s.insecure_registries.clone(),
                cancel: interrupt.token().clone(),
                ..Default::default()
            };
            let (ptx, mut prx) = mpsc::channel::<PublishEvent>(64);
            let mut held = reporter.take();
            let printer = tokio::spawn(async move {
                while let Some(e) = prx.recv().await {
                    if let Some(r) = held.as_mut() {
                        r.publish(&e);
                    }
                }
                held
            });
            let res = skip::write_missing_tags(&skipped.targets, &opts, Some(ptx)).await;
            reporter = printer.await.ok().flatten();
            if let Err(e) = res {
                rep.signal = interrupt.signal();
                rep.stop = Stop::Publish(PublishError::Invalid {
                    target: None,
                    message: e,
                });
                return rep;
            }
        }
        if !ready.is_empty() {
            let docker = match mybake_buildkit::Endpoint::parse_with_env("docker", |k| {
                s.env.get(k).cloned()
            }) {
                Ok(mybake_buildkit::Endpoint::Docker(d)) => Some(d),
                _ => None,
            };
            let cancel = interrupt.token().clone();
            let committed = tokio::select! {
                r = outputs::commit(ready, docker.as_ref()) => r,
                // Files are moved in one synchronous step after the image
                // loads, so dropping the commit here moved no file.
                _ = cancel.cancelled() => {
                    rep.signal = interrupt.signal();
                    rep.stop = Stop::InterruptedLoading;
                    return rep;
                }
            };
            match committed {
                Ok(w) => {
                    if let Some(r) = reporter.as_mut() {
                        r.outputs_written(&w.lines);
                    }
                    rep.written = Some(w);
                }
                Err(e) => {
                    rep.stop = Stop::Commit(e);
                    return rep;
                }
            }
        }
        if let Some(path) = &s.metadata_file {
            let mut doc = metadata(rep.published.as_ref(), results, rep.written.as_ref());
            if let serde_json::Value::Object(o) = &mut doc {
                for t in &skipped.targets {
                    let entry = o
                        .entry(t.name.clone())
                        .or_insert_with(|| serde_json::json!({}));
                    if let (serde_json::Value::Object(e), serde_json::Value::Object(add)) =
                        (entry, skip::metadata_entry(t))
                    {
                        for (k, v) in add {
                            e.entry(k).or_insert(v);
                        }
                    }
                }
            }
            bake_metadata_keys(&mut doc, |name| {
                r.targets
                    .iter()
                    .find(|t| t.name.v == name)
                    .map(|t| t.list(crate::attrs::A::Tags).iter().map(|s| s.v.clone()).collect())
                    .unwrap_or_default()
            });
            let text = crate::report::build::metadata_text(&doc);
            rep.metadata = Some(doc);
            if let Err(e) = std::fs::write(path, text) {
                rep.stop = Stop::Metadata {
                    path: path.clone(),
                    error: e.to_string(),
                };
                return rep;
            }
        }
        if let Some(sig) = interrupt.signal() {
            rep.signal = Some(sig);
            rep.stop = Stop::InterruptedAtEnd;
        }
        rep
    });
    // Tasks still running (dropped requests, a blocking DNS lookup) do not
    // hold up the exit.
    rt.shutdown_timeout(RUNTIME_SHUTDOWN);
    report
}

/// The summary's rows: every build node, in plan order.
/// The inputs of every solve of the run that are not target attributes
/// (part of each input key, see [`inputs::KeyContext::run_inputs`]).
fn run_inputs(s: &BuildSettings) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Some(e) = s.source_date_epoch {
        v.push(("SOURCE_DATE_EPOCH".to_owned(), e.to_string()));
    }
    if let Some(p) = &s.attest.provenance {
        v.push(("--provenance".to_owned(), p.clone()));
    }
    if let Some(p) = &s.attest.sbom {
        v.push(("--sbom".to_owned(), p.clone()));
    }
    if s.attest.no_default {
        v.push((attest::NO_DEFAULT_ENV.to_owned(), "1".to_owned()));
    }
    v
}

fn builds(
    plan: &Plan,
    outcome: &exec::ExecOutcome,
    unchanged: &HashMap<petgraph::graph::NodeIndex, exec::NodeResult>,
) -> Builds {
    let mut nodes = Vec::new();
    for &n in &plan.order {
        let node = plan.node(n);
        if !node.is_build() {
            continue;
        }
        let state = if let Some(res) = unchanged.get(&n) {
            NodeState::Unchanged {
                reference: res.reference.clone(),
            }
        } else if let Some(res) = outcome.results.get(&n) {
            NodeState::Built {
                builder: res.builder.clone(),
                duration: res.duration,
                cached_steps: res.cached_steps,
                steps: res.steps,
                reference: res.reference.clone(),
                digest: res.descriptor.as_ref().map(|d| d.digest.clone()),
                push_attempts: res.push_attempts,
            }
        } else if let Some((_, e)) = outcome.failures.iter().find(|(f, _)| *f == n) {
            NodeState::Failed(e.lines().next().unwrap_or("").to_owned())
        } else if outcome.cancelled.contains(&n) {
            NodeState::Cancelled
        } else {
            NodeState::Skipped
        };
        nodes.push(NodeReport {
            id: node.id.clone(),
            state,
        });
    }
    Builds {
        nodes,
        failures: outcome.failures.len(),
        cancelled: outcome.cancelled.len(),
        skipped: outcome.skipped.len(),
    }
}

/// Per published target, its platforms' descriptors and references
/// (`mybake.results` of the metadata file), with each solve's ref
/// (`BUILDER/NODE/REF`, as bake's `buildx.build.ref`) and image config
/// digest; a target whose solves exported no image gets only `build_ref`
/// (its first solve's).
fn results_metadata(
    plan: &Plan,
    outcome: &exec::ExecOutcome,
    builder: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let mut meta = serde_json::Map::new();
    for &n in &plan.order {
        let node = plan.node(n);
        if !node.is_build() || !node.publish {
            continue;
        }
        if let Some(res) = outcome.results.get(&n) {
            let entry = meta
                .entry(node.target_name.clone())
                .or_insert_with(|| serde_json::json!({}));
            // An endpoint builder (`unix:///…`) is named by its address:
            // no `/` inside the three parts.
            let part = |s: &str| s.replace('/', "_");
            let build_ref = format!("{}/{}/{}", part(builder), part(&res.builder), res.solve_ref);
            if entry.get("build_ref").is_none() && !res.solve_ref.is_empty() {
                entry["build_ref"] = serde_json::json!(build_ref);
            }
            if let Some(d) = &res.descriptor {
                if entry.get("platforms").is_none() {
                    entry["platforms"] = serde_json::json!({});
                }
                let mut p = serde_json::json!({ "descriptor": d, "reference": res.reference });
                if !res.solve_ref.is_empty() {
                    p["ref"] = serde_json::json!(build_ref);
                }
                if let Some(c) = res.exporter_response.get("containerimage.config.digest") {
                    p["config"] = serde_json::json!(c);
                }
                entry["platforms"][node.platform().unwrap_or_default().to_string()] = p;
            }
        }
    }
    meta
}

/// The keys bake writes that [`metadata`] has not, per target:
/// `buildx.build.ref` (the first platform's solve; each platform's is in
/// `mybake.results`), `containerimage.config.digest` after a push (the one
/// platform's config digest, or — as bake writes it for a multi-platform
/// result — the index digest), and for `--load` and `oci` outputs without a
/// push `containerimage.descriptor`/`containerimage.digest` (the merged
/// index loaded or written) and `image.name` (the loaded names, or the
/// target's `tags`).
fn bake_metadata_keys(doc: &mut serde_json::Value, tags: impl Fn(&str) -> Vec<String>) {
    use serde_json::{json, Value};
    let Some(targets) = doc.as_object_mut() else {
        return;
    };
    for (name, entry) in targets.iter_mut() {
        let Some(o) = entry.as_object_mut() else {
            continue;
        };
        let build_ref = o.remove("mybake.build_ref");
        if let Some(Value::String(b)) = build_ref {
            o.entry("buildx.build.ref").or_insert(json!(b));
        }
        let configs: Vec<Value> = o
            .get("mybake.results")
            .and_then(Value::as_object)
            .map(|p| {
                p.values()
                    .filter_map(|v| v.get("config").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let published = o.contains_key("containerimage.digest");
        if published && !o.contains_key("containerimage.config.digest") {
            let value = match configs.as_slice() {
                [one] => Some(one.clone()),
                _ => o.get("containerimage.digest").cloned(),
            };
            if let Some(v) = value {
                o.insert("containerimage.config.digest".into(), v);
            }
        }
        if published {
            continue;
        }
        // Not pushed: the first loaded or OCI output's index.
        let image = o
            .get("mybake.outputs")
            .and_then(Value::as_array)
            .and_then(|outs| {
                outs.iter()
                    .find(|m| m["type"] == "docker" && m.get("digest").is_some())
                    .or_else(|| outs.iter().find(|m| m.get("digest").is_some()))
            })
            .cloned();
        if let Some(m) = image {
            o.insert(
                "containerimage.descriptor".into(),
                json!({
                    "mediaType": crate::publish::index::OCI_INDEX,
                    "digest": m["digest"],
                    "size": m["size"],
                }),
            );
            o.insert("containerimage.digest".into(), m["digest"].clone());
            let names = match m["names"].as_array() {
                Some(n) => n
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                None => tags(name),
            };
            o.insert("image.name".into(), json!(names.join(",")));
        }
    }
}

/// The `--metadata-file` document.
fn metadata(
    published: Option<&PublishReport>,
    results: serde_json::Map<String, serde_json::Value>,
    written: Option<&CommitReport>,
) -> serde_json::Value {
    let mut doc = match published {
        Some(rep) => crate::publish::metadata_json(rep),
        None => serde_json::Value::Object(Default::default()),
    };
    for (name, v) in results {
        let entry = doc
            .as_object_mut()
            .map(|o| o.entry(name).or_insert_with(|| serde_json::json!({})));
        if let Some(serde_json::Value::Object(o)) = entry {
            if v["platforms"].is_object() {
                o.insert("mybake.results".into(), v["platforms"].clone());
            }
            if let Some(b) = v.get("build_ref") {
                o.insert("mybake.build_ref".into(), b.clone());
            }
        }
    }
    for (name, v) in written.iter().flat_map(|w| w.metadata.iter()) {
        let entry = doc.as_object_mut().map(|o| {
            o.entry(name.clone())
                .or_insert_with(|| serde_json::json!({}))
        });
        if let Some(serde_json::Value::Object(o)) = entry {
            o.insert("mybake.outputs".into(), serde_json::json!(v));
        }
    }
    doc
}

#[cfg(test)]
mod metadata_tests {
    use super::*;
    use serde_json::json;

    fn results(platforms: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
        let mut p = serde_json::Map::new();
        for (platform, config) in platforms {
            p.insert(
                platform.to_string(),
                json!({ "descriptor": { "digest": "sha256:p" }, "reference": null,
                        "ref": "docker/docker/r", "config": config }),
            );
        }
        let mut m = serde_json::Map::new();
        m.insert(
            "app".into(),
            json!({ "build_ref": "docker/docker/first", "platforms": p }),
        );
        m
    }

    fn keys(doc: &serde_json::Value) -> Vec<&str> {
        let mut k: Vec<&str> = doc["app"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn file_outputs_get_bakes_image_keys() {
        let mut written = CommitReport::default();
        written.metadata.insert(
            "app".into(),
            vec![json!({ "type": "oci", "dest": "/o.tar", "digest": "sha256:i", "size": 639 })],
        );
        let mut doc = metadata(
            None,
            results(&[("linux/amd64", "sha256:c")]),
            Some(&written),
        );
        bake_metadata_keys(&mut doc, |_| vec!["r/app:1".into(), "r/app:2".into()]);
        assert_eq!(
            keys(&doc),
            [
                "buildx.build.ref",
                "containerimage.descriptor",
                "containerimage.digest",
                "image.name",
                "mybake.outputs",
                "mybake.results"
            ]
        );
        assert_eq!(doc["app"]["buildx.build.ref"], "docker/docker/first");
        assert_eq!(
            doc["app"]["containerimage.descriptor"],
            json!({ "mediaType": crate::publish::index::OCI_INDEX, "digest": "sha256:i", "size": 639 })
        );
        assert_eq!(doc["app"]["image.name"], "r/app:1,r/app:2");
        // --load: the loaded names.
        written.metadata.insert(
            "app".into(),
            vec![json!({ "type": "docker", "names": ["docker.io/library/app:1"], "digest": "sha256:l", "size": 9 })],
        );
        let mut doc = metadata(
            None,
            results(&[("linux/amd64", "sha256:c")]),
            Some(&written),
        );
        bake_metadata_keys(&mut doc, |_| Vec::new());
        assert_eq!(doc["app"]["image.name"], "docker.io/library/app:1");
        assert_eq!(doc["app"]["containerimage.digest"], "sha256:l");
    }

    #[test]
    fn a_push_gets_the_config_digest_as_bake_writes_it() {
        let pushed = |name: &str| {
            let mut d = json!({ "app": {
                "containerimage.descriptor": { "digest": "sha256:x" },
                "containerimage.digest": "sha256:x",
                "image.name": name,
            }});
            let o = d["app"].as_object_mut().unwrap();
            o.insert("mybake.build_ref".into(), json!("docker/docker/first"));
            d
        };
        // One platform: its image config.
        let mut doc = pushed("r/app:1");
        doc["app"]["mybake.results"] =
            results(&[("linux/amd64", "sha256:c")])["app"]["platforms"].clone();
        bake_metadata_keys(&mut doc, |_| Vec::new());
        assert_eq!(doc["app"]["containerimage.config.digest"], "sha256:c");
        assert_eq!(doc["app"]["buildx.build.ref"], "docker/docker/first");
        assert!(doc["app"].get("mybake.build_ref").is_none());
        // Several: the index digest, as bake 0.13 writes it.
        let mut doc = pushed("r/app:1");
        doc["app"]["mybake.results"] =
            results(&[("linux/amd64", "sha256:c"), ("linux/arm64", "sha256:d")])["app"]
                ["platforms"]
                .clone();
        bake_metadata_keys(&mut doc, |_| Vec::new());
        assert_eq!(doc["app"]["containerimage.config.digest"], "sha256:x");
    }
}
