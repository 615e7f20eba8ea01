//! What the executor reports. It never prints; reporters render these.

use std::time::{Duration, SystemTime};

pub use mybake_buildkit::StatusEvent;

#[derive(Debug, Clone)]
pub enum Event {
    /// Connected to the builder.
    Builder {
        endpoint: String,
        version: Option<String>,
        platforms: Vec<String>,
    },
    /// A node waits for its dependencies or a free slot.
    Queued { node: String },
    /// Its solve started.
    Started {
        node: String,
        builder: String,
        at: SystemTime,
    },
    /// Progress of the solve (vertexes, logs, warnings).
    Status { node: String, event: StatusEvent },
    /// The solve succeeded.
    Finished {
        node: String,
        at: SystemTime,
        duration: Duration,
        digest: Option<String>,
        reference: Option<String>,
        cached_steps: usize,
        steps: usize,
    },
    /// The solve failed (the message is the daemon's, prefixed with the node).
    Failed {
        node: String,
        at: SystemTime,
        error: String,
    },
    /// The solve was stopped because the run was cancelled (another node
    /// failed under fail-fast, or Ctrl-C).
    Cancelled {
        node: String,
        at: SystemTime,
        /// How long it had been running.
        duration: Duration,
    },
    /// Not run because something it needs failed or the run was cancelled.
    Skipped { node: String, reason: String },
}
