//! Stress bench for issue 11 part 5 (registry races during BuildKit's
//! push): the monorepo example built and pushed N times, each time into a
//! fresh registry (a new `docker-registry` process with an empty data
//! directory on a new port), reporting failed runs, push retries and what
//! the registry saw (duplicate blob uploads into one repository, and the
//! error answers it gave).
//!
//! Run with `cargo bench --bench push_stress [-- --runs 50]` (see
//! benches/README.md). A plain binary (`harness = false`): it exits 1 when
//! a run failed, 0 otherwise; it panics when the test bed is missing.

mod common;

use common::mybake_bin;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Pushes the example monorepo repeatedly through a registry of its own,
/// to catch intermittent push failures.
#[derive(clap::Parser)]
#[command(bin_name = "cargo bench --bench push_stress --")]
struct Args {
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Where the failed runs' output and registry logs go (default: a new
    /// directory in the system's temporary directory).
    #[arg(long)]
    logs: Option<PathBuf>,
}

/// The parsed options, with `--logs` defaulted.
struct Opts {
    runs: usize,
    logs: PathBuf,
}

fn parse_args() -> Opts {
    let o: Args = common::parse_args();
    if o.runs == 0 {
        common::invalid::<Args>("--runs must be at least 1");
    }
    Opts {
        runs: o.runs,
        logs: o.logs.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("mybake-push-stress-{}", std::process::id()))
        }),
    }
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/monorepo")
}

/// `GET http://addr/v2/` → HTTP status, if the registry answers.
fn v2_status(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split(' ').nth(1)?.parse().ok()
}

