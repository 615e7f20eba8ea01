//! Progress reporters. They turn executor [`Event`]s into text; nothing in
//! the executor prints.
//!
//! * [`Plain`]: complete blocks per step — a step's header, its log lines
//!   and its result are printed together when the step ends, so parallel
//!   builds never interleave inside a step. A step BuildKit reports as
//!   finished more than once in a solve (it reruns `[internal] load build
//!   definition`, and reports a `FROM` done then cached) is printed once, as
//!   buildx's plain printer merges the status updates of a vertex: a later
//!   result prints only when it brings log lines or an error.
//! * [`json_line`]: one JSON object per event (`--progress json`).
//! * `tty` lives in [`super::tty`].

use std::collections::{HashMap, HashSet};

use crate::exec::{event::StatusEvent, Event};

/// Log lines kept per step (the rest is counted, not stored).
pub const MAX_STEP_LINES: usize = 2000;

#[derive(Default)]
struct Step {
    name: String,
    lines: Vec<String>,
    dropped: usize,
    partial: String,
}

impl Step {
    fn push(&mut self, data: &[u8]) {
        self.partial.push_str(&String::from_utf8_lossy(data));
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            if self.lines.len() < MAX_STEP_LINES {
                self.lines
                    .push(line.trim_end_matches(['\n', '\r']).to_string());
            } else {
                self.dropped += 1;
            }
        }
    }
    fn flush(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.lines.push(rest);
        }
    }
}

#[derive(Default)]
pub struct Plain {
    steps: HashMap<(String, String), Step>,
    /// Steps (node, digest) whose result line was printed, until the node
    /// ends or retries.
    printed: HashSet<(String, String)>,
}

impl Plain {
    /// Lines to print for one event, as one block.
    pub fn render(&mut self, e: &Event) -> Vec<String> {
        match e {
            Event::Builder {
                endpoint,
                version,
                platforms,
            } => vec![format!(
                "builder {endpoint}: BuildKit {}, platforms {}",
                version.as_deref().unwrap_or("(version unknown)"),
                platforms.join(", ")
            )],
            Event::Queued { .. } => Vec::new(),
            Event::Started { node, builder, .. } => vec![format!("[{node}] started on {builder}")],
            Event::Status { node, event } => match event {
                StatusEvent::VertexStarted { digest, name } => {
                    let s = self
                        .steps
                        .entry((node.clone(), digest.clone()))
                        .or_default();
                    s.name = name.clone();
                    Vec::new()
                }
                StatusEvent::Log { vertex, data, .. } => {
                    self.steps
                        .entry((node.clone(), vertex.clone()))
                        .or_default()
                        .push(data);
                    Vec::new()
                }
                StatusEvent::VertexCompleted {
                    digest,
                    name,
                    duration,
                } => self.block(
                    node,
                    digest,
                    name,
                    &format!(
                        "DONE{}",
                        duration
                            .map(|d| format!(" {:.1}s", d.as_secs_f64()))
                            .unwrap_or_default()
                    ),
                ),
                StatusEvent::VertexCached { digest, name } => {
                    self.block(node, digest, name, "CACHED")
                }
                StatusEvent::VertexError {
                    digest,
                    name,
                    error,
                } => self.block(node, digest, name, &format!("ERROR: {error}")),
                StatusEvent::Warning { short, .. } => vec![format!("[{node}] WARNING {short}")],
                StatusEvent::Progress { .. } => Vec::new(),
            },
            Event::Finished {
                node,
                duration,
                digest,
                cached_steps,
                steps,
                push_attempts,
                ..
            } => {
                self.forget(node);
                vec![format!(
                    "[{node}] finished in {:.1}s ({cached_steps}/{steps} steps cached{}){}",
                    duration.as_secs_f64(),
                    attempts_note(*push_attempts),
                    digest.as_ref().map(|d| format!(" {d}")).unwrap_or_default()
                )]
            }
            Event::Retrying {
                node,
                attempt,
                max,
                reason,
                delay,
            } => {
                // The failed attempt's unfinished steps will not finish.
                self.forget(node);
                vec![format!(
                    "[{node}] retrying push ({attempt}/{max}) in {:.1}s: {reason}",
                    delay.as_secs_f64()
                )]
            }
            Event::Failed { node, error, .. } => {
                // Print what is left of unfinished steps (their output may
                // explain the failure), then the error.
                let mut out = Vec::new();
                let keys: Vec<(String, String)> = self
                    .steps
                    .keys()
                    .filter(|(n, _)| n == node)
                    .cloned()
                    .collect();
                for k in keys {
                    if let Some(mut s) = self.steps.remove(&k) {
                        s.flush();
                        if !s.lines.is_empty() {
                            out.push(format!("[{node}] {} (unfinished)", s.name));
                            out.extend(s.lines.iter().map(|l| format!("[{node}] | {l}")));
                        }
                    }
                }
                self.forget(node);
                out.push(format!("[{node}] FAILED: {error}"));
                out
            }
            Event::Cancelled { node, duration, .. } => {
                // Unfinished steps are dropped: their output is partial and
                // not what the user needs to read.
                self.forget(node);
                vec![format!(
                    "[{node}] cancelled after {:.1}s",
                    duration.as_secs_f64()
                )]
            }
            Event::Skipped { node, reason } => vec![format!("[{node}] skipped: {reason}")],
        }
    }

