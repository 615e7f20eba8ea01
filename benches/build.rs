//! `mybake build --push` vs `docker buildx bake --push` on a generated
//! monorepo (21 targets × 2 platforms, arm64 under qemu), cold and warm
//! cache, on the test bed's Docker Engine and registry.
//!
//! Run with `cargo bench --bench build` (options: benches/README.md). This
//! is a plain binary (`harness = false`), not a test: it reports PASS/MISS
//! against the targets and exits 0 either way; it panics when a tool fails
//! or pushes the wrong thing.
//!
//! Cold runs start with `docker builder prune -af`, which empties the
//! daemon's whole build cache (other users of the daemon included), or with
//! `--salt`, by writing new content into the base image's context so that
//! every step of the DAG misses the cache.

mod common;

use common::{generator, mybake_bin, secs};

fn median_f64(v: Vec<f64>) -> f64 {
    common::median(v).expect("at least one run")
}

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];
const REGISTRY: &str = "http://127.0.0.1:5000";
const BUSYBOX: &str = "/v2/busybox/manifests/latest";
const TARGET_COLD_RATIO: f64 = 0.8;
const TARGET_OVERHEAD: f64 = 0.10;
/// What Docker's image store says when two per-platform exports of one
/// new repository race (see tests/it/build.rs, concurrent_platform_exports_do_not_race).
const RACE: &str = "\": already exists";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Measures `mybake build --push` against `docker buildx bake --push` on a
/// generated monorepo.
#[derive(clap::Parser)]
#[command(bin_name = "cargo bench --bench build --")]
struct Opts {
    /// Services of the generated monorepo.
    #[arg(long, default_value_t = 16)]
    services: usize,
    /// Libraries of the generated monorepo.
    #[arg(long, default_value_t = 4)]
    libs: usize,
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Skip the cold runs.
    #[arg(long = "no-cold", action = clap::ArgAction::SetFalse)]
    cold: bool,
    /// Skip the warm runs.
    #[arg(long = "no-warm", action = clap::ArgAction::SetFalse)]
    warm: bool,
    /// Skip `docker buildx bake`.
    #[arg(long = "no-peer", action = clap::ArgAction::SetFalse)]
    peer: bool,
    #[arg(long, default_value_t = 3)]
    attempts: usize,
    /// Keep the generated monorepo in DIR.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// `jobs=` of a one-node builder on `docker` (mybake's default per node otherwise).
    #[arg(long)]
    node_jobs: Option<usize>,
    /// Cold runs rewrite `base/base.txt` instead of pruning the daemon's cache.
    #[arg(long)]
    salt: bool,
    /// `mybake build --history`: record every solve in the build history.
    #[arg(long)]
    history: bool,
}

fn parse_args() -> Opts {
    let o: Opts = common::parse_args();
    if o.rounds == 0 || o.attempts == 0 || o.services == 0 || o.libs == 0 {
        common::invalid::<Opts>("--rounds, --attempts, --services and --libs must be at least 1");
    }
    if !(o.cold || o.warm) {
        common::invalid::<Opts>("--no-cold and --no-warm leave nothing to measure");
    }
    o
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn output(args: &[&str]) -> (bool, String, String) {
    match Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (false, String::new(), format!("{}: {e}", args[0])),
    }
}

