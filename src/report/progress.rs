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
            Event::Started { node, .. } => vec![format!("[{node}] started")],
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
