//! Signals and concurrent runs against the real test bed (issue 11 parts 4
//! and 6): Docker Engine's BuildKit, the registry on 127.0.0.1:5000 and
//! `localhost:5000/busybox:latest` (scripts/testbed/README.md). These tests
//! never skip.
//!
//! The runs push through [`TagProxy`], a loopback TCP proxy in front of the
//! registry (one request per connection) that can hold a tag write (`PUT
//! /v2/<name>/manifests/<tag>`) for a while, noticing when the client gives
//! up on it (then it never reaches the registry), or change a tag behind
//! mybake's back right after writing it. Everything else passes through.
//! Tags are checked directly on the registry, not through the proxy.
//!
//! Docker's BuildKit pushes to `127.0.0.1:<port>` over HTTPS (it does not
//! take loopback registries as plain HTTP), so each target's first tag is
//! `localhost:5000/...` directly: the executor pushes there by digest, and
//! the proxied tags name the same repository through the proxy.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::proxy;
use common::testbed::*;
use mybake::publish::index::sha256_digest;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const UPSTREAM: &str = "127.0.0.1:5000";

// ---------------------------------------------------------------- proxy

/// What the proxy does with one tag write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Forward it.
    Pass,
    /// Forward it after this long, unless the client closes first.
    Hold(Duration),
    /// Forward it once the test opens the gate ([`TagProxy::open`]),
    /// unless the client closes first.
    Gate,
    /// Forward it; once the registry answered, write one of the index's
    /// own child manifests under the same tag (directly), then answer.
    ChangeAfter,
}

/// Decides per (tag, how many writes of that tag the proxy saw before).
type Decide = dyn Fn(&str, usize) -> Rule + Send + Sync;

#[derive(Default)]
struct Counters {
    /// Tag writes held.
    held: AtomicUsize,
    /// Held writes forwarded after their delay.
    released: AtomicUsize,
    /// Held writes whose client closed first (never forwarded).
    abandoned: AtomicUsize,
    /// Tag writes seen, per tag.
    seen: Mutex<Vec<String>>,
    /// Tags changed behind the client's back.
    changed: Mutex<Vec<String>>,
    /// [`Rule::Gate`] writes may go.
    open: std::sync::atomic::AtomicBool,
}

struct TagProxy {
    addr: std::net::SocketAddr,
    counters: Arc<Counters>,
    rt: Option<tokio::runtime::Runtime>,
}

impl TagProxy {
    fn start(decide: impl Fn(&str, usize) -> Rule + Send + Sync + 'static) -> TagProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let decide: Arc<Decide> = Arc::new(decide);
        let c = counters.clone();
        rt.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(connection(sock, decide.clone(), c.clone()));
            }
        });
        TagProxy {
            addr,
            counters,
            rt: Some(rt),
        }
    }

    /// `127.0.0.1:PORT/<path>`.
    fn via(&self, path: &str) -> String {
        format!("{}/{path}", self.addr)
    }

    fn open(&self) {
        self.counters.open.store(true, Ordering::SeqCst);
    }

    fn held(&self) -> usize {
        self.counters.held.load(Ordering::SeqCst)
    }
}

