//! `--progress tty`: one live line per running build node (target,
//! platform, elapsed, current step, cached steps); finished nodes scroll up
//! as one line; a failed node prints the tail of its log.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exec::{event::StatusEvent, Event};

/// Log lines kept per node for the failure tail.
pub const TAIL_LINES: usize = 25;

pub struct Tty {
    mp: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    cached: HashMap<String, usize>,
    tails: HashMap<String, VecDeque<String>>,
    style: ProgressStyle,
}

impl Default for Tty {
    fn default() -> Self {
        Self::new()
    }
}

impl Tty {
    pub fn new() -> Tty {
        let style = ProgressStyle::with_template(
            "{spinner:.cyan} {prefix:<34.bold} {elapsed:>4} {msg:.dim}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Tty {
            mp: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            bars: HashMap::new(),
            cached: HashMap::new(),
            tails: HashMap::new(),
            style,
        }
    }

    fn println(&self, s: String) {
        let _ = self.mp.println(s);
    }

    pub fn handle(&mut self, e: &Event) {
        match e {
            Event::Builder {
                endpoint,
                version,
                platforms,
            } => self.println(format!(
                "builder {endpoint}: BuildKit {}, {}",
                version.as_deref().unwrap_or("?"),
                platforms.join(", ")
            )),
            Event::Queued { .. } => {}
            Event::Started { node, builder, .. } => {
                let bar = self.mp.add(ProgressBar::new_spinner());
                bar.set_style(self.style.clone());
                bar.set_prefix(node.clone());
                bar.set_message(format!("on {builder}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars.insert(node.clone(), bar);
            }
            Event::Status { node, event } => match event {
                StatusEvent::VertexStarted { name, .. } => {
                    if let Some(b) = self.bars.get(node) {
                        let cached = self.cached.get(node).copied().unwrap_or(0);
                        b.set_message(format!(
                            "{}{}",
                            truncate(name, 70),
                            if cached > 0 {
                                format!("  ({cached} cached)")
                            } else {
                                String::new()
                            }
                        ));
                    }
                }
                StatusEvent::VertexCached { .. } => {
                    *self.cached.entry(node.clone()).or_default() += 1
                }
                StatusEvent::Log { data, .. } => {
                    let tail = self.tails.entry(node.clone()).or_default();
                    for line in String::from_utf8_lossy(data).lines() {
                        if tail.len() == TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line.to_string());
                    }
                }
                StatusEvent::VertexError { name, error, .. } => {
                    self.println(format!("  {node}: {name}: {error}"))
                }
                _ => {}
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
                if let Some(b) = self.bars.remove(node) {
                    b.finish_and_clear();
                }
                self.tails.remove(node);
                self.println(format!(
                    "✔ {node:<34} {:>5.1}s  {cached_steps}/{steps} cached  {}{}",
                    duration.as_secs_f64(),
                    digest.as_deref().map(short).unwrap_or(""),
                    if *push_attempts > 1 {
                        format!("  ({push_attempts} push attempts)")
                    } else {
                        String::new()
                    }
                ));
            }
            Event::Retrying {
                node,
                attempt,
                max,
                reason,
                delay,
            } => {
                if let Some(b) = self.bars.get(node) {
                    b.set_message(format!("retrying push ({attempt}/{max})"));
                }
                self.println(format!(
                    "↻ {node}: retrying push ({attempt}/{max}) in {:.1}s: {}",
                    delay.as_secs_f64(),
                    truncate(reason, 120)
                ));
            }
            Event::Failed { node, error, .. } => {
                if let Some(b) = self.bars.remove(node) {
                    b.finish_and_clear();
                }
                self.println(format!("✘ {node}: {error}"));
                if let Some(tail) = self.tails.remove(node) {
                    for l in tail {
                        self.println(format!("  │ {l}"));
                    }
                }
            }
            Event::Cancelled { node, duration, .. } => {
                if let Some(b) = self.bars.remove(node) {
                    b.finish_and_clear();
                }
                self.tails.remove(node);
                self.println(format!(
                    "- {node}: cancelled after {:.1}s",
                    duration.as_secs_f64()
                ));
            }
            Event::Skipped { node, reason } => {
                if let Some(b) = self.bars.remove(node) {
                    b.finish_and_clear();
                }
                self.println(format!("- {node}: skipped ({reason})"));
            }
        }
    }

    pub fn finish(&mut self) {
        for (_, b) in self.bars.drain() {
            b.finish_and_clear();
        }
        let _ = self.mp.clear();
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn short(d: &str) -> &str {
    let end = d.find(':').map_or(0, |i| i + 1) + 12;
    &d[..end.min(d.len())]
}
