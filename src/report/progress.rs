//! Plain progress: one line per event, each prefixed with its node, so
//! parallel builds stay readable in logs.

use std::collections::HashMap;

use crate::exec::{event::StatusEvent, Event};

#[derive(Default)]
pub struct Plain {
    /// Partial log lines per (node, vertex).
    partial: HashMap<(String, String), String>,
}

impl Plain {
    /// Lines to print for one event (no trailing newline per line).
    pub fn render(&mut self, e: &Event) -> Vec<String> {
        match e {
            Event::Builder { endpoint, version, platforms } => vec![format!("builder {endpoint}: BuildKit {}, platforms {}", version.as_deref().unwrap_or("(version unknown)"), platforms.join(", "))],
            Event::Queued { .. } => Vec::new(),
            Event::Started { node, builder, .. } => vec![format!("[{node}] started on {builder}")],
            Event::Status { node, event } => match event {
                StatusEvent::VertexStarted { name, .. } => vec![format!("[{node}] {name}")],
                StatusEvent::VertexCompleted { name, duration, .. } => vec![format!("[{node}] DONE {name}{}", duration.map(|d| format!(" {:.1}s", d.as_secs_f64())).unwrap_or_default())],
                StatusEvent::VertexCached { name, .. } => vec![format!("[{node}] CACHED {name}")],
                StatusEvent::VertexError { name, error, .. } => vec![format!("[{node}] ERROR {name}: {error}")],
                StatusEvent::Log { vertex, data, .. } => {
                    let buf = self.partial.entry((node.clone(), vertex.clone())).or_default();
                    buf.push_str(&String::from_utf8_lossy(data));
                    let mut out = Vec::new();
                    while let Some(i) = buf.find('\n') {
                        let line: String = buf.drain(..=i).collect();
                        out.push(format!("[{node}] | {}", line.trim_end_matches(['\n', '\r'])));
                    }
                    out
                }
                StatusEvent::Warning { short, .. } => vec![format!("[{node}] WARNING {short}")],
                StatusEvent::Progress { .. } => Vec::new(),
            },
            Event::Finished { node, duration, digest, cached_steps, steps, .. } => {
                vec![format!("[{node}] finished in {:.1}s ({cached_steps}/{steps} steps cached){}", duration.as_secs_f64(), digest.as_ref().map(|d| format!(" {d}")).unwrap_or_default())]
            }
            Event::Failed { node, error, .. } => vec![format!("[{node}] FAILED: {error}")],
            Event::Skipped { node, reason } => vec![format!("[{node}] skipped: {reason}")],
        }
    }
}

/// `--progress json`: one JSON object per event and line (schema:
/// `schema/progress-event.schema.json`).
pub fn json_line(e: &Event) -> Option<String> {
    use serde_json::json;
    let ms = |t: &std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let now = ms(&std::time::SystemTime::now());
    let v = match e {
        Event::Builder { endpoint, version, platforms } => json!({ "type": "builder", "time": now, "endpoint": endpoint, "version": version, "platforms": platforms }),
        Event::Queued { node } => json!({ "type": "queued", "time": now, "node": node }),
        Event::Started { node, builder, at } => json!({ "type": "started", "time": ms(at), "node": node, "builder": builder }),
        Event::Status { node, event } => match event {
            StatusEvent::VertexStarted { digest, name } => json!({ "type": "step-started", "time": now, "node": node, "step": digest, "name": name }),
            StatusEvent::VertexCompleted { digest, name, duration } => json!({ "type": "step-completed", "time": now, "node": node, "step": digest, "name": name, "duration_ms": duration.map(|d| d.as_millis() as u64) }),
            StatusEvent::VertexCached { digest, name } => json!({ "type": "step-cached", "time": now, "node": node, "step": digest, "name": name }),
            StatusEvent::VertexError { digest, name, error } => json!({ "type": "step-failed", "time": now, "node": node, "step": digest, "name": name, "error": error }),
            StatusEvent::Log { vertex, stream, data, .. } => json!({ "type": "log", "time": now, "node": node, "step": vertex, "stream": match stream { mybake_buildkit::LogStream::Stdout => "stdout", mybake_buildkit::LogStream::Stderr => "stderr", mybake_buildkit::LogStream::Other(_) => "other" }, "text": String::from_utf8_lossy(data) }),
            StatusEvent::Warning { vertex, short, .. } => json!({ "type": "warning", "time": now, "node": node, "step": vertex, "text": short }),
            StatusEvent::Progress { .. } => return None,
        },
        Event::Finished { node, at, duration, digest, reference, cached_steps, steps } => json!({ "type": "finished", "time": ms(at), "node": node, "duration_ms": duration.as_millis() as u64, "digest": digest, "reference": reference, "cached_steps": cached_steps, "steps": steps }),
        Event::Failed { node, at, error } => json!({ "type": "failed", "time": ms(at), "node": node, "error": error }),
        Event::Skipped { node, reason } => json!({ "type": "skipped", "time": now, "node": node, "reason": reason }),
    };
    Some(v.to_string())
}
