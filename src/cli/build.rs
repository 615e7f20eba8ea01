//! `mybake build`: exec (and, later, publish) with a progress reporter.

use std::collections::HashMap;
use std::io::Write;

use tokio::sync::mpsc;

use super::args::{BuildArgs, Progress, Publish};
use super::{exit, Outcome};
use crate::exec::{self, Event, ExecOptions};
use crate::plan::{NodeKind, Plan};
use crate::publish::outputs::{self, FileOutput};
use crate::report::progress::Plain;
use crate::resolve::Resolved;
use mybake_buildkit::CancellationToken;

pub fn run(r: &Resolved, plan: &Plan, b: &BuildArgs, env: &HashMap<String, String>) -> Outcome {
    let err = |code: i32, msg: String| Outcome {
        code,
        stdout: Vec::new(),
        stderr: msg,
    };
    let insecure: Vec<String> = env
        .get("MYBAKE_INSECURE_REGISTRIES")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let builder = b
        .builder
        .clone()
        .or_else(|| env.get("MYBAKE_BUILDER").cloned())
        .unwrap_or_else(|| "docker".into());
    let nodes = match exec::builders::select(&builder, &r.cwd, env) {
        Ok(n) => n,
        Err(e) => return err(exit::INVALID, format!("mybake: {e}\n")),
    };
    // File outputs (`local`, `tar`, `oci`, `docker`/--load) of the
    // requested targets: staged next to their destinations while the
    // builds run, placed only in the publish phase.
    let mut file_targets: Vec<(String, Vec<FileOutput>)> = Vec::new();
    for m in plan
        .graph
        .node_indices()
        .filter(|&n| plan.node(n).kind == NodeKind::Merge)
    {
        let t = &r.targets[plan.node(m).target];
        match outputs::target_outputs(t, b.load) {
            Ok(o) if o.is_empty() => {}
            Ok(o) => file_targets.push((t.name.v.clone(), o)),
            Err(e) => return err(exit::FAILED, format!("mybake: {e}; nothing was built\n")),
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return err(
                exit::FAILED,
                format!("mybake: cannot start the async runtime: {e}\n"),
            )
        }
    };
    // SIGINT/SIGTERM from here on cancel the run instead of ending the
    // process, so that the staging below is always removed (on drop, when
    // this function returns).
    let interrupt = {
        let _rt = rt.enter();
        match super::interrupt::Interrupt::install(CancellationToken::new()) {
            Ok(i) => i,
            Err(e) => {
                return err(
                    exit::FAILED,
                    format!("mybake: cannot handle signals: {e}\n"),
                )
            }
        }
    };
    let (staging, files) = match outputs::Staging::create(&file_targets) {
        Ok(s) => s,
        Err(e) => {
            return err(
                exit::FAILED,
                format!("mybake: outputs: {e}; nothing was built\n"),
            )
        }
    };
    let opts = ExecOptions {
        nodes,
        load: b.load,
        files,
        jobs: b.jobs,
        push: b.push,
        keep_going: b.keep_going,
        no_cache: b.no_cache,
        pull: b.pull,
        history: b.history,
        insecure_registries: insecure.clone(),
        ssh_auth_sock: env.get("SSH_AUTH_SOCK").map(std::path::PathBuf::from),
    };
    let progress = b.progress;
    let outcome = rt.block_on(async {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let printer = tokio::spawn(async move {
            let mut plain = Plain::default();
            let use_tty = progress == Progress::Tty
                || (progress == Progress::Auto
                    && std::io::IsTerminal::is_terminal(&std::io::stderr()));
            let mut tty = use_tty.then(crate::report::tty::Tty::new);
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
                    _ if tty.is_some() => {
                        if let Some(t) = tty.as_mut() {
                            t.handle(&e);
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
            if let Some(t) = tty.as_mut() {
                t.finish();
            }
        });
        let cancel = interrupt.token().clone();
        // On a signal the executor cancels its solves and returns; if it
        // has not within the grace period (a hung connect), it is dropped.
        let outcome = tokio::select! {
            o = exec::run(r, plan, &opts, tx, cancel.clone()) => Some(o),
            _ = async {
                cancel.cancelled().await;
                tokio::time::sleep(EXEC_GRACE).await;
            } => None,
        };
        if interrupt.code().is_some() {
            let _ = tokio::time::timeout(EXEC_GRACE, printer).await;
        } else {
            let _ = printer.await;
        }
        if let Some(code) = interrupt.code() {
            let when = match &outcome {
                Some(Ok(o)) if o.cancelled.is_empty() && o.skipped.is_empty() => {
                    "after the builds; nothing published"
                }
                None => "while connecting or building; builds abandoned, nothing published",
                _ => "while building; builds cancelled, nothing published",
            };
            return err(
                code,
                format!(
                    "mybake: interrupted ({}) {when}; no tag was written\n",
                    interrupt.name().unwrap_or_default()
                ),
            );
        }
        let outcome = match outcome {
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                return err(exit::FAILED, format!("mybake: {e}; nothing was built\n"))
            }
            None => unreachable!("dropped only after a signal"),
        };
        let mut rows = vec![[
            "NODE".to_string(),
            "BUILDER".into(),
            "TIME".into(),
            "CACHED".into(),
            "RESULT".into(),
        ]];
        let mut meta = serde_json::Map::new();
        for &n in &plan.order {
            let node = plan.node(n);
            if node.kind != NodeKind::Build {
                continue;
            }
            let row = if let Some(res) = outcome.results.get(&n) {
                if let (Some(d), true) = (&res.descriptor, node.publish) {
                    let entry = meta
                        .entry(node.target_name.clone())
                        .or_insert_with(|| serde_json::json!({ "platforms": {} }));
                    entry["platforms"][node.platform.clone().unwrap_or_default()] =
                        serde_json::json!({ "descriptor": d, "reference": res.reference });
                }
                let mut result = res
                    .reference
                    .clone()
                    .or_else(|| res.descriptor.as_ref().map(|d| d.digest.clone()))
                    .unwrap_or_else(|| "built (cache only)".into());
                if res.push_attempts > 1 {
                    result.push_str(&format!(" ({} push attempts)", res.push_attempts));
                }
                [
                    node.id.clone(),
                    res.builder.clone(),
                    format!("{:.1}s", res.duration.as_secs_f64()),
                    format!("{}/{}", res.cached_steps, res.steps),
                    result,
                ]
            } else if let Some((_, e)) = outcome.failures.iter().find(|(f, _)| *f == n) {
                [
                    node.id.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("FAILED: {}", e.lines().next().unwrap_or("")),
                ]
            } else if outcome.cancelled.contains(&n) {
                [
                    node.id.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                    "cancelled".into(),
                ]
            } else {
                [
                    node.id.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                    "skipped".into(),
                ]
            };
            rows.push(row);
        }
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut report = String::new();
        for r in &rows {
            report.push_str(&format!(
                "  {:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}\n",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            ));
        }
        let failed = !outcome.failures.is_empty()
            || !outcome.skipped.is_empty()
            || !outcome.cancelled.is_empty();
        let mut msg = format!("\nsummary:\n{report}");
        // Publish: merge each target's per-platform results into an index
        // and write its tags. `all` publishes only when every build of the
        // run succeeded; `per-target` publishes every complete target.
        let targets = publish_targets(
            r,
            plan,
            &outcome,
            b.publish == Publish::PerTarget || !failed,
        );
        // File outputs: build the final artifacts in staging before any
        // tag is written; place them after the registry publish.
        let allowed = b.publish == Publish::PerTarget || !failed;
        let file_plan = file_outputs(r, plan, &outcome, allowed, &file_targets);
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
                    msg.push_str(&format!(
                        "mybake: preparing outputs failed: {e}\nmybake: nothing was written, loaded or published\n"
                    ));
                    return err(exit::FAILED, msg);
                }
            }
        };
        if let Some(code) = interrupt.code() {
            msg.push_str(&format!(
                "mybake: interrupted ({}) before publishing; nothing was written, loaded or published; no tag was written\n",
                interrupt.name().unwrap_or_default()
            ));
            return err(code, msg);
        }
        let mut published = None;
        if !targets.is_empty() {
            let all_tags: Vec<String> = targets.iter().flat_map(|t| t.tags.clone()).collect();
            let opts = crate::publish::PublishOptions {
                insecure_registries: insecure.clone(),
                cancel: interrupt.token().clone(),
                ..Default::default()
            };
            let (ptx, mut prx) = mpsc::channel::<crate::publish::PublishEvent>(64);
            let quiet = progress == Progress::Quiet || progress == Progress::Json;
            // The tags confirmed written, as they come: what the summary
            // reports if the publish has to be dropped after a signal.
            let tagged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let seen = tagged.clone();
            let printer = tokio::spawn(async move {
                while let Some(e) = prx.recv().await {
                    if let crate::publish::PublishEvent::TagWritten { tag, .. } = &e {
                        if let Ok(mut t) = seen.lock() {
                            t.push(tag.clone());
                        }
                    }
                    if !quiet {
                        if let Some(line) = publish_line(&e) {
                            eprintln!("{line}");
                        }
                    }
                }
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
                    Err(crate::publish::PublishError::Interrupted {
                        written,
                        in_flight: Vec::new(),
                        not_written,
                    })
                }
            };
            if interrupt.code().is_some() {
                let _ = tokio::time::timeout(EXEC_GRACE, printer).await;
            } else {
                let _ = printer.await;
            }
            match res {
                Ok(rep) => {
                    for t in &rep.targets {
                        msg.push_str(&format!(
                            "  {:<40} {} -> {}\n",
                            t.name,
                            t.digest,
                            t.tags.join(", ")
                        ));
                    }
                    published = Some(rep);
                }
                Err(e) => {
                    msg.push_str(&publish_failure(&e));
                    return err(interrupt.code().unwrap_or(exit::FAILED), msg);
                }
            }
            if let Some(code) = interrupt.code() {
                msg.push_str(&format!(
                    "mybake: interrupted ({}) after the tags were written (listed above); file outputs and the metadata file were not written\n",
                    interrupt.name().unwrap_or_default()
                ));
                return err(code, msg);
            }
        }
        let mut written = None;
        if !ready.is_empty() {
            let docker = match mybake_buildkit::Endpoint::parse_with_env("docker", |k| {
                env.get(k).cloned()
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
                    msg.push_str(&format!(
                        "mybake: interrupted ({}) while loading images into Docker; no file output was placed; images loaded before the signal stay in Docker\n",
                        interrupt.name().unwrap_or_default()
                    ));
                    return err(interrupt.code().unwrap_or(exit::INTERRUPTED), msg);
                }
            };
            match committed {
                Ok(rep) => {
                    if progress != Progress::Quiet && progress != Progress::Json {
                        for line in &rep.lines {
                            eprintln!("{line}");
                        }
                    }
                    for line in &rep.lines {
                        msg.push_str(&format!("  {line}\n"));
                    }
                    written = Some(rep);
                }
                Err(e) => {
                    msg.push_str(&format!("mybake: writing outputs failed: {e}\n"));
                    return err(exit::FAILED, msg);
                }
            }
        }
        if let Some(path) = &b.metadata_file {
            let mut doc = match &published {
                Some(rep) => crate::publish::metadata_json(rep),
                None => serde_json::Value::Object(Default::default()),
            };
            for (name, v) in meta {
                let entry = doc
                    .as_object_mut()
                    .map(|o| o.entry(name).or_insert_with(|| serde_json::json!({})));
                if let Some(serde_json::Value::Object(o)) = entry {
                    o.insert("mybake.results".into(), v["platforms"].clone());
                }
            }
            for (name, v) in written.iter().flat_map(|w| w.metadata.iter()) {
                let entry = doc
                    .as_object_mut()
                    .map(|o| o.entry(name.clone()).or_insert_with(|| serde_json::json!({})));
                if let Some(serde_json::Value::Object(o)) = entry {
                    o.insert("mybake.outputs".into(), serde_json::json!(v));
                }
            }
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            if let Err(e) = std::fs::write(path, text + "\n") {
                return err(
                    exit::FAILED,
                    format!("{msg}mybake: cannot write {}: {e}\n", path.display()),
                );
            }
        }
        if let Some(code) = interrupt.code() {
            msg.push_str(&format!(
                "mybake: interrupted ({}) after everything above was done\n",
                interrupt.name().unwrap_or_default()
            ));
            return err(code, msg);
        }
        if failed {
            let extra = match (outcome.cancelled.len(), outcome.skipped.len()) {
                (0, 0) => String::new(),
                (c, s) => format!(" ({c} cancelled, {s} not started)"),
            };
            msg.push_str(&format!(
                "mybake: {} build{} failed{extra}; {}\n",
                outcome.failures.len(),
                if outcome.failures.len() == 1 { "" } else { "s" },
                if published.is_some() || written.is_some() {
                    "complete targets were published (--publish per-target)"
                } else {
                    "nothing was published"
                }
            ));
            return err(exit::FAILED, msg);
        }
        err(exit::OK, msg)
    });
    // Tasks still running (dropped requests, a blocking DNS lookup) do not
    // hold up the exit.
    rt.shutdown_timeout(RUNTIME_SHUTDOWN);
    outcome
}

