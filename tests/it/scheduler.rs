//! The `mybake build` scheduler against the real test bed
//! (scripts/testbed/README.md): critical path first under `-j 1`, fail-fast
//! and `--keep-going`, Ctrl-C, a builder that disappears, a two-node
//! builder with disjoint platforms, and the progress formats.
//!
//! The scheduling cases themselves (per-platform ordering, `-j` caps,
//! critical path first, fail-fast, keep-going, cancellation, a lost
//! builder) are unit tests over a fake solver in `src/exec/schedule.rs`;
//! the ones here check that the real daemon run behaves the same end to
//! end.
//!
//! These tests never skip: when the daemon, the registry or the splice
//! socket is down they fail and say what is missing. Every test pushes to
//! its own repositories `localhost:5000/mybake-it/<test>-<nonce>` and
//! puts a fresh nonce into every `RUN` step so nothing is cached from a
//! previous run. Timings come from `--progress json` (`time` in ms).

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::testbed::*;
use common::{Output, Test};
use serde_json::Value;

const AMD: &str = "linux/amd64";
const ARM: &str = "linux/arm64";

// ---------------------------------------------------------------- registry

/// The image a per-platform result names: the reference itself, or, when
/// it is BuildKit's per-platform index (image + attestation, bake's default
/// provenance), its one image.
fn image_of(reference: &str) -> String {
    let m = manifest(reference);
    if m["manifests"].is_array() {
        let images = index_images(&m);
        assert_eq!(images.len(), 1, "{reference}: one image: {m}");
        let repo = reference.split('@').next().expect("repo");
        format!("{repo}@{}", images[0].1)
    } else {
        reference.to_string()
    }
}

fn layers(m: &Value) -> Vec<String> {
    m["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("not an image manifest: {m}"))
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_string())
        .collect()
}

// ---------------------------------------------------------------- processes

/// Processes whose command line contains `needle` (the RUN step's shell
/// carries the nonce in its `-c` argument while it sleeps).
fn processes_with(needle: &str) -> Vec<String> {
    let o = Command::new("ps")
        .args(["-eo", "pid=,args="])
        .output()
        .expect("run ps");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("ps -eo"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Wait up to `limit` for `cond`; true if it held.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The command `Test::run` would run, for tests that need the live child.
fn command(t: &Test, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mybake"));
    c.args(args)
        .current_dir(t.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", t.path())
        .env("NO_COLOR", "1");
    c
}

/// A running `mybake build --progress json`: stdout lines arrive on a
/// channel as they are printed; stderr is collected.
struct Live {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<Value>,
    stderr: Option<std::thread::JoinHandle<String>>,
    started: Instant,
}

impl Live {
    fn spawn(t: &Test, args: &[&str]) -> Live {
        let mut child = command(t, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mybake");
        let started = Instant::now();
        let out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Live {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr: Some(stderr),
            started,
        }
    }

    /// Read events until one satisfies `pred` (returned), or panic after `limit`.
    fn wait_for(&mut self, limit: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                        panic!("--progress json line is not JSON ({e}): {line}")
                    });
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "no {what} within {limit:?}; events so far:\n{}",
                        dump(&self.seen)
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait");
                    let stderr = self
                        .stderr
                        .take()
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default();
                    panic!(
                        "mybake ended ({status}) before {what}; events:\n{}\nstderr:\n{stderr}",
                        dump(&self.seen)
                    );
                }
            }
        }
    }

    /// Wait up to `limit` for the exit; `None` (and the child killed) if it
    /// is still running then. Returns (code, time waited, stderr).
    fn wait_exit(&mut self, limit: Duration) -> Option<(i32, Duration, String)> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let waited = t0.elapsed();
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    if let Ok(v) = serde_json::from_str(&line) {
                        self.seen.push(v);
                    }
                }
                let stderr = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                return Some((status.code().unwrap_or(-1), waited, stderr));
            }
            if t0.elapsed() >= limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------- events