/// GET `REGISTRY + path` → (status, body).
fn http_get(path: &str) -> (u16, String) {
    let (ok, out, err) = output(&[
        "curl",
        "-sS",
        "-H",
        &format!("Accept: {ACCEPT}"),
        "-w",
        "\n%{http_code}",
        &format!("{REGISTRY}{path}"),
    ]);
    assert!(ok, "curl {path}: {err}");
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn preflight(peer: bool) -> (String, String) {
    let (ok, v, e) = output(&[
        "docker",
        "info",
        "--format",
        "{{.ServerVersion}} {{.Driver}}",
    ]);
    assert!(
        ok,
        "the Docker daemon is not reachable (scripts/testbed/setup.sh): {e}"
    );
    assert_eq!(
        http_get("/v2/").0,
        200,
        "the registry at {REGISTRY} is not up (scripts/testbed/setup.sh)"
    );
    assert_eq!(
        http_get(BUSYBOX).0,
        200,
        "localhost:5000/busybox:latest is missing (scripts/testbed/setup.sh)"
    );
    let bx = if peer {
        let (ok, b, e) = output(&["docker", "buildx", "version"]);
        assert!(
            ok,
            "docker buildx is not available (use --no-peer to skip it): {e}"
        );
        b.trim().to_string()
    } else {
        "(not run)".into()
    };
    (v.trim().to_string(), bx)
}

fn prune() -> Duration {
    let t = Instant::now();
    let (ok, out, err) = output(&["docker", "builder", "prune", "-af"]);
    assert!(ok, "docker builder prune -af failed: {err}");
    let total = out
        .lines()
        .find(|l| l.starts_with("Total"))
        .unwrap_or("Total: ?")
        .to_string();
    eprintln!(
        "    docker builder prune -af: {total} ({:.1} s)",
        secs(t.elapsed())
    );
    t.elapsed()
}

/// Removes the Docker image store records of the bench's repositories
/// (both tools leave some: bake tags its images there, and Docker's
/// BuildKit names one per push-by-digest export).
fn remove_store_records(prefix: &str) {
    let (_, out, _) = output(&["ctr", "-n", "moby", "images", "ls", "-q"]);
    let names: Vec<&str> = out.lines().filter(|n| n.starts_with(prefix)).collect();
    for chunk in names.chunks(50) {
        let mut args = vec!["ctr", "-n", "moby", "images", "rm"];
        args.extend(chunk);
        let _ = output(&args);
    }
}

// ---------------------------------------------------------------- the plan

struct Plan {
    /// Build node ids in topological order.
    builds: Vec<String>,
    needs: HashMap<String, Vec<String>>,
    /// `critical_path` of `mybake plan --format json` (merge node included).
    critical_path: Vec<String>,
}

fn plan(dir: &Path) -> Plan {
    let (ok, out, err) = output(&[
        mybake_bin().to_str().expect("utf-8 path"),
        "-C",
        dir.to_str().expect("utf-8 path"),
        "plan",
        "--format",
        "json",
    ]);
    assert!(ok, "mybake plan: {err}");
    let v: Value = serde_json::from_str(&out).expect("plan --format json is JSON");
    let builds: Vec<String> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["kind"] == "build")
        .map(|n| n["id"].as_str().expect("id").to_string())
        .collect();
    let mut needs: HashMap<String, Vec<String>> = HashMap::new();
    for e in v["edges"].as_array().expect("edges") {
        let (n, d) = (
            e["node"].as_str().expect("node"),
            e["needs"].as_str().expect("needs"),
        );
        if builds.iter().any(|b| b == n) {
            needs.entry(n.to_string()).or_default().push(d.to_string());
        }
    }
    let critical_path = v["critical_path"]
        .as_array()
        .expect("critical_path")
        .iter()
        .map(|s| s.as_str().expect("id").to_string())
        .collect();
    Plan {
        builds,
        needs,
        critical_path,
    }
}

// ---------------------------------------------------------------- runs

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Mybake,
    Bake,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Mybake => "mybake",
            Tool::Bake => "bake",
        }
    }
}

struct Run {
    wall: Duration,
    /// mybake only: node → (started, finished) in epoch ms, and duration_ms.
    nodes: HashMap<String, (u64, u64, u64)>,
    spawned_ms: u64,
    exited_ms: u64,
    attempts: usize,
    /// (cached steps, steps): mybake from `finished`, bake from its plain
    /// progress (`#N CACHED` vs `#N DONE` lines).
    cache: (u64, u64),
    /// CPU time the daemon side spent during the run (see [`daemon_cpu_ticks`]).
    daemon_cpu: Duration,
}

/// The daemon processes whose CPU time a run is charged: Docker Engine
/// (its BuildKit, and through reaped children the runc/qemu of `RUN`
/// steps), containerd and the registry.
const DAEMONS: [&str; 3] = ["dockerd", "containerd", "docker-registry"];

/// utime + stime + cutime + cstime of the [`DAEMONS`], in clock ticks
/// (`/proc/PID/stat` fields 14–17). Steadier than wall time on a shared
/// machine: both tools drive the same daemon, so this is the work each
/// makes it do.
fn daemon_cpu_ticks() -> u64 {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if !DAEMONS.contains(&comm.trim()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the `(comm)`: state is field 3, utime field 14.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        ticks += rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum::<u64>();
    }
    ticks
}

