//! Typed build progress, converted from `Control.Status` responses.
//!
//! BuildKit resends a vertex every time one of its fields changes; the
//! [`StatusTracker`] turns that into one event per state transition:
//! [`StatusEvent::VertexStarted`] then [`StatusEvent::VertexCompleted`] or
//! [`StatusEvent::VertexError`], or a single [`StatusEvent::VertexCached`].

use std::collections::HashMap;
use std::time::Duration;

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::StatusResponse;

/// Which output stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output of the step (stream 1).
    Stdout,
    /// Standard error of the step (stream 2).
    Stderr,
    /// Any other stream number BuildKit uses.
    Other(i64),
}

impl From<i64> for LogStream {
    fn from(n: i64) -> Self {
        match n {
            1 => LogStream::Stdout,
            2 => LogStream::Stderr,
            other => LogStream::Other(other),
        }
    }
}

/// One build progress event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusEvent {
    /// A step started running.
    VertexStarted {
        /// Vertex digest (`sha256:...`), stable identifier of the step.
        digest: String,
        /// Display name, e.g. `[2/3] RUN make`.
        name: String,
    },
    /// A step finished successfully.
    VertexCompleted {
        /// Vertex digest.
        digest: String,
        /// Display name.
        name: String,
        /// Wall time between start and completion, when both are known.
        duration: Option<Duration>,
    },
    /// A step was satisfied from the cache.
    VertexCached {
        /// Vertex digest.
        digest: String,
        /// Display name.
        name: String,
    },
    /// A step failed (the solve will fail too).
    VertexError {
        /// Vertex digest.
        digest: String,
        /// Display name.
        name: String,
        /// BuildKit's error message for the step.
        error: String,
    },
    /// Progress of a sub-task of a step (layer pull/push, context transfer).
    Progress {
        /// Digest of the vertex the task belongs to.
        vertex: String,
        /// Task id, e.g. a layer digest or `pushing manifest for ...`.
        id: String,
        /// Display name of the task.
        name: String,
        /// Units done (bytes for transfers).
        current: i64,
        /// Units in total, 0 when unknown.
        total: i64,
        /// The task is finished.
        completed: bool,
    },
    /// Output of a step.
    Log {
        /// Digest of the vertex that produced it.
        vertex: String,
        /// Name of that vertex, when it was announced before.
        name: String,
        /// Which stream.
        stream: LogStream,
        /// Raw bytes (not necessarily whole lines or valid UTF-8).
        data: Vec<u8>,
    },
    /// A build warning (e.g. Dockerfile lint checks).
    Warning {
        /// Digest of the vertex it concerns.
        vertex: String,
        /// Severity as sent by BuildKit.
        level: i64,
        /// One-line summary.
        short: String,
        /// Further detail lines.
        detail: Vec<String>,
        /// Documentation link, may be empty.
        url: String,
    },
}

#[derive(Debug, Default)]
struct VertexState {
    name: String,
    /// Start time of the run last reported as started.
    started: Option<Timestamp>,
    /// Completion time last reported.
    completed: Option<Timestamp>,
    cached: bool,
    errored: bool,
}

/// Converts a stream of `StatusResponse`s into [`StatusEvent`]s, emitting
/// each vertex transition once. A vertex that BuildKit runs again (new
/// start time, e.g. `[internal] load build context` after the
/// `.dockerignore` pass) is reported as started and completed again.
#[derive(Debug, Default)]
pub struct StatusTracker {
    vertexes: HashMap<String, VertexState>,
}

