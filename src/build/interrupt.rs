//! SIGINT and SIGTERM during `build`.
//!
//! The first signal cancels the run's token: the phase under way stops
//! (solves are cancelled, registry requests dropped, no tag write starts
//! after it) and `build` returns normally through its callers, so the
//! file-output staging is removed on drop, with exit code 130 (SIGINT) or
//! 143 (SIGTERM). A second signal ends the process at once, without
//! cleanup, for a run whose cleanup itself hangs.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use mybake_buildkit::CancellationToken;
use tokio::signal::unix::{signal, SignalKind};

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
                let sig = Signal::of(got);
                // Written at once, from here: the second signal's line has
                // to come out before the process ends, with no reporter task
                // left to wait for.
                crate::report::reporter::signal_notice(first, sig.name());
                if first {
                    state.cancel.cancel();
                } else {
                    std::process::exit(sig.exit_code());
                }
            }
        });
        Ok(me)
    }

    /// The token cancelled by the first signal.
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The first signal received, if one came.
    pub fn signal(&self) -> Option<Signal> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(Signal::of(s)),
        }
    }
}

/// The signal that stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
}

impl Signal {
    fn of(signal: i32) -> Signal {
        if signal == libc::SIGTERM {
            Signal::Term
        } else {
            Signal::Int
        }
    }

    /// `SIGINT`, `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        }
    }

    /// The exit code a shell reports for a process it ended with this
    /// signal: 130 (SIGINT), 143 (SIGTERM).
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Int => 130,
            Signal::Term => 143,
        }
    }
}