fn dump(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| {
            e["type"] != "log"
                && e["type"] != "step-started"
                && e["type"] != "step-completed"
                && e["type"] != "step-cached"
        })
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Events of one `--progress json` run.
struct Events(Vec<Value>);

impl Events {
    fn parse(o: &Output) -> Events {
        Events(
            o.stdout
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| {
                        panic!(
                            "--progress json line is not JSON ({e}): {l}\nstdout:\n{}\nstderr:\n{}",
                            o.stdout, o.stderr
                        )
                    })
                })
                .collect(),
        )
    }

    fn find(&self, ty: &str, node: &str) -> Option<&Value> {
        self.0.iter().find(|e| e["type"] == ty && e["node"] == node)
    }

    fn get(&self, ty: &str, node: &str) -> &Value {
        self.find(ty, node)
            .unwrap_or_else(|| panic!("no `{ty}` event for {node}; events:\n{}", dump(&self.0)))
    }

    fn time(&self, ty: &str, node: &str) -> u64 {
        self.get(ty, node)["time"]
            .as_u64()
            .expect("time is an integer")
    }

    /// [started, finished] of `node`.
    fn interval(&self, node: &str) -> (u64, u64) {
        (self.time("started", node), self.time("finished", node))
    }
}

fn run_json(t: Test, args: &[&str]) -> (Output, Events, Duration) {
    let t0 = Instant::now();
    let o = t.args(args).args(&["--progress", "json"]).run();
    let took = t0.elapsed();
    let ev = Events::parse(&o);
    (o, ev, took)
}

fn show(o: &Output) -> String {
    format!("exit {}\nstderr:\n{}", o.code, o.stderr)
}

// ---------------------------------------------------------------- 2: -j 1 (per-platform ordering and the -j caps: src/exec/schedule.rs)

