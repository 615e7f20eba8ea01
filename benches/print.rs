//! `mybake print` vs `docker buildx bake --print` on generated monorepos.
//!
//! Run with `cargo bench --bench print` (see benches/README.md for options).
//! This is a plain binary (`harness = false`), not a test: it never fails
//! on a missed target, it only reports PASS/MISS.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PLATFORMS: &str = "linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le";
/// The generator's default `--libs`; targets = services + LIBS + 1 (base).
const LIBS: usize = 4;
const TARGET_SERVICES: usize = 5000;
const TARGET_MS: f64 = 100.0;
const TARGET_MIB: f64 = 60.0;

struct Opts {
    sizes: Vec<usize>,
    runs: usize,
    /// `None`: 3 runs up to 1000 services, 1 run above.
    peer_runs: Option<usize>,
    peer: bool,
    keep: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench print -- [--sizes 100,1000,2000,5000] [--runs 5] \
         [--peer-runs K] [--no-peer] [--keep DIR]"
    );
    std::process::exit(2)
}

fn parse_args() -> Opts {
    let mut o = Opts {
        sizes: vec![100, 1000, 2000, 5000],
        runs: 5,
        peer_runs: None,
        peer: true,
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let val = |it: &mut dyn Iterator<Item = String>| {
            inline
                .clone()
                .or_else(|| it.next())
                .unwrap_or_else(|| usage())
        };
        match key.as_str() {
            // cargo passes `--bench` to harness=false bench binaries
            "--bench" => {}
            "--sizes" => {
                o.sizes = val(&mut it)
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--runs" => o.runs = val(&mut it).parse().unwrap_or_else(|_| usage()),
            "--peer-runs" => o.peer_runs = Some(val(&mut it).parse().unwrap_or_else(|_| usage())),
            "--no-peer" => o.peer = false,
            "--keep" => o.keep = Some(PathBuf::from(val(&mut it))),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument `{other}`");
                usage()
            }
        }
    }
    if o.runs == 0 || o.sizes.is_empty() {
        usage()
    }
    o.sizes.sort_unstable();
    o.sizes.dedup();
    o
}

fn generator() -> PathBuf {
    if let Some(p) = std::env::var_os("MYBAKE_BENCH_GEN") {
        return PathBuf::from(p);
    }
    let rel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen_monorepo.py");
    if rel.is_file() {
        return rel.canonicalize().unwrap_or(rel);
    }
    PathBuf::from("/work/shared/bench/gen_monorepo.py")
}

/// One finished child: wall time, CPU time (user+sys), peak RSS (bytes),
/// exit status, stdout.
struct Sample {
    wall: Duration,
    cpu: Duration,
    max_rss: u64,
    ok: bool,
    stdout: Vec<u8>,
    stderr: String,
}