/// Clock ticks per second for [`daemon_cpu_ticks`] (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(100)
}

fn command(tool: Tool, dir: &Path, registry: &str, history: bool) -> Command {
    match tool {
        Tool::Mybake => {
            let mut c = Command::new(mybake_bin());
            c.arg("-C").arg(dir).args([
                "--var",
                &format!("REGISTRY={registry}"),
                "build",
                "--push",
                // As bake's `--provenance=false` below: indexes of exactly
                // the two platform images.
                "--provenance=false",
                "--progress",
                "json",
            ]);
            if dir.join("mybake.builders.kdl").is_file() {
                c.args(["--builder", "bench"]);
            }
            if history {
                c.arg("--history");
            }
            c
        }
        Tool::Bake => {
            // bake pushes the requested targets (the services), not the
            // base and libs it builds for them; without provenance, so its
            // indexes hold exactly the two platform images, as mybake's do.
            let mut c = Command::new("docker");
            c.current_dir(dir).env("REGISTRY", registry).args([
                "buildx",
                "bake",
                "-f",
                "docker-bake.hcl",
                "--push",
                "--provenance=false",
                "--progress",
                "plain",
            ]);
            c
        }
    }
}

/// One timed run (retried, up to `attempts`, when mybake hits the known
/// export race; each retry of a cold run is cold again).
#[allow(clippy::too_many_arguments)]
fn run(
    tool: Tool,
    dir: &Path,
    registry: &str,
    cold: bool,
    salt: bool,
    history: bool,
    attempts: usize,
    scratch: &Path,
    label: &str,
) -> Run {
    for attempt in 1..=attempts {
        if cold && salt {
            // New content in the base's context: every COPY and RUN of every
            // image misses the cache (only the busybox base is resolved from
            // cache), and nobody else's cache is touched.
            std::fs::write(
                dir.join("base/base.txt"),
                format!("salt {label} {attempt} {}\n", epoch_ms(SystemTime::now())),
            )
            .expect("write base/base.txt");
        } else if cold {
            prune();
        }
        let out = scratch.join(format!("{label}-{attempt}.out"));
        let err = scratch.join(format!("{label}-{attempt}.err"));
        let mut c = command(tool, dir, registry, history);
        if tool == Tool::Mybake && !cold {
            // Warm = solved again from the cache, as bake's warm run is; a
            // no-op run skips every unchanged target (`benches/noop.rs`).
            c.arg("--rebuild");
        }
        c.stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"));
        let spawned_ms = epoch_ms(SystemTime::now());
        let cpu_before = daemon_cpu_ticks();
        let t = Instant::now();
        let status = c.status().unwrap_or_else(|e| panic!("{label}: spawn: {e}"));
        let wall = t.elapsed();
        let daemon_cpu = Duration::from_millis(
            daemon_cpu_ticks().saturating_sub(cpu_before) * 1000 / clock_ticks_per_sec(),
        );
        let exited_ms = epoch_ms(SystemTime::now());
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = stderr
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if tool == Tool::Mybake && stderr.contains(RACE) && attempt < attempts {
                let line = stderr
                    .lines()
                    .find(|l| l.contains(RACE))
                    .unwrap_or("")
                    .trim();
                eprintln!("    {label}: attempt {attempt} failed after {:.1} s on the known export race (mybake bug): {line}; retrying", secs(wall));
                continue;
            }
            let failed: Vec<&str> = stdout
                .lines()
                .filter(|l| l.contains("\"type\":\"failed\""))
                .chain(
                    stderr
                        .lines()
                        .filter(|l| l.contains("FAILED") || l.contains("ERROR")),
                )
                .collect();
            panic!(
                "{label}: {} exited {status} after {:.1} s\nfailures:\n{}\nstderr (tail):\n{}",
                tool.name(),
                secs(wall),
                failed.join("\n"),
                tail.join("\n")
            );
        }
        let mut nodes = HashMap::new();
        let mut cache = (0, 0);
        if tool == Tool::Bake {
            let is =
                |l: &str, w: &str| l.starts_with('#') && l.split_whitespace().nth(1) == Some(w);
            let cached = stderr.lines().filter(|l| is(l, "CACHED")).count() as u64;
            cache = (
                cached,
                cached + stderr.lines().filter(|l| is(l, "DONE")).count() as u64,
            );
        }
        if tool == Tool::Mybake {
            let mut started = HashMap::new();
            for l in stdout.lines() {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{label}: progress line is not JSON ({e}): {l}"));
                let node = v["node"].as_str().unwrap_or("").to_string();
                match v["type"].as_str() {
                    Some("started") => {
                        started.insert(node, v["time"].as_u64().unwrap_or(0));
                    }
                    Some("finished") => {
                        let s = started.get(&node).copied().unwrap_or(0);
                        nodes.insert(
                            node,
                            (
                                s,
                                v["time"].as_u64().unwrap_or(0),
                                v["duration_ms"].as_u64().unwrap_or(0),
                            ),
                        );
                        cache.0 += v["cached_steps"].as_u64().unwrap_or(0);
                        cache.1 += v["steps"].as_u64().unwrap_or(0);
                    }
                    _ => {}
                }
            }
        }
        eprintln!(
            "    {label}: {:.1} s{}",
            secs(wall),
            if attempt > 1 {
                format!(" (attempt {attempt})")
            } else {
                String::new()
            }
        );
        return Run {
            wall,
            nodes,
            spawned_ms,
            exited_ms,
            attempts: attempt,
            cache,
            daemon_cpu,
        };
    }
    unreachable!()
}

