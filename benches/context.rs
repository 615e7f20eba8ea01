//! Context upload: `mybake build` vs `docker buildx build` on a generated
//! context of 20,000 files / ~1 GB, against the same Docker Engine.
//!
//! Run with `cargo bench --bench context` (see benches/README.md for options).
//! This is a plain binary (`harness = false`), not a test. It panics on a
//! setup error or a failed build and otherwise only reports.
//!
//! For each tool: `docker builder prune -af`, a cold build, builds with no
//! change, and builds after rewriting one file. Each run reports the time from
//! spawn to the moment the tool reports the `[internal] load build context`
//! vertex complete (the context is in the builder), the total wall time, and,
//! when run under strace, which context files the tool opened: both FileSync
//! senders open a file only when BuildKit asks for its contents, so that is
//! what was sent.

mod common;

use common::{median, ms};

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const BASE_IMAGE: &str = "localhost:5000/busybox:latest";
const TARGET: &str = "ctx";
/// A build that takes longer than this is killed and reported as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Every LARGE_EVERY-th file is a large one; the rest are 512 B..16.5 KiB.
const LARGE_EVERY: usize = 1000;

/// Measures sending a large build context (mybake's filesync against
/// buildx's).
#[derive(clap::Parser)]
#[command(bin_name = "cargo bench --bench context --")]
struct Opts {
    /// Files in the generated context.
    #[arg(long, default_value_t = 20_000)]
    files: usize,
    /// Directories in the generated context.
    #[arg(long, default_value_t = 200)]
    dirs: usize,
    /// Megabytes (10^6) in the generated context.
    #[arg(long = "mb", default_value_t = 1000)]
    mb: u64,
    #[arg(long, default_value_t = 3)]
    warm_runs: usize,
    /// Skip `docker buildx build`.
    #[arg(long = "no-peer", action = clap::ArgAction::SetFalse)]
    peer: bool,
    /// Measure only `docker buildx build`.
    #[arg(long = "peer-only", action = clap::ArgAction::SetFalse)]
    mybake: bool,
    #[arg(long = "no-strace", action = clap::ArgAction::SetFalse)]
    strace: bool,
    #[arg(long = "no-prune", action = clap::ArgAction::SetFalse)]
    prune: bool,
    /// Keep the generated context in DIR.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Bytes in the generated context (`--mb` × 10^6).
    #[arg(skip)]
    bytes: u64,
}

fn parse_args() -> Opts {
    let mut o: Opts = common::parse_args();
    o.bytes = o.mb * 1_000_000;
    if o.files == 0 || o.dirs == 0 || o.dirs > o.files || o.warm_runs == 0 {
        common::invalid::<Opts>(
            "--files, --dirs and --warm-runs must be at least 1, --dirs at most --files",
        );
    }
    if !(o.peer || o.mybake) {
        common::invalid::<Opts>("--no-peer and --peer-only leave nothing to measure");
    }
    o
}

// ---------------------------------------------------------------- context

/// splitmix64: deterministic, incompressible enough that neither gzip nor
/// BuildKit's transfer can shrink the data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

struct Context {
    root: PathBuf,
    /// Relative path and size of every generated data file, in order.
    files: Vec<(String, u64)>,
    total: u64,
    large: usize,
}

impl Context {
    fn abs(&self, i: usize) -> PathBuf {
        self.root.join(&self.files[i].0)
    }
}

/// Writes `size` bytes of the stream seeded with `seed` to `path`.
fn write_file(path: &Path, size: u64, seed: u64, buf: &mut Vec<u8>) {
    let mut rng = Rng(seed);
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut left = size as usize;
    while left > 0 {
        let n = left.min(1 << 20);
        buf.resize(n, 0);
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n;
    }
}

fn file_seed(i: usize, generation: u64) -> u64 {
    (i as u64) << 16 ^ generation ^ 0x6d79_6261_6b65
}

