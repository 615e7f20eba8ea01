//! `mybake build`: exec (and, later, publish) with a progress reporter.

use std::collections::HashMap;
use std::io::Write;

use tokio::sync::mpsc;

use super::args::{BuildArgs, Progress};
use super::{exit, Outcome};
use crate::exec::{self, ExecOptions, Event};
use crate::plan::{NodeKind, Plan};
use crate::report::progress::Plain;
use crate::resolve::Resolved;
use mybake_buildkit::CancellationToken;

pub fn run(r: &Resolved, plan: &Plan, b: &BuildArgs, env: &HashMap<String, String>) -> Outcome {
    let err = |code: i32, msg: String| Outcome { code, stdout: String::new(), stderr: msg };
    if b.load {
        return err(exit::FAILED, "mybake: --load (output \"docker\") is not supported by this version yet; nothing was built\n".into());
    }
    let builder = b.builder.clone().or_else(|| env.get("MYBAKE_BUILDER").cloned()).unwrap_or_else(|| "docker".into());
    let opts = ExecOptions {
        builder,
        jobs: b.jobs,
        push: b.push,
        keep_going: b.keep_going,
        no_cache: b.no_cache,
        pull: b.pull,
        insecure_registries: env.get("MYBAKE_INSECURE_REGISTRIES").map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return err(exit::FAILED, format!("mybake: cannot start the async runtime: {e}\n")),
    };
    let progress = b.progress;
    rt.block_on(async {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let printer = tokio::spawn(async move {
            let mut plain = Plain::default();
            let stderr = std::io::stderr();
            let stdout = std::io::stdout();
            while let Some(e) = rx.recv().await {
                match progress {
                    Progress::Quiet => {}
                    Progress::Json => {
                        if let Some(line) = crate::report::progress::json_line(&e) {
                            let _ = writeln!(stdout.lock(), "{line}");
                        }
                    }
                    _ => {
                        let mut lock = stderr.lock();
                        for line in plain.render(&e) {
                            let _ = writeln!(lock, "{line}");
                        }
                    }
                }
            }
        });
        let cancel = CancellationToken::new();
        let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let cancel = cancel.clone();
            let interrupted = interrupted.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
                    cancel.cancel();
                }
            });
        }
        let outcome = exec::run(r, plan, &opts, tx, cancel).await;
        let _ = printer.await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return err(exit::FAILED, format!("mybake: {e}; nothing was built\n")),
        };
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            return err(exit::INTERRUPTED, "mybake: interrupted; builds cancelled, nothing published\n".into());
        }
        let mut report = String::new();
        let mut meta = serde_json::Map::new();
        for &n in &plan.order {
            let node = plan.node(n);
            if node.kind != NodeKind::Build {
                continue;
            }
            let status = if let Some(res) = outcome.results.get(&n) {
                if let Some(d) = &res.descriptor {
                    let entry = meta.entry(node.target_name.clone()).or_insert_with(|| serde_json::json!({ "platforms": {} }));
                    entry["platforms"][node.platform.clone().unwrap_or_default()] = serde_json::json!({ "descriptor": d, "reference": res.reference });
                }
                res.reference.clone().or_else(|| res.descriptor.as_ref().map(|d| d.digest.clone())).unwrap_or_else(|| "built (cache only)".into())
            } else if let Some((_, e)) = outcome.failures.iter().find(|(f, _)| *f == n) {
                format!("FAILED: {}", e.lines().next().unwrap_or(""))
            } else {
                "skipped".into()
            };
            report.push_str(&format!("  {:<40} {status}\n", node.id));
        }
        if let Some(path) = &b.metadata_file {
            let text = serde_json::to_string_pretty(&serde_json::Value::Object(meta)).unwrap_or_default();
            if let Err(e) = std::fs::write(path, text + "\n") {
                return err(exit::FAILED, format!("mybake: cannot write {}: {e}\n", path.display()));
            }
        }
        let failed = !outcome.failures.is_empty() || !outcome.skipped.is_empty();
        let mut msg = format!("\nsummary:\n{report}");
        if failed {
            msg.push_str(&format!("mybake: {} build{} failed; nothing was published\n", outcome.failures.len(), if outcome.failures.len() == 1 { "" } else { "s" }));
            return err(exit::FAILED, msg);
        }
        let wants_publish = plan.graph.node_weights().any(|n| n.kind == NodeKind::Merge && outcome_pushed(plan, &outcome, n.target));
        if wants_publish {
            msg.push_str("mybake: per-platform images were pushed by digest (above); writing tags (merging them into indexes) is not part of this version yet, so no tag was written\n");
            return err(exit::FAILED, msg);
        }
        err(exit::OK, msg)
    })
}

fn outcome_pushed(plan: &Plan, o: &exec::ExecOutcome, target: usize) -> bool {
    plan.graph.node_indices().any(|n| plan.node(n).target == target && plan.node(n).publish && o.results.get(&n).is_some_and(|r| r.reference.is_some()))
}
