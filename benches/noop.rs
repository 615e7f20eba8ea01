//! Warm no-op builds: `mybake build --push` when nothing changed (every
//! target skipped as unchanged) vs `docker buildx bake --push` warm on the
//! same daemon, on the 21-target × 2-platform monorepo
//! (`gen_monorepo.py --services 16 --libs 4 --run-steps`); and mybake's
//! no-op at scale (500 targets × 2 platforms).
//!
//! `cargo bench --bench noop [-- --runs 5] [--scale 500] [--no-peer]
//! [--no-scale]`. A plain binary (`harness = false`): it prints the
//! medians, the ratio to bake and PASS/MISS against the targets (warm no-op
//! < 1 s and ≤ 0.1× bake; 500 targets < 3 s), exits 0 either way, and
//! panics when a tool fails or a no-op run solves anything.
//!
//! Every run pushes to repositories of its own
//! (`localhost:5000/noop-bench-<pid>-<time>/…`), bake to other ones than
//! mybake (bake's indexes carry no input key).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{generator, median_duration, ms, mybake_bin};

const TARGET_NOOP: Duration = Duration::from_secs(1);
const TARGET_RATIO: f64 = 0.1;
const TARGET_SCALE: Duration = Duration::from_secs(3);

struct Opts {
    runs: usize,
    scale: usize,
    do_scale: bool,
    peer: bool,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        runs: 5,
        scale: 500,
        do_scale: true,
        peer: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => o.runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(o.runs),
            "--scale" => o.scale = it.next().and_then(|v| v.parse().ok()).unwrap_or(o.scale),
            "--no-scale" => o.do_scale = false,
            "--no-peer" => o.peer = false,
            "--bench" => {}
            other => {
                eprintln!("usage: cargo bench --bench noop -- [--runs 5] [--scale 500] [--no-scale] [--no-peer] (unknown: {other})");
                std::process::exit(2);
            }
        }
    }
    o
}

fn unique() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{}-{t}", std::process::id())
}

fn generate(dir: &Path, services: usize, libs: usize, run_steps: bool, registry: &str) {
    let mut c = Command::new("python3");
    c.arg(generator())
        .arg(dir)
        .args(["--services", &services.to_string()])
        .args(["--libs", &libs.to_string()])
        .args(["--registry", registry]);
    if run_steps {
        c.arg("--run-steps");
    }
    let st = c
        .stdout(Stdio::null())
        .status()
        .expect("run gen_monorepo.py");
    assert!(st.success(), "gen_monorepo.py failed");
}

/// One `mybake build --push --progress json` → (wall time, solves).
fn mybake(dir: &Path, cache: &Path) -> (Duration, usize) {
    let t = Instant::now();
    let o = Command::new(mybake_bin())
        .arg("-C")
        .arg(dir)
        .args(["build", "--push", "--progress", "json"])
        .env("MYBAKE_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .output()
        .expect("run mybake");
    let took = t.elapsed();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "mybake build failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let solves = out
        .lines()
        .filter(|l| l.contains("\"type\":\"started\""))
        .count();
    (took, solves)
}

fn bake(dir: &Path, registry: &str) -> Duration {
    let t = Instant::now();
    let o = Command::new("docker")
        .current_dir(dir)
        .env("REGISTRY", registry)
        .args([
            "buildx",
            "bake",
            "-f",
            "docker-bake.hcl",
            "--push",
            "--provenance=false",
            "--progress",
            "quiet",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run docker buildx bake");
    let took = t.elapsed();
    assert!(
        o.status.success(),
        "docker buildx bake failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    took
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// Generates, builds once (not timed), then times `runs` no-op runs.
fn noop_runs(dir: &Path, cache: &Path, runs: usize) -> Duration {
    let (first, solves) = mybake(dir, cache);
    eprintln!(
        "    first build: {:.1} s, {solves} solves",
        first.as_secs_f64()
    );
    let mut times = Vec::new();
    for _ in 0..runs {
        let (t, solves) = mybake(dir, cache);
        assert_eq!(solves, 0, "a no-op run solved {solves} nodes");
        times.push(t);
    }
    median_duration(times)
}

fn main() {
    let o = parse_args();
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let id = unique();

    // 21 targets × 2 platforms.
    let dir = tmp.path().join("mono");
    let registry = format!("localhost:5000/noop-bench-{id}");
    generate(&dir, 16, 4, true, &registry);
    eprintln!("monorepo 21 targets × 2 platforms ({} runs)", o.runs);
    let noop = noop_runs(&dir, &cache, o.runs);
    println!("mybake warm no-op (21 × 2):   {:8.0} ms", ms(noop));
    if o.peer {
        let bake_registry = format!("localhost:5000/noop-bench-bake-{id}");
        let warmup = bake(&dir, &bake_registry);
        eprintln!("    bake first build: {:.1} s", warmup.as_secs_f64());
        let times: Vec<Duration> = (0..o.runs).map(|_| bake(&dir, &bake_registry)).collect();
        let b = median_duration(times);
        let ratio = noop.as_secs_f64() / b.as_secs_f64();
        println!("bake --push warm (21 × 2):    {:8.0} ms", ms(b));
        println!(
            "ratio mybake/bake:            {ratio:8.3}   {} (≤ {TARGET_RATIO}×)",
            pass(ratio <= TARGET_RATIO)
        );
    }
    println!(
        "warm no-op < {} s:             {}",
        TARGET_NOOP.as_secs(),
        pass(noop < TARGET_NOOP)
    );

    if o.do_scale {
        // N targets × 2 platforms: 1 base, 4 libs, N - 5 services; no RUN
        // steps (the first build only has to exist).
        let dir = tmp.path().join("scale");
        let registry = format!("localhost:5000/noop-bench-scale-{id}");
        generate(&dir, o.scale.saturating_sub(5).max(1), 4, false, &registry);
        eprintln!("monorepo {} targets × 2 platforms", o.scale);
        let t = noop_runs(&dir, &cache, o.runs);
        println!(
            "mybake no-op ({} × 2):       {:8.0} ms   {} (< {} s)",
            o.scale,
            ms(t),
            pass(t < TARGET_SCALE),
            TARGET_SCALE.as_secs()
        );
    }
}