impl Drop for TagProxy {
    fn drop(&mut self) {
        // Held requests end with the runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The tag of a `PUT /v2/<name>/manifests/<tag>` request head, with the
/// repository name.
fn tag_put(head: &str) -> Option<(String, String)> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    if parts.next()? != "PUT" {
        return None;
    }
    let path = parts.next()?.strip_prefix("/v2/")?;
    let (name, reference) = path.rsplit_once("/manifests/")?;
    (!reference.starts_with("sha256:")).then(|| (name.to_owned(), reference.to_owned()))
}

async fn connection(mut client: TcpStream, decide: Arc<Decide>, c: Arc<Counters>) {
    // No deadline of its own: a held request waits as long as the test.
    let forever = Duration::from_secs(3600);
    let Some(mut head) = proxy::read_head(&mut client, forever, proxy::NotHttp::Close).await else {
        return;
    };
    let Some((name, tag)) = tag_put(&head.text()) else {
        // Anything else: streamed both ways.
        proxy::forward(client, &head, UPSTREAM, forever, forever).await;
        return;
    };
    let Ok(mut up) = TcpStream::connect(UPSTREAM).await else {
        return;
    };
    // A tag write: the whole (small) body first.
    if !proxy::read_body(&mut client, &mut head, forever).await {
        return;
    }
    let body = head.buf[head.end..].to_vec();
    let mut chunk = [0u8; 1024];
    let nth = {
        let mut seen = c.seen.lock().unwrap();
        let n = seen.iter().filter(|t| **t == tag).count();
        seen.push(tag.clone());
        n
    };
    let rule = decide(&tag, nth);
    if matches!(rule, Rule::Hold(_) | Rule::Gate) {
        c.held.fetch_add(1, Ordering::SeqCst);
        let wait = async {
            match rule {
                Rule::Hold(d) => tokio::time::sleep(d).await,
                _ => {
                    while !c.open.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        };
        let closed = tokio::select! {
            _ = wait => false,
            // The body is complete: any read is the client closing.
            _ = client.read(&mut chunk) => true,
        };
        if closed {
            c.abandoned.fetch_add(1, Ordering::SeqCst);
            return;
        }
        c.released.fetch_add(1, Ordering::SeqCst);
    }
    if up
        .write_all(proxy::close_head(&head.text()).as_bytes())
        .await
        .is_err()
        || up.write_all(&body).await.is_err()
    {
        return;
    }
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer).await;
    if rule == Rule::ChangeAfter && answer.starts_with(b"HTTP/1.1 201") {
        let index: Value = serde_json::from_slice(&body).expect("the tag write is an index");
        let child = index["manifests"][0]["digest"]
            .as_str()
            .expect("index child")
            .to_owned();
        let name2 = name.clone();
        let tag2 = tag.clone();
        // curl, off the runtime: a plain image manifest of the same
        // repository under the tag.
        tokio::task::spawn_blocking(move || foreign_write(&name2, &tag2, &child))
            .await
            .expect("foreign write");
        c.changed.lock().unwrap().push(tag);
    }
    let _ = client.write_all(&answer).await;
    let _ = client.shutdown().await;
}

/// Writes manifest `digest` of repository `name` under `tag`, directly.
fn foreign_write(name: &str, tag: &str, digest: &str) {
    let (code, bytes) = http_get(&format!("/v2/{name}/manifests/{digest}"), Some(OCI_ACCEPT));
    assert_eq!(code, 200, "GET {name}@{digest}");
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let media_type = doc["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_owned();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let o = cmd(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {media_type}"),
            "--data-binary",
            &format!("@{}", file.path().display()),
            &format!("{REGISTRY}/v2/{name}/manifests/{tag}"),
        ],
    );
    assert_eq!(o.stdout.trim(), "201", "foreign PUT {name}:{tag}: {o:?}");
}

// ---------------------------------------------------------------- mybake

/// A `mybake` process whose stderr is collected as it comes.
struct Run {
    child: Child,
    started: Instant,
    stderr: Arc<(Mutex<String>, Condvar)>,
}