impl StatusTracker {
    /// A tracker that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events that `response` adds to what was seen before.
    pub fn update(&mut self, response: &StatusResponse) -> Vec<StatusEvent> {
        let mut events = Vec::new();
        for v in &response.vertexes {
            let state = self.vertexes.entry(v.digest.clone()).or_default();
            if !v.name.is_empty() {
                state.name.clone_from(&v.name);
            }
            if state.cached || state.errored {
                continue;
            }
            let name = state.name.clone();
            if v.cached {
                state.cached = true;
                events.push(StatusEvent::VertexCached {
                    digest: v.digest.clone(),
                    name,
                });
                continue;
            }
            if v.started.is_some() && v.started != state.started {
                state.started = v.started;
                state.completed = None;
                events.push(StatusEvent::VertexStarted {
                    digest: v.digest.clone(),
                    name: name.clone(),
                });
            }
            if !v.error.is_empty() {
                state.errored = true;
                events.push(StatusEvent::VertexError {
                    digest: v.digest.clone(),
                    name,
                    error: v.error.clone(),
                });
            } else if v.completed.is_some() && v.completed != state.completed {
                state.completed = v.completed;
                events.push(StatusEvent::VertexCompleted {
                    digest: v.digest.clone(),
                    name,
                    duration: match (&v.started, &v.completed) {
                        (Some(started), Some(completed)) => elapsed(started, completed),
                        _ => None,
                    },
                });
            }
        }
        for s in &response.statuses {
            events.push(StatusEvent::Progress {
                vertex: s.vertex.clone(),
                id: s.id.clone(),
                name: s.name.clone(),
                current: s.current,
                total: s.total,
                completed: s.completed.is_some(),
            });
        }
        for log in &response.logs {
            events.push(StatusEvent::Log {
                vertex: log.vertex.clone(),
                name: self
                    .vertexes
                    .get(&log.vertex)
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                stream: LogStream::from(log.stream),
                data: log.msg.clone(),
            });
        }
        for w in &response.warnings {
            events.push(StatusEvent::Warning {
                vertex: w.vertex.clone(),
                level: w.level,
                short: String::from_utf8_lossy(&w.short).into_owned(),
                detail: w
                    .detail
                    .iter()
                    .map(|d| String::from_utf8_lossy(d).into_owned())
                    .collect(),
                url: w.url.clone(),
            });
        }
        events
    }
}