/// Spawns `cmd` with stdout/stderr sent to files in `scratch`, reaps it with
/// `wait4` so we get its rusage. `ru_maxrss` is the peak RSS of the child or
/// of any descendant it waited for (so for `docker buildx bake` it covers the
/// `docker` CLI and the `docker-buildx` plugin process, whichever is larger).
fn run_measured(mut cmd: Command, scratch: &Path) -> Sample {
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"));
    let start = Instant::now();
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: plain syscall on our own child; rusage is fully written on success.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed();
    assert_eq!(r, pid, "wait4 failed: {}", std::io::Error::last_os_error());
    // The child is reaped; std's Child must not wait for it again (it does not on drop).
    std::mem::forget(child);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Sample {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss: ru.ru_maxrss as u64 * 1024,
        ok,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// Checks the `print` JSON: valid, and `target` holds exactly `want` entries.
fn check_json(tool: &str, bytes: &[u8], want: usize) -> usize {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{tool}: output is not valid JSON: {e}"));
    let n = v
        .get("target")
        .and_then(|t| t.as_object())
        .map(|t| t.len())
        .unwrap_or(0);
    if n != want {
        panic!("{tool}: expected {want} targets in `target`, got {n}");
    }
    n
}

#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    cpu_median: Duration,
    min: Duration,
    peak_rss: u64,
    runs: usize,
}

fn median(mut w: Vec<Duration>) -> Duration {
    w.sort_unstable();
    if w.len() % 2 == 1 {
        w[w.len() / 2]
    } else {
        (w[w.len() / 2 - 1] + w[w.len() / 2]) / 2
    }
}

fn stats(samples: &[Sample]) -> Stats {
    let wall: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    Stats {
        min: *wall.iter().min().unwrap(),
        median: median(wall),
        cpu_median: median(samples.iter().map(|s| s.cpu).collect()),
        peak_rss: samples.iter().map(|s| s.max_rss).max().unwrap(),
        runs: samples.len(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn peer_available() -> bool {
    Command::new("docker")
        .args(["buildx", "version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct Row {
    services: usize,
    targets: usize,
    mybake: Stats,
    bake: Option<Stats>,
}

fn main() {
    let opts = parse_args();
    // cargo builds the `mybake` bin (bench profile = release) before this bench;
    // MYBAKE_BIN points the bench at another binary (e.g. a baseline copy).
    let mybake = std::env::var_os("MYBAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mybake")));
    let gen = generator();
    if !gen.is_file() {
        eprintln!(
            "generator not found: {} (set MYBAKE_BENCH_GEN)",
            gen.display()
        );
        std::process::exit(2);
    }
    let platforms = PLATFORMS.split(',').count();
    let peer = opts.peer && peer_available();

    let tmp = tempfile::Builder::new()
        .prefix("mybake-bench-")
        .tempdir()
        .expect("temp dir");
    let root = opts
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root).expect("create work dir");
    let scratch = tmp.path().join("io");
    std::fs::create_dir_all(&scratch).unwrap();

    println!("mybake print benchmark");
    println!("  mybake:    {}", mybake.display());
    println!("  generator: {}", gen.display());
    println!("  platforms: {PLATFORMS}  (libs {LIBS}, targets = services + {LIBS} libs + base)");
    println!(
        "  runs:      mybake {} (+1 warm-up), bake {}",
        opts.runs,
        match opts.peer_runs {
            Some(k) => k.to_string(),
            None => "3 (<=1000 services) / 1 (larger)".into(),
        }
    );
    if peer {
        let v = Command::new("docker")
            .args(["buildx", "version"])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        println!(
            "  peer:      docker buildx bake --print ({})",
            String::from_utf8_lossy(&v).trim()
        );
    } else if !opts.peer {
        println!("  peer:      skipped (--no-peer)");
    } else {
        println!("peer: not available");
    }
    println!();

    let mut rows = Vec::new();
    for &n in &opts.sizes {
        let dir = root.join(format!("mono-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let st = Command::new("python3")
            .arg(&gen)
            .arg(&dir)
            .args(["--services", &n.to_string(), "--platforms", PLATFORMS])
            .status()
            .expect("run generator (python3)");
        assert!(st.success(), "generator failed for {n} services");
        let want = n + LIBS + 1;
        eprintln!(
            "[{n}] generated in {:.1}s; running mybake x{}",
            t.elapsed().as_secs_f64(),
            opts.runs + 1
        );

        let mut samples = Vec::new();
        for i in 0..=opts.runs {
            let mut c = Command::new(&mybake);
            c.arg("-C").arg(&dir).arg("print");
            let s = run_measured(c, &scratch);
            if !s.ok {
                panic!("mybake print failed for {n} services:\n{}", s.stderr);
            }
            if i == 0 {
                check_json("mybake", &s.stdout, want);
            } else {
                samples.push(s);
            }
        }
        let mstats = stats(&samples);

        let bstats = if peer {
            let k = opts.peer_runs.unwrap_or(if n <= 1000 { 3 } else { 1 });
            let mut bs = Vec::new();
            for i in 0..k {
                eprintln!("[{n}] docker buildx bake --print run {}/{k}", i + 1);
                let mut c = Command::new("docker");
                c.current_dir(&dir)
                    .args(["buildx", "bake", "--print", "-f", "docker-bake.hcl"]);
                let s = run_measured(c, &scratch);
                if !s.ok {
                    eprintln!("[{n}] bake failed:\n{}", s.stderr);
                    break;
                }
                if i == 0 {
                    check_json("bake", &s.stdout, want);
                }
                bs.push(s);
            }
            (k > 0 && !bs.is_empty()).then(|| stats(&bs))
        } else {
            None
        };
        rows.push(Row {
            services: n,
            targets: want,
            mybake: mstats,
            bake: bstats,
        });
    }

    println!(
        "{:>8} {:>7} {:>4} | {:>10} {:>10} {:>10} {:>9} | {:>10} {:>9} {:>4} | {:>7} | {:>9} {:>10}",
        "services", "targets", "plat", "mybake med", "mybake min", "mybake cpu", "mybake", "bake med", "bake", "runs", "ratio", "mybake", "mybake"
    );
    println!(
        "{:>8} {:>7} {:>4} | {:>10} {:>10} {:>10} {:>9} | {:>10} {:>9} {:>4} | {:>7} | {:>9} {:>10}",
        "", "", "", "wall ms", "wall ms", "med ms", "peak MiB", "wall ms", "peak MiB", "", "bake/mb", "ns/target", "Δns/target"
    );
    println!("{}", "-".repeat(133));
    let mut prev: Option<&Row> = None;
    for r in &rows {
        let per = r.mybake.median.as_nanos() as f64 / r.targets as f64;
        let delta = prev
            .map(|p| {
                let dt = r.mybake.median.as_nanos() as f64 - p.mybake.median.as_nanos() as f64;
                format!("{:.0}", dt / (r.targets - p.targets) as f64)
            })
            .unwrap_or_else(|| "-".into());
        let (bm, bp, bn, ratio) = match r.bake {
            Some(b) => (
                format!("{:.1}", ms(b.median)),
                format!("{:.1}", mib(b.peak_rss)),
                b.runs.to_string(),
                format!(
                    "{:.1}x",
                    b.median.as_secs_f64() / r.mybake.median.as_secs_f64()
                ),
            ),
            None => ("n/a".into(), "n/a".into(), "0".into(), "n/a".into()),
        };
        println!(
            "{:>8} {:>7} {:>4} | {:>10.1} {:>10.1} {:>10.1} {:>9.1} | {:>10} {:>9} {:>4} | {:>7} | {:>9.0} {:>10}",
            r.services,
            r.targets,
            platforms,
            ms(r.mybake.median),
            ms(r.mybake.min),
            ms(r.mybake.cpu_median),
            mib(r.mybake.peak_rss),
            bm,
            bp,
            bn,
            ratio,
            per,
            delta
        );
        prev = Some(r);
    }
    println!();
    println!("mybake cpu = user+sys CPU time of the child (less sensitive to a busy machine than wall time);");
    println!("ns/target = mybake median / targets (includes process start-up);");
    println!("Δns/target = marginal cost between consecutive sizes (flat => linear).");
    println!();
    match rows.iter().find(|r| r.services == TARGET_SERVICES) {
        Some(r) => {
            let t = ms(r.mybake.median);
            let m = mib(r.mybake.peak_rss);
            let pf = |b: bool| if b { "PASS" } else { "MISS" };
            println!(
                "targets ({TARGET_SERVICES} services, {} platforms):",
                platforms
            );
            println!(
                "  time   < {TARGET_MS:.0} ms : {:>8.1} ms  {}  (median wall; min {:.1} ms, cpu {:.1} ms)",
                t,
                pf(t < TARGET_MS),
                ms(r.mybake.min),
                ms(r.mybake.cpu_median)
            );
            println!(
                "  memory < {TARGET_MIB:.0} MiB: {:>8.1} MiB {}",
                m,
                pf(m < TARGET_MIB)
            );
        }
        None => {
            println!("targets: {TARGET_SERVICES} services not in --sizes; no PASS/MISS verdict")
        }
    }
    if let Some(k) = &opts.keep {
        println!("generated monorepos kept in {}", k.display());
    }
}