impl Run {
    fn spawn(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mybake"));
        c.args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn mybake");
        let stderr = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let pipe = child.stderr.take().unwrap();
        let s = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let (m, cv) = &*s;
                let mut text = m.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                cv.notify_all();
            }
        });
        Run {
            child,
            started: Instant::now(),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.0.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`; panics after `limit`.
    fn wait_for(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let (m, cv) = &*self.stderr;
        let mut text = m.lock().unwrap();
        while !text.contains(needle) {
            let now = Instant::now();
            let ended = matches!(self.child.try_wait(), Ok(Some(_)));
            if now >= deadline || ended {
                drop(text);
                let _ = self.child.kill();
                panic!(
                    "no {needle:?} on stderr (waited {:?}, process ended: {ended}):\n{}",
                    limit - deadline.saturating_duration_since(now),
                    self.stderr()
                );
            }
            text = cv
                .wait_timeout(text, (deadline - now).min(Duration::from_millis(200)))
                .unwrap()
                .0;
        }
    }

    fn signal(&self, sig: i32) -> Instant {
        // SAFETY: a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
        Instant::now()
    }

    /// Exit code (or -signal) and how long after `since` it came; kills
    /// the process and panics after `limit`.
    fn finish(mut self, since: Instant, limit: Duration) -> (i32, Duration, String) {
        use std::os::unix::process::ExitStatusExt;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                let took = since.elapsed();
                // Let the reader thread take the rest.
                std::thread::sleep(Duration::from_millis(100));
                let code = st.code().unwrap_or_else(|| -st.signal().unwrap_or(0));
                return (code, took, self.stderr());
            }
            if since.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "mybake still running {limit:?} after the signal (started {:?} ago):\n{}",
                    self.started.elapsed(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn project(repo_tags: &[String], dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tags: Vec<String> = repo_tags.iter().map(|t| format!("{t:?}")).collect();
    std::fs::write(
        dir.path().join("mybake.kdl"),
        format!(
            "target \"app\" {{\n    platforms \"linux/amd64\"\n    tags {}\n}}\n",
            tags.join(" ")
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

/// A Dockerfile whose image differs per `nonce` without running anything.
fn labelled(nonce: &str) -> String {
    format!("FROM {BUSYBOX}\nARG RUN=none\nLABEL mybake-it.nonce={nonce} mybake-it.run=$RUN\n")
}

/// The digest the tag points to, read directly from the registry.
fn tag_digest(repo: &str, tag: &str) -> Option<String> {
    let (code, body) = http_get(
        &format!("/v2/{}/manifests/{tag}", api_name(repo)),
        Some(OCI_ACCEPT),
    );
    match code {
        404 => None,
        200 => Some(sha256_digest(&body)),
        _ => panic!(
            "GET {repo}:{tag}: {code}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// `localhost:5000/mybake-it/<name>-<nonce>` and its API name.
fn repo(name: &str) -> (String, String) {
    let r = unique_repo(name);
    let api = api_name(&r).to_owned();
    (r, api)
}

// ---------------------------------------------------------------- 4: signals

/// SIGINT (exit 130) or SIGTERM (exit 143) while one tag is written and the
/// other's write is held by the registry: the process ends within seconds,
/// the held write never reaches the registry, and the summary names exactly
/// the tag written before the signal.
fn signal_during_tag_writes(sig: i32, code: i32, name: &str) {
    testbed();
    let (repo, api) = repo(&format!("signal-{name}"));
    let proxy = TagProxy::start(|tag, _| {
        if tag == "slow" {
            Rule::Hold(Duration::from_secs(300))
        } else {
            Rule::Pass
        }
    });
    let first = format!("{repo}:first");
    let fast = proxy.via(&format!("{api}:fast"));
    let slow = proxy.via(&format!("{api}:slow"));
    let dir = project(
        &[first.clone(), fast.clone(), slow.clone()],
        &labelled(&nonce()),
    );
    let mut run = Run::spawn(
        dir.path(),
        &["build", "app", "--push", "--progress", "plain"],
        &[],
    );
    run.wait_for(&format!("tagged {fast}"), Duration::from_secs(300));
    run.wait_for(&format!("tagged {first}"), Duration::from_secs(30));
    // The slow write is under way (held by the proxy).
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.held() == 0 {
        assert!(Instant::now() < deadline, "the slow tag write never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    let at = run.signal(sig);
    let (got, took, stderr) = run.finish(at, Duration::from_secs(20));
    eprintln!("{name}: exit {got} {took:?} after the signal");
    assert_eq!(got, code, "exit code\n{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "2 tag(s) written before the signal: {first}, {fast}\n"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "abandoned (the registry may have applied them): {slow}\n"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("no tag was written"), "{stderr}");
    // The held write was dropped, not forwarded, and stays so.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(proxy.counters.abandoned.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.counters.released.load(Ordering::SeqCst), 0);
    let mut now = tags(&repo);
    now.sort();
    assert_eq!(now, ["fast", "first"]);
}

#[test]
fn sigint_during_tag_writes() {
    signal_during_tag_writes(libc::SIGINT, 130, "sigint");
}

#[test]
fn sigterm_during_tag_writes() {
    signal_during_tag_writes(libc::SIGTERM, 143, "sigterm");
}

/// A registry that never answers tag writes (the 153 s case): SIGINT ends
/// the run at once, and nothing more was written.
#[test]
fn sigint_with_hung_tag_writes() {
    testbed();
    let (repo, api) = repo("signal-hung");
    let proxy = TagProxy::start(|_, _| Rule::Hold(Duration::from_secs(600)));
    let tags_ = [
        format!("{repo}:direct"),
        proxy.via(&format!("{api}:a")),
        proxy.via(&format!("{api}:b")),
    ];
    let dir = project(&tags_, &labelled(&nonce()));
    let mut run = Run::spawn(
        dir.path(),
        &["build", "app", "--push", "--progress", "plain"],
        &[],
    );
    run.wait_for(&format!("tagged {}", tags_[0]), Duration::from_secs(300));
    let deadline = Instant::now() + Duration::from_secs(300);
    while proxy.held() < 2 {
        assert!(
            Instant::now() < deadline,
            "the tag writes never came:\n{}",
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let at = run.signal(libc::SIGINT);
    let (got, took, stderr) = run.finish(at, Duration::from_secs(20));
    eprintln!("hung registry: exit {got} {took:?} after SIGINT");
    assert_eq!(got, 130, "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "mybake: 1 tag(s) written before the signal: {}\n",
            tags_[0]
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "mybake: 2 tag write(s) under way were abandoned (the registry may have applied them): {}, {}\n",
            tags_[1], tags_[2]
        )),
        "{stderr}"
    );
    assert_eq!(proxy.counters.abandoned.load(Ordering::SeqCst), 2);
    assert_eq!(tags(&repo), ["direct"]);
}

/// SIGINT while a step runs: the solve is cancelled, exit 130 at once,
/// nothing pushed under a tag.
#[test]
fn sigint_during_build() {
    testbed();
    let (repo, _) = repo("signal-build");
    let n = nonce();
    let dir = project(
        &[format!("{repo}:dev")],
        &format!("FROM {BUSYBOX}\nRUN echo {n} && sleep 300\n"),
    );
    let mut run = Run::spawn(
        dir.path(),
        &["build", "app", "--push", "--progress", "plain"],
        &[],
    );
    run.wait_for("started on", Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    let at = run.signal(libc::SIGINT);
    let (got, took, stderr) = run.finish(at, Duration::from_secs(20));
    eprintln!("build: exit {got} {took:?} after SIGINT");
    assert_eq!(got, 130, "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}\n{stderr}");
    assert!(stderr.contains("no tag was written"), "{stderr}");
    assert_no_tags(&repo, "interrupted during the build");
}

/// SIGINT while connecting to a builder that accepts the connection and
/// never answers: the executor does not notice the cancellation there, so
/// the run drops it after its grace period; exit 130 within seconds.
#[test]
fn sigint_while_connecting_to_a_hung_builder() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and holds every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let (repo, _) = repo("signal-connect");
    let dir = project(&[format!("{repo}:dev")], &labelled(&nonce()));
    let builder = format!("tcp://{addr}");
    let run = Run::spawn(
        dir.path(),
        &[
            "build",
            "app",
            "--push",
            "--progress",
            "plain",
            "--builder",
            &builder,
        ],
        &[],
    );
    std::thread::sleep(Duration::from_secs(2));
    let at = run.signal(libc::SIGINT);
    let (got, took, stderr) = run.finish(at, Duration::from_secs(20));
    eprintln!("connect: exit {got} {took:?} after SIGINT");
    assert_eq!(got, 130, "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}\n{stderr}");
    assert!(
        stderr.contains("interrupted (SIGINT) while connecting or building"),
        "{stderr}"
    );
    assert!(stderr.contains("no tag was written"), "{stderr}");
}

// ---------------------------------------------------------------- 6: concurrent runs

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn metadata_digest(path: &std::path::Path) -> String {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("metadata"))
        .expect("metadata JSON");
    v["app"]["containerimage.digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest in {v}"))
        .to_owned()
}

/// Two runs publishing the same tags, the first one's `latest` write held
/// until the second run has reached its tag writes: the second waits for
/// the first (saying so) instead of writing `dev` in between, so all tags
/// end at one run's index. (Without the lock the second run writes its
/// tags while the first one's `latest` is held, and the first run's
/// read-back fails.)
#[test]
fn concurrent_runs_do_not_interleave_tags() {
    testbed();
    let (repo, api) = repo("concurrent");
    let proxy = TagProxy::start(|tag, nth| match (tag, nth) {
        ("latest", 0) => Rule::Gate,
        _ => Rule::Hold(Duration::from_millis(500)),
    });
    let dev = proxy.via(&format!("{api}:dev"));
    let latest = proxy.via(&format!("{api}:latest"));
    let dir = project(
        &[format!("{repo}:pushed"), dev.clone(), latest.clone()],
        &labelled(&nonce()),
    );
    let locks = tempfile::tempdir().unwrap();
    let lock_dir = locks.path().to_string_lossy().into_owned();
    let env = [("MYBAKE_LOCK_DIR", lock_dir.as_str())];
    let meta = |n: &str| dir.path().join(format!("meta-{n}.json"));
    let (ma, mb) = (meta("a"), meta("b"));
    let args = |run: &'static str, m: &std::path::Path| -> Vec<String> {
        [
            "build",
            "app",
            "--push",
            "--progress",
            "plain",
            "--set",
            &format!("app.arg.RUN={run}"),
            "--metadata-file",
            &m.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let a_args = args("a", &ma);
    let b_args = args("b", &mb);
    let mut a = Run::spawn(dir.path(), &strs(&a_args), &env);
    // A has its locks and is writing its tags.
    a.wait_for(&format!("tagged {dev}"), Duration::from_secs(300));
    let mut b = Run::spawn(dir.path(), &strs(&b_args), &env);
    let waiting = format!(
        "waiting for another mybake run publishing to {}",
        proxy.via(&api)
    );
    b.wait_for(&waiting, Duration::from_secs(300));
    // B has built and is at its tag writes; let A's `latest` through.
    proxy.open();
    let (ca, _, ea) = a.finish(Instant::now(), Duration::from_secs(120));
    let (cb, _, eb) = b.finish(Instant::now(), Duration::from_secs(300));
    assert_eq!(ca, 0, "run a:\n{ea}");
    assert_eq!(cb, 0, "run b:\n{eb}");
    assert!(!ea.contains(&waiting), "run a waited:\n{ea}");
    let (da, db) = (metadata_digest(&ma), metadata_digest(&mb));
    assert_ne!(da, db, "the two runs must build different indexes");
    let now_dev = tag_digest(&repo, "dev");
    let now_latest = tag_digest(&repo, "latest");
    let now_pushed = tag_digest(&repo, "pushed");
    assert_eq!(
        (&now_dev, &now_pushed),
        (&now_latest, &now_latest),
        "dev, pushed and latest point to different indexes (a {da}, b {db})"
    );
    assert_eq!(now_dev.as_deref(), Some(db.as_str()), "the later run wins");
}

/// Another writer (not a mybake run on this machine) changes a tag between
/// mybake's write and its read-back: exit 1 naming the tag.
#[test]
fn foreign_tag_change_is_reported() {
    testbed();
    let (repo, api) = repo("foreign");
    let proxy = TagProxy::start(|tag, _| {
        if tag == "dev" {
            Rule::ChangeAfter
        } else {
            Rule::Pass
        }
    });
    let dev = proxy.via(&format!("{api}:dev"));
    let stable = format!("{repo}:stable");
    let dir = project(&[stable.clone(), dev.clone()], &labelled(&nonce()));
    let run = Run::spawn(
        dir.path(),
        &["build", "app", "--push", "--progress", "plain"],
        &[],
    );
    let (code, _, stderr) = run.finish(Instant::now(), Duration::from_secs(300));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        *proxy.counters.changed.lock().unwrap(),
        vec!["dev".to_owned()]
    );
    let now = tag_digest(&repo, "dev").expect("dev exists");
    assert!(
        stderr.contains(&format!(
            "  {dev} now points to {now}, not to this run's index"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("  {stable} ")), "{stderr}");
    assert!(
        stderr.contains("1 tag(s) do not point to this run's index after writing"),
        "{stderr}"
    );
}