/// Every service is tagged `dev` in `registry` as an index of exactly the
/// two platform images.
fn check_pushed(tool: Tool, registry: &str, services: usize) {
    let ns = registry
        .strip_prefix("localhost:5000/")
        .expect("registry on localhost:5000");
    for i in 0..services {
        let path = format!("/v2/{ns}/bench/svc-{i}/manifests/dev");
        let (code, body) = http_get(&path);
        assert_eq!(
            code,
            200,
            "{}: {registry}/bench/svc-{i}:dev is missing: {body}",
            tool.name()
        );
        let v: Value = serde_json::from_str(&body).expect("manifest JSON");
        let mut plats: Vec<String> = v["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: svc-{i}:dev is not an index: {body}", tool.name()))
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap_or(""),
                    m["platform"]["architecture"].as_str().unwrap_or("")
                )
            })
            .collect();
        plats.sort();
        assert_eq!(
            plats,
            PLATFORMS,
            "{}: svc-{i}:dev must hold exactly the two platform images",
            tool.name()
        );
    }
}

// ---------------------------------------------------------------- critical path

/// Longest path through the build nodes, weighted by solve duration
/// (`duration_ms` of `finished`): (ms, nodes).
fn measured_critical_path(p: &Plan, r: &Run) -> (u64, Vec<String>) {
    let mut best: HashMap<&str, (u64, Option<&str>)> = HashMap::new();
    for n in &p.builds {
        let w = r
            .nodes
            .get(n)
            .map(|x| x.2)
            .unwrap_or_else(|| panic!("no finished event for {n}"));
        let prev = p
            .needs
            .get(n)
            .into_iter()
            .flatten()
            .map(|d| (best[d.as_str()].0, d.as_str()))
            .max();
        best.insert(n, (w + prev.map_or(0, |x| x.0), prev.map(|x| x.1)));
    }
    let (&end, &(total, _)) = best.iter().max_by_key(|(_, v)| v.0).expect("build nodes");
    let mut path = vec![end.to_string()];
    let mut cur = end;
    while let Some(prev) = best[cur].1 {
        path.push(prev.to_string());
        cur = prev;
    }
    path.reverse();
    (total, path)
}

/// Sum of the durations of the plan's `critical_path` build nodes.
fn plan_path_ms(p: &Plan, r: &Run) -> u64 {
    p.critical_path
        .iter()
        .filter_map(|n| r.nodes.get(n))
        .map(|x| x.2)
        .sum()
}