/// After a signal, how long a phase may take to stop on its own before it
/// is dropped.
const EXEC_GRACE: std::time::Duration = std::time::Duration::from_millis(1000);
/// How long leftover tasks may hold up the exit.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_millis(300);

fn publish_line(e: &crate::publish::PublishEvent) -> Option<String> {
    use crate::publish::PublishEvent as P;
    Some(match e {
        P::IndexBuilt {
            target,
            digest,
            manifests,
            ..
        } => format!("[{target}] index {digest} ({manifests} manifests)"),
        P::RepositoryReady {
            target, repository, ..
        } => format!("[{target}] ready in {repository}"),
        P::Retrying {
            reference,
            attempt,
            delay,
            reason,
        } => format!(
            "registry: {reference}: attempt {attempt} failed ({reason}); retrying in {:.1}s",
            delay.as_secs_f64()
        ),
        P::TagWritten { target, tag, .. } => format!("[{target}] tagged {tag}"),
        P::WaitingForLock { repository } => {
            format!("waiting for another mybake run publishing to {repository}")
        }
    })
}

/// The summary lines of a failed publish: what failed, then exactly which
/// tags were written before the failure ("no tag was written" when none).
fn publish_failure(e: &crate::publish::PublishError) -> String {
    use crate::publish::PublishError as E;
    let mut out = match e {
        E::Tags { written, failed } => {
            let mut s = format!(
                "mybake: publishing failed: {} of {} tag(s) could not be written:\n",
                failed.len(),
                failed.len() + written.len()
            );
            for (tag, why) in failed {
                s.push_str(&format!("  {tag}: {why}\n"));
            }
            s
        }
        E::Interrupted {
            written,
            in_flight,
            not_written,
        } => {
            let mut s = format!("mybake: publishing {e}\n");
            s.push_str(&written_tags_line(written, "before the signal"));
            if !in_flight.is_empty() {
                s.push_str(&format!(
                    "mybake: {} tag write(s) under way were abandoned (the registry may have applied them): {}\n",
                    in_flight.len(),
                    in_flight.join(", ")
                ));
            }
            if !not_written.is_empty() {
                s.push_str(&format!(
                    "mybake: {} tag(s) not written: {}\n",
                    not_written.len(),
                    not_written.join(", ")
                ));
            }
            return s;
        }
        E::Changed { written, changed } => {
            let mut s = format!(
                "mybake: publishing failed: {} tag(s) do not point to this run's index after writing:\n",
                changed.len()
            );
            for c in changed {
                s.push_str(&format!("  {c}\n"));
            }
            s.push_str(&written_tags_line(written, "by this run"));
            return s;
        }
        other => format!("mybake: publishing failed: {other}\n"),
    };
    out.push_str(&written_tags_line(e.written(), "before the failure"));
    out
}

