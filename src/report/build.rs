//! `build`'s report: the summary table, the publish and output lines, the
//! final messages, and the metadata file's text.

use std::fmt::Write as _;

use crate::build::{BuildReport, Builds, ExecStop, NodeState, Stop};

/// Everything `build` writes to stderr at its end.
pub fn text(rep: &BuildReport) -> String {
    let mut msg = String::new();
    if let Some(b) = &rep.builds {
        let _ = write!(msg, "\nsummary:\n{}", table(b));
    }
    if let Some(p) = &rep.published {
        for t in &p.targets {
            let _ = writeln!(
                msg,
                "  {:<40} {} -> {}",
                t.name,
                t.digest,
                t.tags.join(", ")
            );
        }
    }
    if let Some(w) = &rep.written {
        for line in &w.lines {
            let _ = writeln!(msg, "  {line}");
        }
    }
    let signal = rep.signal.map(|s| s.name()).unwrap_or_default();
    match &rep.stop {
        Stop::Done => {
            if let Some(b) = rep.builds.as_ref().filter(|b| b.failed()) {
                let extra = match (b.cancelled, b.skipped) {
                    (0, 0) => String::new(),
                    (c, s) => format!(" ({c} cancelled, {s} not started)"),
                };
                let _ = writeln!(
                    msg,
                    "mybake: {} build{} failed{extra}; {}",
                    b.failures,
                    if b.failures == 1 { "" } else { "s" },
                    if rep.published.is_some() || rep.written.is_some() {
                        "complete targets were published (--publish per-target)"
                    } else {
                        "nothing was published"
                    }
                );
            }
        }
        Stop::Builder(e) => {
            let _ = writeln!(msg, "mybake: {e}");
        }
        Stop::Outputs(e) | Stop::Exec(e) | Stop::Config(e) => {
            let _ = writeln!(msg, "mybake: {e}; nothing was built");
        }
        Stop::Runtime(e) => {
            let _ = writeln!(msg, "mybake: cannot start the async runtime: {e}");
        }
        Stop::Signals(e) => {
            let _ = writeln!(msg, "mybake: cannot handle signals: {e}");
        }
        Stop::Staging(e) => {
            let _ = writeln!(msg, "mybake: outputs: {e}; nothing was built");
        }
        Stop::Interrupted(when) => {
            let when = match when {
                ExecStop::AfterBuilds => "after the builds; nothing published",
                ExecStop::Abandoned => {
                    "while connecting or building; builds abandoned, nothing published"
                }
                ExecStop::Cancelled => "while building; builds cancelled, nothing published",
            };
            let _ = writeln!(
                msg,
                "mybake: interrupted ({signal}) {when}; no tag was written"
            );
        }
        Stop::Prepare(e) => {
            let _ = writeln!(
                msg,
                "mybake: preparing outputs failed: {e}\nmybake: nothing was written, loaded or published"
            );
        }
        Stop::InterruptedBeforePublish => {
            let _ = writeln!(
                msg,
                "mybake: interrupted ({signal}) before publishing; nothing was written, loaded or published; no tag was written"
            );
        }
        Stop::Publish(e) => msg.push_str(&publish_failure(e)),
        Stop::InterruptedAfterTags => {
            let _ = writeln!(
                msg,
                "mybake: interrupted ({signal}) after the tags were written (listed above); file outputs and the metadata file were not written"
            );
        }
        Stop::InterruptedLoading => {
            let _ = writeln!(
                msg,
                "mybake: interrupted ({signal}) while loading images into Docker; no file output was placed; images loaded before the signal stay in Docker"
            );
        }
        Stop::Commit(e) => {
            let _ = writeln!(msg, "mybake: writing outputs failed: {e}");
        }
        Stop::Metadata { path, error } => {
            let _ = writeln!(msg, "mybake: cannot write {}: {error}", path.display());
        }
        Stop::InterruptedAtEnd => {
            let _ = writeln!(
                msg,
                "mybake: interrupted ({signal}) after everything above was done"
            );
        }
    }
    msg
}

/// The summary table: one row per build node.
pub fn table(b: &Builds) -> String {
    let mut rows = vec![[
        "NODE".to_string(),
        "BUILDER".into(),
        "TIME".into(),
        "CACHED".into(),
        "RESULT".into(),
    ]];
    for n in &b.nodes {
        let empty = |result: String| {
            [
                n.id.clone(),
                String::new(),
                String::new(),
                String::new(),
                result,
            ]
        };
        rows.push(match &n.state {
            NodeState::Built {
                builder,
                duration,
                cached_steps,
                steps,
                reference,
                digest,
                push_attempts,
            } => {
                let mut result = reference
                    .clone()
                    .or_else(|| digest.clone())
                    .unwrap_or_else(|| "built (cache only)".into());
                if *push_attempts > 1 {
                    result.push_str(&format!(" ({push_attempts} push attempts)"));
                }
                [
                    n.id.clone(),
                    builder.clone(),
                    format!("{:.1}s", duration.as_secs_f64()),
                    format!("{cached_steps}/{steps}"),
                    result,
                ]
            }
            NodeState::Failed(e) => empty(format!("FAILED: {e}")),
            NodeState::Cancelled => empty("cancelled".into()),
            NodeState::Skipped => empty("skipped".into()),
            NodeState::Unchanged { reference } => empty(match reference {
                Some(r) => format!("skipped: unchanged {r}"),
                None => "skipped: unchanged".into(),
            }),
        });
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(
            out,
            "  {:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    }
    out
}

/// The `--metadata-file` text.
pub fn metadata_text(doc: &serde_json::Value) -> String {
    serde_json::to_string_pretty(doc).unwrap_or_default() + "\n"
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

    #[test]
    fn failed_builds_render_the_summary_and_the_count() {
        use crate::build::{BuildReport, Builds, Class, NodeReport, NodeState, Signal, Stop};
        let node = |id: &str, state| NodeReport {
            id: id.into(),
            state,
        };
        let mut rep = BuildReport {
            builds: Some(Builds {
                nodes: vec![
                    node(
                        "a@linux/amd64",
                        NodeState::Built {
                            builder: "docker".into(),
                            duration: std::time::Duration::from_millis(1250),
                            cached_steps: 2,
                            steps: 5,
                            reference: Some("r/a@sha256:1".into()),
                            digest: Some("sha256:1".into()),
                            push_attempts: 2,
                        },
                    ),
                    node("b@linux/amd64", NodeState::Failed("exit 1".into())),
                    node("c@linux/amd64", NodeState::Skipped),
                ],
                failures: 1,
                cancelled: 0,
                skipped: 1,
            }),
            published: None,
            written: None,
            metadata: None,
            stop: Stop::Done,
            signal: None,
        };
        assert_eq!(rep.class(), Class::Failed);
        assert_eq!(
            text(&rep),
            "\nsummary:\n\
             \x20 NODE           BUILDER  TIME  CACHED  RESULT\n\
             \x20 a@linux/amd64  docker   1.2s     2/5  r/a@sha256:1 (2 push attempts)\n\
             \x20 b@linux/amd64                         FAILED: exit 1\n\
             \x20 c@linux/amd64                         skipped\n\
             mybake: 1 build failed (0 cancelled, 1 not started); nothing was published\n"
        );
        rep.stop = Stop::InterruptedAtEnd;
        rep.signal = Some(Signal::Term);
        assert_eq!(rep.class(), Class::Interrupted(Signal::Term));
        assert!(
            text(&rep).ends_with("mybake: interrupted (SIGTERM) after everything above was done\n")
        );
    }
}