struct Measured {
    wall: Duration,
    cp_ms: u64,
    plan_cp_ms: u64,
    first_start_ms: u64,
    last_finish_to_exit_ms: u64,
    attempts: usize,
    /// Along the measured critical path: (node, gap before its start, duration) in ms;
    /// the gap is from its dependency's `finished` (or the spawn) to its `started`.
    steps: Vec<(String, u64, u64)>,
    /// The chain that ended last: from the last `finished`, back through the
    /// dependency that finished last; same shape as `steps`.
    last_chain: Vec<(String, u64, u64)>,
    /// Per node, `started` − ready (all its needs finished, or the spawn):
    /// (sum, max, nodes that waited > 1 s), ms.
    waits: (u64, u64, usize),
    cache: (u64, u64),
    daemon_cpu: Duration,
}

fn measure(p: &Plan, r: &Run) -> Measured {
    let (cp_ms, cp) = measured_critical_path(p, r);
    let first = r.nodes.values().map(|x| x.0).min().unwrap_or(r.spawned_ms);
    let last = r.nodes.values().map(|x| x.1).max().unwrap_or(r.exited_ms);
    let mut steps = Vec::new();
    let mut prev_end = r.spawned_ms;
    for n in &cp {
        let (s, f, d) = r.nodes[n];
        steps.push((n.clone(), s.saturating_sub(prev_end), d));
        prev_end = f;
    }
    let ready = |n: &str| {
        p.needs
            .get(n)
            .into_iter()
            .flatten()
            .map(|d| r.nodes[d].1)
            .max()
            .unwrap_or(r.spawned_ms)
    };
    let mut waits = (0, 0, 0);
    for n in &p.builds {
        let w = r.nodes[n].0.saturating_sub(ready(n));
        waits.0 += w;
        waits.1 = waits.1.max(w);
        waits.2 += usize::from(w > 1000);
    }
    let mut chain = Vec::new();
    let mut cur = r
        .nodes
        .iter()
        .max_by_key(|(_, x)| x.1)
        .map(|(n, _)| n.clone());
    while let Some(n) = cur {
        let (s, _, d) = r.nodes[&n];
        chain.push((n.clone(), s.saturating_sub(ready(&n)), d));
        cur = p
            .needs
            .get(&n)
            .into_iter()
            .flatten()
            .max_by_key(|d| r.nodes[d.as_str()].1)
            .cloned();
    }
    chain.reverse();
    Measured {
        wall: r.wall,
        cp_ms,
        plan_cp_ms: plan_path_ms(p, r),
        first_start_ms: first.saturating_sub(r.spawned_ms),
        last_finish_to_exit_ms: r.exited_ms.saturating_sub(last),
        attempts: r.attempts,
        steps,
        last_chain: chain,
        waits,
        cache: r.cache,
        daemon_cpu: r.daemon_cpu,
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn main() {
    let o = parse_args();
    let (docker, buildx) = preflight(o.peer);
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        epoch_ms(SystemTime::now()) % 100_000_000
    );
    let tmp;
    let dir = match &o.keep {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().expect("tempdir");
            tmp.path().to_path_buf()
        }
    };
    let scratch = tempfile::tempdir().expect("scratch dir");
    let gen = generator();
    let g = Command::new("python3")
        .arg(&gen)
        .arg(&dir)
        .args([
            "--services",
            &o.services.to_string(),
            "--libs",
            &o.libs.to_string(),
            "--run-steps",
        ])
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", gen.display()));
    assert!(g.success(), "{} failed", gen.display());
    let builders = dir.join("mybake.builders.kdl");
    match o.node_jobs {
        Some(j) => std::fs::write(
            &builders,
            format!("builder \"bench\" {{\n    node \"docker\" endpoint=\"docker\" jobs={j}\n}}\n"),
        )
        .expect("write mybake.builders.kdl"),
        None => {
            let _ = std::fs::remove_file(&builders);
        }
    }
    let p = plan(&dir);
    let targets = o.services + o.libs + 1;
    assert_eq!(
        p.builds.len(),
        targets * PLATFORMS.len(),
        "build nodes of the plan"
    );
    let cp_builds: Vec<&String> = p.critical_path.iter().filter(|n| n.contains('@')).collect();
    println!("mybake build bench: {} services + {} libs + base = {targets} targets × {} platforms = {} solves, --run-steps", o.services, o.libs, PLATFORMS.len(), p.builds.len());
    println!(
        "  mybake {}  |  Docker {docker}  |  {buildx}",
        mybake_bin().display()
    );
    println!(
        "  plan critical_path: {} build nodes + merge: {}",
        cp_builds.len(),
        p.critical_path.join(" → ")
    );
    println!(
        "  mybake builder: {}",
        o.node_jobs.map_or(
            "docker (default: at most 64 solves at once per node)".to_string(),
            |j| format!("one node on docker with jobs={j} (mybake.builders.kdl)")
        )
    );
    println!(
        "  mybake build history: {}",
        if o.history {
            "recorded (--history)"
        } else {
            "not recorded (default)"
        }
    );
    println!(
        "  load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let prefix = format!("localhost:5000/mybake-sched/bench-{nonce}");
    let mut results: HashMap<(&str, &str), Vec<Measured>> = HashMap::new();
    let tools: Vec<Tool> = if o.peer {
        vec![Tool::Mybake, Tool::Bake]
    } else {
        vec![Tool::Mybake]
    };
    for round in 0..o.rounds {
        // Alternate which tool goes first.
        let mut order = tools.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &tool in &order {
            let registry = format!("{prefix}-r{round}-{}", tool.name());
            let mut plans: Vec<(&str, bool)> = Vec::new();
            if o.cold {
                plans.push(("cold", true));
            }
            if o.warm {
                plans.push(("warm", false));
            }
            for (kind, cold) in plans {
                // A warm run without a cold one before it: warm the cache first.
                if !cold && !o.cold && round == 0 {
                    run(
                        tool,
                        &dir,
                        &registry,
                        false,
                        false,
                        o.history,
                        o.attempts,
                        scratch.path(),
                        &format!("{}-prewarm", tool.name()),
                    );
                }
                let label = format!("round {round} {} {kind}", tool.name());
                let r = run(
                    tool,
                    &dir,
                    &registry,
                    cold,
                    o.salt,
                    o.history,
                    o.attempts,
                    scratch.path(),
                    &label.replace(' ', "-"),
                );
                check_pushed(tool, &registry, o.services);
                let m = if tool == Tool::Mybake {
                    measure(&p, &r)
                } else {
                    Measured {
                        wall: r.wall,
                        cp_ms: 0,
                        plan_cp_ms: 0,
                        first_start_ms: 0,
                        last_finish_to_exit_ms: 0,
                        attempts: r.attempts,
                        steps: Vec::new(),
                        last_chain: Vec::new(),
                        waits: (0, 0, 0),
                        cache: r.cache,
                        daemon_cpu: r.daemon_cpu,
                    }
                };
                results.entry((tool.name(), kind)).or_default().push(m);
            }
        }
    }
    remove_store_records(&prefix);

    // ---- report
    println!();
    println!(
        "{:<6} {:<7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "cache",
        "tool",
        "wall s",
        "daemon s",
        "cp s",
        "plan-cp s",
        "overhead",
        "to-first s",
        "tail s",
        "cached",
        "attempts"
    );
    for kind in ["cold", "warm"] {
        for tool in &tools {
            for m in results.get(&(tool.name(), kind)).into_iter().flatten() {
                if *tool == Tool::Mybake {
                    let oh = (secs(m.wall) - m.cp_ms as f64 / 1e3) / secs(m.wall);
                    println!(
                        "{:<6} {:<7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.1}% {:>10.2} {:>9.2} {:>9} {:>9}",
                        kind,
                        tool.name(),
                        secs(m.wall),
                        secs(m.daemon_cpu),
                        m.cp_ms as f64 / 1e3,
                        m.plan_cp_ms as f64 / 1e3,
                        oh * 100.0,
                        m.first_start_ms as f64 / 1e3,
                        m.last_finish_to_exit_ms as f64 / 1e3,
                        format!("{}/{}", m.cache.0, m.cache.1),
                        m.attempts
                    );
                } else {
                    println!(
                        "{:<6} {:<7} {:>9.1} {:>9.1} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9}",
                        kind,
                        tool.name(),
                        secs(m.wall),
                        secs(m.daemon_cpu),
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        format!("{}/{}", m.cache.0, m.cache.1),
                        m.attempts
                    );
                }
            }
        }
    }
    println!();
    println!("daemon s  = CPU time of dockerd, containerd and the registry during the run, reaped children (runc, qemu of RUN steps) included: the work the tool made the daemon do, steadier than wall time on a busy machine");
    println!("cp s      = measured critical path: the longest dependency chain of build nodes weighted by their solve durations (duration_ms of `finished`)");
    println!(
        "plan-cp s = sum of the solve durations of the nodes of `mybake plan`'s critical_path ({})",
        cp_builds
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("overhead  = (wall - cp) / wall; to-first = spawn → first `started`; tail = last `finished` → exit (index merge + tags)");
    println!("cached    = cached steps / steps (mybake: `finished` events; bake: `#N CACHED` / `#N DONE|CACHED` lines, which include its internal vertexes)");
    println!("wait      = a node's `started` − the moment it was ready (its needs finished; the spawn for roots): queueing for a slot plus session set-up");
    for kind in ["cold", "warm"] {
        if let Some(ms) = results.get(&("mybake", kind)) {
            for (i, m) in ms.iter().enumerate() {
                let along: Vec<String> = m
                    .steps
                    .iter()
                    .map(|(n, gap, d)| {
                        format!(
                            "+{:.2} s wait, {n} {:.1} s",
                            *gap as f64 / 1e3,
                            *d as f64 / 1e3
                        )
                    })
                    .collect();
                let waits: u64 = m.steps.iter().map(|x| x.1).sum();
                println!(
                    "{kind} #{i} measured critical path: {} | waits before starts {:.1} s",
                    along.join(" → "),
                    waits as f64 / 1e3
                );
                let chain: Vec<String> = m
                    .last_chain
                    .iter()
                    .map(|(n, gap, d)| {
                        format!(
                            "+{:.2} s wait, {n} {:.1} s",
                            *gap as f64 / 1e3,
                            *d as f64 / 1e3
                        )
                    })
                    .collect();
                println!(
                    "{kind} #{i} chain that finished last: {}",
                    chain.join(" → ")
                );
                println!("{kind} #{i} waits over all {} nodes: sum {:.1} s, max {:.1} s, {} nodes waited > 1 s", p.builds.len(), m.waits.0 as f64 / 1e3, m.waits.1 as f64 / 1e3, m.waits.2);
            }
        }
    }
    println!();
    for kind in ["cold", "warm"] {
        let Some(mb) = results.get(&("mybake", kind)) else {
            continue;
        };
        let mb_wall = median_f64(mb.iter().map(|m| secs(m.wall)).collect());
        let oh = median_f64(
            mb.iter()
                .map(|m| (secs(m.wall) - m.cp_ms as f64 / 1e3) / secs(m.wall))
                .collect(),
        );
        let plan_oh = median_f64(
            mb.iter()
                .map(|m| (secs(m.wall) - m.plan_cp_ms as f64 / 1e3) / secs(m.wall))
                .collect(),
        );
        match results.get(&("bake", kind)) {
            Some(bk) => {
                let bk_wall = median_f64(bk.iter().map(|m| secs(m.wall)).collect());
                let ratio = mb_wall / bk_wall;
                let target = if kind == "cold" {
                    format!(
                        "target ≤ {TARGET_COLD_RATIO:.2}: {}",
                        verdict(ratio <= TARGET_COLD_RATIO)
                    )
                } else {
                    "no target".into()
                };
                println!("{kind}: mybake {mb_wall:.1} s vs bake {bk_wall:.1} s → ratio mybake/bake {ratio:.2} ({target})");
                let mb_cpu = median_f64(mb.iter().map(|m| secs(m.daemon_cpu)).collect());
                let bk_cpu = median_f64(bk.iter().map(|m| secs(m.daemon_cpu)).collect());
                println!(
                    "{kind}: daemon CPU mybake {mb_cpu:.1} s vs bake {bk_cpu:.1} s → ratio {:.2}",
                    mb_cpu / bk_cpu
                );
            }
            None => println!("{kind}: mybake {mb_wall:.1} s (bake not run)"),
        }
        println!("{kind}: mybake overhead above the critical path {:.1}% (target ≤ {:.0}%: {}); against plan's critical_path nodes {:.1}%", oh * 100.0, TARGET_OVERHEAD * 100.0, verdict(oh <= TARGET_OVERHEAD), plan_oh * 100.0);
    }
    println!(
        "  load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
