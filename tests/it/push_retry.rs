//! Issue 11 part 5: BuildKit's own push meets a registry answer that a
//! second export fixes. The real test bed (Docker Engine's BuildKit, the
//! registry on 127.0.0.1:5000) with a loopback HTTP proxy in front of the
//! registry that answers chosen manifest PUTs itself, the way distribution
//! answers them, and passes everything else through. The proxy exists
//! only to make the fault happen on demand; the builds, pushes, tags and
//! images are real.
//!
//! 127.0.0.1:PORT is a plain-HTTP registry to mybake (loopback) and to
//! dockerd (127.0.0.0/8 is insecure by default: it tries TLS first and
//! falls back to HTTP when the answer is not TLS, so the proxy answers a
//! TLS hello with an HTTP 400 as Go's server does).

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::testbed::*;
use common::{proxy, Output, Test};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

const UPSTREAM: &str = "127.0.0.1:5000";

// ---------------------------------------------------------------- the proxy

/// Which manifest PUTs the proxy answers itself, and how.
#[derive(Clone, Copy)]
enum Rule {
    /// The first manifest PUT of each repository.
    FirstPerRepository(Answer),
    /// Every manifest PUT.
    Every(Answer),
}

/// distribution 2.8's answers (status line, JSON body).
#[derive(Clone, Copy)]
enum Answer {
    /// The shared-blob race.
    BlobUnknown,
    /// A manifest the registry rejects for good.
    ManifestInvalid,
    NameUnknown,
    Unauthorized,
    Unavailable,
}

impl Answer {
    fn http(self, reference: &str) -> (&'static str, String) {
        match self {
            Answer::BlobUnknown => (
                "400 Bad Request",
                format!(r#"{{"errors":[{{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"{reference}"}}]}}"#),
            ),
            Answer::ManifestInvalid => (
                "400 Bad Request",
                r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{}}]}"#.into(),
            ),
            Answer::NameUnknown => (
                "404 Not Found",
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{}}]}"#.into(),
            ),
            Answer::Unauthorized => (
                "401 Unauthorized",
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#.into(),
            ),
            Answer::Unavailable => (
                "503 Service Unavailable",
                r#"{"errors":[{"code":"UNAVAILABLE","message":"service unavailable"}]}"#.into(),
            ),
        }
    }
}

struct Proxy {
    addr: SocketAddr,
    /// (repository, reference) of every answered PUT, in order.
    faults: Arc<Mutex<Vec<(String, String)>>>,
    /// Runs the proxy; dropping it stops the proxy.
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(rule: Rule) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Mutex::new(Vec::new()));
        let f = faults.clone();
        rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    break;
                };
                tokio::spawn(connection(sock, rule, f.clone()));
            }
        });
        Proxy {
            addr,
            faults,
            _rt: rt,
        }
    }

    fn faults(&self) -> Vec<(String, String)> {
        self.faults.lock().unwrap().clone()
    }

    /// `127.0.0.1:PORT/mybake-it/<name>-<nonce>`.
    fn namespace(&self, name: &str) -> String {
        format!("{}/mybake-it/{name}-{}", self.addr, nonce())
    }
}

/// One request per connection (`Connection: close` both ways).
async fn connection(mut client: TcpStream, rule: Rule, faults: Arc<Mutex<Vec<(String, String)>>>) {
    let step = Duration::from_secs(30);
    let Some(mut head) = proxy::read_head(&mut client, step, proxy::NotHttp::Answer400).await
    else {
        return;
    };
    let (method, path) = head.method_and_path();
    let manifest = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split_once("/manifests/"))
        .map(|(repo, reference)| (repo.to_string(), reference.to_string()));
    if let (Some((repo, reference)), "PUT") = (manifest, method.as_str()) {
        let answer = {
            let mut f = faults.lock().unwrap();
            let answer = match rule {
                Rule::Every(a) => Some(a),
                Rule::FirstPerRepository(a) => (!f.iter().any(|(r, _)| *r == repo)).then_some(a),
            };
            if answer.is_some() {
                f.push((repo.clone(), reference.clone()));
            }
            answer
        };
        if let Some(answer) = answer {
            proxy::read_body(&mut client, &mut head, step).await;
            let (status, body) = answer.http(&reference);
            let headers = "Content-Type: application/json; charset=utf-8\r\nDocker-Distribution-Api-Version: registry/2.0\r\n";
            proxy::respond(&mut client, status, headers, &body).await;
            return;
        }
    }
    proxy::forward(client, &head, UPSTREAM, step, Duration::from_secs(300)).await;
}

// ---------------------------------------------------------------- helpers