fn overlaps(iv: &[(String, u64, u64)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in iv.iter().enumerate() {
        for b in &iv[i + 1..] {
            // [s, f] intervals; touching ends (same ms) is not an overlap.
            if a.1 < b.2 && b.1 < a.2 {
                out.push(format!(
                    "{} [{}, {}] overlaps {} [{}, {}]",
                    a.0, a.1, a.2, b.0, b.1, b.2
                ));
            }
        }
    }
    out
}

/// With one slot, the ready node with the longest chain behind it goes
/// first, whatever the plan order: `a-leaf` and `base` are both ready at
/// the start, `base` has `app` waiting on it, so `base` starts first.
#[test]
fn jobs_1_runs_the_critical_path_first() {
    testbed();
    let n = nonce();
    let base_repo = unique_repo("prio-base");
    let _cleanup = StoreCleanup(vec![base_repo.clone()]);
    let kdl = format!(
        r#"
target "a-leaf" {{
    context "a-leaf"
    platforms "linux/amd64"
    arg "NONCE" "{n}"
}}
target "base" {{
    context "base"
    platforms "linux/amd64"
    arg "NONCE" "{n}"
    tags "{base_repo}:dev"
}}
target "app" {{
    context "app"
    contexts {{ base "target:base" }}
    platforms "linux/amd64"
    arg "NONCE" "{n}"
}}
group "default" {{
    targets "a-leaf" "app"
}}
"#
    );
    let t = Test::new()
        .kdl(&kdl)
        .file(
            "a-leaf/Dockerfile",
            &format!("FROM {BUSYBOX}\nARG NONCE\nRUN echo \"leaf $NONCE\" > /id\n"),
        )
        .file(
            "base/Dockerfile",
            &format!("FROM {BUSYBOX}\nARG NONCE\nRUN echo \"base $NONCE\" > /id\n"),
        )
        .file(
            "app/Dockerfile",
            "FROM base\nARG NONCE\nRUN echo \"app $NONCE\" > /app\n",
        );
    // The plan lists leaf before base (file order): a FIFO queue would
    // start leaf first.
    let plan = Command::new(env!("CARGO_BIN_EXE_mybake"))
        .current_dir(t.path())
        .args(["plan", "--format", "json"])
        .output()
        .expect("mybake plan");
    let plan: Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let ids: Vec<&str> = plan["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let pos = |id: &str| ids.iter().position(|x| *x == id);
    assert!(
        pos("a-leaf@linux/amd64") < pos("base@linux/amd64"),
        "test premise: leaf comes first in plan order: {ids:?}"
    );
    let (o, ev, _) = run_json(t, &["build", "-j", "1"]);
    assert_eq!(o.code, 0, "{}", show(&o));
    let (base_start, base_end) = ev.interval("base@linux/amd64");
    let (leaf_start, _) = ev.interval("a-leaf@linux/amd64");
    let (app_start, _) = ev.interval("app@linux/amd64");
    assert!(
        base_start < leaf_start,
        "base (2-node chain) should start before leaf: base {base_start}, leaf {leaf_start}"
    );
    // app became ready when base finished and outranks nothing but is
    // the only chain left; leaf waited for it or ran before it, both fine,
    // but -j 1 must hold.
    assert!(app_start >= base_end);
    let iv = vec![
        (
            "leaf".to_string(),
            leaf_start,
            ev.interval("a-leaf@linux/amd64").1,
        ),
        ("base".to_string(), base_start, base_end),
        (
            "app".to_string(),
            app_start,
            ev.interval("app@linux/amd64").1,
        ),
    ];
    assert!(overlaps(&iv).is_empty(), "-j 1 overlapped: {iv:?}");
}

// ---------------------------------------------------------------- 3: fail-fast / keep-going

/// `bad` fails at once (`RUN false`); `slow` sleeps `secs`. Both are pushed
/// (`tags` REPO:dev). Returns the test and the two repositories.
fn bad_and_slow(secs: u32, n: &str) -> (Test, String, String) {
    let bad = unique_repo("bad");
    let slow = unique_repo("slow");
    let kdl = format!(
        r#"
group "default" {{
    targets "bad" "slow"
}}
target "bad" {{
    context "bad"
    platforms "linux/amd64"
    tags "{bad}:dev"
}}
target "slow" {{
    context "slow"
    platforms "linux/amd64"
    tags "{slow}:dev"
}}
"#
    );
    let t = Test::new()
        .kdl(&kdl)
        .file(
            "bad/Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN echo \"bad {n}\" && false\n"),
        )
        .file(
            "slow/Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN sleep {secs}; echo \"slow {n}\" > /slow\n"),
        );
    (t, bad, slow)
}

const BAD: &str = "bad@linux/amd64";
const SLOW: &str = "slow@linux/amd64";

#[test]
fn fail_fast_cancels_the_rest_and_tags_nothing() {
    testbed();
    let n = nonce();
    let (t, bad, slow) = bad_and_slow(20, &n);
    let _cleanup = StoreCleanup(vec![bad.clone(), slow.clone()]);
    let (o, ev, took) = run_json(t, &["build", "--push"]);
    assert_eq!(o.code, 1, "{}", show(&o));
    assert!(
        took < Duration::from_secs(12),
        "fail-fast took {took:?} (the slow target sleeps 20 s)\n{}",
        show(&o)
    );
    assert!(
        ev.find("failed", BAD).is_some(),
        "{BAD} must be reported failed:\n{}",
        dump(&ev.0)
    );
    assert!(
        ev.find("finished", SLOW).is_none(),
        "{SLOW} must not finish under fail-fast:\n{}",
        dump(&ev.0)
    );
    // The slow solve was running when the other failed: it ends as
    // `cancelled` (not `failed`, which is for real errors).
    assert!(
        ev.find("failed", SLOW).is_none(),
        "{SLOW} was cancelled, it did not fail:\n{}",
        dump(&ev.0)
    );
    let slow_end = ev
        .find("cancelled", SLOW)
        .unwrap_or_else(|| panic!("{SLOW} has no cancelled event:\n{}", dump(&ev.0)));
    assert!(
        slow_end["duration_ms"].as_u64().is_some(),
        "cancelled carries how long it ran: {slow_end}"
    );
    assert!(o.stderr.contains("nothing was published"), "{}", show(&o));
    assert_no_tags(&bad, "fail-fast");
    assert_no_tags(&slow, "fail-fast");
    // The daemon stopped the cancelled solve as well (its RUN shell carries
    // the nonce).
    let needle = format!("slow {n}");
    assert!(
        wait_until(Duration::from_secs(8), || processes_with(&needle)
            .is_empty()),
        "the cancelled RUN is still running on the daemon: {:?}",
        processes_with(&needle)
    );
    eprintln!(
        "fail-fast: exit 1 after {took:?}; {SLOW}: {slow_end}\nstderr:\n{}",
        o.stderr
    );
}