fn generate(root: &Path, o: &Opts) -> Context {
    let per_dir = o.files.div_ceil(o.dirs);
    let mut sizes = Vec::with_capacity(o.files);
    let mut rng = Rng(42);
    let mut small_total = 0u64;
    let mut large = Vec::new();
    for i in 0..o.files {
        if i % LARGE_EVERY == LARGE_EVERY - 1 {
            large.push(i);
            sizes.push(0);
        } else {
            let s = 512 + rng.next() % (16 * 1024);
            small_total += s;
            sizes.push(s);
        }
    }
    if !large.is_empty() {
        let each = o.bytes.saturating_sub(small_total) / large.len() as u64;
        for (k, &i) in large.iter().enumerate() {
            // ±10 % around the mean, summing to the same total.
            let jitter = each / 10;
            let delta = if k % 2 == 0 {
                jitter
            } else {
                0u64.wrapping_sub(jitter)
            };
            let s = if k + 1 == large.len() && k % 2 == 0 {
                each
            } else {
                each.wrapping_add(delta)
            };
            sizes[i] = s.max(1);
        }
    }
    let mut files = Vec::with_capacity(o.files);
    let mut buf = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let dir = format!("d{:03}", i / per_dir);
        if i % per_dir == 0 {
            std::fs::create_dir_all(root.join(&dir)).expect("create dir");
        }
        let rel = format!("{dir}/f{:03}.bin", i % per_dir);
        write_file(&root.join(&rel), size, file_seed(i, 0), &mut buf);
        files.push((rel, size));
    }
    std::fs::write(
        root.join("Dockerfile"),
        format!("FROM {BASE_IMAGE}\nCOPY . /ctx\nRUN find /ctx -type f | wc -l\n"),
    )
    .expect("write Dockerfile");
    std::fs::write(
        root.join("mybake.kdl"),
        format!("// generated by benches/context.rs\ntarget \"{TARGET}\" {{\n    platforms \"linux/amd64\"\n}}\n"),
    )
    .expect("write mybake.kdl");
    let total = files.iter().map(|(_, s)| s).sum();
    Context {
        root: root.to_path_buf(),
        files,
        total,
        large: large.len(),
    }
}

// ---------------------------------------------------------------- runs

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Mybake,
    Buildx,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Mybake => "mybake",
            Tool::Buildx => "buildx",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cold,
    NoChange,
    Touched,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cold => "cold",
            Kind::NoChange => "no-change",
            Kind::Touched => "touched-one",
        }
    }
}

#[derive(Default, Clone)]
struct RunOut {
    wall: Duration,
    /// Spawn → the tool's last report of `load build context` completed,
    /// measured when the line arrives on the pipe.
    ctx: Option<Duration>,
    /// The same from the tool's own timestamp: mybake's event `time`
    /// (client clock, ms), buildx's vertex `completed` (daemon clock).
    ctx_stamp: Option<Duration>,
    /// Data files opened (opens, distinct files, bytes of the distinct files).
    opened: Option<(usize, usize, u64)>,
    /// The number printed by `RUN find /ctx -type f | wc -l` (None: cached).
    find: Option<u64>,
    /// The build failed with this error.
    error: Option<String>,
}