    /// Drops what is kept of `node`'s steps.
    fn forget(&mut self, node: &str) {
        self.steps.retain(|(n, _), _| n != node);
        self.printed.retain(|(n, _)| n != node);
    }

    fn block(&mut self, node: &str, digest: &str, name: &str, result: &str) -> Vec<String> {
        let key = (node.to_string(), digest.to_string());
        let mut s = self.steps.remove(&key).unwrap_or_default();
        s.flush();
        // A repeated result of a step already printed: merged into it.
        let again = !self.printed.insert(key);
        if again && s.lines.is_empty() && !result.starts_with("ERROR") {
            return Vec::new();
        }
        let name = if name.is_empty() {
            s.name.clone()
        } else {
            name.to_string()
        };
        if s.lines.is_empty() {
            return vec![format!("[{node}] {result} {name}")];
        }
        let mut out = vec![format!("[{node}] {name}")];
        out.extend(s.lines.iter().map(|l| format!("[{node}] | {l}")));
        if s.dropped > 0 {
            out.push(format!("[{node}] | … {} more lines", s.dropped));
        }
        out.push(format!("[{node}] {result} {name}"));
        out
    }
}

/// `, 2 push attempts` when the push was retried.
pub fn attempts_note(push_attempts: u32) -> String {
    if push_attempts > 1 {
        format!(", {push_attempts} push attempts")
    } else {
        String::new()
    }
}