#[test]
fn keep_going_finishes_the_rest_and_publishes_only_per_target() {
    testbed();
    // --keep-going, default --publish all: slow completes, nothing is tagged.
    let (t, bad, slow) = bad_and_slow(8, &nonce());
    let _c1 = StoreCleanup(vec![bad.clone(), slow.clone()]);
    let (o, ev, _) = run_json(t, &["build", "--push", "--keep-going"]);
    assert_eq!(o.code, 1, "{}", show(&o));
    let failed_at = ev.time("failed", BAD);
    let finished_at = ev.time("finished", SLOW);
    assert!(finished_at > failed_at, "{SLOW} finished ({finished_at}) before {BAD} failed ({failed_at}): the test proves nothing");
    assert!(
        ev.get("finished", SLOW)["reference"].is_string(),
        "{SLOW} was pushed by digest"
    );
    assert!(o.stderr.contains("nothing was published"), "{}", show(&o));
    assert_no_tags(&bad, "--keep-going, --publish all");
    assert_no_tags(&slow, "--keep-going, --publish all");

    // --keep-going --publish per-target: the complete target is tagged.
    let (t, bad, slow) = bad_and_slow(8, &nonce());
    let _c2 = StoreCleanup(vec![bad.clone(), slow.clone()]);
    let (o, ev, _) = run_json(
        t,
        &["build", "--push", "--keep-going", "--publish", "per-target"],
    );
    assert_eq!(o.code, 1, "{}", show(&o));
    assert!(
        ev.time("finished", SLOW) > ev.time("failed", BAD),
        "{SLOW} must outlive {BAD}'s failure"
    );
    assert_eq!(
        tags(&slow),
        ["dev"],
        "{slow}: --publish per-target tags the complete target\n{}",
        show(&o)
    );
    assert_no_tags(&bad, "--publish per-target, failed target");
}

// ---------------------------------------------------------------- 4: SIGINT

#[test]
fn sigint_cancels_exits_130_and_tags_nothing() {
    testbed();
    let n = nonce();
    let repo = unique_repo("sigint");
    let _cleanup = StoreCleanup(vec![repo.clone()]);
    let t = Test::new()
        .kdl(&format!(
            "target \"t\" {{\n    platforms \"linux/amd64\"\n    tags \"{repo}:dev\"\n}}\n"
        ))
        .file(
            "Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN sleep 60; echo \"sigint {n}\" > /x\n"),
        );
    let mut live = Live::spawn(&t, &["build", "t", "--push", "--progress", "json"]);
    live.wait_for(
        Duration::from_secs(60),
        "`started` for t@linux/amd64",
        |e| e["type"] == "started" && e["node"] == "t@linux/amd64",
    );
    // Make sure the daemon really runs the step before interrupting.
    live.wait_for(Duration::from_secs(30), "the RUN step starting", |e| {
        e["type"] == "step-started" && e["name"].as_str().is_some_and(|s| s.contains("sleep 60"))
    });
    let needle = format!("sigint {n}");
    let running = wait_until(Duration::from_secs(10), || {
        !processes_with(&needle).is_empty()
    });
    assert!(
        running,
        "the RUN step's process (`{needle}`) never showed up in ps"
    );
    let pid = live.child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGINT) },
        0,
        "kill -INT {pid}"
    );
    let Some((code, waited, stderr)) = live.wait_exit(Duration::from_secs(2)) else {
        panic!("mybake did not exit within 2 s of SIGINT (killed it)");
    };
    assert_eq!(
        code, 130,
        "exit code after SIGINT (after {waited:?})\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("interrupted"), "stderr:\n{stderr}");
    assert!(
        !live.seen.iter().any(|e| e["type"] == "finished"),
        "nothing finished:\n{}",
        dump(&live.seen)
    );
    assert_no_tags(&repo, "interrupted");
    let gone = wait_until(Duration::from_secs(8), || {
        processes_with(&needle).is_empty()
    });
    assert!(
        gone,
        "the interrupted RUN still runs on the daemon 8 s after mybake exited: {:?}",
        processes_with(&needle)
    );
    eprintln!(
        "exit 130 {waited:?} after SIGINT (run {:?})",
        live.started.elapsed()
    );
}