fn epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-27T23:21:34.649519084Z` → since the epoch (UTC only, as BuildKit sends).
fn parse_rfc3339(s: &str) -> Option<Duration> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, mi, se) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se;
    let mut nanos = 0u32;
    for (k, c) in frac.chars().take(9).enumerate() {
        nanos += c.to_digit(10)? * 10u32.pow(8 - k as u32);
    }
    Some(Duration::new(u64::try_from(secs).ok()?, nanos))
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn is_ctx_vertex(name: Option<&str>) -> bool {
    name.is_some_and(|n| n.contains("load build context"))
}

/// Reads mybake's JSON events: (ctx by receipt, ctx by event time, find count).
fn read_mybake(
    out: impl Read,
    start: Instant,
    start_epoch: Duration,
    raw: &mut String,
) -> (Option<Duration>, Option<Duration>, Option<u64>) {
    let (mut ctx, mut stamp, mut find) = (None, None, None);
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        let at = start.elapsed();
        raw.push_str(&line);
        raw.push('\n');
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match v["type"].as_str() {
            Some("step-completed") if is_ctx_vertex(v["name"].as_str()) => {
                ctx = Some(at);
                stamp = v["time"]
                    .as_u64()
                    .map(|ms| Duration::from_millis(ms).saturating_sub(start_epoch));
            }
            Some("log") => {
                if let Some(n) = v["text"].as_str().and_then(|t| t.trim().parse().ok()) {
                    find = Some(n);
                }
            }
            _ => {}
        }
    }
    (ctx, stamp, find)
}

/// Reads buildx's `--progress rawjson` stream (concatenated, indented JSON
/// objects of `SolveStatus`).
fn read_buildx(
    out: impl Read,
    start: Instant,
    start_epoch: Duration,
    raw: &mut String,
) -> (Option<Duration>, Option<Duration>, Option<u64>) {
    let (mut ctx, mut stamp, mut find) = (None, None, None);
    let mut tee = Tee {
        inner: BufReader::new(out),
        copy: Vec::new(),
    };
    {
        let stream = serde_json::Deserializer::from_reader(&mut tee).into_iter::<Value>();
        for v in stream {
            let at = start.elapsed();
            let Ok(v) = v else { break };
            for vx in v["vertexes"].as_array().into_iter().flatten() {
                if is_ctx_vertex(vx["name"].as_str()) {
                    if let Some(c) = vx["completed"].as_str() {
                        ctx = Some(at);
                        stamp = parse_rfc3339(c).map(|t| t.saturating_sub(start_epoch));
                    }
                }
            }
            for l in v["logs"].as_array().into_iter().flatten() {
                let data = base64_decode(l["data"].as_str().unwrap_or_default());
                if let Ok(n) = String::from_utf8_lossy(&data).trim().parse() {
                    find = Some(n);
                }
            }
        }
    }
    // Whatever did not parse (an error message) is kept for the report.
    let _ = tee.inner.read_to_end(&mut tee.copy);
    raw.push_str(&String::from_utf8_lossy(&tee.copy));
    (ctx, stamp, find)
}

/// Keeps a copy of what is read through it.
struct Tee<R> {
    inner: R,
    copy: Vec<u8>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

struct Env {
    mybake: PathBuf,
    ctx: Context,
    strace: bool,
    work: PathBuf,
    /// Keep strace logs and event dumps (with --keep).
    keep_logs: bool,
}

/// Parses an `strace -y` log: every successful open whose result resolves
/// to one of the generated data files.
fn opened_files(log: &Path, index: &HashMap<PathBuf, u64>) -> (usize, usize, u64) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut opens = 0;
    let mut seen: HashMap<&Path, u64> = HashMap::new();
    for line in text.lines() {
        // `PID openat(AT_FDCWD<...>, "...", O_RDONLY|...) = 9</abs/path>`, or
        // `PID <... openat resumed>)      = 9</abs/path>` (padded)
        let Some(i) = line.rfind(" = ") else { continue };
        if !line[..i].trim_end().ends_with(')') {
            continue;
        }
        let rest = &line[i + 3..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !rest[digits..].starts_with('<') || !rest.ends_with('>') {
            continue;
        }
        let path = Path::new(&rest[digits + 1..rest.len() - 1]);
        if let Some((p, size)) = index.get_key_value(path) {
            opens += 1;
            seen.insert(p.as_path(), *size);
        }
    }
    (opens, seen.len(), seen.values().sum())
}

fn run(env: &Env, tool: Tool, label: &str, index: &HashMap<PathBuf, u64>) -> RunOut {
    let (prog, args): (PathBuf, Vec<String>) = match tool {
        Tool::Mybake => (
            env.mybake.clone(),
            vec![
                "build".into(),
                TARGET.into(),
                "--progress".into(),
                "json".into(),
            ],
        ),
        Tool::Buildx => (
            PathBuf::from("docker"),
            [
                "buildx",
                "build",
                "--builder",
                "default",
                "--platform",
                "linux/amd64",
                "--progress",
                "rawjson",
                "--output",
                "type=cacheonly",
                ".",
            ]
            .map(String::from)
            .to_vec(),
        ),
    };
    let trace_log = env.work.join(format!("strace-{label}.log"));
    let mut cmd = if env.strace {
        let mut c = Command::new("strace");
        c.args([
            "--seccomp-bpf",
            "-f",
            "-qq",
            "-y",
            "-e",
            "trace=open,openat",
            "-e",
            "signal=none",
            "-o",
        ])
        .arg(&trace_log)
        .arg("--")
        .arg(&prog);
        c
    } else {
        Command::new(&prog)
    };
    cmd.args(&args)
        .current_dir(&env.ctx.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start_epoch = epoch(SystemTime::now());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", prog.display()));
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (events, mut other): (Box<dyn Read + Send>, Box<dyn Read + Send>) = match tool {
        Tool::Mybake => (Box::new(stdout), Box::new(stderr)),
        Tool::Buildx => (Box::new(stderr), Box::new(stdout)),
    };
    let reader = std::thread::spawn(move || {
        let mut raw = String::new();
        let r = match tool {
            Tool::Mybake => read_mybake(events, start, start_epoch, &mut raw),
            Tool::Buildx => read_buildx(events, start, start_epoch, &mut raw),
        };
        (r, raw)
    });
    let other_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = other.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((status, start.elapsed()));
    });
    let (status, wall) = match rx.recv_timeout(RUN_TIMEOUT) {
        Ok((status, wall)) => (status.expect("wait"), wall),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!(
                "{} {label}: no exit after {RUN_TIMEOUT:?}; killed pid {pid}",
                tool.name()
            );
        }
    };
    let ((ctx, ctx_stamp, find), raw) = reader.join().expect("reader");
    let other = other_reader.join().expect("reader");
    let _ = std::fs::write(env.work.join(format!("events-{label}.txt")), &raw);
    let error = (!status.success()).then(|| {
        let tail = |s: &str| {
            s.lines()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        eprintln!(
            "  {} {label} FAILED ({status}):\n--- events (tail)\n{}\n--- other output (tail)\n{}",
            tool.name(),
            tail(&raw),
            tail(&other)
        );
        failure_message(&raw, &other).unwrap_or_else(|| status.to_string())
    });
    let opened = env.strace.then(|| opened_files(&trace_log, index));
    if !env.keep_logs {
        let _ = std::fs::remove_file(&trace_log);
    }
    RunOut {
        wall,
        ctx,
        ctx_stamp,
        opened,
        find,
        error,
    }
}

/// The error a failed build reports: mybake's last `failed` event, or the
/// `ERROR:` line docker buildx prints.
fn failure_message(events: &str, other: &str) -> Option<String> {
    let from_events = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "failed")
        .filter_map(|v| v["error"].as_str().map(String::from))
        .next_back();
    from_events.or_else(|| {
        events
            .lines()
            .chain(other.lines())
            .rfind(|l| l.trim_start().starts_with("ERROR"))
            .map(|l| l.trim().to_string())
    })
}

fn prune() {
    let t = Instant::now();
    let out = Command::new("docker")
        .args(["builder", "prune", "-af"])
        .output()
        .expect("docker builder prune");
    assert!(
        out.status.success(),
        "docker builder prune -af failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reclaimed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("Total"))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "  docker builder prune -af: {reclaimed} ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
}

fn tool_version(args: &[&str]) -> Option<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

// ---------------------------------------------------------------- report

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

fn fmt_bytes(b: u64) -> String {
    if b >= 10_000_000 {
        format!("{:.1} MB", b as f64 / 1e6)
    } else if b >= 10_000 {
        format!("{:.1} kB", b as f64 / 1e3)
    } else {
        format!("{b} B")
    }
}

struct Row {
    tool: Tool,
    kind: Kind,
    runs: Vec<RunOut>,
}

impl Row {
    fn ok(&self) -> impl Iterator<Item = &RunOut> {
        self.runs.iter().filter(|r| r.error.is_none())
    }
    fn failed(&self) -> usize {
        self.runs.iter().filter(|r| r.error.is_some()).count()
    }
    fn ctx(&self) -> Option<f64> {
        median(self.ok().filter_map(|r| r.ctx).map(ms).collect())
    }
    fn wall(&self) -> Option<f64> {
        median(self.ok().map(|r| ms(r.wall)).collect())
    }
}

fn main() {
    let o = parse_args();
    let mybake = std::env::var_os("MYBAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mybake")));
    let Some(server) = tool_version(&["docker", "version", "--format", "{{.Server.Version}}"])
    else {
        eprintln!(
            "context bench: no Docker Engine reachable (docker version failed); nothing to do"
        );
        return;
    };
    let buildx = tool_version(&["docker", "buildx", "version"]);
    let mut o = o;
    if o.peer && buildx.is_none() {
        eprintln!("peer: docker buildx not available");
        o.peer = false;
        if !o.mybake {
            return;
        }
    }
    let mut strace = o.strace;
    if strace && tool_version(&["strace", "-V"]).is_none() {
        eprintln!("strace not found (apt-get install -y strace): files read are not counted");
        strace = false;
    }

    let bench_start = Instant::now();
    let (tmp, root) = match &o.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("create --keep dir");
            (None, dir.canonicalize().expect("canonicalize"))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("mybake-bench-context.")
                .tempdir_in("/var/tmp")
                .expect("temp dir in /var/tmp");
            let p = t.path().canonicalize().expect("canonicalize");
            (Some(t), p)
        }
    };
    let ctx_dir = root.join("context");
    let work = root.join("work");
    std::fs::create_dir_all(&ctx_dir).expect("create context dir");
    std::fs::create_dir_all(&work).expect("create work dir");

    eprintln!(
        "generating {} files in {} dirs, ~{} MB, into {}",
        o.files,
        o.dirs,
        o.bytes / 1_000_000,
        ctx_dir.display()
    );
    let t = Instant::now();
    let ctx = generate(&ctx_dir, &o);
    eprintln!(
        "  {} files ({} large, {} small), {} in {:.1} s",
        ctx.files.len(),
        ctx.large,
        ctx.files.len() - ctx.large,
        fmt_bytes(ctx.total),
        t.elapsed().as_secs_f64()
    );
    // The file to touch: a small one in the middle of the tree.
    let mut touch = ctx.files.len() / 2 + o.files.div_ceil(o.dirs) / 2;
    while touch + 1 < ctx.files.len() && (touch % LARGE_EVERY == LARGE_EVERY - 1) {
        touch += 1;
    }
    let touch = touch.min(ctx.files.len() - 1);
    let index: HashMap<PathBuf, u64> = (0..ctx.files.len())
        .map(|i| (ctx.abs(i), ctx.files[i].1))
        .collect();
    let expect_find = ctx.files.len() as u64 + 2; // + Dockerfile, mybake.kdl
    let env = Env {
        mybake: mybake.clone(),
        ctx,
        strace,
        work: work.clone(),
        keep_logs: o.keep.is_some(),
    };

    let mut tools = Vec::new();
    if o.mybake {
        tools.push(Tool::Mybake);
    }
    if o.peer {
        tools.push(Tool::Buildx);
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut generation = 0u64;
    for &tool in &tools {
        eprintln!("{}:", tool.name());
        if o.prune {
            prune();
        }
        for kind in [Kind::Cold, Kind::NoChange, Kind::Touched] {
            let n = if kind == Kind::Cold { 1 } else { o.warm_runs };
            let mut runs = Vec::new();
            for k in 0..n {
                if kind == Kind::Touched {
                    // Same size, new content and mtime.
                    generation += 1;
                    let (rel, size) = env.ctx.files[touch].clone();
                    write_file(
                        &env.ctx.root.join(rel),
                        size,
                        file_seed(touch, generation),
                        &mut Vec::new(),
                    );
                }
                let label = format!("{}-{}-{k}", tool.name(), kind.name());
                let r = run(&env, tool, &label, &index);
                let opened = r.opened.map_or("-".into(), |(n, d, b)| {
                    format!("{n} opens, {d} files, {}", fmt_bytes(b))
                });
                eprintln!(
                    "  {:<12} {}ctx {:>7} ms (tool stamp {:>7} ms)  wall {:>7.0} ms  read: {opened}  find: {}",
                    kind.name(),
                    if r.error.is_some() { "FAILED " } else { "" },
                    fmt_ms(r.ctx.map(ms)),
                    fmt_ms(r.ctx_stamp.map(ms)),
                    ms(r.wall),
                    r.find.map_or("cached".into(), |f| f.to_string()),
                );
                if let Some(f) = r.find {
                    if f != expect_find {
                        eprintln!("  WARNING: RUN find counted {f} files, expected {expect_find}");
                    }
                }
                runs.push(r);
            }
            rows.push(Row { tool, kind, runs });
        }
    }

    // ------------------------------------------------------------ table
    let (touch_rel, touch_size) = &env.ctx.files[touch];
    println!();
    println!(
        "context upload: {} files, {} ({} large), one target linux/amd64, no export",
        env.ctx.files.len(),
        fmt_bytes(env.ctx.total),
        env.ctx.large
    );
    println!(
        "daemon: Docker Engine {server}; mybake: {}; buildx: {}",
        mybake.display(),
        buildx.as_deref().unwrap_or("-")
    );
    println!(
        "touched file: {touch_rel} ({}); warm runs: median of {}",
        fmt_bytes(*touch_size),
        o.warm_runs
    );
    if strace {
        println!("files read: successful opens of context data files under strace --seccomp-bpf -f (all runs traced)");
    }
    println!();
    println!("| tool | run | n | context loaded (ms) | total wall (ms) | files read | bytes read | RUN find |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let files = if strace {
            let v: Vec<String> = r
                .runs
                .iter()
                .map(|x| x.opened.map_or("-".into(), |(_, d, _)| d.to_string()))
                .collect();
            dedup_join(v)
        } else {
            "-".into()
        };
        let bytes = if strace {
            dedup_join(
                r.runs
                    .iter()
                    .map(|x| x.opened.map_or("-".into(), |(_, _, b)| fmt_bytes(b)))
                    .collect(),
            )
        } else {
            "-".into()
        };
        let find = dedup_join(
            r.runs
                .iter()
                .map(|x| {
                    if x.error.is_some() {
                        "-".into()
                    } else {
                        x.find.map_or("cached".into(), |f| f.to_string())
                    }
                })
                .collect(),
        );
        let (ctx, wall) = if r.failed() == 0 {
            (fmt_ms(r.ctx()), fmt_ms(r.wall()))
        } else {
            let walls: Vec<String> = r
                .runs
                .iter()
                .filter(|x| x.error.is_some())
                .map(|x| format!("{:.0}", ms(x.wall)))
                .collect();
            let ok = r.runs.len() - r.failed();
            let ctx = if ok == 0 {
                "FAILED".to_string()
            } else {
                format!("{} ({} FAILED)", fmt_ms(r.ctx()), r.failed())
            };
            let wall = if ok == 0 {
                format!("{} (to failure)", walls.join("/"))
            } else {
                fmt_ms(r.wall())
            };
            (ctx, wall)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.tool.name(),
            r.kind.name(),
            r.runs.len(),
            ctx,
            wall,
            files,
            bytes,
            find
        );
    }
    for r in &rows {
        for (k, x) in r.runs.iter().enumerate() {
            if let Some(e) = &x.error {
                println!();
                println!(
                    "{} {} run {}: FAILED after {:.0} ms: {e}",
                    r.tool.name(),
                    r.kind.name(),
                    k + 1,
                    ms(x.wall)
                );
            }
        }
    }
    if o.mybake && o.peer {
        println!();
        println!("| run | context loaded mybake/buildx | total wall mybake/buildx |");
        println!("|---|---:|---:|");
        for kind in [Kind::Cold, Kind::NoChange, Kind::Touched] {
            let get = |t: Tool| rows.iter().find(|r| r.tool == t && r.kind == kind);
            let (Some(m), Some(b)) = (get(Tool::Mybake), get(Tool::Buildx)) else {
                continue;
            };
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            println!(
                "| {} | {} | {} |",
                kind.name(),
                ratio(m.ctx(), b.ctx()),
                ratio(m.wall(), b.wall())
            );
        }
    }
    println!();
    println!("bench time: {:.0} s", bench_start.elapsed().as_secs_f64());
    match tmp {
        Some(t) => {
            let p = t.path().to_path_buf();
            drop(t);
            eprintln!("removed {}", p.display());
        }
        None => eprintln!(
            "kept {} (context in context/, run logs in work/)",
            root.display()
        ),
    }
}

/// `a` if every run agrees, else `a/b/c`.
fn dedup_join(v: Vec<String>) -> String {
    if v.windows(2).all(|w| w[0] == w[1]) {
        v.into_iter().next().unwrap_or_else(|| "-".into())
    } else {
        v.join("/")
    }
}