/// `--progress json`: one JSON object per event and line (schema:
/// `schema/progress-event.schema.json`).
pub fn json_line(e: &Event) -> Option<String> {
    use serde_json::json;
    let ms = |t: &std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    let now = ms(&std::time::SystemTime::now());
    let v = match e {
        Event::Builder {
            endpoint,
            version,
            platforms,
        } => {
            json!({ "type": "builder", "time": now, "endpoint": endpoint, "version": version, "platforms": platforms })
        }
        Event::Queued { node } => json!({ "type": "queued", "time": now, "node": node }),
        Event::Started { node, builder, at } => {
            json!({ "type": "started", "time": ms(at), "node": node, "builder": builder })
        }
        Event::Status { node, event } => match event {
            StatusEvent::VertexStarted { digest, name } => {
                json!({ "type": "step-started", "time": now, "node": node, "step": digest, "name": name })
            }
            StatusEvent::VertexCompleted {
                digest,
                name,
                duration,
            } => {
                json!({ "type": "step-completed", "time": now, "node": node, "step": digest, "name": name, "duration_ms": duration.map(|d| d.as_millis() as u64) })
            }
            StatusEvent::VertexCached { digest, name } => {
                json!({ "type": "step-cached", "time": now, "node": node, "step": digest, "name": name })
            }
            StatusEvent::VertexError {
                digest,
                name,
                error,
            } => {
                json!({ "type": "step-failed", "time": now, "node": node, "step": digest, "name": name, "error": error })
            }
            StatusEvent::Log {
                vertex,
                stream,
                data,
                ..
            } => {
                json!({ "type": "log", "time": now, "node": node, "step": vertex, "stream": match stream { mybake_buildkit::LogStream::Stdout => "stdout", mybake_buildkit::LogStream::Stderr => "stderr", mybake_buildkit::LogStream::Other(_) => "other" }, "text": String::from_utf8_lossy(data) })
            }
            StatusEvent::Warning { vertex, short, .. } => {
                json!({ "type": "warning", "time": now, "node": node, "step": vertex, "text": short })
            }
            StatusEvent::Progress { .. } => return None,
        },
        Event::Finished {
            node,
            at,
            duration,
            digest,
            reference,
            cached_steps,
            steps,
            push_attempts,
        } => {
            json!({ "type": "finished", "time": ms(at), "node": node, "duration_ms": duration.as_millis() as u64, "digest": digest, "reference": reference, "cached_steps": cached_steps, "steps": steps, "push_attempts": push_attempts })
        }
        Event::Retrying {
            node,
            attempt,
            max,
            reason,
            delay,
        } => {
            json!({ "type": "retrying", "time": now, "node": node, "attempt": attempt, "max": max, "delay_ms": delay.as_millis() as u64, "reason": reason })
        }
        Event::Failed { node, at, error } => {
            json!({ "type": "failed", "time": ms(at), "node": node, "error": error })
        }
        Event::Cancelled { node, at, duration } => {
            json!({ "type": "cancelled", "time": ms(at), "node": node, "duration_ms": duration.as_millis() as u64 })
        }
        Event::Skipped { node, reason } => {
            json!({ "type": "skipped", "time": now, "node": node, "reason": reason })
        }
    };
    Some(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(node: &str, event: StatusEvent) -> Event {
        Event::Status {
            node: node.into(),
            event,
        }
    }

    fn done(digest: &str, name: &str) -> StatusEvent {
        StatusEvent::VertexCompleted {
            digest: digest.into(),
            name: name.into(),
            duration: None,
        }
    }

    #[test]
    fn a_step_reported_twice_prints_once() {
        let mut p = Plain::default();
        let mut out = Vec::new();
        let def = "[internal] load build definition from Dockerfile";
        for node in ["a@linux/amd64", "a@linux/arm64"] {
            for e in [
                StatusEvent::VertexStarted {
                    digest: "sha256:1".into(),
                    name: def.into(),
                },
                done("sha256:1", def),
                StatusEvent::VertexStarted {
                    digest: "sha256:1".into(),
                    name: def.into(),
                },
                done("sha256:1", def),
                done("sha256:2", "[1/2] FROM busybox"),
                StatusEvent::VertexCached {
                    digest: "sha256:2".into(),
                    name: "[1/2] FROM busybox".into(),
                },
            ] {
                out.extend(p.render(&status(node, e)));
            }
        }
        assert_eq!(
            out,
            [
                format!("[a@linux/amd64] DONE {def}"),
                "[a@linux/amd64] DONE [1/2] FROM busybox".into(),
                format!("[a@linux/arm64] DONE {def}"),
                "[a@linux/arm64] DONE [1/2] FROM busybox".into(),
            ]
        );
    }

    #[test]
    fn a_rerun_with_output_or_an_error_is_printed() {
        let mut p = Plain::default();
        let n = "a@linux/amd64";
        assert_eq!(p.render(&status(n, done("sha256:1", "RUN x"))).len(), 1);
        let log = StatusEvent::Log {
            vertex: "sha256:1".into(),
            name: "RUN x".into(),
            stream: mybake_buildkit::LogStream::Stdout,
            data: b"hello\n".to_vec(),
        };
        assert!(p.render(&status(n, log)).is_empty());
        assert_eq!(
            p.render(&status(n, done("sha256:1", "RUN x"))),
            [
                "[a@linux/amd64] RUN x",
                "[a@linux/amd64] | hello",
                "[a@linux/amd64] DONE RUN x"
            ]
        );
        let err = StatusEvent::VertexError {
            digest: "sha256:1".into(),
            name: "RUN x".into(),
            error: "exit 1".into(),
        };
        assert_eq!(
            p.render(&status(n, err)),
            ["[a@linux/amd64] ERROR: exit 1 RUN x"]
        );
        // After a retry the new solve's steps print again.
        p.render(&Event::Retrying {
            node: n.into(),
            attempt: 2,
            max: 3,
            reason: "503".into(),
            delay: std::time::Duration::from_secs(1),
        });
        assert_eq!(p.render(&status(n, done("sha256:1", "RUN x"))).len(), 1);
    }
}