// ---------------------------------------------------------------- 5: builder disappears

/// A private splice socket (scripts/testbed/grpc-splice.py), killed on drop.
struct Splice {
    child: Child,
    path: std::path::PathBuf,
}

impl Splice {
    fn start() -> Splice {
        let path = std::env::temp_dir().join(format!("mybake-sched-{}.sock", nonce()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed/grpc-splice.py");
        let child = Command::new("python3")
            .arg(&script)
            .arg("--listen")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start grpc-splice.py");
        let mut s = Splice { child, path };
        let up = wait_until(Duration::from_secs(15), || {
            std::os::unix::net::UnixStream::connect(&s.path).is_ok()
        });
        assert!(up, "the splice on {} did not come up", s.path.display());
        assert!(
            s.child.try_wait().expect("try_wait").is_none(),
            "the splice exited"
        );
        s
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Splice {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn builder_disappearing_fails_the_run_naming_the_node() {
    testbed();
    let n = nonce();
    let mut splice = Splice::start();
    let t = Test::new()
        .file("mybake.builders.kdl", &format!("builder \"flaky\" {{\n    node \"flaky-node\" endpoint=\"unix://{}\" platforms=\"linux/amd64\"\n}}\n", splice.path.display()))
        .kdl("target \"t\" {\n    platforms \"linux/amd64\"\n}\n")
        .file("Dockerfile", &format!("FROM {BUSYBOX}\nRUN sleep 20; echo \"gone {n}\" > /x\n"));
    let mut live = Live::spawn(
        &t,
        &["build", "t", "--builder", "flaky", "--progress", "json"],
    );
    let started = live.wait_for(
        Duration::from_secs(60),
        "`started` for t@linux/amd64",
        |e| e["type"] == "started" && e["node"] == "t@linux/amd64",
    );
    assert_eq!(started["builder"], "flaky-node", "{started}");
    live.wait_for(Duration::from_secs(30), "the RUN step starting", |e| {
        e["type"] == "step-started" && e["name"].as_str().is_some_and(|s| s.contains("sleep 20"))
    });
    splice.kill();
    let killed = Instant::now();
    let Some((code, waited, stderr)) = live.wait_exit(Duration::from_secs(15)) else {
        panic!(
            "mybake still running 15 s after its builder went away (killed it); events:\n{}",
            dump(&live.seen)
        );
    };
    assert_eq!(
        code, 1,
        "exit code after the builder went away\nstderr:\n{stderr}"
    );
    let failed = live
        .seen
        .iter()
        .find(|e| e["type"] == "failed" && e["node"] == "t@linux/amd64")
        .unwrap_or_else(|| {
            panic!(
                "no `failed` event for t@linux/amd64:\n{}\nstderr:\n{stderr}",
                dump(&live.seen)
            )
        });
    let error = failed["error"].as_str().unwrap_or("");
    assert!(
        error.contains("t@linux/amd64"),
        "the error names the build node: {error}"
    );
    assert!(
        stderr.contains("t@linux/amd64") && stderr.contains("FAILED"),
        "the summary names the failed node:\n{stderr}"
    );
    assert!(
        !error.contains("cancelled"),
        "the error must say the builder was lost, not that the run was cancelled: {error}"
    );
    let names_builder = error.contains("flaky-node") || stderr.contains("flaky-node");
    eprintln!("exit 1 {waited:?} after the splice died ({:?} since kill)\nfailed event: {failed}\nnames the builder node `flaky-node`: {names_builder}\nstderr:\n{stderr}", killed.elapsed());
    // The daemon lost the client: its solve should stop too (best effort).
    let needle = format!("gone {n}");
    if !wait_until(Duration::from_secs(8), || {
        processes_with(&needle).is_empty()
    }) {
        eprintln!(
            "NOTE: the daemon still runs the solve 8 s after its client vanished: {:?}",
            processes_with(&needle)
        );
    }
    // A clear error says which builder was lost (its node name or endpoint),
    // not just the transport's "transport error".
    let endpoint = format!("{}", splice.path.display());
    let names_builder = names_builder || error.contains(&endpoint) || stderr.contains(&endpoint);
    assert!(names_builder, "the error should name the builder node that went away (`flaky-node`, {endpoint}): {error}\nstderr:\n{stderr}");
}

// ---------------------------------------------------------------- 6: two nodes

#[test]
fn two_nodes_with_disjoint_platforms() {
    splice();
    let n = nonce();
    let base_repo = unique_repo("pair-base");
    let app_repo = unique_repo("pair-app");
    let _cleanup = StoreCleanup(vec![base_repo.clone(), app_repo.clone()]);
    let kdl = format!(
        r#"
target "base" {{
    context "base"
    platforms "linux/amd64" "linux/arm64"
    arg "NONCE" "{n}"
    tags "{base_repo}:dev"
}}
target "app" {{
    context "app"
    contexts {{ base "target:base" }}
    platforms "linux/amd64" "linux/arm64"
    arg "NONCE" "{n}"
    tags "{app_repo}:dev"
}}
"#
    );
    let t = Test::new()
        .file("mybake.builders.kdl", &format!("builder \"pair\" {{\n    node \"amd\" endpoint=\"docker\" platforms=\"linux/amd64\"\n    node \"arm\" endpoint=\"unix://{SOCK_PATH}\" platforms=\"linux/arm64\"\n}}\n"))
        .kdl(&kdl)
        .file("base/Dockerfile", &format!("FROM {BUSYBOX}\nARG NONCE\nRUN uname -m > /base-arch && echo \"$NONCE\" > /nonce\n"))
        .file("app/Dockerfile", "FROM base\nARG NONCE\nRUN cat /base-arch > /app-saw && echo \"app $NONCE\" >> /app-saw\n");
    let (o, ev, took) = run_json(t, &["build", "app", "--push", "--builder", "pair"]);
    assert_eq!(o.code, 0, "{}", show(&o));
    // Both nodes connected.
    let builders: Vec<&str> =
        ev.0.iter()
            .filter(|e| e["type"] == "builder")
            .filter_map(|e| e["endpoint"].as_str())
            .collect();
    assert_eq!(builders.len(), 2, "two builder events: {builders:?}");
    // Every solve ran on the node native to its platform.
    for node in [
        "base@linux/amd64",
        "base@linux/arm64",
        "app@linux/amd64",
        "app@linux/arm64",
    ] {
        let want = if node.ends_with("amd64") {
            "amd"
        } else {
            "arm"
        };
        assert_eq!(
            ev.get("started", node)["builder"],
            want,
            "{node} ran on the wrong builder node"
        );
        assert!(
            ev.find("finished", node).is_some(),
            "{node} did not finish:\n{}",
            dump(&ev.0)
        );
    }
    // One index with both platforms.
    let inspect = Command::new(env!("CARGO_BIN_EXE_mybake"))
        .args([
            "index",
            "inspect",
            &format!("{app_repo}:dev"),
            "--format",
            "json",
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run mybake index inspect");
    assert!(
        inspect.status.success(),
        "index inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let i: Value = serde_json::from_slice(&inspect.stdout).unwrap_or_else(|e| {
        panic!(
            "index inspect --format json: {e}\n{}",
            String::from_utf8_lossy(&inspect.stdout)
        )
    });
    let mut inspected: Vec<String> = index_images(&i).into_iter().map(|(p, _)| p).collect();
    inspected.sort();
    assert_eq!(
        inspected,
        [AMD, ARM],
        "`mybake index inspect {app_repo}:dev`: one index with both platforms: {i:#}"
    );
    let index = http_json(
        &format!("/v2/{}/manifests/dev", api_name(&app_repo)),
        Some(OCI_ACCEPT),
    );
    let by_platform: HashMap<String, String> = index_images(&index).into_iter().collect();
    assert_eq!(
        by_platform.len(),
        2,
        "{app_repo}:dev has exactly the two platforms: {index}"
    );
    for p in [AMD, ARM] {
        let app_ref = image_of(
            ev.get("finished", &format!("app@{p}"))["reference"]
                .as_str()
                .expect("app reference"),
        );
        assert_eq!(
            Some(app_ref.split('@').nth(1).unwrap()),
            by_platform.get(p).map(String::as_str),
            "{p}: the index holds the manifest app@{p} built"
        );
        // app@P is built FROM the base@P that its own node built: base's
        // layers are the first layers of app's image.
        let base_ref = image_of(
            ev.get("finished", &format!("base@{p}"))["reference"]
                .as_str()
                .expect("base reference"),
        );
        let (bl, al) = (layers(&manifest(&base_ref)), layers(&manifest(&app_ref)));
        assert!(
            al.len() > bl.len() && al[..bl.len()] == bl[..],
            "app@{p} is not FROM base@{p} ({base_ref}):\nbase {bl:?}\napp {al:?}"
        );
    }
    assert_eq!(tags(&app_repo), ["dev"]);
    assert_no_tags(&base_repo, "dependency, not requested");
    eprintln!("two-node build in {took:?}; builders {builders:?}");
}

// ---------------------------------------------------------------- 7: progress formats

fn chatty(n: &str) -> Test {
    let mut t = Test::new().kdl("group \"default\" {\n    targets \"a\" \"b\"\n}\ntarget \"a\" {\n    context \"a\"\n    platforms \"linux/amd64\" \"linux/arm64\"\n}\ntarget \"b\" {\n    context \"b\"\n    platforms \"linux/amd64\"\n}\n");
    for x in ["a", "b"] {
        t = t.file(&format!("{x}/Dockerfile"), &format!("FROM {BUSYBOX}\nRUN for i in 1 2 3 4 5; do echo \"{x} {n} line $i\"; sleep 0.3; done\n"));
    }
    t
}

#[test]
fn json_progress_matches_its_schema() {
    testbed();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/progress-event.schema.json"),
        )
        .expect("read the schema"),
    )
    .expect("schema is JSON");
    let v = jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("the schema does not compile: {e}"));
    let (o, ev, _) = run_json(chatty(&nonce()), &["build"]);
    assert_eq!(o.code, 0, "{}", show(&o));
    assert!(!ev.0.is_empty(), "no events");
    let mut errs = Vec::new();
    let mut types: Vec<String> = Vec::new();
    for e in &ev.0 {
        let es: Vec<String> = v
            .iter_errors(e)
            .map(|x| format!("at {}: {x}", x.instance_path))
            .collect();
        if !es.is_empty() {
            errs.push(format!("{e}\n  {}", es.join("\n  ")));
        }
        let ty = e["type"].as_str().unwrap_or("").to_string();
        if !types.contains(&ty) {
            types.push(ty);
        }
    }
    assert!(
        errs.is_empty(),
        "{} of {} events do not match the schema:\n{}",
        errs.len(),
        ev.0.len(),
        errs.join("\n")
    );
    for ty in [
        "builder",
        "queued",
        "started",
        "step-started",
        "step-completed",
        "log",
        "finished",
    ] {
        assert!(
            types.iter().any(|t| t == ty),
            "no `{ty}` event among {types:?}"
        );
    }
    // Times are plausible: ms since the epoch, started ≤ finished.
    for node in ["a@linux/amd64", "a@linux/arm64", "b@linux/amd64"] {
        let (s, f) = ev.interval(node);
        assert!(s > 1_600_000_000_000 && s <= f, "{node}: {s}..{f}");
        assert_eq!(
            ev.get("finished", node)["duration_ms"]
                .as_u64()
                .map(|d| d <= f - s + 5),
            Some(true),
            "{node}: duration_ms within [started, finished]"
        );
    }
    assert!(
        o.stderr.trim().is_empty() || !o.stderr.contains('['),
        "--progress json keeps progress off stderr:\n{}",
        o.stderr
    );
}

#[test]
fn plain_progress_lines_are_prefixed() {
    testbed();
    let n = nonce();
    let o = chatty(&n).args(&["build", "--progress", "plain"]).run();
    assert_eq!(o.code, 0, "{}", show(&o));
    assert!(
        o.stdout.is_empty(),
        "plain progress goes to stderr; stdout:\n{}",
        o.stdout
    );
    let nodes = ["a@linux/amd64", "a@linux/arm64", "b@linux/amd64"];
    let mut bad = Vec::new();
    let mut in_summary = false;
    for l in o.stderr.lines() {
        if l == "summary:" {
            in_summary = true;
            continue;
        }
        let ok = l.is_empty()
            || (l.starts_with('[') && nodes.iter().any(|n| l.starts_with(&format!("[{n}] "))))
            || l.starts_with("builder ")
            || l.starts_with("mybake: ")
            || (in_summary
                && l.starts_with("  ")
                && (l.trim_start().starts_with("NODE ")
                    || nodes.iter().any(|n| l.trim_start().starts_with(n))));
        if !ok {
            bad.push(l);
        }
    }
    assert!(bad.is_empty(), "lines that are neither `[target@platform] …` nor a header/summary line:\n{}\n\nfull stderr:\n{}", bad.join("\n"), o.stderr);
    // Every node's RUN output is there, all five lines, in order.
    let mut log_of: HashMap<&str, Vec<usize>> = HashMap::new();
    let lines: Vec<&str> = o.stderr.lines().collect();
    for node in nodes {
        let target = &node[..1];
        let want: Vec<String> = (1..=5)
            .map(|i| format!("[{node}] | {target} {n} line {i}"))
            .collect();
        let at: Vec<usize> = want
            .iter()
            .map(|w| {
                lines
                    .iter()
                    .position(|l| l == w)
                    .unwrap_or_else(|| panic!("missing `{w}`:\n{}", o.stderr))
            })
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "{node}: log lines out of order: {at:?}"
        );
        log_of.insert(node, at);
    }
    // Are one RUN step's log lines contiguous, or split by other nodes' lines?
    let mut split = Vec::new();
    for (node, at) in &log_of {
        let (first, last) = (at[0], at[4]);
        let foreign: Vec<&str> = lines[first..=last]
            .iter()
            .copied()
            .filter(|l| !l.starts_with(&format!("[{node}] ")))
            .collect();
        if !foreign.is_empty() {
            split.push(format!("{node}: its RUN log (lines {first}..={last}) is split by {} line(s) of other nodes, e.g. `{}`", foreign.len(), foreign[0]));
        }
    }
    // Plain progress prints each step as one block when it ends (header,
    // log lines, result), so parallel nodes never split a step's log.
    assert!(
        split.is_empty(),
        "--progress plain interleaves the RUN logs of parallel nodes:\n{}\n\nfull stderr:\n{}",
        split.join("\n"),
        o.stderr
    );
}
