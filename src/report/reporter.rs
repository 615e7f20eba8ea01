//! Live progress of `build`: one [`Reporter`] (plain, tty, json, quiet)
//! renders both exec [`Event`]s and publish [`PublishEvent`]s as they come.

use std::io::Write;

use crate::exec::Event;
use crate::publish::PublishEvent;

use super::progress::{json_line, Plain};
use super::tty::Tty;

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `tty` on a terminal, else `plain`.
    #[default]
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

/// Renders a run's events as they come.
pub trait Reporter: Send {
    /// An exec event.
    fn exec(&mut self, e: &Event);
    /// The exec events have ended (a live display is cleared).
    fn exec_done(&mut self) {}
    /// A publish event.
    fn publish(&mut self, e: &PublishEvent);
    /// The lines of the file outputs placed.
    fn outputs_written(&mut self, lines: &[String]);
}

/// The reporter for `mode` (`auto`: `tty` when stderr is a terminal).
pub fn reporter(mode: Mode) -> Box<dyn Reporter> {
    match mode {
        Mode::Quiet => Box::new(Quiet),
        Mode::Json => Box::new(Json),
        Mode::Tty => Box::new(TtyReporter(Tty::new())),
        Mode::Auto if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
            Box::new(TtyReporter(Tty::new()))
        }
        Mode::Auto | Mode::Plain => Box::new(PlainReporter(Plain::default())),
    }
}

/// Publish and output lines go to stderr, one by one (plain and tty).
fn lines_to_stderr<'a>(lines: impl IntoIterator<Item = &'a String>) {
    let stderr = std::io::stderr();
    for line in lines {
        let _ = writeln!(stderr.lock(), "{line}");
    }
}

fn publish_to_stderr(e: &PublishEvent) {
    if let Some(line) = publish_line(e) {
        lines_to_stderr([&line]);
    }
}

/// `--progress plain`: lines on stderr.
pub struct PlainReporter(Plain);

impl Reporter for PlainReporter {
    fn exec(&mut self, e: &Event) {
        let stderr = std::io::stderr();
        let mut lock = stderr.lock();
        for line in self.0.render(e) {
            let _ = writeln!(lock, "{line}");
        }
    }
    fn publish(&mut self, e: &PublishEvent) {
        publish_to_stderr(e);
    }
    fn outputs_written(&mut self, lines: &[String]) {
        lines_to_stderr(lines);
    }
}

/// `--progress tty`: live lines per running node, then plain lines.
pub struct TtyReporter(Tty);

impl Reporter for TtyReporter {
    fn exec(&mut self, e: &Event) {
        self.0.handle(e);
    }
    fn exec_done(&mut self) {
        self.0.finish();
    }
    fn publish(&mut self, e: &PublishEvent) {
        publish_to_stderr(e);
    }
    fn outputs_written(&mut self, lines: &[String]) {
        lines_to_stderr(lines);
    }
}

/// `--progress json`: exec events as JSON lines on stdout.
pub struct Json;

impl Reporter for Json {
    fn exec(&mut self, e: &Event) {
        if let Some(line) = json_line(e) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }
    fn publish(&mut self, _: &PublishEvent) {}
    fn outputs_written(&mut self, _: &[String]) {}
}

/// `--progress quiet`: nothing.
pub struct Quiet;

impl Reporter for Quiet {
    fn exec(&mut self, _: &Event) {}
    fn publish(&mut self, _: &PublishEvent) {}
    fn outputs_written(&mut self, _: &[String]) {}
}

/// One publish event's line.
pub fn publish_line(e: &PublishEvent) -> Option<String> {
    use PublishEvent as P;
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

/// The signal handler's line, written at once: `first`, the run stops;
/// else the process exits right after, without cleanup.
pub fn signal_notice(first: bool, name: &str) {
    let line = if first {
        format!("mybake: {name}: stopping (again to exit at once)")
    } else {
        format!("mybake: {name} again: exiting without cleanup")
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}