fn elapsed(start: &Timestamp, end: &Timestamp) -> Option<Duration> {
    let start_ns = i128::from(start.seconds) * 1_000_000_000 + i128::from(start.nanos);
    let end_ns = i128::from(end.seconds) * 1_000_000_000 + i128::from(end.nanos);
    u64::try_from(end_ns - start_ns)
        .ok()
        .map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::moby::buildkit::v1::{
        Vertex, VertexLog, VertexStatus, VertexWarning,
    };

    fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    fn vertex(digest: &str, name: &str) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            ..Vertex::default()
        }
    }

    #[test]
    fn vertex_lifecycle_is_reported_once_per_transition() {
        let mut tracker = StatusTracker::new();
        let announce = StatusResponse {
            vertexes: vec![vertex("sha256:a", "[1/2] RUN make")],
            ..StatusResponse::default()
        };
        assert!(tracker.update(&announce).is_empty());

        let started = StatusResponse {
            vertexes: vec![Vertex {
                started: ts(10, 0),
                ..vertex("sha256:a", "[1/2] RUN make")
            }],
            logs: vec![VertexLog {
                vertex: "sha256:a".into(),
                stream: 2,
                msg: b"warning\n".to_vec(),
                ..VertexLog::default()
            }],
            ..StatusResponse::default()
        };
        assert_eq!(
            tracker.update(&started),
            vec![
                StatusEvent::VertexStarted {
                    digest: "sha256:a".into(),
                    name: "[1/2] RUN make".into()
                },
                StatusEvent::Log {
                    vertex: "sha256:a".into(),
                    name: "[1/2] RUN make".into(),
                    stream: LogStream::Stderr,
                    data: b"warning\n".to_vec()
                }
            ]
        );
        // Same state again: nothing new.
        assert!(tracker
            .update(&started)
            .iter()
            .all(|e| matches!(e, StatusEvent::Log { .. })));

        let done = StatusResponse {
            vertexes: vec![Vertex {
                started: ts(10, 0),
                completed: ts(11, 500_000_000),
                ..vertex("sha256:a", "[1/2] RUN make")
            }],
            ..StatusResponse::default()
        };
        assert_eq!(
            tracker.update(&done),
            vec![StatusEvent::VertexCompleted {
                digest: "sha256:a".into(),
                name: "[1/2] RUN make".into(),
                duration: Some(Duration::from_millis(1500)),
            }]
        );
        assert!(tracker.update(&done).is_empty());
    }

    #[test]
    fn restarted_vertex_is_reported_again() {
        let mut tracker = StatusTracker::new();
        let run = |start: i64, end: Option<i64>| StatusResponse {
            vertexes: vec![Vertex {
                started: ts(start, 0),
                completed: end.and_then(|e| ts(e, 0)),
                ..vertex("sha256:ctx", "[internal] load build context")
            }],
            ..StatusResponse::default()
        };
        assert_eq!(tracker.update(&run(1, Some(1))).len(), 2);
        assert!(tracker.update(&run(1, Some(1))).is_empty());
        let again = tracker.update(&run(2, None));
        assert!(
            matches!(again.as_slice(), [StatusEvent::VertexStarted { .. }]),
            "{again:?}"
        );
        let done = tracker.update(&run(2, Some(5)));
        assert!(
            matches!(
                done.as_slice(),
                [StatusEvent::VertexCompleted { duration: Some(d), .. }] if *d == Duration::from_secs(3)
            ),
            "{done:?}"
        );
    }

    #[test]
    fn cached_and_error_vertexes() {
        let mut tracker = StatusTracker::new();
        let response = StatusResponse {
            vertexes: vec![
                Vertex {
                    cached: true,
                    started: ts(1, 0),
                    completed: ts(1, 0),
                    ..vertex("sha256:c", "[1/2] FROM busybox")
                },
                Vertex {
                    started: ts(1, 0),
                    completed: ts(2, 0),
                    error:
                        "process \"/bin/sh -c false\" did not complete successfully: exit code: 1"
                            .into(),
                    ..vertex("sha256:e", "[2/2] RUN false")
                },
            ],
            statuses: vec![VertexStatus {
                id: "layer".into(),
                vertex: "sha256:c".into(),
                current: 5,
                total: 10,
                ..VertexStatus::default()
            }],
            warnings: vec![VertexWarning {
                vertex: "sha256:e".into(),
                level: 1,
                short: b"FromAsCasing".to_vec(),
                detail: vec![b"detail".to_vec()],
                ..VertexWarning::default()
            }],
            ..StatusResponse::default()
        };
        let events = tracker.update(&response);
        assert_eq!(
            events,
            vec![
                StatusEvent::VertexCached {
                    digest: "sha256:c".into(),
                    name: "[1/2] FROM busybox".into()
                },
                StatusEvent::VertexStarted {
                    digest: "sha256:e".into(),
                    name: "[2/2] RUN false".into()
                },
                StatusEvent::VertexError {
                    digest: "sha256:e".into(),
                    name: "[2/2] RUN false".into(),
                    error:
                        "process \"/bin/sh -c false\" did not complete successfully: exit code: 1"
                            .into()
                },
                StatusEvent::Progress {
                    vertex: "sha256:c".into(),
                    id: "layer".into(),
                    name: String::new(),
                    current: 5,
                    total: 10,
                    completed: false
                },
                StatusEvent::Warning {
                    vertex: "sha256:e".into(),
                    level: 1,
                    short: "FromAsCasing".into(),
                    detail: vec!["detail".into()],
                    url: String::new()
                }
            ]
        );
        assert!(tracker
            .update(&StatusResponse {
                vertexes: response.vertexes.clone(),
                ..StatusResponse::default()
            })
            .is_empty());
    }
}