/// `--progress json` lines.
fn events(o: &Output) -> Vec<Value> {
    o.stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event {l}: {e}")))
        .collect()
}

fn of_type<'a>(ev: &'a [Value], ty: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["type"] == ty).collect()
}

/// Every event, `retrying` and `finished.push_attempts` included, matches
/// schema/progress-event.schema.json.
fn assert_schema(ev: &[Value]) {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/progress-event.schema.json"),
        )
        .expect("read the schema"),
    )
    .expect("schema is JSON");
    let v = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let bad: Vec<String> = ev
        .iter()
        .filter_map(|e| {
            let errs: Vec<String> = v.iter_errors(e).map(|x| x.to_string()).collect();
            (!errs.is_empty()).then(|| format!("{e}: {}", errs.join("; ")))
        })
        .collect();
    assert!(bad.is_empty(), "events off the schema:\n{}", bad.join("\n"));
}

fn show(o: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        o.code, o.stdout, o.stderr
    )
}

/// `GET` on the real registry (the proxy's upstream) of `repo`'s `tag`
/// (`repo` on the proxy's address) → the index.
fn index_by_tag(repo_via_proxy: &str, tag: &str) -> Value {
    let name = repo_via_proxy
        .split_once('/')
        .map(|(_, n)| n)
        .expect("repository has a host");
    http_json(&format!("/v2/{name}/manifests/{tag}"), Some(OCI_ACCEPT))
}

/// A one-platform target `app` pushed to `repo` (a fresh build each call:
/// the nonce is in the Dockerfile).
fn one_node(repo: &str) -> Test {
    Test::new()
        .kdl(&format!(
            "target \"app\" {{\n    context \"app\"\n    platforms \"linux/amd64\"\n    tags \"{repo}:dev\"\n}}\n"
        ))
        .file(
            "app/Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN echo {} > /nonce\n", nonce()),
        )
        .args(&["build", "app", "--push", "--progress", "json"])
}

// ---------------------------------------------------------------- tests

/// The monorepo example against a registry that answers the first
/// manifest PUT of every repository with distribution's
/// `400 MANIFEST_BLOB_UNKNOWN`: each node that met it exports again once
/// and the run succeeds with every tag in place.
#[test]
fn shared_blob_race_answer_is_retried_and_the_run_succeeds() {
    testbed();
    let proxy = Proxy::start(Rule::FirstPerRepository(Answer::BlobUnknown));
    let ns = proxy.namespace("race");
    let repo = |t: &str| format!("{ns}/monorepo/{t}");
    let targets = ["base", "lib-greet", "svc-api", "svc-worker", "tools"];
    let _cleanup = StoreCleanup(targets.iter().map(|t| repo(t)).collect());
    let o = Command::new(env!("CARGO_BIN_EXE_mybake"))
        .arg("-C")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/monorepo"))
        .args([
            "--var",
            &format!("REGISTRY={ns}"),
            "build",
            "--push",
            "--progress",
            "json",
        ])
        .output()
        .expect("run mybake");
    let o = Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    let faults = proxy.faults();
    assert_eq!(o.code, 0, "faults {faults:?}\n{}", show(&o));
    let ev = events(&o);
    assert_schema(&ev);

    // Every repository BuildKit pushed to met the fault once.
    let faulted: Vec<&str> = faults.iter().map(|(r, _)| r.as_str()).collect();
    let mut want: Vec<String> = targets
        .iter()
        .map(|t| repo(t).split_once('/').unwrap().1.to_string())
        .collect();
    want.sort();
    let mut got: Vec<String> = faulted.iter().map(|s| s.to_string()).collect();
    got.sort();
    assert_eq!(got, want, "one injected 400 per repository");

    // One retry per node that met it, and only there.
    let retries = of_type(&ev, "retrying");
    assert_eq!(
        retries.len(),
        faults.len(),
        "one retry per injected fault: {retries:?}"
    );
    let mut per_target: BTreeMap<String, usize> = BTreeMap::new();
    for r in &retries {
        assert_eq!(r["attempt"], 2, "{r}");
        assert_eq!(r["max"], 4, "{r}");
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("/manifests/") && reason.contains("400 Bad Request"),
            "{r}"
        );
        let node = r["node"].as_str().unwrap_or_default();
        let target = node.split('@').next().unwrap_or_default().to_string();
        *per_target.entry(target).or_default() += 1;
    }
    assert_eq!(
        per_target.keys().map(String::as_str).collect::<Vec<_>>(),
        targets.to_vec(),
        "each repository's fault was retried by one of its target's nodes"
    );
    assert!(per_target.values().all(|&n| n == 1), "{per_target:?}");
    let retried: HashSet<&str> = retries.iter().filter_map(|r| r["node"].as_str()).collect();
    assert!(of_type(&ev, "failed").is_empty(), "{}", show(&o));
    let finished = of_type(&ev, "finished");
    assert_eq!(finished.len(), 9, "every build node finished");
    for f in finished {
        let node = f["node"].as_str().unwrap_or_default();
        let want = if retried.contains(node) { 2 } else { 1 };
        assert_eq!(f["push_attempts"], want, "{f}");
    }
    // The summary says which nodes needed a second push.
    assert_eq!(
        o.stderr.matches("(2 push attempts)").count(),
        retried.len(),
        "{}",
        o.stderr
    );

    // The tags resolve to indexes of the targets' platforms.
    for (t, platforms) in [
        ("lib-greet", 2),
        ("svc-api", 2),
        ("svc-worker", 2),
        ("tools", 1),
    ] {
        let index = index_by_tag(&repo(t), "dev");
        assert_eq!(index_images(&index).len(), platforms, "{t}: {index}");
    }
}