/// A `docker-registry` (distribution 2.8) of its own: fresh port, fresh
/// data directory, configured like the test bed's (scripts/testbed/setup.sh:
/// filesystem storage, deletes on, no blob descriptor cache, plain HTTP).
struct Registry {
    addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        // A free port: bind, read, release (the registry binds it next).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write registry config");
        let log = File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (scripts/testbed/setup.sh installs it)");
        let r = Registry { addr, child, dir };
        let t0 = Instant::now();
        while v2_status(&r.addr) != Some(200) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "docker-registry on {} did not come up:\n{}",
                r.addr,
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=value` or `key="value"` in a logrus text line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()
    } else {
        rest.split(' ').next()
    }
}

/// What the registry log says about one run.
#[derive(Default)]
struct RegistryStats {
    /// Completed blob uploads (`PUT …/blobs/uploads/…?digest=`, 201).
    uploads: usize,
    /// Uploads of a blob that was already uploaded into the same repository.
    duplicates: usize,
    /// Error answers by method and `err.code` (`HEAD blob unknown` is
    /// BuildKit asking whether a blob is there yet: not a failure).
    errors: BTreeMap<String, usize>,
}

fn registry_stats(log: &str) -> RegistryStats {
    let mut s = RegistryStats::default();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for line in log.lines() {
        if let Some(code) = field(line, "err.code") {
            if line.contains("response completed with error") {
                let method = field(line, "http.request.method").unwrap_or("?");
                *s.errors.entry(format!("{method} {code}")).or_default() += 1;
            }
            continue;
        }
        if !line.contains("msg=\"response completed\"")
            || field(line, "http.request.method") != Some("PUT")
            || field(line, "http.response.status") != Some("201")
        {
            continue;
        }
        let Some(uri) = field(line, "http.request.uri") else {
            continue;
        };
        let Some((repo, rest)) = uri.trim_start_matches("/v2/").split_once("/blobs/uploads/")
        else {
            continue;
        };
        let Some(digest) = rest.split("digest=").nth(1) else {
            continue;
        };
        let digest = digest.split('&').next().unwrap_or(digest).to_string();
        s.uploads += 1;
        let n = seen.entry((repo.to_string(), digest)).or_default();
        *n += 1;
        if *n > 1 {
            s.duplicates += 1;
        }
    }
    s
}

/// Removes the image-store records Docker's BuildKit leaves for
/// repositories pushed by digest (`<repo>` without a tag) under `prefix`.
fn clean_store(prefix: &str) {
    let Ok(o) = Command::new("ctr")
        .args(["-n", "moby", "images", "ls", "-q"])
        .output()
    else {
        return;
    };
    let names: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    for chunk in names.chunks(50) {
        let _ = Command::new("ctr")
            .args(["-n", "moby", "images", "rm"])
            .args(chunk)
            .output();
    }
}

struct RunResult {
    ok: bool,
    wall: Duration,
    retries: usize,
    retried_nodes: usize,
    max_attempts: u64,
    registry: RegistryStats,
}

fn run_once(i: usize, opts: &Opts) -> RunResult {
    let registry = Registry::start();
    let ns = format!("{}/stress", registry.addr);
    let t0 = Instant::now();
    let out = Command::new(mybake_bin())
        .arg("-C")
        .arg(example())
        .args([
            "--var",
            &format!("REGISTRY={ns}"),
            "build",
            "--push",
            "--progress",
            "json",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run mybake");
    let wall = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let retries = events.iter().filter(|e| e["type"] == "retrying").count();
    let attempts: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "finished")
        .filter_map(|e| e["push_attempts"].as_u64())
        .collect();
    let mut ok = out.status.success();
    // A success must have written the tags: check one per target.
    if ok {
        for t in ["lib-greet", "svc-api", "svc-worker", "tools"] {
            let mut s = TcpStream::connect(&registry.addr).expect("registry");
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "HEAD /v2/stress/monorepo/{t}/manifests/dev HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.oci.image.index.v1+json\r\nConnection: close\r\n\r\n",
                registry.addr
            );
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if !answer.starts_with("HTTP/1.1 200") {
                eprintln!(
                    "run {i}: exit 0 but {t}:dev is missing: {}",
                    answer.lines().next().unwrap_or("")
                );
                ok = false;
            }
        }
    }
    let log = registry.log();
    let stats = registry_stats(&log);
    if !ok {
        let dir = opts.logs.join(format!("run-{i}"));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("stdout.jsonl"), &out.stdout);
        let _ = std::fs::write(dir.join("stderr.txt"), &out.stderr);
        let _ = std::fs::write(dir.join("registry.log"), &log);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr
            .lines()
            .find(|l| l.contains("FAILED"))
            .or_else(|| stderr.lines().last())
            .unwrap_or("");
        eprintln!(
            "run {i}: FAILED ({}): {why}\n  logs in {}",
            out.status,
            dir.display()
        );
    }
    clean_store(&format!("{}/", registry.addr));
    drop(registry);
    RunResult {
        ok,
        wall,
        retries,
        retried_nodes: attempts.iter().filter(|&&a| a > 1).count(),
        max_attempts: attempts.iter().copied().max().unwrap_or(0),
        registry: stats,
    }
}

fn main() {
    let opts = parse_args();
    assert!(
        Path::new(&mybake_bin()).is_file(),
        "no mybake binary at {}",
        mybake_bin().display()
    );
    assert_eq!(
        v2_status("127.0.0.1:5000"),
        Some(200),
        "the test bed registry (base image localhost:5000/busybox) is down: scripts/testbed/setup.sh"
    );
    println!(
        "push_stress: {} runs of `mybake -C examples/monorepo build --push`, each into a fresh docker-registry",
        opts.runs
    );
    println!(
        "{:>4} {:>6} {:>7} {:>7} {:>8} {:>7} {:>5}  registry errors",
        "run", "result", "wall s", "retries", "retried", "uploads", "dups"
    );
    let mut results = Vec::new();
    for i in 1..=opts.runs {
        let r = run_once(i, &opts);
        let errors: Vec<String> = r
            .registry
            .errors
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect();
        println!(
            "{i:>4} {:>6} {:>7.1} {:>7} {:>8} {:>7} {:>5}  {}",
            if r.ok { "ok" } else { "FAILED" },
            r.wall.as_secs_f64(),
            r.retries,
            r.retried_nodes,
            r.registry.uploads,
            r.registry.duplicates,
            errors.join(", ")
        );
        let _ = std::io::stdout().flush();
        results.push(r);
    }
    let n = results.len();
    let failed = results.iter().filter(|r| !r.ok).count();
    let with_retries = results.iter().filter(|r| r.retries > 0).count();
    let retries: usize = results.iter().map(|r| r.retries).sum();
    let max_attempts = results.iter().map(|r| r.max_attempts).max().unwrap_or(0);
    let with_dups = results.iter().filter(|r| r.registry.duplicates > 0).count();
    let dups: usize = results.iter().map(|r| r.registry.duplicates).sum();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        for (k, v) in &r.registry.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let mut walls: Vec<f64> = results.iter().map(|r| r.wall.as_secs_f64()).collect();
    walls.sort_by(f64::total_cmp);
    println!();
    println!("runs                      {n}");
    println!("failed runs               {failed} (expected 0)");
    println!("runs with push retries    {with_retries} ({retries} retries; most solves of one node: {max_attempts})");
    println!("runs with duplicate blob uploads into one repository  {with_dups} ({dups} duplicate uploads)");
    println!(
        "registry error answers    {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!(
        "wall s                    median {:.1}, min {:.1}, max {:.1}",
        walls[n / 2],
        walls[0],
        walls[n - 1]
    );
    if failed > 0 {
        println!("failed runs' logs: {}", opts.logs.display());
        std::process::exit(1);
    }
}
