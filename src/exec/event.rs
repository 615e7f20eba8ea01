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
        /// Solves it took: more than 1 when its push was retried.
        push_attempts: u32,
    },
    /// The solve's push failed with a transient registry answer; the node
    /// is solved again (from BuildKit's cache, so only the export and push
    /// run again) after `delay`.
    Retrying {
        node: String,
        /// The attempt about to start (2 for the first retry).
        attempt: u32,
        /// Attempts allowed in all.
        max: u32,
        /// The registry's answer, one line.
        reason: String,
        delay: Duration,
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
