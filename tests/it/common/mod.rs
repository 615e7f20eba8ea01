//! A fluent builder for integration tests that run the real `mybake`
//! binary in a temporary directory (after casey/just's test builder).

#![allow(dead_code)]

pub mod monorepo;
pub mod proxy;
pub mod testbed;

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Test {
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    stdin: Option<String>,
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::tempdir().expect("tempdir"),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
        }
    }

    /// Write `mybake.kdl`.
    #[must_use]
    pub fn kdl(self, text: &str) -> Test {
        self.file("mybake.kdl", text)
    }

    /// Write a file (parents created).
    #[must_use]
    pub fn file(self, path: &str, text: &str) -> Test {
        let p = self.dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
        self
    }

    #[must_use]
    pub fn args(mut self, args: &[&str]) -> Test {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    #[must_use]
    pub fn env(mut self, k: &str, v: &str) -> Test {
        self.env.push((k.into(), v.into()));
        self
    }

    #[must_use]
    pub fn cwd(mut self, sub: &str) -> Test {
        self.cwd = Some(self.dir.path().join(sub));
        self
    }

    #[must_use]
    pub fn stdin(mut self, s: &str) -> Test {
        self.stdin = Some(s.into());
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn run(&self) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mybake"));
        c.args(&self.args)
            .current_dir(self.cwd.as_deref().unwrap_or(self.dir.path()))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let out = if let Some(input) = &self.stdin {
            use std::io::Write;
            c.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn().expect("spawn mybake");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
            child.wait_with_output().expect("wait")
        } else {
            c.output().expect("run mybake")
        };
        let tmp = self.dir.path().to_string_lossy().into_owned();
        let redact = |b: &[u8]| String::from_utf8_lossy(b).replace(&tmp, "[TMP]");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: redact(&out.stdout),
            stderr: redact(&out.stderr),
        }
    }

    /// Run and expect exit code `code` (a failure names the caller's line).
    #[track_caller]
    pub fn expect(&self, code: i32) -> Output {
        let o = self.run();
        assert_eq!(
            o.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            o.stdout, o.stderr
        );
        o
    }
}
