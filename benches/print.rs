//! `mybake print` vs `docker buildx bake --print` on generated monorepos.
//!
//! Run with `cargo bench --bench print` (see benches/README.md for options).
//! This is a plain binary (`harness = false`), not a test: it never fails
//! on a missed target, it only reports PASS/MISS.

mod common;

use common::{generator, median_duration, ms};

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

/// Measures `mybake print` against `docker buildx bake --print` on
/// generated monorepos.
#[derive(clap::Parser)]
#[command(bin_name = "cargo bench --bench print --")]
struct Opts {
    /// Monorepo sizes (services), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 2000, 5000])]
    sizes: Vec<usize>,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Runs of `docker buildx bake --print` (default: 3 up to 1000 services, 1 above).
    #[arg(long)]
    peer_runs: Option<usize>,
    /// Skip `docker buildx bake`.
    #[arg(long = "no-peer", action = clap::ArgAction::SetFalse)]
    peer: bool,
    /// Keep the generated monorepos in DIR.
    #[arg(long)]
    keep: Option<PathBuf>,
}

fn parse_args() -> Opts {
    let mut o: Opts = common::parse_args();
    if o.runs == 0 || o.sizes.is_empty() {
        common::invalid::<Opts>("--runs must be at least 1 and --sizes not empty");
    }
    o.sizes.sort_unstable();
    o.sizes.dedup();
    o
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

/// The argument that makes this binary the measuring helper
/// ([`measure_child`]) instead of the bench.
const MEASURE_FLAG: &str = "--measure-child";

/// Runs `program args` (in `cwd` if given) with stdout/stderr sent to files
/// in `scratch`, through a fresh copy of this binary ([`measure_child`]),
/// which spawns it, reaps it with `wait4` and reports its wall time, CPU
/// time and `ru_maxrss`.
///
/// Why a helper: on Linux a child's `ru_maxrss` is at least the RSS
/// high-water mark of the process that spawned it (exec folds the old
/// address space's peak into it, and a forked or vforked child's old
/// address space is its parent's). Measured from here it would report this
/// bench's own peak (about 50 MiB once it has checked a 5000-target
/// document) whenever that is higher than the tool's. The helper's own few
/// MiB are below every figure measured.
///
/// `ru_maxrss` also covers any descendant the child waited for (so for
/// `docker buildx bake` it is the `docker` CLI or the `docker-buildx` plugin
/// process, whichever is larger).
fn run_measured(
    program: &std::ffi::OsStr,
    args: &[&std::ffi::OsStr],
    cwd: Option<&Path>,
    scratch: &Path,
) -> Sample {
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    let me = std::env::current_exe().expect("current_exe");
    let out = Command::new(me)
        .arg(MEASURE_FLAG)
        .arg(&out_path)
        .arg(&err_path)
        .arg(cwd.map_or_else(
            || std::ffi::OsString::from("-"),
            |d| d.as_os_str().to_owned(),
        ))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("spawn measuring helper: {e}"));
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("helper output"))
        .collect();
    assert_eq!(f.len(), 4, "measuring helper said {line:?}");
    Sample {
        wall: Duration::from_nanos(f[0]),
        cpu: Duration::from_nanos(f[1]),
        // Linux reports ru_maxrss in KiB.
        max_rss: f[2] * 1024,
        ok: f[3] == 1,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// The helper side of [`run_measured`]: `args` = stdout file, stderr file,
/// working directory (`-` = this one), program, its arguments. Prints
/// `wall_ns cpu_ns maxrss_kib ok` (wall: spawn to reap).
fn measure_child(args: &[String]) -> ! {
    let [out_path, err_path, cwd, program, rest @ ..] = args else {
        eprintln!("{MEASURE_FLAG}: OUT ERR CWD PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(File::create(out_path).expect("create stdout file"))
        .stderr(File::create(err_path).expect("create stderr file"));
    if cwd != "-" {
        cmd.current_dir(cwd);
    }
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
    let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
    println!(
        "{} {} {} {}",
        wall.as_nanos(),
        cpu.as_nanos(),
        ru.ru_maxrss,
        u8::from(ok)
    );
    std::process::exit(0);
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

fn stats(samples: &[Sample]) -> Stats {
    let wall: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    Stats {
        min: *wall.iter().min().unwrap(),
        median: median_duration(wall),
        cpu_median: median_duration(samples.iter().map(|s| s.cpu).collect()),
        peak_rss: samples.iter().map(|s| s.max_rss).max().unwrap(),
        runs: samples.len(),
    }
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
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(MEASURE_FLAG) {
        measure_child(&argv[2..]);
    }
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
            let s = run_measured(
                mybake.as_os_str(),
                &["-C".as_ref(), dir.as_os_str(), "print".as_ref()],
                None,
                &scratch,
            );
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
                let args = ["buildx", "bake", "--print", "-f", "docker-bake.hcl"]
                    .map(std::ffi::OsStr::new);
                let s = run_measured("docker".as_ref(), &args, Some(&dir), &scratch);
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
