//! Builder selection: `--builder` names an endpoint (`docker`,
//! `unix:///…`, `tcp://…`) or a builder defined in a KDL config file:
//!
//! ```kdl
//! builder "pair" {
//!     node "amd" endpoint="docker" platforms="linux/amd64"
//!     node "arm" endpoint="unix:///run/buildkitd.sock" platforms="linux/arm64" jobs=4
//! }
//! ```
//!
//! Files, later ones overriding earlier builders of the same name:
//! `$XDG_CONFIG_HOME/mybake/builders.kdl` (default
//! `~/.config/mybake/builders.kdl`), then `mybake.builders.kdl` in the
//! working directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Solves one node runs at once unless `jobs=` says otherwise.
///
/// BuildKit shares the machine among all steps of all solves itself, so
/// this cap is not a throughput knob: it is a guard against flooding a
/// builder with sessions, context uploads and in-memory solver state when a
/// monorepo has hundreds of ready images. It is set high enough that a
/// graph of a few dozen images per level never waits for a slot (with 16,
/// the 32 ready service builds of the build bench queued for up to 20 s
/// while the builder was no faster for it), and low enough that a
/// thousand-image run keeps a bounded number of solves in flight. `-j`
/// caps the whole run.
pub const DEFAULT_NODE_JOBS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub endpoint: String,
    /// Platforms this node builds natively (empty: its first worker
    /// platform).
    pub native: Vec<String>,
    pub jobs: usize,
}

#[derive(knuffel::Decode, Debug)]
#[knuffel(span_type = knuffel::span::Span)]
enum Top {
    Builder(BuilderNode),
}

#[derive(knuffel::Decode, Debug)]
#[knuffel(span_type = knuffel::span::Span)]
struct BuilderNode {
    #[knuffel(argument)]
    name: String,
    #[knuffel(children(name = "node"))]
    nodes: Vec<NodeNode>,
}

#[derive(knuffel::Decode, Debug)]
#[knuffel(span_type = knuffel::span::Span)]
struct NodeNode {
    #[knuffel(argument)]
    name: String,
    #[knuffel(property)]
    endpoint: String,
    #[knuffel(property)]
    platforms: Option<String>,
    #[knuffel(property)]
    jobs: Option<u32>,
}

/// Config files to read, in order.
pub fn config_files(cwd: &Path, env: &HashMap<String, String>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let base = env
        .get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".config")));
    if let Some(b) = base {
        v.push(b.join("mybake").join("builders.kdl"));
    }
    v.push(cwd.join("mybake.builders.kdl"));
    v
}