/// "no tag was written", or the exact list.
fn written_tags_line(written: &[String], when: &str) -> String {
    match written {
        [] => "mybake: no tag was written\n".to_owned(),
        w => format!(
            "mybake: {} tag(s) written {when}: {}\n",
            w.len(),
            w.join(", ")
        ),
    }
}

/// Targets whose every platform was built and pushed by digest, ready for
/// their index and tags.
fn publish_targets(
    r: &Resolved,
    plan: &Plan,
    o: &exec::ExecOutcome,
    allowed: bool,
) -> Vec<crate::publish::TargetPublish> {
    let mut out = Vec::new();
    if !allowed {
        return out;
    }
    for m in plan
        .graph
        .node_indices()
        .filter(|&n| plan.node(n).kind == NodeKind::Merge)
    {
        let target = plan.node(m).target;
        if !outcome_pushed(plan, o, target) {
            continue;
        }
        let t = &r.targets[target];
        let mut results = Vec::new();
        let mut complete = true;
        for n in plan.needs(m) {
            match o.results.get(&n).and_then(|res| res.descriptor.clone()) {
                Some(descriptor) => results.push(crate::publish::PlatformResult {
                    platform: plan.node(n).platform.clone().unwrap_or_default(),
                    descriptor,
                }),
                None => complete = false,
            }
        }
        if !complete {
            continue;
        }
        let annotations = t
            .get(crate::attrs::A::Annotation)
            .and_then(crate::value::Value::as_map)
            .map(|m| {
                m.iter()
                    .map(|(k, e)| (k.clone(), e.value.v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let tags: Vec<String> = t
            .list(crate::attrs::A::Tags)
            .iter()
            .map(|s| s.v.clone())
            .collect();
        let source = tags.first().map(|tg| exec::request::repository_of(tg));
        out.push(crate::publish::TargetPublish {
            name: t.name.v.clone(),
            tags,
            annotations,
            results,
            source,
        });
    }
    out
}

fn outcome_pushed(plan: &Plan, o: &exec::ExecOutcome, target: usize) -> bool {
    plan.graph.node_indices().any(|n| {
        plan.node(n).target == target
            && plan.node(n).publish
            && o.results.get(&n).is_some_and(|r| r.reference.is_some())
    })
}

/// Requested targets with file outputs whose every platform was built
/// (`allowed`: the run may publish), with what their placement needs.
fn file_outputs(
    r: &Resolved,
    plan: &Plan,
    o: &exec::ExecOutcome,
    allowed: bool,
    file_targets: &[(String, Vec<FileOutput>)],
) -> Vec<outputs::TargetFiles> {
    let mut out = Vec::new();
    if !allowed {
        return out;
    }
    for m in plan
        .graph
        .node_indices()
        .filter(|&n| plan.node(n).kind == NodeKind::Merge)
    {
        let t = &r.targets[plan.node(m).target];
        let Some((_, outs)) = file_targets.iter().find(|(n, _)| n == &t.name.v) else {
            continue;
        };
        let needs = plan.needs(m);
        if !needs.iter().all(|n| o.results.contains_key(n)) {
            continue;
        }
        out.push(outputs::TargetFiles {
            name: t.name.v.clone(),
            tags: t
                .list(crate::attrs::A::Tags)
                .iter()
                .map(|s| s.v.clone())
                .collect(),
            annotations: t
                .get(crate::attrs::A::Annotation)
                .and_then(crate::value::Value::as_map)
                .map(|m| {
                    m.iter()
                        .map(|(k, e)| (k.clone(), e.value.v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            platforms: needs
                .iter()
                .map(|&n| plan.node(n).platform.clone().unwrap_or_default())
                .collect(),
            descriptors: needs
                .iter()
                .map(|n| o.results.get(n).and_then(|res| res.descriptor.clone()))
                .collect(),
            outputs: outs.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::{PublishError, RegistryError};

    fn unreachable(tag: &str) -> (String, RegistryError) {
        (
            tag.to_owned(),
            RegistryError::Unreachable {
                reference: tag.to_owned(),
                attempts: 5,
                message: "503".into(),
            },
        )
    }

    #[test]
    fn tag_failures_say_exactly_what_was_written() {
        let none = publish_failure(&PublishError::Tags {
            written: vec![],
            failed: vec![unreachable("r/a:1"), unreachable("r/a:2")],
        });
        assert_eq!(
            none,
            "mybake: publishing failed: 2 of 2 tag(s) could not be written:\n\
             \x20 r/a:1: r/a:1: registry unreachable after 5 attempt(s): 503\n\
             \x20 r/a:2: r/a:2: registry unreachable after 5 attempt(s): 503\n\
             mybake: no tag was written\n"
        );
        let some = publish_failure(&PublishError::Tags {
            written: vec!["r/a:1".into()],
            failed: vec![unreachable("r/a:2")],
        });
        assert!(
            some.ends_with("mybake: 1 tag(s) written before the failure: r/a:1\n"),
            "{some}"
        );
        let interrupted = publish_failure(&PublishError::Interrupted {
            written: vec!["r/a:1".into()],
            in_flight: vec!["r/a:2".into()],
            not_written: vec!["r/a:3".into()],
        });
        assert_eq!(
            interrupted,
            "mybake: publishing interrupted while writing tags (1 of 3 written)\n\
             mybake: 1 tag(s) written before the signal: r/a:1\n\
             mybake: 1 tag write(s) under way were abandoned (the registry may have applied them): r/a:2\n\
             mybake: 1 tag(s) not written: r/a:3\n"
        );
    }
}
