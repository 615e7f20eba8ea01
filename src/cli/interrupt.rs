//! SIGINT and SIGTERM during `build`.
//!
//! The first signal cancels the run's token: the phase under way stops
//! (solves are cancelled, registry requests dropped, no tag write starts
//! after it) and `build` returns normally through its callers, so the
//! file-output staging is removed on drop, with exit code 130 (SIGINT) or
//! 143 (SIGTERM). A second signal ends the process at once, without
//! cleanup, for a run whose cleanup itself hangs.

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use mybake_buildkit::CancellationToken;
use tokio::signal::unix::{signal, SignalKind};

use super::exit;

/// The signal handlers of one run.
#[derive(Clone)]
pub struct Interrupt {
    cancel: CancellationToken,
    /// The first signal received (0: none).
    signal: Arc<AtomicI32>,
}

impl Interrupt {
    /// Installs the handlers; must be called inside a Tokio runtime. From
    /// here on SIGINT and SIGTERM no longer end the process by themselves.
    pub fn install(cancel: CancellationToken) -> std::io::Result<Interrupt> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let me = Interrupt {
            cancel,
            signal: Arc::new(AtomicI32::new(0)),
        };
        let state = me.clone();
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    Some(()) = int.recv() => libc::SIGINT,
                    Some(()) = term.recv() => libc::SIGTERM,
                    else => return,
                };
                let first = state
                    .signal
                    .compare_exchange(0, got, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                if first {
                    let _ = writeln!(
                        std::io::stderr(),
                        "mybake: {}: stopping (again to exit at once)",
                        name(got)
                    );
                    state.cancel.cancel();
                } else {
                    let _ = writeln!(
                        std::io::stderr(),
                        "mybake: {} again: exiting without cleanup",
                        name(got)
                    );
                    std::process::exit(code(got));
                }
            }
        });
        Ok(me)
    }

    /// The token cancelled by the first signal.
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The first signal's exit code (130 SIGINT, 143 SIGTERM), if one came.
    pub fn code(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(code(s)),
        }
    }

    /// The first signal's name, if one came.
    pub fn name(&self) -> Option<&'static str> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(name(s)),
        }
    }
}

fn code(signal: i32) -> i32 {
    if signal == libc::SIGTERM {
        exit::TERMINATED
    } else {
        exit::INTERRUPTED
    }
}

fn name(signal: i32) -> &'static str {
    if signal == libc::SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    }
}