/// Answers that another export does not change fail the node at once:
/// no retry, one PUT.
#[test]
fn final_registry_answers_fail_at_once() {
    testbed();
    for (answer, status) in [
        (Answer::NameUnknown, "404 Not Found"),
        (Answer::Unauthorized, "401 Unauthorized"),
    ] {
        let proxy = Proxy::start(Rule::Every(answer));
        let repo = proxy.namespace("final");
        let _cleanup = StoreCleanup(vec![repo.clone()]);
        let o = one_node(&repo).run();
        assert_eq!(o.code, 1, "{}", show(&o));
        let ev = events(&o);
        assert!(of_type(&ev, "retrying").is_empty(), "{}", show(&o));
        let failed = of_type(&ev, "failed");
        assert_eq!(failed.len(), 1, "{}", show(&o));
        let error = failed[0]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(status) && !error.contains("push attempts"),
            "{error}"
        );
        assert_eq!(proxy.faults().len(), 1, "{status}: one manifest PUT");
        assert_no_tags(
            &format!("localhost:5000/{}", repo.split_once('/').unwrap().1),
            "failed",
        );
    }
}

/// The daemon's message drops the registry's body, so `400` on a manifest
/// PUT is the race or a manifest rejected for good: one re-export, and the
/// same answer again is final.
#[test]
fn a_second_bad_request_is_final() {
    testbed();
    let proxy = Proxy::start(Rule::Every(Answer::ManifestInvalid));
    let repo = proxy.namespace("invalid");
    let _cleanup = StoreCleanup(vec![repo.clone()]);
    let o = one_node(&repo).run();
    assert_eq!(o.code, 1, "{}", show(&o));
    let ev = events(&o);
    assert_schema(&ev);
    let retries = of_type(&ev, "retrying");
    assert_eq!(retries.len(), 1, "{}", show(&o));
    assert_eq!(retries[0]["attempt"], 2);
    let failed = of_type(&ev, "failed");
    assert_eq!(failed.len(), 1, "{}", show(&o));
    let error = failed[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("400 Bad Request") && error.ends_with("(after 2 push attempts)"),
        "{error}"
    );
    assert_eq!(proxy.faults().len(), 2, "two solves, one manifest PUT each");
}

/// Ctrl-C while a node waits for its next push attempt: no further attempt,
/// the node is cancelled and mybake exits 130.
#[test]
fn sigint_stops_retrying() {
    testbed();
    let proxy = Proxy::start(Rule::Every(Answer::Unavailable));
    let repo = proxy.namespace("sigint");
    let _cleanup = StoreCleanup(vec![repo.clone()]);
    let t = one_node(&repo);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mybake"))
        .args(["build", "app", "--push", "--progress", "json"])
        .current_dir(t.path())
        .env("HOME", t.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mybake");
    let pid = child.id() as i32;
    let stdout = child.stdout.take().expect("stdout");
    let mut seen: Vec<Value> = Vec::new();
    let mut signalled = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["type"] == "retrying" && !signalled {
            // SAFETY: signalling our own child process.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
            signalled = true;
        }
        seen.push(v);
    }
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(signalled, "no retry happened: {seen:?}\n{stderr}");
    assert_eq!(status.code(), Some(130), "{seen:?}\n{stderr}");
    assert_eq!(of_type(&seen, "retrying").len(), 1, "{seen:?}");
    assert_eq!(of_type(&seen, "cancelled").len(), 1, "{seen:?}");
    assert!(of_type(&seen, "failed").is_empty(), "{seen:?}");
    assert!(of_type(&seen, "finished").is_empty(), "{seen:?}");
}
