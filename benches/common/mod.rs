//! What the benches share (`mod common;` in each): argument parsing
//! ([`parse_args`], clap), where the tools and the monorepo generator are,
//! and the statistics they print.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The bench's arguments, parsed by clap from its `derive(Parser)` type
/// (`--help` lists them; a bad argument exits 2). cargo passes `--bench`
/// to `harness = false` bench binaries: it is accepted and ignored.
pub fn parse_args<T: clap::Parser>() -> T {
    T::parse_from(std::env::args().filter(|a| a != "--bench"))
}

/// Rejects arguments that parse but do not fit together (exit 2, with the
/// bench's usage).
pub fn invalid<T: clap::CommandFactory>(message: &str) -> ! {
    T::command()
        .error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}

/// The monorepo generator (`../shared/bench/gen_monorepo.py`), or
/// `MYBAKE_BENCH_GEN`.
pub fn generator() -> PathBuf {
    if let Some(p) = std::env::var_os("MYBAKE_BENCH_GEN") {
        return PathBuf::from(p);
    }
    let rel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen_monorepo.py");
    if rel.is_file() {
        return rel.canonicalize().unwrap_or(rel);
    }
    PathBuf::from("/work/shared/bench/gen_monorepo.py")
}

/// The mybake binary to measure: `MYBAKE_BIN`, or the one cargo built.
pub fn mybake_bin() -> PathBuf {
    std::env::var_os("MYBAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mybake")))
}

/// The median of `v` (`None` when empty); the mean of the middle two for
/// an even count.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The median duration (`Duration::ZERO` when empty).
pub fn median_duration(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Seconds.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