/// Parse builders from one file's text.
pub fn parse(name: &str, text: &str) -> Result<HashMap<String, Vec<NodeSpec>>, String> {
    let tops: Vec<Top> = knuffel::parse(name, text).map_err(|e| {
        let mut s = format!("{name}: {e}");
        if let Some(rel) = miette::Diagnostic::related(&e) {
            for r in rel {
                s.push_str(&format!("; {r}"));
            }
        }
        s
    })?;
    let mut out = HashMap::new();
    for Top::Builder(b) in tops {
        if b.nodes.is_empty() {
            return Err(format!("{name}: builder `{}` has no `node`", b.name));
        }
        let nodes = b
            .nodes
            .into_iter()
            .map(|n| NodeSpec {
                name: n.name,
                endpoint: n.endpoint,
                native: n
                    .platforms
                    .map(|p| {
                        p.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                jobs: n.jobs.map_or(DEFAULT_NODE_JOBS, |j| (j as usize).max(1)),
            })
            .collect();
        out.insert(b.name, nodes);
    }
    Ok(out)
}

/// The nodes of `--builder SPEC`.
pub fn select(
    spec: &str,
    cwd: &Path,
    env: &HashMap<String, String>,
) -> Result<Vec<NodeSpec>, String> {
    let mut builders = HashMap::new();
    for f in config_files(cwd, env) {
        if let Ok(text) = std::fs::read_to_string(&f) {
            builders.extend(parse(&f.display().to_string(), &text)?);
        }
    }
    if let Some(nodes) = builders.get(spec) {
        return Ok(nodes.clone());
    }
    if spec == "docker" || spec.contains("://") {
        return Ok(vec![NodeSpec {
            name: spec.to_string(),
            endpoint: spec.to_string(),
            native: Vec::new(),
            jobs: DEFAULT_NODE_JOBS,
        }]);
    }
    let mut known: Vec<&str> = builders.keys().map(String::as_str).collect();
    known.sort();
    Err(format!(
        "unknown builder `{spec}` (not an endpoint like docker, unix:///path or tcp://host:port{})",
        if known.is_empty() {
            String::new()
        } else {
            format!("; configured builders: {}", known.join(", "))
        }
    ))
}

/// Pick a node for each platform: one that builds it natively, else one
/// whose workers support it (emulation); among equals, the least loaded.
/// `supported[i]` is node i's worker platform list.
pub fn assign(
    platforms: &[String],
    nodes: &[NodeSpec],
    supported: &[Vec<String>],
    matches: impl Fn(&str, &[String]) -> bool,
) -> Result<Vec<usize>, String> {
    let mut load = vec![0usize; nodes.len()];
    let mut out = Vec::with_capacity(platforms.len());
    for p in platforms {
        let native: Vec<usize> = (0..nodes.len())
            .filter(|&i| {
                let nat = if nodes[i].native.is_empty() {
                    supported[i].first().cloned().into_iter().collect()
                } else {
                    nodes[i].native.clone()
                };
                matches(p, &nat)
            })
            .collect();
        let candidates: Vec<usize> = if native.is_empty() {
            (0..nodes.len())
                .filter(|&i| matches(p, &supported[i]))
                .collect()
        } else {
            native
        };
        let Some(&best) = candidates.iter().min_by_key(|&&i| (load[i], i)) else {
            return Err(p.clone());
        };
        load[best] += 1;
        out.push(best);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(p: &str, l: &[String]) -> bool {
        l.iter().any(|x| x == p)
    }

    #[test]
    fn parses_and_selects() {
        let b = parse("b.kdl", "builder \"pair\" {\n    node \"amd\" endpoint=\"docker\" platforms=\"linux/amd64\"\n    node \"arm\" endpoint=\"unix:///x.sock\" platforms=\"linux/arm64\" jobs=2\n}\n").unwrap();
        let n = &b["pair"];
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].jobs, 2);
        assert_eq!(n[0].native, ["linux/amd64"]);
        assert!(parse("b.kdl", "builder \"x\" {\n}\n").is_err());
    }

    #[test]
    fn assigns_native_first_then_emulated_balanced() {
        let nodes = vec![
            NodeSpec {
                name: "a".into(),
                endpoint: "docker".into(),
                native: vec!["linux/amd64".into()],
                jobs: 1,
            },
            NodeSpec {
                name: "b".into(),
                endpoint: "unix:///x".into(),
                native: vec!["linux/arm64".into()],
                jobs: 1,
            },
        ];
        let sup = vec![
            vec!["linux/amd64".to_string(), "linux/arm64".to_string()],
            vec!["linux/arm64".to_string()],
        ];
        let p: Vec<String> = ["linux/arm64", "linux/amd64", "linux/arm64"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(assign(&p, &nodes, &sup, eq).unwrap(), [1, 0, 1]);
        // No native node for riscv64, nobody emulates it.
        assert_eq!(
            assign(&["linux/riscv64".to_string()], &nodes, &sup, eq).unwrap_err(),
            "linux/riscv64"
        );
        // Emulated fallback when no node is native.
        let only_a = vec![nodes[0].clone()];
        assert_eq!(
            assign(&["linux/arm64".to_string()], &only_a, &sup[..1], eq).unwrap(),
            [0]
        );
    }

    #[test]
    fn plain_endpoints_need_no_config() {
        let env = HashMap::new();
        let n = select("unix:///run/x.sock", Path::new("/nonexistent"), &env).unwrap();
        assert_eq!(n[0].endpoint, "unix:///run/x.sock");
        assert!(select("nosuch", Path::new("/nonexistent"), &env)
            .unwrap_err()
            .contains("unknown builder"));
    }
}
