//! Stage — `build`: one run of `mybake build` after planning. Owns the
//! file-output staging, the builds (`exec`), the publish (indexes, tags),
//! the placement of file outputs, the metadata file and signal handling,
//! and returns a typed [`BuildReport`]. It prints nothing: events go to a
//! [`Reporter`] as they come, and `report` renders the report.

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
            Stop::Builder(_) => Class::Invalid,
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
        unchanged: Default::default(),
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
            // After epoch13's merge: `s.source_date_epoch` (which also
            // covers `--source-date-epoch`) and the `--locked` pins.
            run_inputs: s
                .env
                .get("SOURCE_DATE_EPOCH")
                .map(|e| ("SOURCE_DATE_EPOCH".to_owned(), e.clone()))
                .into_iter()
                .collect(),
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
                rep.stop = Stop::Exec(e.to_string());
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
        let results = results_metadata(plan, &outcome);
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
/// (`mybake.results` of the metadata file).
fn results_metadata(
    plan: &Plan,
    outcome: &exec::ExecOutcome,
) -> serde_json::Map<String, serde_json::Value> {
    let mut meta = serde_json::Map::new();
    for &n in &plan.order {
        let node = plan.node(n);
        if !node.is_build() {
            continue;
        }
        if let Some(res) = outcome.results.get(&n) {
            if let (Some(d), true) = (&res.descriptor, node.publish) {
                let entry = meta
                    .entry(node.target_name.clone())
                    .or_insert_with(|| serde_json::json!({ "platforms": {} }));
                entry["platforms"][node.platform().unwrap_or_default().to_string()] =
                    serde_json::json!({ "descriptor": d, "reference": res.reference });
            }
        }
    }
    meta
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
            o.insert("mybake.results".into(), v["platforms"].clone());
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
