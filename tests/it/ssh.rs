//! `ssh` forwarding against the real daemon: the step gets an agent socket
//! when the agent exists; a missing agent fails the build clearly; an unset
//! SSH_AUTH_SOCK is refused before anything runs.

use crate::common;

use common::Test;
use std::process::Command;

const KDL: &str =
    "target \"s\" {\n    platforms \"linux/amd64\"\n    ssh \"default\"\n    no-cache true\n}\n";
const DOCKERFILE: &str = "FROM localhost:5000/busybox:latest\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"agent at $SSH_AUTH_SOCK\"\n";

struct Agent {
    sock: String,
    pid: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

fn agent() -> Agent {
    let out = Command::new("ssh-agent")
        .arg("-s")
        .output()
        .expect("ssh-agent (openssh-client) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.split(';')
            .find_map(|p| p.trim().strip_prefix(&format!("{k}=")))
            .expect("agent output")
            .to_string()
    };
    Agent {
        sock: get("SSH_AUTH_SOCK"),
        pid: get("SSH_AGENT_PID"),
    }
}

#[test]
fn agent_is_forwarded_into_the_step() {
    let a = agent();
    let o = Test::new()
        .kdl(KDL)
        .file("Dockerfile", DOCKERFILE)
        .env("SSH_AUTH_SOCK", &a.sock)
        .args(&["build", "s", "--progress", "plain"])
        .expect(0);
    assert!(
        o.stderr
            .contains("[s@linux/amd64] | agent at /run/buildkit/ssh_agent.0"),
        "{}",
        o.stderr
    );
}

#[test]
fn missing_agent_socket_is_refused_before_building() {
    let kdl = KDL.replace("ssh \"default\"", "ssh \"default=/nonexistent/agent.sock\"");
    let o = Test::new()
        .kdl(&kdl)
        .file("Dockerfile", DOCKERFILE)
        .args(&["build", "s", "--progress", "plain"])
        .expect(2);
    assert!(
        o.stderr.contains("mybake::exec::ssh") && o.stderr.contains("/nonexistent/agent.sock"),
        "{}",
        o.stderr
    );
}

#[test]
fn unset_auth_sock_is_refused_before_building() {
    let o = Test::new()
        .kdl(KDL)
        .file("Dockerfile", DOCKERFILE)
        .args(&["build", "s"])
        .expect(2);
    assert!(
        o.stderr.contains("mybake::exec::ssh") && o.stderr.contains("SSH_AUTH_SOCK"),
        "{}",
        o.stderr
    );
}
